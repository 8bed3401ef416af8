// Several files and folders in one link: chosen with the file picker (several at once), with
// the folder picker, or dropped on the page, they become one ZIP made in the browser on the
// fly and encrypted like any file; the recipient sees the list of files before downloading
// `<name>.zip`, which `unzip -t` and Python's zipfile accept, with every file byte for byte.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

import { downloadFrom, makeFile, openPage, readLink, setOptions, startBoth, stopBoth } from './harness.mjs';

let server;
let browser;
// Small chunks, so a ZIP of a few hundred KiB crosses several chunks (and so headers, data and
// descriptors fall across chunk boundaries).
before(async () => ({ server, browser } = await startBoth({ FERRY_LIMITS__CHUNK_SIZE: String(256 << 10) })));
after(() => stopBoth({ server, browser }));

/** What Python's zipfile finds in `path`: names, sizes, SHA-256 of each, the UTF-8 flag, testzip. */
function readZip(path) {
  const script = `
import hashlib, json, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    out = {"bad": z.testzip(), "entries": [
        {"name": i.filename, "size": i.file_size, "utf8": bool(i.flag_bits & 0x800), "stored": i.compress_type == zipfile.ZIP_STORED,
         "sha256": hashlib.sha256(z.read(i)).hexdigest()} for i in z.infolist()]}
print(json.dumps(out))`;
  return JSON.parse(execFileSync('python3', ['-c', script, path], { encoding: 'utf8' }));
}

const unzipTest = (path) => execFileSync('unzip', ['-t', path], { encoding: 'utf8' });
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

test('several files chosen at once go as one ZIP; the recipient sees the list and gets every file back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-several-'));
  const files = [await makeFile('notes.txt', 1500, { dir }), await makeFile('Grüße ✓ 日本.bin', 700000, { dir }), await makeFile('empty', 0, { dir })];
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  await writer.getByRole('tab', { name: 'File' }).click();
  await writer.locator('#file').setInputFiles(files.map((f) => f.path));
  await writer.getByText('3 files, 685 KiB, sent as one ZIP').waitFor();
  assert.equal(await writer.getByRole('list', { name: 'Files in the ZIP' }).getByRole('listitem').count(), 3);
  await setOptions(writer, { password: 'zip pw' });
  await writer.getByRole('button', { name: 'Encrypt and upload' }).click();
  const link = await readLink(writer);

  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByLabel('Password', { exact: true }).fill('zip pw');
  await reader.getByRole('button', { name: 'Unlock' }).click();
  await reader.getByRole('heading', { name: 'Shared files' }).waitFor();
  const items = await reader.getByRole('list', { name: '3 files in this ZIP' }).getByRole('listitem').allTextContents();
  assert.deepEqual(items.map((t) => t.replace(/\s+/g, ' ')), ['Grüße ✓ 日本.bin 684 KiB', 'empty 0 bytes', 'notes.txt 1.46 KiB']);
  const [download] = await Promise.all([reader.waitForEvent('download', { timeout: 120000 }), reader.getByRole('button', { name: /^Download/ }).click()]);
  await reader.getByText(/^Saved “/).waitFor({ timeout: 120000 });
  const got = { name: download.suggestedFilename(), path: await download.path() };
  assert.equal(got.name, 'files.zip');
  assert.match(unzipTest(got.path), /No errors detected/);
  const zip = readZip(got.path);
  assert.equal(zip.bad, null);
  assert.deepEqual(
    zip.entries.map((e) => [e.name, e.size, e.sha256, e.stored]),
    [...files].sort((a, b) => (a.path < b.path ? -1 : 1)).map((f) => [f.path.split('/').pop(), f.size, f.sha256, true]),
  );
  assert.ok(zip.entries.find((e) => e.name.startsWith('Grüße')).utf8, 'UTF-8 flag on a non-ASCII name');
  assert.deepEqual([...writer.errors, ...reader.errors], []);
  // The server saw none of the names.
  const names = writer.requests.map((r) => `${r.url} ${r.body?.toString('latin1') ?? ''}`).join('\n');
  for (const f of ['notes.txt', 'Grüße', 'empty']) assert.ok(!names.includes(f), `${f} reached the server`);
});

test('a folder chosen with the folder picker keeps its tree and is named after it', async () => {
  const root = mkdtempSync(join(tmpdir(), 'ferry-folder-'));
  const folder = join(root, 'holiday 2026');
  mkdirSync(join(folder, 'day 1'), { recursive: true });
  mkdirSync(join(folder, 'día 2'), { recursive: true });
  const want = new Map();
  for (let i = 0; i < 120; i++) {
    const rel = `${i % 2 ? 'day 1' : 'día 2'}/photo-${String(i).padStart(3, '0')}.jpg`;
    const bytes = Buffer.alloc(1000 + i * 37, i);
    writeFileSync(join(folder, rel), bytes);
    want.set(`holiday 2026/${rel}`, sha(bytes));
  }
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  await writer.getByRole('tab', { name: 'File' }).click();
  await writer.locator('#folder').setInputFiles(folder);
  await writer.getByText('holiday 2026.zip', { exact: true }).waitFor();
  assert.match(await writer.locator('#chosen-size').textContent(), /^120 files, /);
  await writer.getByRole('button', { name: 'Encrypt and upload' }).click();
  const link = await readLink(writer);

  const reader = await openPage(browser);
  await reader.goto(link);
  await reader.getByRole('list', { name: '120 files in this ZIP' }).waitFor();
  assert.equal(await reader.getByRole('list', { name: '120 files in this ZIP' }).getByRole('listitem').count(), 120);
  const got = await downloadFrom(reader, link);
  assert.equal(got.name, 'holiday 2026.zip');
  assert.match(unzipTest(got.path), /No errors detected/);
  const zip = readZip(got.path);
  assert.equal(zip.bad, null);
  assert.deepEqual(new Map(zip.entries.map((e) => [e.name, e.sha256])), want);
});

test('files dropped on the page go as one ZIP too', async () => {
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  // A drop as the page receives it: a DataTransfer holding two files.
  await writer.evaluate(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['first dropped file\n'], 'one.txt', { type: 'text/plain' }));
    dt.items.add(new File([new Uint8Array(5000).fill(7)], 'two.bin'));
    for (const type of ['dragenter', 'dragover', 'drop']) document.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await writer.getByText('2 files, 4.90 KiB, sent as one ZIP').waitFor();
  await writer.getByRole('button', { name: 'Encrypt and upload' }).click();
  const link = await readLink(writer);
  const got = await downloadFrom(await openPage(browser), link);
  const zip = readZip(got.path);
  assert.deepEqual(
    zip.entries.map((e) => [e.name, e.size]),
    [
      ['one.txt', 19],
      ['two.bin', 5000],
    ],
  );
});

test('two files with the same name are refused in words before anything is sent', async () => {
  const a = await makeFile('same.txt', 10);
  const b = await makeFile('same.txt', 20);
  const writer = await openPage(browser);
  await writer.goto(`${server.url}/`);
  await writer.getByRole('tab', { name: 'File' }).click();
  await writer.locator('#file').setInputFiles([a.path, b.path]);
  await writer.getByRole('button', { name: 'Encrypt and upload' }).click();
  const error = writer.getByRole('alert').filter({ hasText: 'same.txt' });
  await error.waitFor();
  assert.match(await error.textContent(), /both called “same\.txt”/);
  assert.equal(writer.requests.filter((r) => r.url.includes('/api/upload/')).length, 0);
});
