// The theme toggle: system → light → dark → system, remembered in localStorage and applied
// as data-theme on <html> (theme-init.js applies it before the first paint).

import { $ } from './dom.js';

const ORDER = ['system', 'light', 'dark'];

function current() {
  return document.documentElement.dataset.theme ?? 'system';
}

function apply(theme) {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  try {
    if (theme === 'system') localStorage.removeItem('ferry-theme');
    else localStorage.setItem('ferry-theme', theme);
  } catch {
    // Not remembered; it still applies to this page.
  }
  const system = matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
  $('theme-state').textContent = theme === 'system' ? `follows the system (now ${system})` : theme;
  $('theme').setAttribute('aria-label', `Theme: ${theme === 'system' ? 'system' : theme}. Change theme`);
}

export function initTheme() {
  apply(current());
  $('theme').addEventListener('click', () => apply(ORDER[(ORDER.indexOf(current()) + 1) % ORDER.length]));
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => apply(current()));
}
