// Files in a real browser, on a server with 1 MiB chunks so multi-chunk files stay small:
// sizes around the record and chunk boundaries compared by SHA-256 after a streamed download,
// a password, one-time and download-limited files (nothing spent before the click), chunk
// POSTs that fail one in five, and a stored blob with a byte flipped.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSync, readSync, writeSync, closeSync, statSync } from 'node:fs';

import { downloadFrom, linkId, makeFile, openPage, sha256File, shareFile, startBoth, stopBoth } from './harness.mjs';

const CHUNK = 1 << 20;
// V4 at 1 MiB chunks: floor(1 MiB / (64 KiB + 16)) = 15 records of 64 KiB per chunk.
const ONE_CHUNK = 15 * 65536;

let server;
let browser;
before(async () => ({ server, browser } = await startBoth({ FERRY_LIMITS__CHUNK_SIZE: String(CHUNK) })));
after(() => stopBoth({ server, browser }));

const chunkPosts = (page) => page.requests.filter((r) => r.method === 'POST' && r.url.includes('/api/upload/chunk/'));

for (const [label, size, chunks] of [
  ['an empty file', 0, 1],
  ['1 byte', 1, 1],
  ['1 KiB', 1024, 1],
  ['exactly one chunk', ONE_CHUNK, 1],
  ['one byte past one chunk', ONE_CHUNK + 1, 2],
  ['several chunks', 5 * CHUNK + 123, 6],
]) {
  test(`${label} (${size} bytes) goes up in ${chunks} chunk(s) and comes back byte for byte`, async () => {
    const file = await makeFile(`size-${size} ünïcode.bin`, size);
    const writer = await openPage(browser);
    const link = await shareFile(writer, server, file.path);
    assert.match(link, new RegExp(`^${server.url}/file/[A-Z0-9]{10}#[A-Za-z0-9_-]{43}$`));
    assert.equal(chunkPosts(writer).length, chunks);
    const reader = await openPage(browser);
    const got = await downloadFrom(reader, link);
    assert.equal(got.name, `size-${size} ünïcode.bin`);
    assert.equal(await sha256File(got.path), file.sha256);
    assert.match(await reader.locator('#open-name').textContent(), /ünïcode/);
    assert.deepEqual([...writer.errors, ...reader.errors], []);
  });
}

test('a file with a password refuses a wrong password and downloads with the right one', async () => {
  const file = await makeFile('locked.bin', 200000);
  const writer = await openPage(browser);
  const link = await shareFile(writer, server, file.path, { password: 'pässword' });
  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByLabel('Password', { exact: true }).fill('password');
  await reader.getByRole('button', { name: 'Unlock' }).click();
  await reader.locator('#open-error').getByText('That password is not right.').waitFor();
  assert.equal(await reader.getByRole('button', { name: /^Download/ }).isVisible(), false);
  const got = await downloadFrom(reader, link, { password: ' pässword ' });
  assert.equal(await sha256File(got.path), file.sha256);
});

test('a one-time file is not spent by opening its page; the click downloads it; the next person is told it is gone', async () => {
  const file = await makeFile('once.bin', 3 * CHUNK);
  const writer = await openPage(browser);
  const link = await shareFile(writer, server, file.path, { oneTime: true });
  const id = linkId(link);
  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByRole('button', { name: /^Download/ }).waitFor();
  assert.match(await reader.locator('#open-once').textContent(), /can be opened once/);
  assert.equal(await reader.locator('#open-name').textContent(), 'once.bin', 'the name shows before any download');
  assert.equal((await fetch(`${server.url}/api/clip/${id}/info`)).status, 200);
  assert.equal(reader.requests.filter((r) => r.url.includes('/api/file/')).length, 0);
  const got = await downloadFrom(reader, link);
  assert.equal(await sha256File(got.path), file.sha256);
  assert.match(await reader.locator('#open-done').textContent(), /used up/);

  for (const page of [await openPage(browser), writer]) {
    await page.goto(link);
    await page.getByRole('heading', { name: 'This link was already opened' }).waitFor();
    assert.match(await page.locator('#open-error').textContent(), /has been, so its content is deleted/);
  }
});

test('a file limited to two downloads gives two and then is gone', async () => {
  const file = await makeFile('twice.bin', 100000);
  const writer = await openPage(browser);
  const link = await shareFile(writer, server, file.path, { limit: 2 });
  for (const left of ['2', '1']) {
    const reader = await openPage(browser);
    await reader.goto(link);
    await reader.getByRole('button', { name: /^Download/ }).waitFor();
    assert.equal(await reader.locator('#open-left').textContent(), left);
    const got = await downloadFrom(reader, link);
    assert.equal(await sha256File(got.path), file.sha256);
    await reader.context().close();
  }
  const third = await openPage(browser);
  await third.goto(link);
  await third.getByRole('heading', { name: 'This link was already opened' }).waitFor();
  assert.match(await third.locator('#open-error').textContent(), /has been, so its content is deleted/);
});

test('chunk POSTs failing one in five (server errors and dropped connections) still complete', async () => {
  const file = await makeFile('flaky.bin', 6 * CHUNK);
  const writer = await openPage(browser);
  let seen = 0;
  let failed = 0;
  await writer.route('**/api/upload/chunk/**', async (route) => {
    seen++;
    if (seen % 5 === 0) {
      failed++;
      if (failed % 2) await route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"Unavailable","code":"unavailable","message":"try later"}' });
      else await route.abort('connectionreset');
      return;
    }
    await route.continue();
  });
  const link = await shareFile(writer, server, file.path);
  assert.ok(failed >= 1, `failures injected: ${failed} of ${seen}`);
  const reader = await openPage(browser);
  const got = await downloadFrom(reader, link);
  assert.equal(await sha256File(got.path), file.sha256);
});

/** Flip one bit of the byte at `at` of a content stored as `files` (in content order). */
function flipByte(files, at) {
  let path = files[0];
  for (const f of files) {
    const size = statSync(f).size;
    path = f;
    if (at < size) break;
    at -= size;
  }
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, at);
  b[0] ^= 0x01;
  writeSync(fd, b, 0, 1, at);
  closeSync(fd);
}

/** Share `path` and find the content (its files, in order) the server stored for it. */
async function shareKeepingBlob(page, path) {
  const earlier = new Set(server.clipContents().map((c) => c.id));
  const link = await shareFile(page, server, path);
  const fresh = server.clipContents().filter((c) => !earlier.has(c.id));
  assert.equal(fresh.length, 1, 'one new stored clip');
  return { link, blob: fresh[0].files };
}

test('a byte flipped in the stored blob is reported as tampered and nothing is saved', async () => {
  const writer = await openPage(browser);
  // Mid-file: the download has usually begun when record 100 fails, so the browser aborts it
  // (when one read from the network holds that far, the worker refuses before answering).
  const file = await makeFile('tamper-mid.bin', 8 * CHUNK);
  const { link, blob } = await shareKeepingBlob(writer, file.path);
  flipByte(blob, 28 + 100 * (65536 + 16) + 100);
  const reader = await openPage(browser);
  const downloads = [];
  reader.on('download', (d) => downloads.push(d));
  await reader.goto(link);
  await reader.getByRole('button', { name: /^Download/ }).click();
  await reader.locator('#open-error').waitFor({ timeout: 60000 });
  assert.match(await reader.locator('#open-error').textContent(), /changed after it was shared/);
  for (const d of downloads) {
    assert.ok(await d.failure(), 'the browser aborted the download');
    await assert.rejects(d.path(), 'no file was kept');
  }

  // In the first record: refused before any download starts.
  const first = await makeFile('tamper-first.bin', 5000);
  const { link: link2, blob: blob2 } = await shareKeepingBlob(writer, first.path);
  flipByte(blob2, 40);
  const reader2 = await openPage(browser);
  let offered = 0;
  reader2.on('download', () => offered++);
  await reader2.goto(link2);
  await reader2.getByRole('button', { name: /^Download/ }).click();
  await reader2.locator('#open-error').waitFor();
  assert.match(await reader2.locator('#open-error').textContent(), /changed after it was shared/);
  assert.equal(offered, 0, 'no download was offered');
});
