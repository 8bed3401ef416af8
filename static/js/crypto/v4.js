// ferry's streaming V4 format (FORMAT.md): a 28-byte header, then the plaintext cut into
// records of 2^log2 bytes, each sealed with AES-256-GCM under a nonce made of the header's
// prefix, the record index and a last-record flag, with the header as AAD. Keys come from the
// 32-byte fragment secret (and a password, when flag 0 is set) through HKDF-SHA256. Records are
// grouped into upload chunks so every chunk is a pure function of the keys, its index and a
// slice of the file. Pure functions over bytes: the page, the service worker and Node use them.

import { concat, fromUtf8, randomBytes, toBase64Url, fromBase64Url, utf8 } from './bytes.js';
import { FormatError, ITERATIONS } from './v3.js';

export { FormatError };
export const VERSION = 4;
export const HEADER_LENGTH = 28;
export const TAG_LENGTH = 16;
export const DEFAULT_LOG2 = 16;
export const SECRET_LENGTH = 32;
export const META_BLOCK = 256;
export const META_MAX = 4096;
/** The most padded JSON the metadata of a ZIP with its list of entries may take. */
export const LIST_META_MAX = 65536;
const FLAG_PASSWORD = 1;

/** A fresh header: `0x04 ‖ flags ‖ log2 ‖ 0 ‖ salt[16] ‖ noncePrefix[7] ‖ 0`. */
export function makeHeader({ password = false, log2 = DEFAULT_LOG2, salt = randomBytes(16), noncePrefix = randomBytes(7) } = {}) {
  const h = new Uint8Array(HEADER_LENGTH);
  h[0] = VERSION;
  h[1] = password ? FLAG_PASSWORD : 0;
  h[2] = log2;
  h.set(salt, 4);
  h.set(noncePrefix, 20);
  return h;
}

/** Check and take apart a header; anything FORMAT.md does not allow is refused. */
export function parseHeader(bytes) {
  if (!bytes || bytes.length < HEADER_LENGTH) throw new FormatError('truncated', 'The file ends inside its header.');
  const h = bytes.subarray(0, HEADER_LENGTH);
  if (h[0] !== VERSION) throw new FormatError('unsupported', `Unknown format version ${h[0]}.`);
  if ((h[1] & ~FLAG_PASSWORD) !== 0 || h[3] !== 0 || h[27] !== 0) throw new FormatError('unsupported', 'Unknown header flags.');
  if (h[2] < 12 || h[2] > 24) throw new FormatError('unsupported', `Record size 2^${h[2]} is not allowed.`);
  return {
    bytes: h.slice(),
    password: (h[1] & FLAG_PASSWORD) !== 0,
    recordSize: 2 ** h[2],
    salt: h.slice(4, 20),
    noncePrefix: h.slice(20, 27),
  };
}

/** PBKDF2-HMAC-SHA256(trimmed password, header salt, 600 000, 32 bytes). */
export async function passwordKey(password, salt) {
  const base = await crypto.subtle.importKey('raw', utf8(password.trim()), 'PBKDF2', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations: ITERATIONS }, base, 256);
  return new Uint8Array(bits);
}

/**
 * The content and metadata keys. `pwKey` is `passwordKey(...)` when the header says a password
 * is mixed in. Keys are not extractable; they can be handed to a service worker as they are.
 */
export async function deriveKeys(secret, header, pwKey = null) {
  if (secret.length !== SECRET_LENGTH) throw new FormatError('incomplete', 'The link secret has the wrong length.');
  if (header.password && !pwKey) throw new Error('this file needs its password');
  const ikm = header.password ? concat(secret, pwKey) : secret;
  const base = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveKey']);
  const derive = (info) =>
    crypto.subtle.deriveKey(
      { name: 'HKDF', hash: 'SHA-256', salt: header.salt, info: utf8(info) },
      base,
      { name: 'AES-GCM', length: 256 },
      false,
      ['encrypt', 'decrypt'],
    );
  return { content: await derive('ferry/v4/content'), meta: await derive('ferry/v4/meta'), header };
}

/** Records, stream length and record offsets of a plaintext of `size` bytes. */
export function recordCount(size, recordSize) {
  return Math.max(1, Math.ceil(size / recordSize));
}

export function streamLength(size, recordSize) {
  return HEADER_LENGTH + size + TAG_LENGTH * recordCount(size, recordSize);
}

/** The plaintext size a stream of `length` bytes holds, or null if no size gives that length. */
export function plainSize(length, recordSize) {
  const body = length - HEADER_LENGTH;
  if (body < TAG_LENGTH) return null;
  const n = Math.max(1, Math.ceil(body / (recordSize + TAG_LENGTH)));
  const size = body - TAG_LENGTH * n;
  return size >= 0 && recordCount(size, recordSize) === n ? size : null;
}

function nonce(header, index, last) {
  const iv = new Uint8Array(12);
  iv.set(header.noncePrefix, 0);
  new DataView(iv.buffer).setUint32(7, index, false);
  iv[11] = last ? 1 : 0;
  return iv;
}

export async function sealRecord(keys, index, last, plaintext) {
  const iv = nonce(keys.header, index, last);
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: keys.header.bytes }, keys.content, plaintext);
  return new Uint8Array(sealed);
}

export async function openRecord(keys, index, last, sealed) {
  const iv = nonce(keys.header, index, last);
  try {
    const plain = await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: keys.header.bytes }, keys.content, sealed);
    return new Uint8Array(plain);
  } catch {
    throw new FormatError('tampered', `Record ${index} does not authenticate.`);
  }
}

/**
 * How a plaintext of `size` bytes maps to upload chunks of at most `chunkSize` bytes:
 * `k = floor(chunkSize / (rs + 16))` records per chunk, chunk 0 led by the header.
 */
export function chunkPlan(size, recordSize, chunkSize) {
  const k = Math.floor(chunkSize / (recordSize + TAG_LENGTH));
  if (k < 1) throw new Error(`chunk size ${chunkSize} cannot hold one record of ${recordSize} bytes`);
  const records = recordCount(size, recordSize);
  const totalChunks = Math.max(1, Math.ceil(records / k));
  return {
    size,
    recordSize,
    chunkSize,
    recordsPerChunk: k,
    records,
    totalChunks,
    streamLength: streamLength(size, recordSize),
    /** Plaintext byte range [start, end) of chunk `c`. */
    plainRange(c) {
      const start = Math.min(size, c * k * recordSize);
      return [start, Math.min(size, (c + 1) * k * recordSize)];
    },
    /** Bytes chunk `c` has on the wire. */
    chunkLength(c) {
      const first = c * k;
      const count = Math.min(records, first + k) - first;
      const [start, end] = this.plainRange(c);
      return (c === 0 ? HEADER_LENGTH : 0) + (end - start) + TAG_LENGTH * count;
    },
  };
}

/**
 * Chunk `c` of the stream from its plaintext slice (`plan.plainRange(c)` of the file), written
 * into `out` when given (exactly `plan.chunkLength(c)` bytes). Every record is handed to
 * WebCrypto at once and copied to its fixed place as it comes back: one await per record in
 * turn left the crypto thread idle between round trips.
 */
export async function sealChunk(keys, plan, c, slice, out = new Uint8Array(plan.chunkLength(c))) {
  const rs = plan.recordSize;
  const first = c * plan.recordsPerChunk;
  const count = Math.min(plan.records, first + plan.recordsPerChunk) - first;
  if (out.length !== plan.chunkLength(c)) throw new Error(`chunk ${c} takes ${plan.chunkLength(c)} bytes, not ${out.length}`);
  const at = c === 0 ? HEADER_LENGTH : 0;
  if (c === 0) out.set(keys.header.bytes, 0);
  const sealing = [];
  for (let j = 0; j < count; j++) {
    const i = first + j;
    const plain = slice.subarray(j * rs, Math.min(slice.length, (j + 1) * rs));
    sealing.push(sealRecord(keys, i, i === plan.records - 1, plain).then((sealed) => out.set(sealed, at + j * (rs + TAG_LENGTH))));
  }
  await Promise.all(sealing);
  return out;
}

/**
 * Encrypt `{name,size,type,mtime}`: JSON zero-padded to a multiple of 256 bytes (≤ 4096). A ZIP
 * of several files also carries `files`, its entries as `[path, size]`, and `count`, how many
 * there are; that metadata may grow to LIST_META_MAX, and when the list does not fit, it holds
 * the first entries that do while `count` still says how many the ZIP has.
 */
export async function sealMeta(keys, meta, nonceBytes = randomBytes(12)) {
  let name = String(meta.name ?? '');
  const base = { size: meta.size, type: meta.type, mtime: meta.mtime };
  let json;
  for (;;) {
    json = utf8(JSON.stringify({ name, ...base }));
    if (json.length <= META_MAX) break;
    // Writers shorten a very long name (by code points, keeping the extension when short).
    const chars = Array.from(name);
    const dot = name.lastIndexOf('.');
    const ext = dot > 0 && name.length - dot <= 16 ? name.slice(dot) : '';
    name = chars.slice(0, Math.max(1, Math.floor(chars.length * 0.9) - Array.from(ext).length)).join('') + ext;
  }
  if (Array.isArray(meta.files)) {
    const files = meta.files.map(([path, size]) => [String(path), Number(size)]);
    // The longest prefix of the list that fits, found by halving (each try is one stringify).
    let lo = 0;
    let hi = files.length;
    const encode = (n) => utf8(JSON.stringify({ name, ...base, count: files.length, files: files.slice(0, n) }));
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (encode(mid).length <= LIST_META_MAX) lo = mid;
      else hi = mid - 1;
    }
    json = encode(lo);
  }
  const padded = new Uint8Array(Math.ceil(Math.max(1, json.length) / META_BLOCK) * META_BLOCK);
  padded.set(json);
  const sealed = await crypto.subtle.encrypt({ name: 'AES-GCM', iv: nonceBytes, additionalData: keys.header.bytes }, keys.meta, padded);
  return toBase64Url(concat(new Uint8Array([VERSION]), nonceBytes, new Uint8Array(sealed)));
}

/** The entries of a ZIP's metadata as `{ path, size }`, dropping anything malformed. */
function metaFiles(list) {
  if (!Array.isArray(list)) return null;
  return list
    .filter((e) => Array.isArray(e) && typeof e[0] === 'string' && Number.isSafeInteger(e[1]) && e[1] >= 0)
    .map(([path, size]) => ({ path, size }));
}

export async function openMeta(keys, metaB64) {
  let raw;
  try {
    raw = fromBase64Url(metaB64);
  } catch {
    throw new FormatError('tampered', 'The file details are not valid base64url.');
  }
  if (raw.length < 1 + 12 + TAG_LENGTH || raw[0] !== VERSION) throw new FormatError('tampered', 'The file details are malformed.');
  let plain;
  try {
    plain = new Uint8Array(
      await crypto.subtle.decrypt({ name: 'AES-GCM', iv: raw.subarray(1, 13), additionalData: keys.header.bytes }, keys.meta, raw.subarray(13)),
    );
  } catch {
    throw new FormatError('tampered', 'The file details do not authenticate.');
  }
  let end = plain.length;
  while (end > 0 && plain[end - 1] === 0) end--;
  try {
    const m = JSON.parse(fromUtf8(plain.subarray(0, end)));
    const files = metaFiles(m.files);
    const out = { name: String(m.name ?? ''), size: Number(m.size), type: String(m.type || 'application/octet-stream'), mtime: Number(m.mtime) || 0 };
    if (files) Object.assign(out, { files, count: Number.isSafeInteger(m.count) && m.count >= files.length ? m.count : files.length });
    return out;
  } catch {
    throw new FormatError('tampered', 'The file details are not JSON.');
  }
}

/** The values of `promises` in order; the first rejection in that order if any rejects. */
export async function inOrder(promises) {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => r.value);
}

/**
 * Incremental reader of a stream: `push(bytes)` returns the plaintext records that completed
 * and authenticated; `finish()` opens the final record. A record is decided to be the last one
 * only when the stream has ended (or `expectedLength` says so), so a cut at a record boundary is
 * reported as truncated, never passed off as a whole file. It holds at most one record plus the
 * bytes of one push.
 */
export class Decryptor {
  constructor(keys, expectedLength = null) {
    this.keys = keys;
    this.rs = keys.header.recordSize;
    this.expected = expectedLength;
    this.pending = [];
    this.pendingLength = 0;
    this.received = 0;
    this.index = 0;
    this.headerChecked = false;
    this.done = false;
  }

  /** The next `n` pending bytes: a view when one piece holds them all, else a copy. */
  take(n) {
    this.pendingLength -= n;
    const first = this.pending[0];
    if (first.length >= n) {
      if (first.length === n) this.pending.shift();
      else this.pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const head = this.pending[0];
      const need = n - at;
      if (head.length <= need) {
        out.set(head, at);
        at += head.length;
        this.pending.shift();
      } else {
        out.set(head.subarray(0, need), at);
        this.pending[0] = head.subarray(need);
        at += need;
      }
    }
    return out;
  }

  async push(bytes) {
    if (this.done) throw new FormatError('tampered', 'Bytes after the final record.');
    this.pending.push(bytes);
    this.pendingLength += bytes.length;
    this.received += bytes.length;
    if (this.expected !== null && this.received > this.expected) throw new FormatError('tampered', 'The file is longer than announced.');
    if (!this.headerChecked) {
      if (this.pendingLength < HEADER_LENGTH) return [];
      const header = this.take(HEADER_LENGTH);
      if (!header.every((b, i) => b === this.keys.header.bytes[i])) throw new FormatError('tampered', 'The file header was changed.');
      this.headerChecked = true;
    }
    const full = this.rs + TAG_LENGTH;
    // Keep the newest record back until we know whether more follows. Every record that is
    // complete goes to WebCrypto at once; they come back in order, or the first one (in stream
    // order) that does not authenticate is the error.
    const opening = [];
    while (this.pendingLength > full || (this.expected !== null && this.received === this.expected && this.pendingLength === full)) {
      const isLast = this.expected !== null && this.received === this.expected && this.pendingLength === full;
      opening.push(openRecord(this.keys, this.index, isLast, this.take(full)));
      this.index++;
      if (isLast) {
        this.done = true;
        break;
      }
    }
    return inOrder(opening);
  }

  async finish() {
    if (this.done) return [];
    if (!this.headerChecked || (this.expected !== null && this.received < this.expected) || this.pendingLength < TAG_LENGTH) {
      throw new FormatError('truncated', 'The file ended before its final record.');
    }
    const rest = this.take(this.pendingLength);
    let last;
    try {
      last = await openRecord(this.keys, this.index, true, rest);
    } catch (e) {
      // Without a known length, a whole record that opens as a middle one means the stream
      // was cut at a record boundary.
      if (this.expected === null && rest.length === this.rs + TAG_LENGTH) {
        const middle = await openRecord(this.keys, this.index, false, rest).catch(() => null);
        if (middle) throw new FormatError('truncated', 'The file ended before its final record.');
      }
      throw e;
    }
    this.done = true;
    return [last];
  }
}
