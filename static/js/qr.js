// A QR code encoder (ISO/IEC 18004) for links, drawn in the browser so a link never leaves the
// page to be rendered: byte mode, versions 1–40, Reed–Solomon error correction over GF(256),
// the smallest version that fits at level M (raised to Q or H when the same version allows),
// and the mask with the lowest penalty score. Pure: returns a module matrix; `svgPath` turns it
// into one SVG path.

import { utf8 } from './crypto/bytes.js';

// Error-correction codewords per block and number of blocks, by level and version (1..40),
// from the standard's capacity table.
const EC_PER_BLOCK = {
  L: [7, 10, 15, 20, 26, 18, 20, 24, 30, 18, 20, 24, 26, 30, 22, 24, 28, 30, 28, 28, 28, 28, 30, 30, 26, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  M: [10, 16, 26, 18, 24, 16, 18, 22, 22, 26, 30, 22, 22, 24, 24, 28, 28, 26, 26, 26, 26, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28, 28],
  Q: [13, 22, 18, 26, 18, 24, 18, 22, 20, 24, 28, 26, 24, 20, 30, 24, 28, 28, 26, 30, 28, 30, 30, 30, 30, 28, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
  H: [17, 28, 22, 16, 22, 28, 26, 26, 24, 28, 24, 28, 22, 24, 24, 30, 28, 28, 26, 28, 30, 24, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30],
};
const BLOCKS = {
  L: [1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 6, 6, 6, 6, 7, 8, 8, 9, 9, 10, 12, 12, 12, 13, 14, 15, 16, 17, 18, 19, 19, 20, 21, 22, 24, 25],
  M: [1, 1, 1, 2, 2, 4, 4, 4, 5, 5, 5, 8, 9, 9, 10, 10, 11, 13, 14, 16, 17, 17, 18, 20, 21, 23, 25, 26, 28, 29, 31, 33, 35, 37, 38, 40, 43, 45, 47, 49],
  Q: [1, 1, 2, 2, 4, 4, 6, 6, 8, 8, 8, 10, 12, 16, 12, 17, 16, 18, 21, 20, 23, 23, 25, 27, 29, 34, 34, 35, 38, 40, 43, 45, 48, 51, 53, 56, 59, 62, 65, 68],
  H: [1, 1, 2, 4, 4, 4, 5, 6, 8, 8, 11, 11, 16, 16, 18, 16, 19, 21, 25, 25, 25, 34, 30, 32, 35, 37, 40, 42, 45, 48, 51, 54, 57, 60, 63, 66, 70, 74, 77, 81],
};
const FORMAT_LEVEL = { L: 1, M: 0, Q: 3, H: 2 };

// GF(256) with the primitive polynomial x^8 + x^4 + x^3 + x^2 + 1.
const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
for (let i = 0, x = 1; i < 255; i++) {
  EXP[i] = x;
  LOG[x] = i;
  x <<= 1;
  if (x & 0x100) x ^= 0x11d;
}
for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
const mul = (a, b) => (a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]);

/** Coefficients (highest first, leading 1 dropped) of ∏ (x − α^i), i < degree. */
function generator(degree) {
  let poly = [1];
  for (let i = 0; i < degree; i++) {
    const next = new Array(poly.length + 1).fill(0);
    for (let j = 0; j < poly.length; j++) {
      next[j] ^= poly[j];
      next[j + 1] ^= mul(poly[j], EXP[i]);
    }
    poly = next;
  }
  return poly.slice(1);
}

function remainder(data, gen) {
  const rem = new Array(gen.length).fill(0);
  for (const byte of data) {
    const factor = byte ^ rem.shift();
    rem.push(0);
    for (let i = 0; i < gen.length; i++) rem[i] ^= mul(gen[i], factor);
  }
  return rem;
}

const sizeOf = (version) => 4 * version + 17;

function alignmentCentres(version) {
  if (version === 1) return [];
  const size = sizeOf(version);
  const count = Math.floor(version / 7) + 2;
  const step = version === 32 ? 26 : Math.ceil((size - 13) / (count * 2 - 2)) * 2;
  const out = [6];
  for (let pos = size - 7; out.length < count; pos -= step) out.splice(1, 0, pos);
  return out;
}

/** A matrix with every function pattern drawn and marked as reserved. */
function functionPatterns(version) {
  const size = sizeOf(version);
  const dark = new Uint8Array(size * size);
  const reserved = new Uint8Array(size * size);
  const set = (x, y, on) => {
    dark[y * size + x] = on ? 1 : 0;
    reserved[y * size + x] = 1;
  };
  for (let i = 0; i < size; i++) {
    set(6, i, i % 2 === 0);
    set(i, 6, i % 2 === 0);
  }
  const finder = (cx, cy) => {
    for (let dy = -4; dy <= 4; dy++) {
      for (let dx = -4; dx <= 4; dx++) {
        const x = cx + dx;
        const y = cy + dy;
        if (x < 0 || y < 0 || x >= size || y >= size) continue;
        const ring = Math.max(Math.abs(dx), Math.abs(dy));
        set(x, y, ring !== 2 && ring !== 4);
      }
    }
  };
  finder(3, 3);
  finder(size - 4, 3);
  finder(3, size - 4);
  const centres = alignmentCentres(version);
  for (const cy of centres) {
    for (const cx of centres) {
      const onFinder = (cx === 6 && cy === 6) || (cx === 6 && cy === size - 7) || (cx === size - 7 && cy === 6);
      if (onFinder) continue;
      for (let dy = -2; dy <= 2; dy++) {
        for (let dx = -2; dx <= 2; dx++) set(cx + dx, cy + dy, Math.max(Math.abs(dx), Math.abs(dy)) !== 1);
      }
    }
  }
  // Format areas (filled in per mask) and the dark module.
  for (let i = 0; i < 9; i++) {
    if (!reserved[8 * size + i]) set(i, 8, false);
    if (!reserved[i * size + 8]) set(8, i, false);
  }
  for (let i = 0; i < 8; i++) {
    set(size - 1 - i, 8, false);
    set(8, size - 1 - i, false);
  }
  set(8, size - 8, true);
  if (version >= 7) {
    let rem = version;
    for (let i = 0; i < 12; i++) rem = (rem << 1) ^ ((rem >>> 11) * 0x1f25);
    const bits = (version << 12) | rem;
    for (let i = 0; i < 18; i++) {
      const on = ((bits >>> i) & 1) === 1;
      const a = size - 11 + (i % 3);
      const b = Math.floor(i / 3);
      set(a, b, on);
      set(b, a, on);
    }
  }
  return { size, dark, reserved };
}

function drawFormat(m, level, mask) {
  const { size, dark } = m;
  const data = (FORMAT_LEVEL[level] << 3) | mask;
  let rem = data;
  for (let i = 0; i < 10; i++) rem = (rem << 1) ^ ((rem >>> 9) * 0x537);
  const bits = ((data << 10) | rem) ^ 0x5412;
  const bit = (i) => (bits >>> i) & 1;
  const put = (x, y, v) => (dark[y * size + x] = v);
  for (let i = 0; i <= 5; i++) put(8, i, bit(i));
  put(8, 7, bit(6));
  put(8, 8, bit(7));
  put(7, 8, bit(8));
  for (let i = 9; i < 15; i++) put(14 - i, 8, bit(i));
  for (let i = 0; i < 8; i++) put(size - 1 - i, 8, bit(i));
  for (let i = 8; i < 15; i++) put(8, size - 15 + i, bit(i));
  put(8, size - 8, 1);
}

const MASKS = [
  (x, y) => (x + y) % 2 === 0,
  (x, y) => y % 2 === 0,
  (x) => x % 3 === 0,
  (x, y) => (x + y) % 3 === 0,
  (x, y) => (Math.floor(x / 3) + Math.floor(y / 2)) % 2 === 0,
  (x, y) => ((x * y) % 2) + ((x * y) % 3) === 0,
  (x, y) => (((x * y) % 2) + ((x * y) % 3)) % 2 === 0,
  (x, y) => (((x + y) % 2) + ((x * y) % 3)) % 2 === 0,
];

function penalty({ size, dark }) {
  let score = 0;
  const at = (x, y) => dark[y * size + x];
  for (let pass = 0; pass < 2; pass++) {
    const get = pass === 0 ? (i, j) => at(j, i) : (i, j) => at(i, j);
    for (let i = 0; i < size; i++) {
      let run = 1;
      for (let j = 1; j <= size; j++) {
        if (j < size && get(i, j) === get(i, j - 1)) {
          run++;
        } else {
          if (run >= 5) score += 3 + run - 5;
          run = 1;
        }
      }
      for (let j = 0; j + 11 <= size; j++) {
        let a = true;
        let b = true;
        const pattern = [1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 0];
        for (let k = 0; k < 11; k++) {
          if (get(i, j + k) !== pattern[k]) a = false;
          if (get(i, j + k) !== pattern[10 - k]) b = false;
        }
        if (a) score += 40;
        if (b) score += 40;
      }
    }
  }
  let darkCount = 0;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      darkCount += at(x, y);
      if (x + 1 < size && y + 1 < size) {
        const c = at(x, y);
        if (c === at(x + 1, y) && c === at(x, y + 1) && c === at(x + 1, y + 1)) score += 3;
      }
    }
  }
  const total = size * size;
  score += (Math.ceil(Math.abs(darkCount * 20 - total * 10) / total) - 1) * 10;
  return score;
}

function capacityBytes(version, level) {
  const { reserved } = functionPatterns(version);
  let free = 0;
  for (const r of reserved) free += r ? 0 : 1;
  const raw = Math.floor(free / 8);
  return { raw, data: raw - EC_PER_BLOCK[level][version - 1] * BLOCKS[level][version - 1] };
}

const countBits = (version) => (version <= 9 ? 8 : 16);

class Bits {
  constructor() {
    this.bytes = [];
    this.length = 0;
  }
  put(value, n) {
    for (let i = n - 1; i >= 0; i--) {
      if (this.length % 8 === 0) this.bytes.push(0);
      if ((value >>> i) & 1) this.bytes[this.bytes.length - 1] |= 0x80 >>> this.length % 8;
      this.length++;
    }
  }
}

function codewords(bytes, version, level) {
  const { raw, data: dataCapacity } = capacityBytes(version, level);
  const bits = new Bits();
  bits.put(0b0100, 4);
  bits.put(bytes.length, countBits(version));
  for (const b of bytes) bits.put(b, 8);
  bits.put(0, Math.min(4, dataCapacity * 8 - bits.length));
  if (bits.length % 8) bits.put(0, 8 - (bits.length % 8));
  for (let pad = 0xec; bits.bytes.length < dataCapacity; pad ^= 0xec ^ 0x11) bits.put(pad, 8);

  const blocks = BLOCKS[level][version - 1];
  const ecLength = EC_PER_BLOCK[level][version - 1];
  const shortBlocks = blocks - (raw % blocks);
  const shortData = Math.floor(raw / blocks) - ecLength;
  const gen = generator(ecLength);
  const dataBlocks = [];
  const ecBlocks = [];
  for (let b = 0, at = 0; b < blocks; b++) {
    const len = shortData + (b < shortBlocks ? 0 : 1);
    const block = bits.bytes.slice(at, at + len);
    at += len;
    dataBlocks.push(block);
    ecBlocks.push(remainder(block, gen));
  }
  const out = [];
  for (let i = 0; i <= shortData; i++) for (const block of dataBlocks) if (i < block.length) out.push(block[i]);
  for (let i = 0; i < ecLength; i++) for (const block of ecBlocks) out.push(block[i]);
  return out;
}

function placeData(m, words) {
  const { size, dark, reserved } = m;
  let i = 0;
  for (let right = size - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5;
    const upward = ((right + 1) & 2) === 0;
    for (let v = 0; v < size; v++) {
      const y = upward ? size - 1 - v : v;
      for (let j = 0; j < 2; j++) {
        const x = right - j;
        if (reserved[y * size + x]) continue;
        if (i < words.length * 8) dark[y * size + x] = (words[i >>> 3] >>> (7 - (i & 7))) & 1;
        i++;
      }
    }
  }
}

function applyMask(m, mask) {
  const { size, dark, reserved } = m;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) if (!reserved[y * size + x] && MASKS[mask](x, y)) dark[y * size + x] ^= 1;
  }
}

/**
 * Encode `text` (UTF-8, byte mode). Returns `{ version, level, mask, size, dark }` where `dark`
 * holds size × size modules row by row (1 = dark). Throws when the text is too long for a QR code.
 */
export function encode(text, { minLevel = 'M' } = {}) {
  const bytes = utf8(text);
  const order = ['L', 'M', 'Q', 'H'];
  let version = 0;
  for (let v = 1; v <= 40; v++) {
    if (4 + countBits(v) + 8 * bytes.length <= capacityBytes(v, minLevel).data * 8) {
      version = v;
      break;
    }
  }
  if (!version) throw new Error('too long for a QR code');
  let level = minLevel;
  for (const l of order.slice(order.indexOf(minLevel) + 1)) {
    if (4 + countBits(version) + 8 * bytes.length <= capacityBytes(version, l).data * 8) level = l;
  }
  const words = codewords(bytes, version, level);
  let best = null;
  for (let mask = 0; mask < 8; mask++) {
    const m = functionPatterns(version);
    placeData(m, words);
    applyMask(m, mask);
    drawFormat(m, level, mask);
    const score = penalty(m);
    if (!best || score < best.score) best = { score, mask, m };
  }
  return { version, level, mask: best.mask, size: best.m.size, dark: best.m.dark };
}

/** One SVG path (`d`) drawing the dark modules, offset by a quiet zone of `border` modules. */
export function svgPath(qr, border = 4) {
  let d = '';
  for (let y = 0; y < qr.size; y++) {
    for (let x = 0; x < qr.size; x++) if (qr.dark[y * qr.size + x]) d += `M${x + border},${y + border}h1v1h-1z`;
  }
  return d;
}
