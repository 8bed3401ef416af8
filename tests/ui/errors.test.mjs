// The paths around the happy one: a browser without service workers downloads from memory; a
// download cut short or a dropped connection each get their own sentence; plain HTTP away from
// localhost is refused in words; the creator can delete a clip early; a shown text can be
// copied and saved.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

import { CHROMIUM, CHROMIUM_ARGS, downloadFrom, linkId, makeFile, openPage, readLink, sha256File, shareFile, shareText, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
before(async () => ({ server, browser } = await startBoth()));
after(() => stopBoth({ server, browser }));

test('without service workers a file is decrypted in memory and still saved whole', async () => {
  const file = await makeFile('no-worker.bin', 2 << 20);
  const link = await shareFile(await openPage(browser), server, file.path);
  const reader = await openPage(browser, { serviceWorkers: 'block' });
  const got = await downloadFrom(reader, link);
  assert.equal(got.name, 'no-worker.bin');
  assert.equal(await sha256File(got.path), file.sha256);
  assert.equal(await reader.evaluate(async () => (await navigator.serviceWorker?.getRegistrations())?.length ?? 0), 0);
});

test('a download cut short says so, and so does a dropped connection; nothing is saved', async () => {
  const file = await makeFile('cut.bin', 1 << 20);
  const link = await shareFile(await openPage(browser), server, file.path);
  for (const [how, message] of [
    ['cut', /ended before the end of the file/],
    ['drop', /network failed/],
  ]) {
    const reader = await openPage(browser);
    // The service worker's own fetch of the ciphertext, seen through the context.
    await reader.context().route('**/api/file/*', async (route) => {
      if (how === 'drop') return route.abort('connectionreset');
      const res = await route.fetch();
      const body = (await res.body()).subarray(0, 200000);
      return route.fulfill({ response: res, body, headers: { ...res.headers(), 'content-length': String(body.length) } });
    });
    const downloads = [];
    reader.on('download', (d) => downloads.push(d));
    await reader.goto(link);
    await reader.getByRole('button', { name: /^Download/ }).click();
    await reader.locator('#open-error').waitFor();
    assert.match(await reader.locator('#open-error').textContent(), message, how);
    for (const d of downloads) assert.ok(await d.failure(), `${how}: the browser kept no file`);
    await reader.context().close();
  }
});

test('plain HTTP away from localhost is refused in words, before any crypto runs', async () => {
  const insecure = await chromium.launch({
    executablePath: CHROMIUM,
    args: [...CHROMIUM_ARGS, '--host-resolver-rules=MAP ferry.test 127.0.0.1'],
  });
  try {
    const port = new URL(server.url).port;
    const page = await openPage(insecure);
    await page.goto(`http://ferry.test:${port}/`);
    await page.locator('#insecure').waitFor();
    assert.match(await page.locator('#insecure').textContent(), /not on a secure connection/);
    assert.ok(await page.locator('#create').isHidden());
    await page.goto(`http://ferry.test:${port}/file/ABCDEFGHJK#${'A'.repeat(43)}`);
    await page.locator('#open-error').waitFor();
    assert.match(await page.locator('#open-error').textContent(), /not on a secure connection/);
    assert.equal(page.requests.filter((r) => r.url.includes('/api/')).length, 0);
  } finally {
    await insecure.close();
  }
});

test('the creator deletes a clip early with its delete token, and the screen offers the link no more', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'regret');
  const id = linkId(link);
  await writer.getByRole('button', { name: 'Delete it now' }).click();
  await writer.getByRole('button', { name: 'Click again to delete' }).click();
  await writer.getByRole('heading', { name: 'Deleted' }).waitFor();
  assert.match(await writer.locator('#res-status').textContent(), /no longer opens anything/);
  // No link, no copy button, no QR code, no second delete: nothing that looks ready.
  assert.equal(await writer.getByLabel('Link', { exact: true }).isVisible(), false);
  assert.equal(await writer.getByRole('button', { name: 'Copy link' }).isVisible(), false);
  assert.equal(await writer.getByRole('img', { name: /QR code/ }).isVisible(), false);
  assert.equal(await writer.getByRole('button', { name: /Delete it now|Click again/ }).isVisible(), false);
  assert.equal(await writer.getByLabel('Link', { exact: true }).inputValue(), '', 'the link is gone from the page too');
  const info = await fetch(`${server.url}/api/clip/${id}/info`);
  assert.equal(info.status, 404);
  assert.equal((await info.json()).code, 'clip_deleted');
  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByRole('heading', { name: 'This link was deleted' }).waitFor();
  const del = writer.requests.find((r) => r.method === 'DELETE');
  assert.match(del.headers['x-delete-token'], /^[0-9a-f]{64}$/);
  await writer.getByRole('button', { name: 'Share something else' }).click();
  assert.equal(await writer.getByLabel('Text to share').inputValue(), '');
  assert.match(await readLink(await shareTextPage(writer)), /\/clip\//);
});

async function shareTextPage(page) {
  await page.getByLabel('Text to share').fill('again');
  await page.getByRole('button', { name: 'Encrypt and share' }).click();
  return page;
}

test('a shown text can be copied and saved as a file', async () => {
  const text = 'copy me\nand save me';
  const link = await shareText(await openPage(browser), server, text);
  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.locator('#open-text-view').waitFor();
  await reader.getByRole('button', { name: 'Copy text' }).click();
  await reader.getByText('Text copied.').waitFor();
  assert.equal(await reader.evaluate(() => navigator.clipboard.readText()), text);
  const [download] = await Promise.all([reader.waitForEvent('download'), reader.getByRole('button', { name: 'Save as file' }).click()]);
  assert.equal(download.suggestedFilename(), `ferry-${linkId(link)}.txt`);
  assert.equal(readFileSync(await download.path(), 'utf8'), text);
});
