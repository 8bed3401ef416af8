// What the server gets from a browser-made clip (FORMAT.md, issue point 5): every request of a
// password-protected text and file, made and then opened, is captured with its headers and
// body; none carries the plaintext, the fragment secret, the password or the real filename,
// every request goes to the server's own origin, and the data directory and the server's log
// hold none of them either.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { fromBase64, fromBase64Url, toHex } from '../../static/js/crypto/bytes.js';
import { downloadFrom, makeFile, openPage, sha256File, shareFile, shareText, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
before(async () => ({ server, browser } = await startBoth({ FERRY_LOG__LEVEL: 'debug' })));
after(() => stopBoth({ server, browser }));

/** Every byte string a secret could leak as: itself, its decoded bytes in hex, base64 forms. */
function secretForms(secret) {
  const forms = [secret, encodeURIComponent(secret)];
  try {
    const raw = secret.length === 44 ? fromBase64(secret) : fromBase64Url(secret);
    forms.push(toHex(raw), Buffer.from(raw).toString('base64'), Buffer.from(raw).toString('base64url'));
  } catch {
    // a quick-share secret is only itself
  }
  return forms;
}

function allFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? allFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

test('the server never receives plaintext, secrets, passwords or real filenames', async () => {
  const password = 'Tr0ub4dor&3-private';
  const textMarker = 'TEXT-PLAINTEXT-MARKER-0af3';
  const fileName = 'quarterly-secret-plan-Ω.bin';
  const writer = await openPage(browser);
  const textLink = await shareText(writer, server, `${textMarker} with more words`, { password });
  const file = await makeFile(fileName, 3 << 20, { fill: 0x5a });
  const fileLink = await shareFile(writer, server, file.path, { password });

  const reader = await openPage(browser);
  await reader.goto(textLink);
  await reader.getByLabel('Password', { exact: true }).fill(password);
  await reader.getByRole('button', { name: 'Unlock' }).click();
  await reader.locator('#open-text-view').waitFor();
  const got = await downloadFrom(reader, fileLink, { password });
  assert.equal(await sha256File(got.path), file.sha256);
  assert.equal(got.name, fileName);

  const secrets = [textLink, fileLink].map((l) => l.split('#')[1]);
  const forbidden = [
    ...secrets.flatMap(secretForms),
    password,
    encodeURIComponent(password),
    textMarker,
    fileName,
    encodeURIComponent(fileName),
    'quarterly-secret-plan',
    'Z'.repeat(64), // 0x5a × 64: a run of the file's plaintext
  ];
  const requests = [...writer.requests, ...reader.requests];
  assert.ok(requests.length > 20, `${requests.length} requests captured`);
  // The chunks (sent from workers) and the service worker's download are among them.
  assert.ok(requests.filter((r) => r.url.includes('/api/upload/chunk/') && r.body?.length > 1000).length >= 2, 'chunk bodies captured');
  assert.equal(requests.filter((r) => r.method === 'POST' && r.url.includes('/api/file/')).length, 2);
  const origin = new URL(server.url).origin;
  for (const r of requests) {
    assert.equal(new URL(r.url).origin, origin, `request to ${r.url}`);
    const seen = [r.url, JSON.stringify(r.headers), r.body ? r.body.toString('latin1') : '', r.body ? r.body.toString('utf8') : ''].join('\n');
    for (const f of forbidden) assert.ok(!seen.includes(f), `${r.method} ${r.url} carries ${JSON.stringify(f).slice(0, 40)}`);
  }

  // What the API calls carry is what FORMAT.md lists, and no more.
  const json = (pred) => requests.filter(pred).map((r) => JSON.parse(r.body.toString()));
  for (const body of json((r) => r.url.endsWith('/api/upload/initiate'))) {
    assert.ok(['file', 'text'].includes(body.filename), body.filename);
    assert.equal(body.mimeType, 'application/octet-stream');
  }
  for (const body of json((r) => r.url.includes('/api/upload/complete/'))) {
    for (const key of Object.keys(body)) {
      assert.ok(['format', 'meta', 'contentType', 'accessCodeHash', 'requiresAccessCode', 'isTextUpload'].includes(key), key);
    }
    assert.match(body.accessCodeHash, /^[0-9a-f]{128}$/);
  }
  for (const body of json((r) => r.method === 'POST' && /\/api\/(clip|file)\/[A-Z0-9]+$/.test(r.url) && r.body?.length)) {
    for (const key of Object.keys(body)) assert.equal(key, 'accessCode');
  }

  // At rest and in the log: ciphertext and hashes only.
  for (const path of allFiles(server.dataDir)) {
    if (statSync(path).size > 64 << 20) continue;
    const bytes = readFileSync(path).toString('latin1');
    for (const f of [...secrets, password, textMarker, fileName, 'quarterly-secret-plan', 'Z'.repeat(64)]) {
      assert.ok(!bytes.includes(f), `${path} holds ${f.slice(0, 30)}`);
    }
  }
  const log = server.logs.join('\n');
  for (const f of [...secrets, password, textMarker, 'quarterly-secret-plan', ...[textLink, fileLink].map((l) => l.split('/')[4].split('#')[0])]) {
    assert.ok(!log.includes(f), `the log holds ${f.slice(0, 30)}`);
  }
});
