// Several files (or a folder) as one ZIP that is never built: a ZipArchive knows its exact size
// up front and makes any byte range of itself on demand (`read(start, end)`), so the upload
// pipeline can cut, retry and resume it like a single file. This module owns the ZIP layout
// (stored, no compression; ZIP64 and UTF-8 names always, so no 4 GiB or 65 535-entry limit),
// the paths inside it (normalised; absolute, `..`, duplicate and clashing paths refused) and
// CRC-32. Pure: no DOM, no I/O beyond the entries' own slice(); runs in a page, a worker, Node.
//
// Layout, per entry: local header (CRC left for the descriptor: flag bit 3; sizes 0xFFFFFFFF
// with a ZIP64 extra field; flag bit 11 for UTF-8; extended timestamp 0x5455), the data as it
// is, a ZIP64 data descriptor (0x08074b50, CRC-32, 8-byte sizes). Then the central directory
// (real CRCs; a ZIP64 extra field when a size or offset is ≥ 0xFFFFFFFF), the ZIP64 end of
// central directory record and locator, and the classic end record (0xFFFF/0xFFFFFFFF where the
// values do not fit). Entries are stored sorted by path, so the same selection always gives the
// same bytes (a resumed upload re-makes an earlier chunk to prove it is the same).
//
// CRC-32 is computed as the data streams through `read`; a descriptor or central record asked
// for before its entry's CRC is complete (out-of-order or resumed reads) makes the rest of
// that entry read in bounded pieces. Memory: the requested range plus one piece.
//
//   const archive = new ZipArchive(input.files);            // <input webkitdirectory> Files
//   const archive = new ZipArchive([{ file, path: 'a/b.txt' }], { name: 'photos' });
//   archive.size, archive.name ('photos.zip'), archive.type, archive.lastModified, archive.entries
//   const bytes = await archive.read(start, end);          // Uint8Array, exactly end - start
//
// Keep one archive for the whole upload (its CRC progress lives in it) and read on the thread
// that owns it; a fresh archive over the same files (after a reload) gives the same bytes.

/** Pieces in which entry data is read (and CRC catch-up done): bounded memory per read. */
export const PIECE_SIZE = 4 * 1024 * 1024;

const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;
const VERSION = 45; // 4.5: ZIP64
const MADE_BY = (3 << 8) | VERSION; // Unix, so the external attributes carry a file mode
const FLAGS = 0x0808; // bit 3: data descriptor follows; bit 11: names are UTF-8
const FILE_MODE = (0o100644 << 16) >>> 0; // regular file, rw-r--r--

const LOCAL_FIXED = 30;
const LOCAL_EXTRA = 4 + 16 + 4 + 5; // ZIP64 (both sizes) + extended timestamp (mtime)
const DESCRIPTOR = 24;
const CENTRAL_FIXED = 46;
const ZIP64_EOCD = 56;
const ZIP64_LOCATOR = 20;
const EOCD = 22;
const TAIL = ZIP64_EOCD + ZIP64_LOCATOR + EOCD;

export class ZipError extends Error {
  /** `code`: empty | bad_entry | unsafe_path | duplicate_path | path_conflict | name_too_long | changed */
  constructor(code, message, path = null) {
    super(message);
    this.name = 'ZipError';
    this.code = code;
    this.path = path;
  }
}

// ---- CRC-32 (IEEE 802.3, reflected 0xEDB88320): slice-by-16 over 32-bit words ----

const TABLE = (() => {
  const t = new Uint32Array(16 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 16; k++) {
      c = t[c & 0xff] ^ (c >>> 8);
      t[k * 256 + n] = c;
    }
  }
  return t;
})();
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * CRC-32 of `bytes` (a Uint8Array), continuing from `crc`, the CRC of what came before (as
 * zlib's crc32(data, value)): crc32(b, crc32(a)) === crc32(a ‖ b). Returns an unsigned 32-bit number.
 */
export function crc32(bytes, crc = 0) {
  const T = TABLE;
  const n = bytes.length;
  let c = ~crc;
  let i = 0;
  if (LITTLE_ENDIAN && n >= 64) {
    const head = (4 - (bytes.byteOffset & 3)) & 3;
    for (; i < head; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    const count = ((n - i) >>> 4) << 2;
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset + i, count);
    for (let k = 0; k < count; k += 4) {
      const w0 = c ^ w[k];
      const w1 = w[k + 1];
      const w2 = w[k + 2];
      const w3 = w[k + 3];
      c =
        T[3840 + (w0 & 0xff)] ^ T[3584 + ((w0 >>> 8) & 0xff)] ^ T[3328 + ((w0 >>> 16) & 0xff)] ^ T[3072 + (w0 >>> 24)] ^
        T[2816 + (w1 & 0xff)] ^ T[2560 + ((w1 >>> 8) & 0xff)] ^ T[2304 + ((w1 >>> 16) & 0xff)] ^ T[2048 + (w1 >>> 24)] ^
        T[1792 + (w2 & 0xff)] ^ T[1536 + ((w2 >>> 8) & 0xff)] ^ T[1280 + ((w2 >>> 16) & 0xff)] ^ T[1024 + (w2 >>> 24)] ^
        T[768 + (w3 & 0xff)] ^ T[512 + ((w3 >>> 8) & 0xff)] ^ T[256 + ((w3 >>> 16) & 0xff)] ^ T[w3 >>> 24];
    }
    i += count * 4;
  } else {
    for (; i + 8 <= n; i += 8) {
      const lo = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
      const hi = bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24);
      c =
        T[1792 + (lo & 0xff)] ^ T[1536 + ((lo >>> 8) & 0xff)] ^ T[1280 + ((lo >>> 16) & 0xff)] ^ T[1024 + (lo >>> 24)] ^
        T[768 + (hi & 0xff)] ^ T[512 + ((hi >>> 8) & 0xff)] ^ T[256 + ((hi >>> 16) & 0xff)] ^ T[hi >>> 24];
    }
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---- Paths ----

const encoder = new TextEncoder();

/** UTF-8 length of a well-formed string (normalisePath makes them so). */
function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x800 && (c < 0xd800 || c > 0xdfff)) n += 2; // 3 bytes
    else if (c >= 0x80) n += 1; // 2 bytes, or half of a surrogate pair's 4
  }
  return n;
}

/**
 * The path an entry gets inside the archive: `\` becomes `/`, empty and `.` segments go, lone
 * UTF-16 surrogates become U+FFFD (what UTF-8 encoding would make of them anyway). Absolute
 * paths (`/x`, `C:x`), `..` segments, control characters and paths with nothing left are
 * refused with a ZipError of code 'unsafe_path'.
 */
export function normalisePath(raw) {
  if (typeof raw !== 'string') throw new ZipError('unsafe_path', 'A file has no path.', null);
  const path = raw
    .replace(/\\/g, '/')
    .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
  const refuse = (why) => {
    throw new ZipError('unsafe_path', `The path “${raw}” ${why}.`, raw);
  };
  if (/[\u0000-\u001f\u007f]/.test(path)) refuse('contains a control character');
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) refuse('is absolute');
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) refuse('leaves its folder (..)');
  if (segments.length === 0) refuse('is empty');
  return segments.join('/');
}

/** One file in the archive: where it sits, and how far its CRC has got. */
class Entry {
  constructor(file, path, lastModified) {
    this.file = file;
    this.path = path;
    this.size = file.size;
    this.lastModified = lastModified;
    this.nameLength = 0; // UTF-8 bytes of path
    this.dos = null; // [time, date]
    this.unixTime = 0;
    this.offset = 0; // of the local header
    this.dataStart = 0;
    this.crc = 0; // CRC-32 of the data's first crcDone bytes
    this.crcDone = 0;
  }
}

/** `{ file, path, lastModified? }`, or a File (path: webkitRelativePath, else name). */
function takeEntry(item) {
  const file = item && typeof item.slice !== 'function' && item.file ? item.file : item;
  if (!file || typeof file.slice !== 'function' || !Number.isSafeInteger(file.size) || file.size < 0) {
    throw new ZipError('bad_entry', 'An entry is not a file (it needs a size and slice()).');
  }
  const raw = file === item ? item.webkitRelativePath || item.name : item.path ?? (file.webkitRelativePath || file.name);
  const mtime = Number(file === item ? item.lastModified : item.lastModified ?? file.lastModified);
  return new Entry(file, normalisePath(raw), Number.isFinite(mtime) ? Math.trunc(mtime) : 0);
}

/** [time, date] in MS-DOS form, local time (what zip tools show), clamped to 1980–2107. */
function dosDateTime(ms) {
  const d = new Date(ms);
  const year = d.getFullYear();
  if (!(year >= 1980)) return [0, (1 << 5) | 1];
  if (year > 2107) return [(23 << 11) | (59 << 5) | 29, (127 << 9) | (12 << 5) | 31];
  return [
    (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    ((year - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  ];
}

function archiveName(name, paths) {
  let base = typeof name === 'string' ? name.replace(/[/\\]/g, '_').trim() : '';
  if (!base) {
    const top = paths[0].split('/')[0];
    const oneFolder = paths.every((p) => p.startsWith(`${top}/`));
    base = oneFolder ? top : 'files';
  }
  return /\.zip$/i.test(base) ? base : `${base}.zip`;
}

// ---- Little-endian writer for headers ----

/**
 * Headers are written into one scratch buffer (the largest a header can be) and copied out by
 * `place` before anything else runs, so making a header allocates nothing.
 */
class Writer {
  constructor(length) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
    this.at = 0;
  }
  start() {
    this.at = 0;
    return this;
  }
  get done() {
    return this.bytes.subarray(0, this.at);
  }
  u8(v) {
    this.view.setUint8(this.at, v);
    this.at += 1;
    return this;
  }
  u16(v) {
    this.view.setUint16(this.at, v, true);
    this.at += 2;
    return this;
  }
  u32(v) {
    this.view.setUint32(this.at, v, true);
    this.at += 4;
    return this;
  }
  u64(v) {
    this.view.setUint32(this.at, v % 0x100000000, true);
    this.view.setUint32(this.at + 4, Math.floor(v / 0x100000000), true);
    this.at += 8;
    return this;
  }
  text(s) {
    this.at += encoder.encodeInto(s, this.bytes.subarray(this.at)).written;
    return this;
  }
}

const scratch = new Writer(CENTRAL_FIXED + U16_MAX + 64);

/**
 * Whether an entry's central record needs ZIP64. Then all three of its sizes and offset go to
 * the extra field (and read 0xFFFFFFFF in the record), as Go's writer does: Info-ZIP unzip 6.0
 * decides which fields the extra holds from stale local-header values, and misreads an extra
 * holding the offset alone.
 */
const needsZip64 = (e) => e.size >= U32_MAX || e.offset >= U32_MAX;

/**
 * CRC 0 (it comes in the descriptor), sizes 0xFFFFFFFF with the real sizes (known up front) in
 * a ZIP64 extra field. The extra field tells streaming readers the descriptor has 8-byte sizes;
 * the real sizes rather than zeros because Info-ZIP unzip 6.0 lets the local ZIP64 field
 * override the central directory's sizes (zeros there made it test 0 bytes of a 4 GiB entry).
 */
function localHeader(e) {
  return scratch.start()
    .u32(0x04034b50).u16(VERSION).u16(FLAGS).u16(0).u16(e.dos[0]).u16(e.dos[1])
    .u32(0).u32(U32_MAX).u32(U32_MAX).u16(e.nameLength).u16(LOCAL_EXTRA)
    .text(e.path)
    .u16(0x0001).u16(16).u64(e.size).u64(e.size) // ZIP64: the real sizes, see above
    .u16(0x5455).u16(5).u8(1).u32(e.unixTime).done;
}

function descriptor(e) {
  return scratch.start().u32(0x08074b50).u32(e.crc).u64(e.size).u64(e.size).done;
}

const CENTRAL_ZIP64 = 4 + 24;
const CENTRAL_TIME = 4 + 5;

function centralLength(e) {
  return CENTRAL_FIXED + e.nameLength + (needsZip64(e) ? CENTRAL_ZIP64 : 0) + CENTRAL_TIME;
}

function centralRecord(e) {
  const z64 = needsZip64(e);
  const w = scratch.start()
    .u32(0x02014b50).u16(MADE_BY).u16(VERSION).u16(FLAGS).u16(0).u16(e.dos[0]).u16(e.dos[1])
    .u32(e.crc).u32(z64 ? U32_MAX : e.size).u32(z64 ? U32_MAX : e.size)
    .u16(e.nameLength).u16((z64 ? CENTRAL_ZIP64 : 0) + CENTRAL_TIME).u16(0).u16(0).u16(0).u32(FILE_MODE)
    .u32(z64 ? U32_MAX : e.offset)
    .text(e.path);
  if (z64) w.u16(0x0001).u16(24).u64(e.size).u64(e.size).u64(e.offset);
  return w.u16(0x5455).u16(5).u8(1).u32(e.unixTime).done;
}

/** Index of the last element of the ascending `starts` that is ≤ `pos`. */
function findStart(starts, pos) {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (starts[mid] <= pos) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Copy the part of `bytes` (placed at archive offset `at`) that falls in [start, end) into `out`. */
function place(out, start, end, at, bytes) {
  const from = Math.max(start, at);
  const to = Math.min(end, at + bytes.length);
  if (from < to) out.set(bytes.subarray(from - at, to - at), from - start);
}

export class ZipArchive {
  #list;
  #starts; // archive offset of each entry's local header, then of the central directory
  #central; // offset of each central record from the directory's start, then its length
  #cdOffset;
  #tail;
  #piece;

  /**
   * `entries`: Files, or `{ file, path, lastModified? }` with `file` any Blob-like object
   * (`size`, `slice(a, b)` giving something with `arrayBuffer()`). A File's path is its
   * webkitRelativePath, else its name. Options: `name` of the archive (".zip" added when
   * missing; default: the one top folder all paths share, else "files.zip"), `pieceSize`
   * (bytes read from an entry at once, default PIECE_SIZE). Throws ZipError: 'empty' for no
   * entries, 'bad_entry', 'unsafe_path' (see normalisePath), 'duplicate_path', 'path_conflict'
   * (a file where another path needs a folder) or 'name_too_long' (over 65 535 UTF-8 bytes).
   */
  constructor(entries, { name, pieceSize = PIECE_SIZE } = {}) {
    const items = Array.from(entries ?? []);
    if (items.length === 0) throw new ZipError('empty', 'There is nothing to put in the archive.');
    if (!Number.isSafeInteger(pieceSize) || pieceSize < 1) throw new RangeError('pieceSize must be a positive integer');
    this.#piece = pieceSize;
    const list = items.map(takeEntry);
    list.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const files = new Set();
    const folders = new Set();
    for (const e of list) {
      if (files.has(e.path)) throw new ZipError('duplicate_path', `Two files are both called “${e.path}”.`, e.path);
      if (folders.has(e.path)) throw new ZipError('path_conflict', `“${e.path}” is both a file and a folder.`, e.path);
      files.add(e.path);
      for (let i = e.path.indexOf('/'); i >= 0; i = e.path.indexOf('/', i + 1)) {
        const folder = e.path.slice(0, i);
        if (files.has(folder)) throw new ZipError('path_conflict', `“${folder}” is both a file and a folder.`, folder);
        folders.add(folder);
      }
    }

    const starts = new Float64Array(list.length + 1);
    const central = new Float64Array(list.length + 1);
    let at = 0;
    let cd = 0;
    const times = new Map(); // files picked together often share their times
    list.forEach((e, i) => {
      e.nameLength = utf8Length(e.path);
      if (e.nameLength > U16_MAX) throw new ZipError('name_too_long', `The path “${e.path.slice(0, 80)}…” is too long.`, e.path);
      e.dos = times.get(e.lastModified) ?? dosDateTime(e.lastModified);
      times.set(e.lastModified, e.dos);
      e.unixTime = Math.min(U32_MAX, Math.max(0, Math.floor(e.lastModified / 1000)));
      e.offset = at;
      e.dataStart = at + LOCAL_FIXED + e.nameLength + LOCAL_EXTRA;
      starts[i] = at;
      central[i] = cd;
      at = e.dataStart + e.size + DESCRIPTOR;
      cd += centralLength(e);
    });
    starts[list.length] = at;
    central[list.length] = cd;
    this.#list = list;
    this.#starts = starts;
    this.#central = central;
    this.#cdOffset = at;
    this.#tail = this.#makeTail(at, cd, list.length);

    /** Exact length of the archive in bytes. */
    this.size = at + cd + TAIL;
    this.name = archiveName(name, list.map((e) => e.path));
    this.type = 'application/zip';
    /** The newest entry's lastModified (ms), so the same selection gives the same value. */
    this.lastModified = list.reduce((m, e) => Math.max(m, e.lastModified), 0);
    /** What is inside, in archive order: [{ path, size }]. */
    this.entries = Object.freeze(list.map((e) => Object.freeze({ path: e.path, size: e.size })));
    /** Bytes read from the entries so far: the data read, plus any CRC catch-up. */
    this.sourceBytesRead = 0;
  }

  #makeTail(cdOffset, cdSize, count) {
    const z64 = cdOffset + cdSize;
    return new Writer(TAIL)
      .u32(0x06064b50).u64(ZIP64_EOCD - 12).u16(MADE_BY).u16(VERSION).u32(0).u32(0)
      .u64(count).u64(count).u64(cdSize).u64(cdOffset)
      .u32(0x07064b50).u32(0).u64(z64).u32(1)
      .u32(0x06054b50).u16(0).u16(0)
      .u16(Math.min(count, U16_MAX)).u16(Math.min(count, U16_MAX))
      .u32(Math.min(cdSize, U32_MAX)).u32(Math.min(cdOffset, U32_MAX)).u16(0).bytes;
  }

  /**
   * Exactly the bytes [start, end) of the archive, as a new Uint8Array of length end - start
   * (its buffer is exactly that long). Any range, any order, as often as wanted: the bytes are
   * always the same. Rejects with a RangeError for a range outside [0, size], with a ZipError
   * 'changed' when an entry no longer has its size, or with what an entry's slice/arrayBuffer
   * rejected with (a browser's NotReadableError for a file changed or removed on disk).
   */
  async read(start, end) {
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > this.size) {
      throw new RangeError(`read(${start}, ${end}) is outside the archive (0–${this.size})`);
    }
    const out = new Uint8Array(end - start);
    const list = this.#list;
    const cdOffset = this.#cdOffset;
    if (start < cdOffset) {
      for (let i = findStart(this.#starts, start); i < list.length && this.#starts[i] < end; i++) {
        const e = list[i];
        const dataEnd = e.dataStart + e.size;
        if (start < e.dataStart) place(out, start, end, e.offset, localHeader(e));
        const from = Math.max(start, e.dataStart);
        const to = Math.min(end, dataEnd);
        for (let a = from; a < to; a += this.#piece) {
          const b = Math.min(to, a + this.#piece);
          out.set(await this.#readData(e, a - e.dataStart, b - e.dataStart), a - start);
        }
        if (end > dataEnd) {
          await this.#completeCrc(e);
          place(out, start, end, dataEnd, descriptor(e));
        }
      }
    }
    const cdEnd = cdOffset + this.#central[list.length];
    if (end > cdOffset && start < cdEnd) {
      const central = this.#central;
      for (let j = findStart(central, Math.max(start, cdOffset) - cdOffset); j < list.length && cdOffset + central[j] < end; j++) {
        await this.#completeCrc(list[j]);
        place(out, start, end, cdOffset + central[j], centralRecord(list[j]));
      }
    }
    if (end > cdEnd) place(out, start, end, cdEnd, this.#tail);
    return out;
  }

  /** A Blob-like view of [start, end) (Blob.slice semantics), for code that reads Files. */
  slice(start = 0, end = this.size) {
    const clamp = (v) => (v < 0 ? Math.max(this.size + v, 0) : Math.min(v, this.size));
    const a = clamp(Math.trunc(start));
    const b = Math.max(a, clamp(Math.trunc(end)));
    return { size: b - a, type: '', arrayBuffer: async () => (await this.read(a, b)).buffer };
  }

  /** Bytes [a, b) of entry `e`'s data (b - a ≤ one piece), advancing its CRC when they continue it. */
  async #readData(e, a, b) {
    const got = await e.file.slice(a, b).arrayBuffer();
    const bytes = ArrayBuffer.isView(got) ? new Uint8Array(got.buffer, got.byteOffset, got.byteLength) : new Uint8Array(got);
    this.sourceBytesRead += bytes.length;
    if (bytes.length !== b - a) {
      throw new ZipError('changed', `“${e.path}” changed while it was being read.`, e.path);
    }
    // Only a read that covers where the CRC stands moves it on (checked after the await, so
    // reads running at once cannot both apply the same bytes); rereads leave it alone.
    if (a <= e.crcDone && e.crcDone < b) {
      e.crc = crc32(bytes.subarray(e.crcDone - a), e.crc);
      e.crcDone = b;
    }
    return bytes;
  }

  /** Finish entry `e`'s CRC by reading the rest of its data, one piece at a time. */
  async #completeCrc(e) {
    while (e.crcDone < e.size) {
      await this.#readData(e, e.crcDone, Math.min(e.size, e.crcDone + this.#piece));
    }
  }
}
