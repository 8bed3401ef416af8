// Link secrets and fragments (FORMAT.md "Links"): making V3 (44-char base64), V4 (43-char
// base64url) and quick-share (6 of A-Z0-9, uniform) secrets, building links from this page's
// origin, and reading a fragment back: cut at the first '&', never decoded, a typed 6-char
// secret upper-cased. Pure: no DOM, no network.

import { fromBase64Url, randomBytes, toBase64, toBase64Url } from './crypto/bytes.js';

const QUICK_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
export const CLIP_ID = /^[A-Z0-9]{10}$/;
export const QUICK_ID = /^[A-Z0-9]{6}$/;

export const newTextSecret = () => toBase64(randomBytes(32));
export const newFileSecret = () => toBase64Url(randomBytes(32));

/** Six characters of A-Z0-9 without modulo bias (bytes ≥ 252 are drawn again). */
export function newQuickSecret() {
  let out = '';
  while (out.length < 6) {
    for (const b of randomBytes(16)) {
      if (b < 252 && out.length < 6) out += QUICK_ALPHABET[b % 36];
    }
  }
  return out;
}

export function link(origin, kind, id, secret) {
  return `${origin}/${kind === 'file' ? 'file' : 'clip'}/${id}#${secret}`;
}

/** The secret in a fragment (`#...` with or without '#'), cut at '&'; '' when absent. */
export function fragmentSecret(hash) {
  const raw = hash.startsWith('#') ? hash.slice(1) : hash;
  const cut = raw.indexOf('&');
  return cut >= 0 ? raw.slice(0, cut) : raw;
}

/** The 32 key bytes of a V4 secret, or null when it is not 43 base64url characters. */
export function v4SecretBytes(secret) {
  if (!/^[A-Za-z0-9_-]{43}$/.test(secret)) return null;
  try {
    return fromBase64Url(secret);
  } catch {
    return null;
  }
}

/** `ID · SECRET`, the spoken form of a quick share. */
export const verbal = (id, secret) => `${id} · ${secret}`;

/**
 * What a person typed to open a share: a full link, or a quick-share code as `ID SECRET`,
 * `ID · SECRET` or twelve characters in a row. Returns `{ id, secret }` or null.
 */
export function parseTyped(input) {
  const text = input.trim();
  const m = text.match(/\/(clip|file)\/([A-Za-z0-9]{6}|[A-Za-z0-9]{10})(?:[/?][^#]*)?(#.*)?$/);
  if (m) {
    const id = m[2].toUpperCase();
    let secret = fragmentSecret(m[3] ?? '');
    if (id.length === 6) secret = secret.toUpperCase();
    return { id, secret, kind: m[1] };
  }
  const compact = text.toUpperCase().replace(/[^A-Z0-9]/g, '');
  if (compact.length === 12) return { id: compact.slice(0, 6), secret: compact.slice(6), kind: 'clip' };
  if (compact.length === 6) return { id: compact, secret: '', kind: 'clip' };
  return null;
}
