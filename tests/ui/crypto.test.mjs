// The browser's crypto modules (static/js/crypto) against every vector of FORMAT.md's
// format-vectors.json, run in Node with its WebCrypto: byte-exact V4 streams, chunks and
// metadata, V3 text and file decryption, the access-code hash, and the tampered/truncated
// verdicts of the streaming reader.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

import { fromHex, toHex, fromBase64Url, utf8 } from '../../static/js/crypto/bytes.js';
import * as v3 from '../../static/js/crypto/v3.js';
import * as v4 from '../../static/js/crypto/v4.js';
import { accessCodeHash } from '../../static/js/crypto/access.js';
import { fragmentSecret, newQuickSecret, newFileSecret, newTextSecret, parseTyped, v4SecretBytes } from '../../static/js/secret.js';

const vectors = JSON.parse(readFileSync(new URL('../fixtures/format-vectors.json', import.meta.url)));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

async function keysFor(vec) {
  const stream = fromHex(vec.stream);
  const header = v4.parseHeader(stream);
  const pw = vec.password === null ? null : await v4.passwordKey(vec.password, header.salt);
  return { stream, header, keys: await v4.deriveKeys(fromBase64Url(vec.secret_b64url), header, pw) };
}

async function decryptAll(keys, stream, pieces, expected) {
  const d = new v4.Decryptor(keys, expected);
  const out = [];
  for (let at = 0; at < stream.length; at += pieces) out.push(...(await d.push(stream.slice(at, at + pieces))));
  out.push(...(await d.finish()));
  return Buffer.concat(out);
}

for (const vec of vectors.v4) {
  test(`v4 ${vec.name}: re-encrypting the plaintext under the vector's header gives the vector's stream`, async () => {
    const { stream, header, keys } = await keysFor(vec);
    assert.equal(header.password, vec.password !== null);
    const plain = fromHex(vec.plaintext);
    const plan = v4.chunkPlan(plain.length, header.recordSize, 1 << 30);
    assert.equal(plan.totalChunks, 1);
    assert.equal(plan.streamLength, stream.length);
    const sealed = await v4.sealChunk(keys, plan, 0, plain);
    assert.equal(toHex(sealed), vec.stream);
    assert.equal(v4.plainSize(stream.length, header.recordSize), plain.length);
  });

  test(`v4 ${vec.name}: the streaming reader gives back the plaintext whatever the piece size`, async () => {
    const { stream, keys } = await keysFor(vec);
    for (const pieces of [1, 7, 4112, stream.length]) {
      for (const expected of [stream.length, null]) {
        const plain = await decryptAll(keys, stream, pieces, expected);
        assert.equal(sha256(plain), vec.sha256_plain, `pieces ${pieces}, expected ${expected}`);
      }
    }
  });

  test(`v4 ${vec.name}: metadata opens to the vector's JSON and re-seals byte for byte`, async () => {
    const { keys } = await keysFor(vec);
    const meta = await v4.openMeta(keys, vec.meta_b64url);
    assert.deepEqual(meta, vec.meta);
    const nonce = fromBase64Url(vec.meta_b64url).subarray(1, 13);
    assert.equal(await v4.sealMeta(keys, vec.meta, nonce), vec.meta_b64url);
  });

  if (vec.chunks_at_chunk_size_9000) {
    test(`v4 ${vec.name}: chunks at chunk size 9000 are the vector's chunks`, async () => {
      const { keys, header } = await keysFor(vec);
      const plain = fromHex(vec.plaintext);
      const plan = v4.chunkPlan(plain.length, header.recordSize, 9000);
      assert.equal(plan.totalChunks, vec.chunks_at_chunk_size_9000.length);
      for (let c = 0; c < plan.totalChunks; c++) {
        const [start, end] = plan.plainRange(c);
        const chunk = await v4.sealChunk(keys, plan, c, plain.subarray(start, end));
        assert.equal(chunk.length, plan.chunkLength(c));
        assert.equal(toHex(chunk), vec.chunks_at_chunk_size_9000[c], `chunk ${c}`);
      }
    });
  }

  test(`v4 ${vec.name}: a flipped byte is tampered and a cut stream is truncated`, async () => {
    const { stream, keys } = await keysFor(vec);
    for (const at of [v4.HEADER_LENGTH, stream.length - 1, 3]) {
      const bad = stream.slice();
      bad[at] ^= 1;
      await assert.rejects(decryptAll(keys, bad, 1000, stream.length), (e) => e.kind === 'tampered' || e.kind === 'unsupported');
    }
    for (const cut of [stream.length - 1, v4.HEADER_LENGTH, 10, 0]) {
      await assert.rejects(decryptAll(keys, stream.slice(0, cut), 1000, stream.length), { kind: 'truncated' });
      await assert.rejects(decryptAll(keys, stream.slice(0, cut), 1000, null), (e) => ['truncated', 'tampered'].includes(e.kind));
    }
  });
}

test('v4: a stream cut exactly at a record boundary is truncated, also without a known length', async () => {
  const vec = vectors.v4.find((v) => v.name === 'two-records-rs4k');
  const { stream, keys } = await keysFor(vec);
  const cut = v4.HEADER_LENGTH + 4096 + 16;
  await assert.rejects(decryptAll(keys, stream.slice(0, cut), 333, null), { kind: 'truncated' });
  await assert.rejects(decryptAll(keys, stream.slice(0, cut), 333, stream.length), { kind: 'truncated' });
});

test('v4: a wrong password or secret fails as tampered on the first record', async () => {
  const vec = vectors.v4.find((v) => v.name === 'password');
  const stream = fromHex(vec.stream);
  const header = v4.parseHeader(stream);
  const keys = await v4.deriveKeys(fromBase64Url(vec.secret_b64url), header, await v4.passwordKey('hunter3', header.salt));
  await assert.rejects(decryptAll(keys, stream, 64, stream.length), { kind: 'tampered' });
  await assert.rejects(v4.openMeta(keys, vec.meta_b64url), { kind: 'tampered' });
});

test('v4: headers outside FORMAT.md are refused', () => {
  const good = v4.makeHeader();
  for (const [at, value] of [[0, 3], [1, 2], [2, 11], [2, 25], [3, 1], [27, 1]]) {
    const h = good.slice();
    h[at] = value;
    assert.throws(() => v4.parseHeader(h), { kind: 'unsupported' }, `byte ${at} = ${value}`);
  }
  assert.throws(() => v4.parseHeader(good.subarray(0, 27)), { kind: 'truncated' });
});

test('v4: chunk plans at the server chunk size stay within chunkSize + 1 KiB and cover the file', () => {
  const chunkSize = 5 * 1024 * 1024;
  for (const size of [0, 1, 65535, 65536, 65537, chunkSize, 79 * 65536, 79 * 65536 + 1, 1 << 30]) {
    const plan = v4.chunkPlan(size, 65536, chunkSize);
    let total = 0;
    let covered = 0;
    for (let c = 0; c < plan.totalChunks; c++) {
      assert.ok(plan.chunkLength(c) <= chunkSize + 1024);
      const [s, e] = plan.plainRange(c);
      assert.equal(s, covered);
      covered = e;
      total += plan.chunkLength(c);
    }
    assert.equal(covered, size);
    assert.equal(total, plan.streamLength);
  }
});

test('v4: a very long name is shortened so the metadata stays within 4096 bytes', async () => {
  const keys = await v4.deriveKeys(new Uint8Array(32), v4.parseHeader(v4.makeHeader()));
  const name = '"\\'.repeat(2000) + '.txt';
  const sealed = fromBase64Url(await v4.sealMeta(keys, { name, size: 1, type: 'text/plain', mtime: 1 }));
  assert.ok(sealed.length <= 1 + 12 + 4096 + 16);
  const meta = await v4.openMeta(keys, toBase64UrlOf(sealed));
  assert.ok(meta.name.endsWith('.txt') && meta.name.length < name.length);
});

function toBase64UrlOf(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

for (const vec of vectors.v3) {
  test(`v3 ${vec.name}: decrypts to the vector's plaintext`, async () => {
    const blob = fromHex(vec.blob);
    if (vec.filename) {
      const file = await v3.decryptFile(vec.secret, blob);
      assert.equal(file.name, vec.filename);
      assert.equal(file.type, vec.mimeType);
      assert.equal(toHex(file.data), vec.plaintext);
    } else {
      const text = await v3.decryptText(vec.secret, vec.password, blob);
      assert.equal(toHex(utf8(text)), vec.plaintext);
      await assert.rejects(v3.decryptText(vec.secret, vec.password ? null : 'x', blob), { kind: 'tampered' });
    }
  });
}

test('v3: text round-trips exactly (no trimming); short texts are padded to 10 244 bytes, long ones only when their end would read as a length', async () => {
  const secret = newTextSecret();
  for (const text of ['a', 'Grüße 🌍', 'x'.repeat(10239), 'y'.repeat(10240), 'z'.repeat(50000)]) {
    const sent = `  ${text}\n`;
    const blob = await v3.encryptText(secret, ' pw ', sent);
    const n = utf8(sent).length;
    const inner = n < 10240 ? 10244 : n;
    assert.equal(blob.length, 1 + 32 + 12 + inner + 16);
    assert.equal(await v3.decryptText(secret, 'pw', blob), sent);
  }
  // A long text whose last four bytes Qopy's rule would take for a length gets 1 filler byte
  // and its length after it, and still comes back whole.
  const tricky = `${'w'.repeat(20000)}\u0000\u0000\u0001\u0000`;
  assert.notEqual(v3.unpad(utf8(tricky)).length, utf8(tricky).length, 'the rule would cut it');
  const blob = await v3.encryptText(secret, '', tricky);
  assert.equal(blob.length, 1 + 32 + 12 + utf8(tricky).length + 5 + 16);
  assert.equal(await v3.decryptText(secret, '', blob), tricky);
});

test('v3: Qopy unpadding keeps the whole payload when the length field is out of range', () => {
  const raw = new Uint8Array([1, 2, 3, 4, 0, 0, 0, 9]);
  assert.deepEqual(v3.unpad(raw), raw);
  assert.deepEqual(v3.unpad(new Uint8Array([1, 2, 3, 0, 0, 0, 2])), new Uint8Array([1, 2]));
});

test('access: the access-code hash matches the vector', async () => {
  for (const vec of vectors.access) assert.equal(await accessCodeHash(vec.password, vec.pbkdf2Salt), vec.accessCodeHash);
});

test('secrets: shapes, uniform quick codes, fragment cutting and typed codes', () => {
  assert.match(newTextSecret(), /^[A-Za-z0-9+/]{43}=$/);
  assert.match(newFileSecret(), /^[A-Za-z0-9_-]{43}$/);
  assert.equal(v4SecretBytes(newFileSecret()).length, 32);
  assert.equal(v4SecretBytes('short'), null);
  const counts = new Map();
  for (let i = 0; i < 3000; i++) for (const ch of newQuickSecret()) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  assert.equal(counts.size, 36);
  for (const n of counts.values()) assert.ok(n > 350 && n < 650, `count ${n}`);
  assert.equal(fragmentSecret('#abc+/=&utm_source=x'), 'abc+/=');
  assert.equal(fragmentSecret('#a%2Bb'), 'a%2Bb');
  assert.deepEqual(parseTyped('ab12cd · xy34zw'), { id: 'AB12CD', secret: 'XY34ZW', kind: 'clip' });
  assert.deepEqual(parseTyped('AB12CDXY34ZW'), { id: 'AB12CD', secret: 'XY34ZW', kind: 'clip' });
  assert.deepEqual(parseTyped('http://h:1/clip/AB12CD#xy34zw'), { id: 'AB12CD', secret: 'XY34ZW', kind: 'clip' });
  assert.deepEqual(parseTyped('https://h/file/ABCDEFGHJK#s3cr_t&fbclid=1'), { id: 'ABCDEFGHJK', secret: 's3cr_t', kind: 'file' });
  assert.equal(parseTyped('nonsense'), null);
});
