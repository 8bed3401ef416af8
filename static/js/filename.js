// Names of saved files: what a decrypted file may be called on disk (no path separators or
// control characters, never empty) and the RFC 6266 Content-Disposition the service worker
// answers with. Pure: the page and the service worker both use it.

export function safeName(name, fallback = 'download') {
  const chars = Array.from(
    String(name ?? '')
      // Lone surrogates (a sender may put them in its metadata) would break encoding below.
      .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '_')
      .replace(/[\u0000-\u001f\u007f/\\]/g, '_')
      // Bidirectional controls could make "gpj.exe" read as "exe.jpg".
      .replace(/[\u202a-\u202e\u2066-\u2069\u200e\u200f]/g, '')
      .replace(/^[.\s]+|[.\s]+$/g, ''),
  );
  return chars.slice(0, 255).join('') || fallback;
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
