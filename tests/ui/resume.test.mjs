// Surviving a reload mid-upload: the page offers to resume, the person picks the same file,
// the page proves it unchanged (name, size, last-modified, and re-encrypted acknowledged
// chunks against the server's SHA-256s) and sends only the missing chunks; a modified file
// with the same name, size and time is refused without sending anything.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, closeSync, mkdtempSync, openSync, statSync, utimesSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { downloadFrom, makeFile, openPage, readLink, sha256File, startBoth, stopBoth, until } from './harness.mjs';

const CHUNK = 1 << 20;
let server;
let browser;
before(async () => ({ server, browser } = await startBoth({ FERRY_LIMITS__CHUNK_SIZE: String(CHUNK) })));
after(() => stopBoth({ server, browser }));

const chunkIndex = (url) => Number(url.split('/').pop());

/**
 * Start uploading `path`, let the first `pass` chunk POSTs through, hold the rest, and reload
 * once those are acknowledged. Returns the page (now showing the resume offer) and the upload id.
 */
async function interruptedUpload(path, pass) {
  const page = await openPage(browser);
  let acked = 0;
  let uploadId = null;
  page.on('response', (res) => {
    if (res.url().includes('/api/upload/chunk/') && res.status() === 200) acked++;
  });
  // Chunks from `pass` on never get through, as if the network died, until the reload.
  await page.route('**/api/upload/chunk/**', (route) => {
    uploadId = route.request().url().split('/').at(-2);
    return chunkIndex(route.request().url()) < pass ? route.continue() : route.abort('connectionreset');
  });
  await page.goto(`${server.url}/`);
  await page.getByRole('tab', { name: 'File' }).click();
  await page.locator('#file').setInputFiles(path);
  await page.getByRole('button', { name: 'Encrypt and upload' }).click();
  await until(() => acked >= pass, 30000, `${pass} chunks acknowledged`);
  await page.reload();
  await page.unrouteAll({ behavior: 'ignoreErrors' });
  await page.getByRole('region', { name: 'An upload did not finish' }).waitFor();
  assert.match(await page.locator('#resume-name').textContent(), new RegExp(basename(path)));
  const status = await (await fetch(`${server.url}/api/upload/${uploadId}/status`)).json();
  assert.deepEqual(status.receivedChunks, [...Array(pass).keys()]);
  return { page, uploadId, total: status.totalChunks };
}

test('a reload mid-upload resumes with the same file and sends only the missing chunks', async () => {
  const file = await makeFile('resume-me.bin', 10 * CHUNK + 5);
  const { page, total } = await interruptedUpload(file.path, 3);
  const mark = page.requests.length;
  await page.locator('#resume-file').setInputFiles(file.path);
  const link = await readLink(page);
  const sent = page.requests.slice(mark).filter((r) => r.method === 'POST' && r.url.includes('/api/upload/chunk/'));
  const indexes = [...new Set(sent.map((r) => chunkIndex(r.url)))].sort((a, b) => a - b);
  assert.deepEqual(indexes, [...Array(total).keys()].slice(3), 'only the chunks the server lacked');
  await assert.rejects(page.getByRole('region', { name: 'An upload did not finish' }).waitFor({ timeout: 500 }));

  const reader = await openPage(browser);
  const got = await downloadFrom(reader, link);
  assert.equal(await sha256File(got.path), file.sha256);
});

test('a modified file with the same name, size and time is refused; the right one still resumes', async () => {
  const file = await makeFile('edited.bin', 4 * CHUNK);
  const whole = Math.floor(Date.now() / 1000) - 60;
  utimesSync(file.path, whole, whole);
  const { page } = await interruptedUpload(file.path, 2);
  const copy = join(mkdtempSync(join(tmpdir(), 'ferry-edit-')), 'edited.bin');
  copyFileSync(file.path, copy);
  const fd = openSync(copy, 'r+');
  writeSync(fd, Buffer.from('X'), 0, 1, 1000);
  closeSync(fd);
  // The same last-modified time to the millisecond (whole seconds survive utimes exactly).
  const { mtimeMs } = statSync(file.path);
  const seconds = Math.floor(mtimeMs / 1000);
  utimesSync(copy, seconds, seconds);

  const mark = page.requests.length;
  await page.locator('#resume-file').setInputFiles(copy);
  await page.locator('#resume-error').getByText(/not the file that was being sent/).waitFor();
  const sent = page.requests.slice(mark).filter((r) => r.url.includes('/api/upload/chunk/'));
  assert.equal(sent.length, 0, 'nothing was sent for the modified file');

  // A file of another size is refused before anything is read.
  const other = await makeFile('edited.bin', 4 * CHUNK + 1);
  await page.locator('#resume-file').setInputFiles(other.path);
  await page.locator('#resume-error').getByText(/not the same file/).waitFor();

  await page.locator('#resume-file').setInputFiles(file.path);
  const link = await readLink(page);
  const reader = await openPage(browser);
  const got = await downloadFrom(reader, link);
  assert.equal(await sha256File(got.path), file.sha256);
});

test('discarding an unfinished upload cancels it on the server too', async () => {
  const file = await makeFile('discard.bin', 3 * CHUNK);
  const { page, uploadId } = await interruptedUpload(file.path, 1);
  await page.getByRole('button', { name: 'Discard it' }).click();
  await page.getByRole('region', { name: 'An upload did not finish' }).waitFor({ state: 'hidden' });
  await until(async () => (await fetch(`${server.url}/api/upload/${uploadId}/status`)).status === 404, 5000, 'session gone');
  await page.reload();
  await assert.rejects(page.getByRole('region', { name: 'An upload did not finish' }).waitFor({ timeout: 1000 }));
});
