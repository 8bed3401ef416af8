// Names of saved files: what a decrypted file may be called on disk (no path separators or
// control characters, never empty) and the RFC 6266 Content-Disposition the service worker
// answers with. Pure: the page and the service worker both use it.

export function safeName(name, fallback = 'download') {
  const cleaned = String(name ?? '')
    .replace(/[\u0000-\u001f\u007f/\\]/g, '_')
    .replace(/^[.\s]+|[.\s]+$/g, '')
    .slice(0, 255);
  return cleaned || fallback;
}

/** `attachment; filename="<ASCII fallback>"; filename*=UTF-8''<percent-encoded>`. */
export function contentDisposition(name) {
  const safe = safeName(name);
  const ascii = safe.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(safe).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** A MIME type worth passing on, else application/octet-stream. */
export function safeType(type) {
  return /^[\w.+-]+\/[\w.+-]+$/.test(type ?? '') ? type : 'application/octet-stream';
}
