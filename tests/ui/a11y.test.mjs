// Look, feel and access: axe-core finds no serious or critical violation on any screen in
// either theme; screenshots at 375 and 1280 px, light and dark, go to target/ui-screenshots;
// nothing scrolls sideways at 360 px; the whole path from create to copy to open works from
// the keyboard; the theme toggle sticks; reduced motion turns transitions off.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { makeFile, openOptions, openPage, readLink, setOptions, shareFile, shareText, SHOTS, startBoth, stopBoth } from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let server;
let browser;
before(async () => {
  ({ server, browser } = await startBoth());
  mkdirSync(SHOTS, { recursive: true });
});
after(() => stopBoth({ server, browser }));

/** Serious and critical axe violations on the page as it is now. */
async function violations(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] }),
  );
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
}

const screens = {
  async create(page) {
    await page.goto(`${server.url}/`);
    await page.getByLabel('Text to share').fill('A short note for the screenshot.');
  },
  async 'create-file'(page, file) {
    await page.goto(`${server.url}/`);
    await page.getByRole('tab', { name: 'File' }).click();
    await page.locator('#file').setInputFiles(file.path);
    await setOptions(page, { password: 'x' });
  },
  async 'create-options'(page) {
    await page.goto(`${server.url}/`);
    await openOptions(page);
    await page.getByLabel('Download limit').fill('3');
  },
  async 'create-folder'(page, file) {
    await page.goto(`${server.url}/`);
    await page.getByRole('tab', { name: 'File' }).click();
    await page.locator('#file').setInputFiles([file.path, file.second]);
  },
  async 'result-deleted'(page) {
    await shareText(page, server, 'to be deleted');
    await page.getByRole('button', { name: 'Delete it now' }).click();
    await page.getByRole('button', { name: 'Click again to delete' }).click();
    await page.getByRole('heading', { name: 'Deleted' }).waitFor();
  },
  async 'open-incomplete'(page) {
    await page.goto(`${server.url}/file/ZZZZZZZZZZ#AAAAAAAAAA`);
    await page.getByRole('heading', { name: 'This link is incomplete' }).waitFor();
  },
  async 'open-consumed'(page) {
    const link = await shareText(page, server, 'once', { oneTime: true });
    await fetch(`${server.url}/api/file/${new URL(link).pathname.split('/')[2]}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    await page.goto(link);
    await page.getByRole('heading', { name: 'This link was already opened' }).waitFor();
  },
  async 'open-zip'(page, file) {
    await page.goto(`${server.url}/`);
    await page.getByRole('tab', { name: 'File' }).click();
    await page.locator('#file').setInputFiles([file.path, file.second]);
    await page.getByRole('button', { name: 'Encrypt and upload' }).click();
    const link = await readLink(page);
    await page.goto(link);
    await page.getByRole('button', { name: /^Download/ }).waitFor();
  },
  async result(page) {
    await shareText(page, server, 'for the result screen', { oneTime: true });
  },
  async 'result-quick'(page) {
    await shareText(page, server, 'quick', { quick: true });
  },
  async 'open-file'(page, file) {
    const link = await shareFile(page, server, file.path, { limit: 3 });
    await page.goto(link);
    await page.getByRole('button', { name: /^Download/ }).waitFor();
  },
  async 'open-password'(page) {
    const link = await shareText(page, server, 'locked', { password: 'pw' });
    await page.goto(link);
    await page.getByLabel('Password', { exact: true }).waitFor();
  },
  async 'open-text'(page) {
    const link = await shareText(page, server, 'Line one\nLine two, a little longer, to wrap on a phone screen.\n\n  indented');
    await page.goto(link);
    await page.locator('#open-text-view').waitFor();
  },
  async 'open-gone'(page) {
    await page.goto(`${server.url}/file/ZZZZZZZZZZ#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA`);
    await page.locator('#open-error').waitFor();
  },
  async progress(page, file) {
    await page.route('**/api/upload/chunk/**', (route) => route.abort('connectionreset'));
    await page.goto(`${server.url}/`);
    await page.getByRole('tab', { name: 'File' }).click();
    await page.locator('#file').setInputFiles(file.path);
    await page.getByRole('button', { name: 'Encrypt and upload' }).click();
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('button', { name: 'Resume' }).waitFor();
  },
};

const SCREENSHOTS = new Set(Object.keys(screens));

for (const colorScheme of ['light', 'dark']) {
  test(`no serious or critical axe violation on any screen (${colorScheme}), screenshots at 375 and 1280 px`, async () => {
    const file = await makeFile('holiday photos.zip', 300000);
    file.second = (await makeFile('notes – März.txt', 2000, { dir: file.dir })).path;
    const found = [];
    for (const [name, reach] of Object.entries(screens)) {
      for (const width of [375, 1280]) {
        const page = await openPage(browser, { colorScheme, viewport: { width, height: 900 }, bypassCSP: true });
        await reach(page, file);
        if (SCREENSHOTS.has(name)) await page.screenshot({ path: join(SHOTS, `${name}-${width}-${colorScheme}.png`), fullPage: true });
        if (width === 375) {
          for (const v of await violations(page)) found.push(`${name}: ${v}`);
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 0, `${name} scrolls sideways by ${overflow}px at 375px`);
        }
        assert.deepEqual(page.errors, [], name);
        await page.context().close();
      }
    }
    assert.deepEqual(found, []);
  });
}

test('nothing scrolls sideways on a 360 px phone', async () => {
  const file = await makeFile('a-file-with-a-rather-long-name-that-must-wrap-somewhere-sensible.tar.gz', 1000);
  for (const name of ['create', 'create-file', 'result', 'open-file', 'open-text']) {
    const page = await openPage(browser, { viewport: { width: 360, height: 740 } });
    await screens[name](page, file);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name} scrolls sideways by ${overflow}px`);
    await page.context().close();
  }
});

/** Press Tab until `id` has focus (at most `limit` times). */
async function tabTo(page, id, limit = 30) {
  for (let i = 0; i < limit; i++) {
    if ((await page.evaluate(() => document.activeElement?.id)) === id) return;
    await page.keyboard.press('Tab');
  }
  assert.fail(`#${id} was not reached with the Tab key`);
}

test('keyboard only: choose a file, share it, copy the link, open it and download', async () => {
  const file = await makeFile('keyboard.txt', 5000);
  const page = await openPage(browser);
  // Listening first: Playwright intercepts file choosers only once someone listens.
  const chooser = new Promise((resolve) => page.once('filechooser', resolve));
  await page.goto(`${server.url}/`);
  await tabTo(page, 'tab-text');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'tab-file');
  assert.equal(await page.getByRole('tab', { name: 'File' }).getAttribute('aria-selected'), 'true');
  assert.ok(await page.getByRole('tabpanel', { name: 'File' }).isVisible());
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'drop', 'the drop zone is reachable');
  await page.keyboard.press('Enter');
  await (await chooser).setFiles(file.path);
  await page.locator('#chosen').waitFor();
  // The options are folded; Enter on the disclosure unfolds them.
  await tabTo(page, 'options-toggle');
  await page.keyboard.press('Enter');
  await tabTo(page, 'once');
  await page.keyboard.press('Space');
  await tabTo(page, 'share');
  await page.keyboard.press('Enter');
  const link = await readLink(page);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'result-title', 'focus moves to the result');
  await tabTo(page, 'res-copy');
  await page.keyboard.press('Enter');
  await page.getByText('Link copied.').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), link);

  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByRole('button', { name: /^Download/ }).waitFor();
  assert.match(await reader.evaluate(() => document.activeElement.textContent), /^Download/, 'the download button has focus');
  const [download] = await Promise.all([reader.waitForEvent('download'), reader.keyboard.press('Enter')]);
  assert.equal(download.suggestedFilename(), 'keyboard.txt');
  assert.equal(await download.failure(), null);
});

test('the theme toggle cycles system, light and dark and is remembered', async () => {
  const page = await openPage(browser, { colorScheme: 'dark' });
  await page.goto(`${server.url}/`);
  const theme = () => page.evaluate(() => document.documentElement.dataset.theme ?? 'system');
  const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(await theme(), 'system');
  const dark = await background();
  await page.getByRole('button', { name: /^Theme/ }).click();
  assert.equal(await theme(), 'light');
  assert.notEqual(await background(), dark);
  await page.reload();
  assert.equal(await theme(), 'light', 'remembered across a reload');
  await page.getByRole('button', { name: /^Theme/ }).click();
  assert.equal(await theme(), 'dark');
  await page.getByRole('button', { name: /^Theme/ }).click();
  assert.equal(await theme(), 'system');
});

test('reduced motion turns transitions off', async () => {
  for (const [reducedMotion, moving] of [['reduce', false], ['no-preference', true]]) {
    const page = await openPage(browser, { reducedMotion });
    await page.goto(`${server.url}/`);
    const duration = await page.evaluate(() => getComputedStyle(document.querySelector('#share')).transitionDuration);
    assert.equal(duration !== '0s', moving, `${reducedMotion}: ${duration}`);
    await page.context().close();
  }
});
