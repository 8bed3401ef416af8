// Applies the saved theme before the first paint (a classic script in <head>: the page's
// policy allows no inline script). 'light' or 'dark' pins it; nothing follows the system.
try {
  const saved = localStorage.getItem('ferry-theme');
  if (saved === 'light' || saved === 'dark') document.documentElement.dataset.theme = saved;
} catch {
  // Storage may be off; the system preference applies.
}
