// Sharing from a phone: the page links a web app manifest with icons and a share target; "Share
// → ferry" posts the files to /share-target, where the service worker hands them to the page,
// which selects them (a POST that reaches the server instead is sent back to say so); the
// result screen's "Share…" uses the system share sheet where the browser has one; an image
// pasted from the clipboard on the File tab is selected.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { openPage, readLink, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
before(async () => ({ server, browser } = await startBoth()));
after(() => stopBoth({ server, browser }));

test('the page links a manifest with installable icons and a share target for files', async () => {
  const page = await openPage(browser);
  await page.goto(`${server.url}/`);
  const href = await page.locator('link[rel="manifest"]').getAttribute('href');
  const res = await fetch(new URL(href, server.url));
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/manifest\+json/);
  const manifest = await res.json();
  assert.equal(manifest.start_url, '/');
  assert.equal(manifest.display, 'standalone');
  assert.deepEqual(manifest.share_target.method, 'POST');
  assert.equal(manifest.share_target.enctype, 'multipart/form-data');
  assert.equal(manifest.share_target.action, '/share-target');
  assert.deepEqual(manifest.share_target.params.files.map((f) => f.name), ['files']);
  const sizes = [];
  for (const icon of manifest.icons) {
    const png = await fetch(new URL(icon.src, new URL(href, server.url)));
    assert.equal(png.status, 200, icon.src);
    assert.equal(png.headers.get('content-type'), 'image/png');
    const bytes = Buffer.from(await png.arrayBuffer());
    // PNG width and height from the IHDR chunk.
    sizes.push(`${bytes.readUInt32BE(16)}x${bytes.readUInt32BE(20)} ${icon.purpose}`);
  }
  assert.deepEqual(sizes, ['192x192 any', '512x512 any', '512x512 maskable']);
  // Chromium itself parses it: the manifest has no errors and keeps the share target.
  const cdp = await page.context().newCDPSession(page);
  const parsed = await cdp.send('Page.getAppManifest');
  assert.deepEqual(parsed.errors, []);
  assert.match(parsed.data, /share_target/);
});

test('a file shared to ferry from another app arrives selected on the File tab', async () => {
  const page = await openPage(browser);
  await page.goto(`${server.url}/`);
  await page.evaluate(() => navigator.serviceWorker.ready);
  // What Android does for "Share → ferry": a multipart POST navigation to the share target.
  await page.evaluate(() => {
    const form = document.createElement('form');
    form.method = 'POST';
    form.action = '/share-target';
    form.enctype = 'multipart/form-data';
    const input = document.createElement('input');
    input.type = 'file';
    input.name = 'files';
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(4096).fill(9)], 'IMG_2041.jpg', { type: 'image/jpeg' }));
    input.files = dt.files;
    form.append(input);
    document.body.append(form);
    form.submit();
  });
  await page.waitForURL(`${server.url}/`);
  await page.getByText('IMG_2041.jpg', { exact: true }).waitFor();
  assert.equal(await page.getByRole('tab', { name: 'File' }).getAttribute('aria-selected'), 'true');
  assert.equal(await page.locator('#chosen-size').textContent(), '4.00 KiB');
  await page.getByRole('button', { name: 'Encrypt and upload' }).click();
  assert.match(await readLink(page), /\/file\//);
});

test('a share that reaches the server (no service worker took it) is sent back to the page, which says so', async () => {
  const form = new FormData();
  form.append('files', new Blob([new Uint8Array(10)]), 'x.bin');
  const res = await fetch(`${server.url}/share-target`, { method: 'POST', body: form, redirect: 'manual' });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get('location'), '/?shared=lost');
  const page = await openPage(browser, { serviceWorkers: 'block' });
  await page.goto(`${server.url}/?shared=lost`);
  await page.getByRole('alert').filter({ hasText: 'did not reach this page' }).waitFor();
  assert.equal(new URL(page.url()).search, '', 'the flag is taken off the address');
});

test('"Share…" opens the system share sheet with the link where the browser has one', async () => {
  const page = await openPage(browser);
  // Desktop Chromium on Linux has no share sheet; the page is given the one Android's has, which records what it is handed.
  await page.addInitScript(() => {
    window.sharedWith = [];
    navigator.share = async (data) => void window.sharedWith.push(data);
    navigator.canShare = () => true;
  });
  await page.goto(`${server.url}/`);
  await page.getByLabel('Text to share').fill('to a friend');
  await page.getByRole('button', { name: 'Encrypt and share' }).click();
  const link = await readLink(page);
  await page.getByRole('button', { name: 'Share…' }).click();
  assert.deepEqual(await page.evaluate(() => window.sharedWith), [{ title: 'ferry', url: link }]);

  const plain = await openPage(browser);
  await plain.goto(`${server.url}/`);
  await plain.getByLabel('Text to share').fill('no share sheet');
  await plain.getByRole('button', { name: 'Encrypt and share' }).click();
  await readLink(plain);
  assert.equal(await plain.getByRole('button', { name: 'Share…' }).isVisible(), false, 'hidden where there is no share sheet');
});

test('an image pasted from the clipboard on the File tab is selected', async () => {
  const page = await openPage(browser);
  await page.goto(`${server.url}/`);
  await page.getByRole('tab', { name: 'File' }).click();
  // A screenshot on the clipboard arrives as a nameless image/png file in the paste event.
  await page.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10, 1, 2, 3])], '', { type: 'image/png' }));
    document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  });
  const name = page.locator('#chosen-name');
  await name.waitFor();
  assert.match(await name.textContent(), /^pasted-\d{4}-\d{2}-\d{2}T[\d-]+Z\.png$/);
  assert.equal(await page.locator('#chosen-size').textContent(), '11 bytes');
});
