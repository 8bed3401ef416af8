// The advertised maximum is the number of plaintext bytes a browser clip may have: with the
// file limit at 1 MiB and the text limit at 20 000 bytes, a file or text of exactly the limit
// is shared and comes back byte for byte, one byte less too, and one byte more is refused on
// the page before anything is sent, in the same words the page advertised the limit with.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { downloadFrom, makeFile, openPage, readLink, sha256File, shareFile, startBoth, stopBoth } from './harness.mjs';

const MAX_FILE = 1 << 20;
const MAX_TEXT = 20000;

let server;
let browser;
before(async () => ({
  server,
  browser,
} = await startBoth({ FERRY_LIMITS__MAX_UPLOAD_SIZE: String(MAX_FILE), FERRY_LIMITS__MAX_TEXT_SIZE: String(MAX_TEXT), FERRY_LIMITS__CHUNK_SIZE: String(256 << 10) })));
after(() => stopBoth({ server, browser }));

const uploads = (page) => page.requests.filter((r) => r.url.includes('/api/upload/'));

test('the drop zone advertises the file limit, and a file of max − 1 and of exactly max bytes goes and comes back', async () => {
  for (const size of [MAX_FILE - 1, MAX_FILE]) {
    const file = await makeFile(`limit-${size}.bin`, size);
    const writer = await openPage(browser);
    await writer.goto(`${server.url}/`);
    await writer.getByRole('tab', { name: 'File' }).click();
    assert.match(await writer.locator('#drop-hint').textContent(), /up to 1\.00 MiB in all/);
    const link = await shareFile(writer, server, file.path);
    const got = await downloadFrom(await openPage(browser), link);
    assert.equal(await sha256File(got.path), file.sha256, `${size} bytes`);
  }
});

test('a file of max + 1 bytes is refused on the page, with the advertised number, before any upload', async () => {
  const file = await makeFile('one-too-many.bin', MAX_FILE + 1);
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  await writer.getByRole('tab', { name: 'File' }).click();
  const advertised = (await writer.locator('#max-file').textContent()).trim();
  await writer.locator('#file').setInputFiles(file.path);
  const error = writer.getByRole('alert').filter({ hasText: 'larger than this server takes' });
  await error.waitFor();
  assert.match(await error.textContent(), new RegExp(`\\(1,048,577 bytes\\) is larger than this server takes: ${advertised.replace('.', '\\.')} \\(1,048,576 bytes\\) at most`));
  await writer.getByRole('button', { name: 'Encrypt and upload' }).click();
  await error.waitFor();
  assert.equal(uploads(writer).length, 0, 'nothing was sent');
  assert.ok(await writer.getByRole('heading', { name: 'Share a text or a file' }).isVisible());
});

test('a text of max − 1 and exactly max bytes is shared; max + 1 is refused on the page before any upload', async () => {
  for (const size of [MAX_TEXT - 1, MAX_TEXT]) {
    const writer = await openPage(browser);
    await writer.goto(`${server.url}/`);
    // Two-byte characters and a final ASCII one make the count exact in UTF-8 bytes.
    await writer.getByLabel('Text to share').fill(`${'é'.repeat(Math.floor((size - 1) / 2))}${'x'.repeat(size - 2 * Math.floor((size - 1) / 2))}`);
    assert.doesNotMatch(await writer.locator('#text-count').textContent(), /more than/);
    await writer.getByRole('button', { name: 'Encrypt and share' }).click();
    assert.match(await readLink(writer), /\/clip\//, `${size} bytes`);
  }
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  assert.match(await writer.locator('#max-text').textContent(), /19\.5 KiB/);
  await writer.getByLabel('Text to share').fill('x'.repeat(MAX_TEXT + 1));
  assert.match(await writer.locator('#text-count').textContent(), /more than the 19\.5 KiB this server takes/);
  await writer.getByRole('button', { name: 'Encrypt and share' }).click();
  const error = writer.getByRole('alert').filter({ hasText: 'larger than this server takes' });
  await error.waitFor();
  assert.match(await error.textContent(), /This text \(20,001 bytes\) is larger than this server takes: 19\.5 KiB \(20,000 bytes\) at most/);
  assert.equal(uploads(writer).length, 0, 'nothing was sent');
});
