// DOM helpers for the screens: finding elements, showing one screen, announcing to screen
// readers, and the human forms of sizes, speeds, durations and times. Text reaches the page
// through textContent only.

export const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
};

export function show(el, visible = true) {
  (typeof el === 'string' ? $(el) : el).hidden = !visible;
}

export function setText(id, text) {
  $(id).textContent = text;
}

/** Show one screen, hide the others, and move focus to its heading. */
export function screen(id, { focus = true } = {}) {
  for (const s of document.querySelectorAll('.screen')) s.hidden = s.id !== id;
  if (focus) {
    const heading = $(id).querySelector('h1');
    if (heading) {
      if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: false });
    }
  }
}

/**
 * Say `text` through the polite live region: each message is a node of its own, so quick
 * successions (one phase after another) are all read, not only the last; old ones are pruned.
 */
export function announce(text) {
  const region = $('announce');
  const line = document.createElement('p');
  line.textContent = text;
  region.append(line);
  while (region.childElementCount > 3) region.firstElementChild.remove();
}

export { formatBytes } from '../units.js';

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

const EXPIRY_NAMES = { '5min': '5 minutes', '15min': '15 minutes', '30min': '30 minutes', '1hr': '1 hour', '6hr': '6 hours', '24hr': '24 hours' };
export const expiryName = (value) => EXPIRY_NAMES[value] ?? value;

/** "at 14:05 (in 23 minutes)" for a time in ms since the epoch. */
export function formatExpiry(ms, now = Date.now()) {
  const when = new Date(ms);
  const sameDay = when.toDateString() === new Date(now).toDateString();
  const clock = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const at = sameDay ? clock : `${when.toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'short' })} ${clock}`;
  const left = Math.max(0, ms - now) / 1000;
  const rel = left < 90 ? `${Math.round(left)} seconds` : left < 5400 ? `${Math.round(left / 60)} minutes` : `${Math.round(left / 3600)} hours`;
  return `${at} (in ${rel})`;
}

/** Copy text to the clipboard; falls back to selecting an input for older browsers. */
export async function copyText(text, fallbackInput = null) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackInput) {
      fallbackInput.select();
      return document.execCommand?.('copy') ?? false;
    }
    return false;
  }
}

/** Offer bytes as a file the user saves (small things only: it is held in memory). */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
