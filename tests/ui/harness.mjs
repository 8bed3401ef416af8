// What every browser test shares: the real ferry binary started on a free loopback port with
// a fresh data directory (FERRY_BIN, else target/debug/ferry), Debian's Chromium driven by
// playwright-core, pages that record console errors and every request they make, and files of
// known content written to disk in streaming fashion (never whole in this process's memory).

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { chromium } from 'playwright-core';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const CHROMIUM = process.env.FERRY_TEST_CHROMIUM || '/usr/bin/chromium';
export const SHOTS = join(ROOT, 'target', 'ui-screenshots');

/** Start ferry; resolves once /health answers. `env` adds FERRY_* settings. */
export async function startServer(env = {}) {
  const bin = process.env.FERRY_BIN || join(ROOT, 'target', 'debug', 'ferry');
  if (!existsSync(bin)) throw new Error(`no ferry binary at ${bin}: run cargo build (or set FERRY_BIN)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-ui-'));
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      FERRY_DATA_DIR: dataDir,
      FERRY_BIND: '127.0.0.1:0',
      FERRY_LOG__FORMAT: 'json',
      FERRY_LOG__LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs = [];
  let buffered = '';
  const addr = await new Promise((resolveAddr, reject) => {
    const onData = (data) => {
      buffered += data;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        logs.push(line);
        try {
          const entry = JSON.parse(line);
          if (entry.fields?.message === 'listening') resolveAddr(entry.fields.addr);
        } catch {
          // not JSON: kept in logs
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`ferry exited (${code}) before listening:\n${logs.join('\n')}`)));
  });
  const url = `http://${addr}`;
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${url}/health`).then((r) => r.ok).catch(() => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    dataDir,
    logs,
    child,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
    /**
     * Every stored clip's content (ciphertext) as `{ id, files }`, the files in content order:
     * a one-request clip is one file under blobs/clips; a chunked one is its chunk files, which
     * stay where they landed under blobs/chunks/<upload>, in chunk order.
     */
    clipContents() {
      const out = [];
      const walk = (dir) => {
        for (const e of readdirSync(dir, { withFileTypes: true })) {
          const p = join(dir, e.name);
          if (e.isDirectory()) walk(p);
          else out.push({ id: p, files: [p] });
        }
      };
      const clips = join(dataDir, 'blobs', 'clips');
      if (existsSync(clips)) walk(clips);
      const chunks = join(dataDir, 'blobs', 'chunks');
      if (existsSync(chunks)) {
        for (const upload of readdirSync(chunks)) {
          const dir = join(chunks, upload);
          const files = readdirSync(dir)
            .filter((n) => !n.startsWith('.'))
            .sort((x, y) => parseInt(x, 10) - parseInt(y, 10))
            .map((n) => join(dir, n));
          out.push({ id: dir, files });
        }
      }
      return out;
    },
  };
}

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-features=Translate,OptimizationHints,MediaRouter',
];

export async function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** What a test file's `before` starts: a fresh server (with `env`) and a browser. */
export async function startBoth(env = {}) {
  return { server: await startServer(env), browser: await launch() };
}

/** What its `after` stops. */
export async function stopBoth({ server, browser }) {
  await browser?.close();
  await server?.stop();
}

/**
 * A page in a fresh context that keeps every request (url, method, headers and, with `capture`,
 * the body) and every console error. `page.requests` and `page.errors` are filled as it goes.
 */
export async function openPage(browser, { capture = true, ...options } = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  await context.grantPermissions(['clipboard-read', 'clipboard-write']).catch(() => {});
  const page = await context.newPage();
  page.requests = [];
  page.errors = [];
  // Bodies are kept only when asked: a test moving hundreds of MiB must not copy them here.
  context.on('request', (req) => {
    page.requests.push({ url: req.url(), method: req.method(), headers: req.headers(), body: capture ? req.postDataBuffer() : null });
  });
  page.on('console', (msg) => {
    // A refused request is logged by the browser as a console error; the tests check answers.
    if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) page.errors.push(msg.text());
  });
  page.on('pageerror', (err) => page.errors.push(String(err)));
  return page;
}

/** Write `size` random bytes (or `fill` bytes) to a temp file; returns { path, sha256, size }. */
export async function makeFile(name, size, { dir = mkdtempSync(join(tmpdir(), 'ferry-file-')), fill = null } = {}) {
  const path = join(dir, name);
  const out = createWriteStream(path);
  const hash = createHash('sha256');
  const block = 1 << 20;
  for (let done = 0; done < size; ) {
    const n = Math.min(block, size - done);
    const bytes = fill === null ? randomBytes(n) : Buffer.alloc(n, fill);
    hash.update(bytes);
    if (!out.write(bytes)) await once(out, 'drain');
    done += n;
  }
  out.end();
  await once(out, 'finish');
  return { path, dir, size, sha256: hash.digest('hex') };
}

export async function sha256File(path) {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece);
  return hash.digest('hex');
}

export const fileSize = (path) => statSync(path).size;
export const randomHex = (n) => randomBytes(n).toString('hex');

/** Wait until `fn()` is truthy (polling), or fail after `ms`. */
export async function until(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Unfold the create form's options (a disclosure, folded at first), as a person clicks it. */
export async function openOptions(page) {
  const disclosure = page.locator('#options-more');
  if (!(await disclosure.evaluate((d) => d.open))) await page.getByText('Options', { exact: true }).click();
}

/** Fill the create form's options. */
export async function setOptions(page, { oneTime, limit, password, expiry, quick } = {}) {
  if (quick) await page.getByLabel('Quick share').check();
  if (expiry || oneTime || limit || password) await openOptions(page);
  if (expiry) await page.getByLabel('Expires after').selectOption(expiry);
  if (oneTime) await page.getByLabel('One-time').check();
  if (limit) await page.getByLabel('Download limit').fill(String(limit));
  if (password) await page.getByLabel('Password (optional)').fill(password);
}

/** Share text from the create page; returns the link shown. */
export async function shareText(page, server, text, options = {}) {
  await page.goto(`${server.url}/`);
  await page.getByRole('tab', { name: 'Text' }).click();
  await page.getByLabel('Text to share').fill(text);
  await setOptions(page, options);
  await page.getByRole('button', { name: 'Encrypt and share' }).click();
  return readLink(page);
}

/** Share a file (a path on disk) from the create page; returns the link shown. */
export async function shareFile(page, server, path, options = {}) {
  await page.goto(`${server.url}/`);
  await page.getByRole('tab', { name: 'File' }).click();
  await page.locator('#file').setInputFiles(path);
  await setOptions(page, options);
  await page.getByRole('button', { name: 'Encrypt and upload' }).click();
  return readLink(page, options.timeout);
}

export async function readLink(page, timeout = 60000) {
  await page.getByRole('heading', { name: 'Your link is ready' }).waitFor({ timeout });
  return page.getByLabel('Link', { exact: true }).inputValue();
}

/** Open a file link and download it; returns { path, name } of the saved file. */
export async function downloadFrom(page, link, { password } = {}) {
  await page.goto(link);
  if (password) {
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Unlock' }).click();
  }
  const button = page.getByRole('button', { name: /^Download/ });
  await button.waitFor();
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120000 }), button.click()]);
  const path = await download.path();
  await page.getByText(/^Saved “/).waitFor({ timeout: 120000 });
  return { path, name: download.suggestedFilename(), download };
}

/** The id in a ferry link. */
export const linkId = (link) => new URL(link).pathname.split('/')[2];
