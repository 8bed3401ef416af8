// Shared text comes back exactly as it was pasted, compared as UTF-8 bytes: what the open
// screen shows, what its Copy button puts on the clipboard and what "Save as file" saves.
// Leading and trailing whitespace, tabs, blank lines, a final newline, emoji, right-to-left
// text, NUL and control characters at the end of a long text (which Qopy's padding rule would
// misread as a length), and 1 MiB of text. A textarea turns CRLF into LF; nothing else changes.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { openPage, shareText, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
before(async () => ({ server, browser } = await startBoth()));
after(() => stopBoth({ server, browser }));

const bytes = (s) => Buffer.from(s, 'utf8');

/** A 200-line Python file that starts with an indented line and ends with a newline. */
function pythonFile() {
  const lines = ['    # indented first line, as pasted from the middle of a file'];
  for (let i = 1; i < 199; i++) lines.push(i % 7 === 0 ? '' : `${'    '.repeat(i % 3)}value_${i} = compute(${i})\t# tab-separated note`);
  lines.push('if __name__ == "__main__":  ');
  return `${lines.join('\n')}\n`;
}

/** Open `link` in a fresh page; returns the text shown, copied and saved, as bytes. */
async function receive(link) {
  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.locator('#open-text-view').waitFor({ state: 'visible', timeout: 60000 });
  const shown = await reader.locator('#open-text').evaluate((el) => el.textContent);
  await reader.getByRole('button', { name: 'Copy text' }).click();
  await reader.getByText('Text copied.').waitFor();
  const copied = await reader.evaluate(() => navigator.clipboard.readText());
  const [download] = await Promise.all([reader.waitForEvent('download'), reader.getByRole('button', { name: 'Save as file' }).click()]);
  const saved = readFileSync(await download.path());
  assert.deepEqual(reader.errors, []);
  await reader.context().close();
  return { shown: bytes(shown), copied: bytes(copied), saved };
}

const CASES = [
  ['a Python file with an indented first line and a final newline', pythonFile()],
  ['leading and trailing spaces, tabs and blank lines', '  \t leading\n\n\n\tmiddle\t\n   \n trailing  \t\n\n'],
  ['only whitespace', ' \t\n  \n'],
  ['emoji and right-to-left text', '👩🏽‍💻 ferry 🚢\nمرحبا بالعالم — שלום עולם\n‏RTL mark‏ and ‎LTR mark‎\n'],
  ['a long text whose last four bytes look like a length', `${'x'.repeat(20000)}\u0000\u0001AB`],
  ['a long text ending in NUL bytes', `${'line of text\n'.repeat(1000)}\u0000\u0000\u0000\u0005`],
];

for (const [label, text] of CASES) {
  test(`exact text: ${label} comes back byte for byte`, async () => {
    const writer = await openPage(browser);
    const link = await shareText(writer, server, text);
    const got = await receive(link);
    const want = bytes(text);
    assert.ok(got.shown.equals(want), `shown: ${got.shown.length} bytes, pasted ${want.length}`);
    assert.ok(got.copied.equals(want), `copied: ${got.copied.length} bytes, pasted ${want.length}`);
    assert.ok(got.saved.equals(want), `saved: ${got.saved.length} bytes, pasted ${want.length}`);
    assert.deepEqual(writer.errors, []);
  });
}

test('exact text: CRLF typed into the textarea arrives as LF, the only change allowed', async () => {
  const writer = await openPage(browser);
  const link = await shareText(writer, server, 'one\r\ntwo\r\n');
  const got = await receive(link);
  assert.ok(got.shown.equals(bytes('one\ntwo\n')), got.shown.toString());
});

test('exact text: 1 MiB of text, counted as its UTF-8 bytes, comes back whole', async () => {
  const unit = 'ünïcödé ✓ line with some words\n';
  let text = unit.repeat(Math.floor((1 << 20) / bytes(unit).length));
  text += 'x'.repeat((1 << 20) - bytes(text).length);
  assert.equal(bytes(text).length, 1 << 20);
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  // Set as a paste sets it (Playwright's fill types a megabyte too slowly).
  await writer.getByLabel('Text to share').evaluate((el, t) => {
    el.value = t;
    el.dispatchEvent(new Event('input'));
  }, text);
  assert.match(await writer.locator('#text-count').textContent(), /^1\.00 MiB of text$/);
  await writer.getByRole('button', { name: 'Encrypt and share' }).click();
  await writer.getByRole('heading', { name: 'Your link is ready' }).waitFor({ timeout: 60000 });
  const link = await writer.getByLabel('Link', { exact: true }).inputValue();
  const got = await receive(link);
  assert.ok(got.shown.equals(bytes(text)), `shown ${got.shown.length} bytes`);
  assert.ok(got.saved.equals(bytes(text)), `saved ${got.saved.length} bytes`);
});
