// The upload engine's manners in a real browser: pause holds every chunk back and resume
// finishes; going offline waits and carries on when the network returns; a 429 waits for its
// Retry-After; phases and progress reach the screen reader's live region; files arrive by
// drag-and-drop anywhere on the page and by paste.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { downloadFrom, makeFile, openPage, readLink, sha256File, startBoth, stopBoth, until } from './harness.mjs';

const CHUNK = 1 << 20;
let server;
let browser;
before(async () => ({ server, browser } = await startBoth({ FERRY_LIMITS__CHUNK_SIZE: String(CHUNK) })));
after(() => stopBoth({ server, browser }));

const chunkPosts = (page) => page.requests.filter((r) => r.method === 'POST' && r.url.includes('/api/upload/chunk/')).length;

async function startUpload(page, path) {
  await page.goto(`${server.url}/`);
  await page.getByRole('tab', { name: 'File' }).click();
  await page.locator('#file').setInputFiles(path);
  await page.getByRole('button', { name: 'Encrypt and upload' }).click();
}

/** Slow every chunk down so a test can act mid-upload. */
async function slowChunks(page, ms) {
  await page.route('**/api/upload/chunk/**', async (route) => {
    await new Promise((r) => setTimeout(r, ms));
    await route.continue().catch(() => {});
  });
}

test('pause holds every chunk back; resume finishes the upload', async () => {
  const file = await makeFile('pause.bin', 12 * CHUNK);
  const page = await openPage(browser, { capture: false });
  await slowChunks(page, 150);
  await startUpload(page, file.path);
  await until(() => chunkPosts(page) >= 2, 20000, 'two chunks sent');
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.locator('#up-note').getByText('Paused. Nothing is lost').waitFor();
  await new Promise((r) => setTimeout(r, 300));
  const held = chunkPosts(page);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(chunkPosts(page), held, 'no chunk is sent while paused');
  await page.getByRole('button', { name: 'Resume' }).click();
  const link = await readLink(page);
  const got = await downloadFrom(await openPage(browser), link);
  assert.equal(await sha256File(got.path), file.sha256);
});

test('going offline mid-upload waits, and the upload carries on when the network is back', async () => {
  const file = await makeFile('offline.bin', 12 * CHUNK);
  const page = await openPage(browser, { capture: false });
  await slowChunks(page, 150);
  await startUpload(page, file.path);
  await until(() => chunkPosts(page) >= 2, 20000, 'two chunks sent');
  await page.context().setOffline(true);
  await page.locator('#up-note').getByText('You are offline').waitFor();
  const during = chunkPosts(page);
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok(chunkPosts(page) - during <= 4, 'nothing new is tried while offline');
  await page.context().setOffline(false);
  const link = await readLink(page);
  const got = await downloadFrom(await openPage(browser), link);
  assert.equal(await sha256File(got.path), file.sha256);
});

test('a 429 on a chunk waits for its Retry-After before trying again', async () => {
  const file = await makeFile('busy.bin', 2 * CHUNK);
  const page = await openPage(browser, { capture: false });
  const tries = [];
  await page.route('**/api/upload/chunk/*/1', async (route) => {
    tries.push(Date.now());
    if (tries.length === 1) {
      await route.fulfill({
        status: 429,
        headers: { 'retry-after': '2', 'content-type': 'application/json' },
        body: '{"error":"Too many requests","code":"rate_limited","message":"slow down"}',
      });
    } else {
      await route.continue();
    }
  });
  await startUpload(page, file.path);
  await page.locator('#up-note').getByText('The server asked to slow down').waitFor();
  await readLink(page);
  assert.equal(tries.length, 2);
  assert.ok(tries[1] - tries[0] >= 1900, `retried after ${tries[1] - tries[0]} ms`);
});

test('phases and progress are announced in the live region', async () => {
  const file = await makeFile('announced.bin', 8 * CHUNK);
  const page = await openPage(browser, { capture: false });
  await page.addInitScript(() => {
    window.__said = [];
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target.id !== 'announce') continue;
        for (const node of r.addedNodes) window.__said.push(node.textContent);
      }
    }).observe(document, { subtree: true, childList: true });
  });
  await slowChunks(page, 100);
  await startUpload(page, file.path);
  await readLink(page);
  const said = await page.evaluate(() => window.__said);
  for (const expected of ['Deriving key', 'Encrypting and uploading', 'Finishing', 'Your link is ready']) {
    assert.ok(said.some((s) => s.startsWith(expected)), `${expected} in ${JSON.stringify(said)}`);
  }
  assert.ok(said.some((s) => /percent sent/.test(s)), JSON.stringify(said));
});

test('a file dropped anywhere on the page, or pasted, is the one shared', async () => {
  const page = await openPage(browser);
  await page.goto(`${server.url}/`);
  const handle = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['dropped bytes'], 'dropped.txt', { type: 'text/plain' }));
    return dt;
  });
  // Dropped on the heading, far from the drop zone, while the Text tab is showing.
  for (const type of ['dragenter', 'dragover', 'drop']) await page.dispatchEvent('h1', type, { dataTransfer: handle });
  assert.equal(await page.getByRole('tab', { name: 'File' }).getAttribute('aria-selected'), 'true');
  assert.equal(await page.locator('#chosen-name').textContent(), 'dropped.txt');
  const link = await (async () => {
    await page.getByRole('button', { name: 'Encrypt and upload' }).click();
    return readLink(page);
  })();
  const got = await downloadFrom(await openPage(browser), link);
  assert.equal(got.name, 'dropped.txt');

  const paster = await openPage(browser);
  await paster.goto(`${server.url}/`);
  await paster.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['pasted bytes'], 'pasted.png', { type: 'image/png' }));
    document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
  });
  assert.equal(await paster.locator('#chosen-name').textContent(), 'pasted.png');
  await paster.evaluate(() => {
    const dt = new DataTransfer();
    dt.setData('text/plain', 'pasted text');
    document.body.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true }));
  });
  assert.equal(await paster.getByRole('tab', { name: 'Text' }).getAttribute('aria-selected'), 'true');
  assert.equal(await paster.getByLabel('Text to share').inputValue(), 'pasted text');
});

test('cancel stops the upload, gives the session back and leaves nothing to resume', async () => {
  const file = await makeFile('cancel.bin', 12 * CHUNK);
  const page = await openPage(browser, { capture: false });
  await slowChunks(page, 200);
  let uploadId = null;
  page.on('request', (r) => {
    if (r.url().includes('/api/upload/chunk/')) uploadId = r.url().split('/').at(-2);
  });
  await startUpload(page, file.path);
  await until(() => chunkPosts(page) >= 2, 20000, 'two chunks sent');
  await page.getByRole('button', { name: 'Cancel' }).click();
  await page.locator('#form-error').getByText('Cancelled.').waitFor();
  await until(async () => (await fetch(`${server.url}/api/upload/${uploadId}/status`)).status === 404, 10000, 'session gone');
  await page.reload();
  await assert.rejects(page.getByRole('region', { name: 'An upload did not finish' }).waitFor({ timeout: 1000 }));
});
