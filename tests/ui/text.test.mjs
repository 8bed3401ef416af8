// Texts in a real browser: shared in one context, opened in another; with a password (right
// and wrong); quick shares opened by link and by typing the code; one-time texts behind an
// interstitial; links without their fragment, with a changed key, or gone.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';

import { linkId, openPage, shareText, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
before(async () => ({ server, browser } = await startBoth()));
after(() => stopBoth({ server, browser }));

async function shown(page) {
  await page.locator('#open-text-view').waitFor({ state: 'visible', timeout: 30000 });
  return page.locator('#open-text').textContent();
}
const error = (page) => page.locator('#open-error');

test('a text shared in one browser opens in another as text, never as markup', async () => {
  const writer = await openPage(browser);
  const text = 'Grüße, 世界 🌍\n\t<b>"not bold"</b> <img src=x onerror=alert(1)>';
  const link = await shareText(writer, server, text);
  assert.match(link, new RegExp(`^${server.url}/clip/[A-Z0-9]{10}#[A-Za-z0-9+/]{43}=$`));
  const reader = await openPage(browser);
  await reader.goto(link);
  assert.equal(await shown(reader), text);
  assert.equal(await reader.locator('#open-text b, #open-text img').count(), 0);
  assert.equal(await reader.title(), 'ferry');
  assert.deepEqual([...writer.errors, ...reader.errors], []);
});

test('a text with a password refuses a wrong password and opens with the right one', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'behind a password', { password: 'correct horse' });
  const reader = await openPage(browser);
  await reader.goto(link);
  const field = reader.getByLabel('Password', { exact: true });
  await field.fill('wrong horse');
  await reader.getByRole('button', { name: 'Unlock' }).click();
  await assert.doesNotReject(error(reader).getByText('That password is not right.').waitFor());
  assert.equal(await reader.locator('#open-text-view').isVisible(), false);
  await field.fill('  correct horse ');
  await reader.getByRole('button', { name: 'Unlock' }).click();
  assert.equal(await shown(reader), 'behind a password');
  const sent = reader.requests.filter((r) => r.url.includes(`/api/clip/${linkId(link)}`) && r.method === 'POST');
  assert.equal(sent.length, 2, 'each password was checked by the server once');
  for (const r of sent) assert.match(JSON.parse(r.body).accessCode, /^[0-9a-f]{128}$/);
});

test('a quick share shows its spoken code and opens by link and by typing the code', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'quick words', { quick: true });
  const m = link.match(/\/clip\/([A-Z0-9]{6})#([A-Z0-9]{6})$/);
  assert.ok(m, link);
  const code = await writer.locator('#res-code').textContent();
  assert.equal(code, `${m[1]} · ${m[2]}`);
  assert.match(await writer.locator('#res-rules').textContent(), /5 minutes/);

  const byLink = await openPage(browser);
  await byLink.goto(link);
  assert.equal(await shown(byLink), 'quick words');

  const byCode = await openPage(browser);
  await byCode.goto(`${server.url}/`);
  await byCode.getByLabel('Got a code or a link? Open it here').fill(`${m[1].toLowerCase()} · ${m[2].toLowerCase()}`);
  await byCode.getByRole('button', { name: 'Open', exact: true }).click();
  assert.equal(await shown(byCode), 'quick words');
  assert.equal(new URL(byCode.url()).pathname, `/clip/${m[1]}`);

  // The code without its secret asks for the secret.
  const partial = await openPage(browser);
  await partial.goto(`${server.url}/clip/${m[1]}`);
  await partial.getByLabel('The 6-character secret of the code').fill(m[2].toLowerCase());
  await partial.getByLabel('The 6-character secret of the code').press('Enter');
  assert.equal(await shown(partial), 'quick words');
});

test('a one-time text waits behind a click, then is gone for the next reader', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'read me once', { oneTime: true });
  const id = linkId(link);
  const reader = await openPage(browser);
  await reader.goto(link);
  const open = reader.getByRole('button', { name: 'Show the text' });
  await open.waitFor();
  assert.match(await reader.locator('#open-once').textContent(), /opened once/);
  const info = await fetch(`${server.url}/api/clip/${id}/info`);
  assert.equal(info.status, 200, 'opening the page spent nothing');
  assert.equal(reader.requests.filter((r) => r.url.includes('/api/file/')).length, 0);
  await open.click();
  assert.equal(await shown(reader), 'read me once');
  assert.equal((await fetch(`${server.url}/api/clip/${id}/info`)).status, 404);

  const second = await openPage(browser);
  await second.goto(link);
  await second.getByRole('heading', { name: 'This link was already opened' }).waitFor();
  assert.match(await error(second).textContent(), /has been, so its content is deleted/);
});

test('a link without its fragment is called incomplete and asks the server nothing', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'needs its key');
  const reader = await openPage(browser);
  await reader.goto(link.split('#')[0]);
  await reader.getByRole('heading', { name: 'This link is incomplete' }).waitFor();
  assert.match(await error(reader).textContent(), /lost when it was copied/);
  assert.equal(reader.requests.filter((r) => r.url.includes('/api/clip/')).length, 0);
  // Tracking junk after '&' is cut off.
  const junk = await openPage(browser);
  await junk.goto(`${link}&utm_source=chat`);
  assert.equal(await shown(junk), 'needs its key');
});

test('a changed key, a malformed id and a gone clip each get their own heading and sentence', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'original');
  const [base, secret] = link.split('#');
  const other = secret[0] === 'A' ? `B${secret.slice(1)}` : `A${secret.slice(1)}`;
  const cases = [
    [`${base}#${other}`, 'The key does not fit', /does not open this clip/],
    [`${server.url}/clip/not-an-id#x`, 'This is not a ferry link', /shape of a ferry link/],
    [`${server.url}/clip/ZZZZZZZZZZ#${secret}`, 'No such link', /nothing under this link/],
  ];
  for (const [url, heading, message] of cases) {
    const page = await openPage(browser);
    await page.goto(url);
    await page.getByRole('heading', { name: heading }).waitFor();
    assert.match(await error(page).textContent(), message, url);
    await page.context().close();
  }
});
