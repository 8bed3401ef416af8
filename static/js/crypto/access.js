// The server-side gate of both formats (FORMAT.md "Access code"): the password never leaves
// the browser; the server gets lowercase hex of PBKDF2-HMAC-SHA512(trimmed password, UTF-8 of
// /api/config's pbkdf2Salt, 600 000 iterations, 64 bytes) and keeps only a slow hash of that.

import { toHex, utf8 } from './bytes.js';
import { ITERATIONS } from './v3.js';

export async function accessCodeHash(password, pbkdf2Salt) {
  const base = await crypto.subtle.importKey('raw', utf8(password.trim()), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'PBKDF2', hash: 'SHA-512', salt: utf8(pbkdf2Salt), iterations: ITERATIONS },
    base,
    512,
  );
  return toHex(new Uint8Array(bits));
}
