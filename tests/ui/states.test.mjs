// Honest states, as a person sees them: the recipient is told what the server knows (kind,
// size, expiry, one-time or downloads left, that the sender set a password) before the password
// box; a link whose key is missing or cut short is called incomplete before anything is asked;
// a link that cannot be opened has a heading saying which case it is — expired, already opened,
// deleted by the sender, or no such link; and one-time and a download limit exclude each other
// visibly on the create form.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { makeFile, openOptions, openPage, shareFile, shareText, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
before(async () => ({ server, browser } = await startBoth()));
after(() => stopBoth({ server, browser }));

const detail = async (page, term) => page.locator('#open-details div', { has: page.locator('dt', { hasText: term }) }).locator('dd').textContent();

test('before the password box the recipient sees kind, size, expiry, one-time and that the sender set a password', async () => {
  const file = await makeFile('report.pdf', 300000);
  const link = await shareFile(await openPage(browser), server, file.path, { password: 'correct horse', oneTime: true });
  const reader = await openPage(browser);
  await reader.goto(link);
  const box = reader.getByLabel('Password', { exact: true });
  await box.waitFor();
  assert.equal(await detail(reader, 'What'), 'File');
  assert.equal(await detail(reader, 'Size'), '293 KiB', 'the exact plaintext size, from the stream length');
  assert.match(await detail(reader, 'Expires'), /\(in \d+ hours\)/);
  assert.match(await detail(reader, 'Opens'), /Once/);
  assert.equal(await detail(reader, 'Password'), 'The sender set a password');
  // The details come first on the page, the password box after them.
  const [details, form] = await Promise.all([reader.locator('#open-details').boundingBox(), box.boundingBox()]);
  assert.ok(details.y < form.y);
  await box.fill('correct horse');
  await reader.getByRole('button', { name: 'Unlock' }).click();
  await reader.getByRole('button', { name: /^Download/ }).waitFor();
  assert.equal(await detail(reader, 'Name'), 'report.pdf');
});

test('a text limited to three downloads shows how many are left before anything is fetched', async () => {
  const link = await shareText(await openPage(browser), server, 'counted', { limit: 3 });
  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByRole('button', { name: 'Show the text' }).waitFor();
  assert.equal(await detail(reader, 'What'), 'Text');
  assert.equal(await detail(reader, 'Size'), 'Short (under 10 KiB)');
  assert.equal(await detail(reader, 'Downloads left'), '3');
});

test('a link whose key was cut short is called incomplete before any password is asked or anything fetched', async () => {
  const file = await makeFile('cut.txt', 1000);
  const link = await shareFile(await openPage(browser), server, file.path, { password: 'pw' });
  const textLink = await shareText(await openPage(browser), server, 'cut me', { password: 'pw' });
  for (const cut of [link.slice(0, -5), link.split('#')[0], `${link.split('#')[0]}#`, textLink.slice(0, -1), textLink.split('#')[0]]) {
    const reader = await openPage(browser);
    await reader.goto(cut);
    await reader.getByRole('heading', { name: 'This link is incomplete' }).waitFor();
    assert.match(await reader.locator('#open-error').textContent(), /part of it was lost when it was copied/i);
    assert.equal(await reader.getByLabel('Password', { exact: true }).isVisible(), false, cut);
    assert.equal(reader.requests.filter((r) => r.url.includes('/api/')).length, 0, `${cut} asked the server`);
    await reader.context().close();
  }
});

test('already opened, deleted and never existing links each get their own heading', async () => {
  const writer = await openPage(browser);
  const once = await shareText(writer, server, 'read once', { oneTime: true });
  const reader = await openPage(browser);
  await reader.goto(once);
  await reader.getByRole('button', { name: 'Show the text' }).click();
  await reader.locator('#open-text-view').waitFor();

  const deleted = await shareText(writer, server, 'regret');
  await writer.getByRole('button', { name: 'Delete it now' }).click();
  await writer.getByRole('button', { name: 'Click again to delete' }).click();
  await writer.getByRole('heading', { name: 'Deleted' }).waitFor();

  const [base, key] = once.split('#');
  const cases = [
    [once, 'This link was already opened', 'clip_consumed'],
    [deleted, 'This link was deleted', 'clip_deleted'],
    [`${base.slice(0, -10)}ZZZZZZZZZZ#${key}`, 'No such link', 'clip_not_found'],
  ];
  for (const [link, heading, code] of cases) {
    const page = await openPage(browser);
    await page.goto(link);
    await page.getByRole('heading', { name: heading }).waitFor();
    assert.equal(await page.title(), `${heading} · ferry`);
    // Nothing of a live link is left on the card: no details, no buttons, no empty gap above the sentence.
    for (const id of ['open-details', 'open-go', 'open-password-form', 'open-loading']) assert.equal(await page.locator(`#${id}`).isVisible(), false, id);
    const info = await fetch(`${server.url}/api/clip/${new URL(link).pathname.split('/')[2]}/info`);
    assert.equal(info.status, 404, 'Qopy clients still get 404');
    assert.equal((await info.json()).code, code);
    await page.context().close();
  }
});

test('an expired link is called expired (the answer the server gives after the clip expired)', async () => {
  // Expiry itself is exact on the server and tested there with an injected clock; here the
  // page is shown the 404 it gives for an expired clip, which cannot be waited for in a test.
  const link = await shareText(await openPage(browser), server, 'soon gone');
  const page = await openPage(browser);
  await page.route('**/api/clip/*/info', (route) =>
    route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: 'Clip not found', message: 'This clip expired.', code: 'clip_expired' }) }),
  );
  await page.goto(link);
  await page.getByRole('heading', { name: 'This link has expired' }).waitFor();
  assert.match(await page.locator('#open-error').textContent(), /that time is over/);
});

test('one-time and a download limit exclude each other, visibly', async () => {
  const page = await openPage(browser);
  await page.goto(`${server.url}/`);
  await openOptions(page);
  const once = page.getByLabel('One-time');
  const limit = page.getByLabel('Download limit');
  await once.check();
  assert.ok(await limit.isDisabled());
  const faded = (selector) => page.locator(selector).evaluate((el) => getComputedStyle(el).opacity);
  assert.equal(await faded('#limit-field > label'), '0.55');
  assert.match(await page.locator('#limit-hint').textContent(), /untick One-time/);
  await once.uncheck();
  await limit.fill('4');
  assert.ok(await once.isDisabled());
  assert.equal(await faded('#once-field > label'), '0.55');
  assert.equal(await faded('#limit-field > label'), '1');
  assert.ok(await page.getByText('Clear the download limit to choose one-time.').isVisible());
  assert.match(await page.locator('#options-summary').textContent(), /4 downloads/);
  await limit.fill('');
  assert.ok(await once.isEnabled());
});

test('on a 390×844 phone the share button is in view without scrolling, and the options disclosure remembers its state', async () => {
  const page = await openPage(browser, { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  await page.goto(`${server.url}/`);
  const share = page.getByRole('button', { name: 'Encrypt and share' });
  await share.waitFor();
  const inView = async () => {
    const box = await share.boundingBox();
    return box.y >= 0 && box.y + box.height <= 844;
  };
  assert.ok(await inView(), 'Text tab');
  await page.getByRole('tab', { name: 'File' }).click();
  assert.ok(await page.getByRole('button', { name: 'Encrypt and upload' }).isVisible());
  const box = await page.getByRole('button', { name: 'Encrypt and upload' }).boundingBox();
  assert.ok(box.y + box.height <= 844, 'File tab');
  assert.equal(await page.evaluate(() => window.scrollY), 0);
  // Open the options, reload: they are open again; close them, reload: closed.
  await openOptions(page);
  await page.reload();
  await page.getByLabel('Download limit').waitFor();
  assert.ok(await page.getByLabel('Download limit').isVisible());
  await page.getByText('Options', { exact: true }).click();
  await page.reload();
  await page.getByRole('button', { name: 'Encrypt and share' }).waitFor();
  assert.equal(await page.getByLabel('Download limit').isVisible(), false);
  assert.ok(await inView(), 'after reload');
});
