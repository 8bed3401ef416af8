// Human forms of byte counts, shared by the screens and by the refusals the upload code makes,
// so a limit is always shown as the same words wherever it appears. Pure: no DOM.

const UNITS = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];

/** "1 byte", "512 bytes", "9.54 MiB", "10.0 MiB", "1.00 GiB". */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return n === 1 ? '1 byte' : `${n} bytes`;
  let u = 0;
  let v = n;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${UNITS[u]}`;
}

/** "10,485,760" — an exact count for where the rounded form is not enough. */
export const exactBytes = (n) => n.toLocaleString('en-US');
