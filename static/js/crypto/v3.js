// Qopy's V3 format (FORMAT.md): one blob `0x03 ‖ salt[32] ‖ iv[12] ‖ AES-256-GCM(data)`, the
// key PBKDF2-HMAC-SHA256 (600 000 iterations) over the fragment secret as a string, or
// `secret:password` for a text with a password. ferry writes it for text and quick shares and
// reads it for text and for files made by Qopy's own front-end. Pure functions over bytes.

import { concat, fromUtf8, randomBytes, readU32be, readU32le, u32be, utf8 } from './bytes.js';

export const VERSION = 3;
export const ITERATIONS = 600000;
export const SALT_LENGTH = 32;
export const IV_LENGTH = 12;
export const HEADER_LENGTH = 1 + SALT_LENGTH + IV_LENGTH;
/** Texts shorter than this are padded, so a short text does not show its length. */
export const PAD_THRESHOLD = 10240;
export const PADDED_LENGTH = 10244;

export class FormatError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // 'tampered' | 'unsupported' | 'truncated'
  }
}

/** The string the text key is derived from: the secret, or `secret:password` when one is set. */
export function textKeySource(secret, password) {
  const p = (password ?? '').trim();
  return p ? `${secret}:${p}` : secret;
}

async function deriveKey(source, salt) {
  const base = await crypto.subtle.importKey('raw', utf8(source), 'PBKDF2', false, ['deriveKey']);
  return crypto.subtle.deriveKey(
    { name: 'PBKDF2', hash: 'SHA-256', salt, iterations: ITERATIONS },
    base,
    { name: 'AES-GCM', length: 256 },
    false,
    ['encrypt', 'decrypt'],
  );
}

/** Encrypt `data` under a key derived from `source`; `salt` and `iv` are random unless given. */
export async function encrypt(source, data, { salt = randomBytes(SALT_LENGTH), iv = randomBytes(IV_LENGTH) } = {}) {
  const key = await deriveKey(source, salt);
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, key, data));
  return concat(new Uint8Array([VERSION]), salt, iv, sealed);
}

export async function decrypt(source, blob) {
  if (blob.length < HEADER_LENGTH + 16) throw new FormatError('truncated', 'The content is shorter than its header.');
  if (blob[0] !== VERSION) throw new FormatError('unsupported', `Unknown format version ${blob[0]}.`);
  const salt = blob.subarray(1, 1 + SALT_LENGTH);
  const iv = blob.subarray(1 + SALT_LENGTH, HEADER_LENGTH);
  const key = await deriveKey(source, salt);
  try {
    return new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, key, blob.subarray(HEADER_LENGTH)));
  } catch {
    throw new FormatError('tampered', 'The content does not authenticate.');
  }
}

/**
 * `data ‖ random filler ‖ u32be(len)` up to 10 244 bytes for data under 10 240 bytes. Longer
 * data is sent as it is, unless its own last four bytes would be read back as a length by
 * Qopy's rule (`unpad`); then one filler byte and the length follow, so the reader gets back
 * exactly the bytes written.
 */
export function pad(data) {
  if (data.length < PAD_THRESHOLD) return concat(data, randomBytes(PADDED_LENGTH - 4 - data.length), u32be(data.length));
  if (unpad(data).length === data.length) return data;
  return concat(data, randomBytes(1), u32be(data.length));
}

/** Most bytes padding adds to a text of PAD_THRESHOLD bytes or more (one filler byte + the length). */
export const TRAILER = 5;

/** Bytes of the blob a text of `n` UTF-8 bytes becomes at most (padding included). */
export const blobLength = (n) => HEADER_LENGTH + (n < PAD_THRESHOLD ? PADDED_LENGTH : n + TRAILER) + 16;

/** Qopy's rule: the last 4 bytes as big-endian n; if 0 < n < len − 4 keep n bytes. */
export function unpad(bytes) {
  if (bytes.length < 4) return bytes;
  const n = readU32be(bytes, bytes.length - 4);
  return n > 0 && n < bytes.length - 4 ? bytes.subarray(0, n) : bytes;
}

/** The text exactly as given (no trimming: what was pasted is what the recipient gets). */
export async function encryptText(secret, password, text) {
  return encrypt(textKeySource(secret, password), pad(utf8(text)));
}

export async function decryptText(secret, password, blob) {
  const plain = unpad(await decrypt(textKeySource(secret, password), blob));
  try {
    return fromUtf8(plain);
  } catch {
    throw new FormatError('tampered', 'The text is not valid UTF-8.');
  }
}

/**
 * A Qopy file: `P = u32le metaLen ‖ metaBlob ‖ data`, `metaBlob` a V3 blob (key from the secret
 * alone) of `{filename,size,mimeType,...}`. Returns `{ name, type, data }`; a payload without
 * readable metadata is the whole file with no name.
 */
export async function decryptFile(secret, blob) {
  const p = await decrypt(secret, blob);
  const metaLen = p.length >= 4 ? readU32le(p, 0) : 0;
  if (metaLen >= 1 && metaLen <= 1024 && 4 + metaLen < p.length) {
    try {
      const meta = JSON.parse(fromUtf8(await decrypt(secret, p.subarray(4, 4 + metaLen))));
      const rest = p.subarray(4 + metaLen);
      const size = Number.isSafeInteger(meta.size) && meta.size >= 0 ? Math.min(meta.size, rest.length) : rest.length;
      return {
        name: typeof meta.filename === 'string' ? meta.filename : null,
        type: typeof meta.mimeType === 'string' ? meta.mimeType : null,
        data: rest.subarray(0, size),
      };
    } catch {
      // Not metadata after all: the whole payload is the file.
    }
  }
  return { name: null, type: null, data: p };
}
