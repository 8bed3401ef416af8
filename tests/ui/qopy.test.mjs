// Clips made the way Qopy's own front-end makes them (V3 blobs, multipart chunks, no `format`
// at complete) open in ferry's UI: texts with padding stripped, a password text, a quick
// share, and a V3 file whose name comes from its encrypted metadata. The blobs are
// FORMAT.md's V3 vectors, uploaded over the API from Node.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';

import { fromHex } from '../../static/js/crypto/bytes.js';
import { accessCodeHash } from '../../static/js/crypto/access.js';
import { encryptText } from '../../static/js/crypto/v3.js';
import { newQuickSecret } from '../../static/js/secret.js';
import { downloadFrom, openPage, sha256File, startBoth, stopBoth } from './harness.mjs';

const vectors = JSON.parse(readFileSync(new URL('../fixtures/format-vectors.json', import.meta.url)));
const vector = (name) => vectors.v3.find((v) => v.name === name);

let server;
let browser;
before(async () => ({ server, browser } = await startBoth()));
after(() => stopBoth({ server, browser }));

async function api(path, body) {
  const res = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  return json;
}

/** Qopy's three steps: initiate, one multipart chunk, complete (no ferry fields). */
async function qopyUpload(blob, { text, quick = false, accessCode = null, filename }) {
  const init = await api('/api/upload/initiate', {
    filename,
    filesize: blob.length,
    contentType: text ? 'text' : 'file',
    isTextContent: text,
    quickShare: quick,
    hasPassword: !!accessCode,
    oneTime: false,
  });
  const form = new FormData();
  form.append('chunkNumber', '0');
  form.append('chunk', new Blob([blob]), 'chunk');
  const res = await fetch(`${server.url}/api/upload/chunk/${init.uploadId}/0`, { method: 'POST', body: form });
  assert.equal(res.status, 200);
  const complete = { isTextUpload: text };
  if (accessCode) Object.assign(complete, { accessCodeHash: accessCode, requiresAccessCode: true });
  return (await api(`/api/upload/complete/${init.uploadId}`, complete)).clipId;
}

async function shownText(page) {
  await page.locator('#open-text-view').waitFor({ state: 'visible', timeout: 30000 });
  return page.locator('#open-text').textContent();
}

const plaintext = (v) => Buffer.from(fromHex(v.plaintext)).toString('utf8');

test('a Qopy V3 text opens with its padding stripped', async () => {
  const v = vector('text');
  const id = await qopyUpload(fromHex(v.blob), { text: true, filename: 'text.txt' });
  const page = await openPage(browser);
  await page.goto(`${server.url}/clip/${id}#${v.secret}`);
  assert.equal(await shownText(page), plaintext(v));
});

test('a Qopy V3 text with a password opens once the password is given', async () => {
  const v = vector('text-password');
  const { pbkdf2Salt } = await (await fetch(`${server.url}/api/config`)).json();
  const id = await qopyUpload(fromHex(v.blob), { text: true, filename: 'text.txt', accessCode: await accessCodeHash(v.password, pbkdf2Salt) });
  const page = await openPage(browser);
  await page.goto(`${server.url}/clip/${id}#${v.secret}`);
  await page.getByLabel('Password', { exact: true }).fill(v.password);
  await page.getByRole('button', { name: 'Unlock' }).click();
  assert.equal(await shownText(page), plaintext(v));
});

test('a Qopy quick share opens by its 6-character link', async () => {
  const secret = newQuickSecret();
  const blob = await encryptText(secret, null, 'quick from Qopy');
  const id = await qopyUpload(blob, { text: true, quick: true, filename: 'quick.txt' });
  assert.match(id, /^[A-Z0-9]{6}$/);
  const page = await openPage(browser);
  await page.goto(`${server.url}/clip/${id}#${secret.toLowerCase()}`);
  assert.equal(await shownText(page), 'quick from Qopy');
});

test('a Qopy V3 file downloads under the name in its encrypted metadata, its padding stripped', async () => {
  const v = vector('file');
  const id = await qopyUpload(fromHex(v.blob), { text: false, filename: 'upload.bin' });
  const page = await openPage(browser);
  const got = await downloadFrom(page, `${server.url}/file/${id}#${v.secret}`);
  assert.equal(got.name, v.filename);
  assert.equal(await sha256File(got.path), createHash('sha256').update(fromHex(v.plaintext)).digest('hex'));
  assert.equal(await page.locator('#open-name').textContent(), v.filename);
});
