#!/usr/bin/env node
// Browser upload/download benchmark (owned by the web-performance work on the UI's transfer
// path: static/js/{seal-worker,send-worker,chunk-xhr,workers,api,download}.js, static/sw.js,
// static/js/crypto/v4.js and upload.js's ChunkUploader/fileChunks). A benchmark, not a test.
//
// Run (needs a release build, Chromium and the browser suite's npm packages):
//   cargo build --release && (cd tests/ui && npm ci)
//   node scripts/bench-browser.mjs [--bin target/release/ferry] [--size 200] [--rounds 3]
//        [--playwright 1] [--chromium /usr/bin/chromium] [--check]
//
// It starts the ferry binary on 127.0.0.1:0 with a fresh temp data dir (rate limits off, the
// largest upload raised to 4 GiB so a 1 GiB V4 stream fits), writes a random file of --size
// MiB to disk by streaming, and then, per round, in this order:
//   (a) api-up:   the three-step API from Node (initiate, 4 parallel chunk senders with
//                 X-Chunk-Sha256, complete), the same number of bytes in the same chunk lengths
//                 as the browser's V4 stream (hashes computed before the clock starts): the ceiling;
//   (b) ui-up:    the UI in Chromium driven over a bare DevTools-protocol pipe (no Network domain,
//                 no request capture): the file set on #file, the share button clicked, timed to
//                 the result screen's link; the summed RSS of every Chromium process is sampled
//                 every 100 ms (growth = peak - RSS just before the click), and their CPU time
//                 (user + system, /proc) is reported per MiB, a figure a loaded machine bends less;
//   (c) api-down: POST /api/file/{id} of the clip made in (b) from Node, streamed and discarded;
//   (d) ui-down:  the open screen (/file/{id}#secret) in a fresh browser context, Download
//                 clicked, timed to both the page's "Saved" message and the download manager's
//                 completion (Browser.setDownloadBehavior to a temp dir); the saved file's size
//                 and SHA-256 are checked after the clock stops; Chromium's CPU per MiB as in (b).
// Before (b) and (d) the script waits for the browser to be idle (a new window starts Chromium's
// own WebUI renderers, a second or more of CPU that must not land in a measurement).
// Then --playwright N rounds (default 1) of (b) and (d) through Playwright's normal page
// (playwright-core, whose Network instrumentation copies request bodies): reported apart,
// never in the ratios. MiB/s is file MiB (2^20 plaintext bytes) per second, in every column.
// The table shows each round, then the medians and the ratios ui/api of the medians against
// the targets (upload >= 0.5, download >= 0.8, RSS growth < 300 MiB). With --check the exit
// code is 1 when a target is missed. Other processes on the machine skew the figures: the load
// average is printed per round.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import http from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { descendants } from '../tests/ui/procs.mjs';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const MIB = 1048576;
const TARGET = { upload: 0.5, download: 0.8, rssMiB: 300 };

function parseArgs(argv) {
  const opts = { size: 200, rounds: 3, bin: join(ROOT, 'target', 'release', 'ferry'), check: false, playwright: 1, chromium: process.env.FERRY_TEST_CHROMIUM || '/usr/bin/chromium' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--size') opts.size = Number(value());
    else if (a === '--rounds') opts.rounds = Number(value());
    else if (a === '--bin') opts.bin = resolve(value());
    else if (a === '--playwright') opts.playwright = Number(value());
    else if (a === '--chromium') opts.chromium = value();
    else if (a === '--check') opts.check = true;
    else if (a === '--help' || a === '-h') {
      console.log(readFileSync(new URL(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (!(opts.size > 0) || !(opts.rounds >= 1) || !(opts.playwright >= 0)) throw new Error('--size must be > 0, --rounds >= 1, --playwright >= 0');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
process.env.FERRY_TEST_CHROMIUM = opts.chromium;
// The browser suite's helpers: the bare CDP client and Chromium's flags (playwright-core is
// resolved from tests/ui/node_modules through them).
const { rawBrowser } = await import('../tests/ui/rawcdp.mjs');
const { CHROMIUM_ARGS } = await import('../tests/ui/harness.mjs');
const { chunkPlan } = await import('../static/js/crypto/v4.js');

// ---------------------------------------------------------------------------------------------
// The server

async function startServer(bin) {
  if (!existsSync(bin)) throw new Error(`no ferry binary at ${bin}: cargo build --release (or --bin)`);
  const dataDir = mkdtempSync(join(tmpdir(), 'ferry-bench-browser-'));
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      FERRY_DATA_DIR: dataDir,
      FERRY_BIND: '127.0.0.1:0',
      FERRY_LOG__FORMAT: 'json',
      FERRY_LOG__LEVEL: 'info',
      FERRY_RATE_LIMITS: 'off',
      FERRY_LIMITS__MAX_UPLOAD_SIZE: '4GiB',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let buffered = '';
  const addr = await new Promise((resolveAddr, reject) => {
    const onData = (data) => {
      buffered += data;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const entry = JSON.parse(line);
          if (entry.fields?.message === 'listening' && entry.fields.addr) resolveAddr(entry.fields.addr);
          if (entry.level === 'ERROR') console.error(`ferry: ${line}`);
        } catch {
          // not JSON
        }
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`ferry exited (${code}) before listening`)));
  });
  const url = `http://${addr}`;
  for (let i = 0; i < 100; i++) {
    if (await fetch(`${url}/health`).then((r) => r.ok).catch(() => false)) break;
    await sleep(100);
  }
  return {
    url,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The file, and the API side (Node)

async function makeFile(path, size) {
  const out = createWriteStream(path);
  const hash = createHash('sha256');
  for (let done = 0; done < size; ) {
    const bytes = randomBytes(Math.min(MIB, size - done));
    hash.update(bytes);
    if (!out.write(bytes)) await once(out, 'drain');
    done += bytes.length;
  }
  out.end();
  await once(out, 'finish');
  return hash.digest('hex');
}

async function sha256File(path) {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path, { highWaterMark: MIB })) hash.update(piece);
  return hash.digest('hex');
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One HTTP request from Node; `body` a Buffer or undefined. Resolves {status, body} or, with `discard`, {status, bytes}. */
function httpRequest(url, { method = 'GET', headers = {}, body, discard = false } = {}) {
  return new Promise((resolveReq, reject) => {
    const req = http.request(url, { method, headers: { ...headers, ...(body ? { 'content-length': body.length } : {}) }, agent }, (res) => {
      if (discard && res.statusCode === 200) {
        let bytes = 0;
        res.on('data', (d) => (bytes += d.length));
        res.on('end', () => resolveReq({ status: res.statusCode, bytes }));
      } else {
        const parts = [];
        res.on('data', (d) => parts.push(d));
        res.on('end', () => resolveReq({ status: res.statusCode, body: Buffer.concat(parts).toString() }));
      }
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function postJson(url, body) {
  const r = await httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)) });
  if (r.status < 200 || r.status >= 300) throw new Error(`POST ${url}: ${r.status} ${r.body}`);
  return JSON.parse(r.body || '{}');
}

/**
 * The API side sends a stream as long as the browser's V4 stream, cut into the same chunk
 * lengths: chunk c is the file's bytes from (stream offset mod file size), wrapping round.
 */
class ApiSource {
  constructor(path, size, plan) {
    this.path = path;
    this.size = size;
    this.plan = plan;
    this.offsets = [];
    let at = 0;
    for (let c = 0; c < plan.totalChunks; c++) {
      this.offsets.push(at);
      at += plan.chunkLength(c);
    }
    this.hashes = null;
  }

  async read(fh, c, buf) {
    const length = this.plan.chunkLength(c);
    let filled = 0;
    let pos = this.offsets[c] % this.size;
    while (filled < length) {
      const n = Math.min(length - filled, this.size - pos);
      const { bytesRead } = await fh.read(buf, filled, n, pos);
      if (bytesRead <= 0) throw new Error('short read');
      filled += bytesRead;
      pos = (pos + bytesRead) % this.size;
    }
    return buf.subarray(0, length);
  }

  /** Every chunk's SHA-256, once, before any clock starts. */
  async prepare() {
    const fh = await open(this.path, 'r');
    const buf = Buffer.allocUnsafe(this.plan.chunkSize + 65536);
    this.hashes = [];
    try {
      for (let c = 0; c < this.plan.totalChunks; c++) this.hashes.push(createHash('sha256').update(await this.read(fh, c, buf)).digest('hex'));
    } finally {
      await fh.close();
    }
  }
}

/** (a): initiate, 4 parallel senders, complete; seconds from initiate to complete's answer. */
async function apiUpload(url, source, senders = 4) {
  const plan = source.plan;
  const t0 = performance.now();
  const init = await postJson(`${url}/api/upload/initiate`, {
    filename: 'file',
    filesize: plan.streamLength,
    totalChunks: plan.totalChunks,
    mimeType: 'application/octet-stream',
    contentType: 'file',
    expiration: '1hr',
  });
  if (init.totalChunks !== plan.totalChunks) throw new Error(`initiate: totalChunks ${init.totalChunks} != ${plan.totalChunks}`);
  let next = 0;
  const sender = async () => {
    const fh = await open(source.path, 'r');
    const buf = Buffer.allocUnsafe(plan.chunkSize + 65536);
    try {
      for (;;) {
        const c = next++;
        if (c >= plan.totalChunks) return;
        const body = await source.read(fh, c, buf);
        const r = await httpRequest(`${url}/api/upload/chunk/${init.uploadId}/${c}`, {
          method: 'POST',
          headers: { 'content-type': 'application/octet-stream', 'x-chunk-sha256': source.hashes[c] },
          body,
        });
        if (r.status !== 200) throw new Error(`chunk ${c}: ${r.status} ${r.body}`);
      }
    } finally {
      await fh.close();
    }
  };
  await Promise.all(Array.from({ length: senders }, sender));
  const done = await postJson(`${url}/api/upload/complete/${init.uploadId}`, {});
  const seconds = (performance.now() - t0) / 1000;
  if (done.size !== undefined && done.size !== plan.streamLength) throw new Error(`complete: size ${done.size} != ${plan.streamLength}`);
  return { seconds, clipId: done.clipId };
}

/** (c): POST /api/file/{id}, streamed and discarded. */
async function apiDownload(url, id, expected) {
  const t0 = performance.now();
  const r = await httpRequest(`${url}/api/file/${id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from('{}'), discard: true });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 200 || r.bytes !== expected) throw new Error(`download ${id}: status ${r.status}, ${r.bytes} bytes (expected ${expected})`);
  return { seconds };
}

// ---------------------------------------------------------------------------------------------
// Browser memory


/** Summed RSS (bytes) of `root` and every process below it, except the `skip` subtree. */
function treeRss(root, skip = null) {
  const skipped = skip ? new Set([skip, ...descendants(skip)]) : new Set();
  let rss = 0;
  for (const pid of [root, ...descendants(root)]) {
    if (skipped.has(pid)) continue;
    try {
      rss += Number(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Rss:\s+(\d+)/m)[1]) * 1024;
    } catch {
      // gone meanwhile (or not ours)
    }
  }
  return rss;
}

/** CPU seconds (user + system) of `root` and every process below it. */
function treeCpu(root) {
  let cpu = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpu += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return cpu;
}

/**
 * Wait (at most 20 s) until the browser is idle: a new window starts Chromium's own WebUI
 * renderers, whose second or so of CPU must not land in a measurement.
 */
async function settle(root) {
  const end = Date.now() + 20000;
  let before = treeCpu(root);
  while (Date.now() < end) {
    await sleep(300);
    const now = treeCpu(root);
    if (now - before < 0.03) return;
    before = now;
  }
}

async function sampledRss(measure, work) {
  const base = measure();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, measure())), 100);
  try {
    const result = await work();
    return { result, base, peak: Math.max(peak, measure()) };
  } finally {
    clearInterval(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// The UI over bare CDP

/** Resolve inside the page once `expression` is truthy (checked every 5 ms: no 100 ms polling skew). */
const whenTrue = (page, expression, ms = 1800000) =>
  page.evaluate(`new Promise((resolve, reject) => {
    const end = Date.now() + ${ms};
    const t = setInterval(() => {
      let v = false;
      try { v = Boolean(${expression}); } catch {}
      if (v) { clearInterval(t); resolve(true); }
      else if (Date.now() > end) { clearInterval(t); reject(new Error('timed out: ' + ${JSON.stringify(expression)})); }
    }, 5);
  })`);

const FORM_ERROR = `document.getElementById('form-error')?.textContent`;

async function uiUploadCdp(browser, url, path) {
  const page = await browser.newPage();
  await page.goto(`${url}/`);
  await page.setFile('#file', path);
  await whenTrue(page, `document.getElementById('chosen') && !document.getElementById('chosen').hidden`);
  await settle(browser.pid);
  const cpu0 = treeCpu(browser.pid);
  const measured = await sampledRss(
    () => treeRss(browser.pid),
    async () => {
      const t0 = performance.now();
      await page.click('#share');
      await whenTrue(page, `document.getElementById('res-link')?.value || ${FORM_ERROR}`);
      const seconds = (performance.now() - t0) / 1000;
      const link = await page.evaluate(`document.getElementById('res-link')?.value`);
      if (!link) throw new Error(`UI upload failed: ${await page.evaluate(FORM_ERROR)}`);
      return { seconds, link };
    },
  );
  const cpu = treeCpu(browser.pid) - cpu0;
  await browser.send('Target.disposeBrowserContext', { browserContextId: page.browserContextId });
  return { ...measured.result, base: measured.base, peak: measured.peak, cpu };
}

async function uiDownloadCdp(browser, link, downloads, expected) {
  const page = await browser.newPage();
  await browser.send('Browser.setDownloadBehavior', { behavior: 'allowAndName', downloadPath: downloads, eventsEnabled: true, browserContextId: page.browserContextId });
  await page.goto(link);
  await whenTrue(page, `!document.getElementById('open-go').hidden`);
  await settle(browser.pid);
  const begin = browser.waitEvent('Browser.downloadWillBegin', () => true, 1800000);
  const cpu0 = treeCpu(browser.pid);
  const t0 = performance.now();
  await page.click('#open-go');
  const { guid } = await begin;
  const progress = await browser.waitEvent('Browser.downloadProgress', (p) => p.guid === guid && p.state !== 'inProgress', 1800000);
  await whenTrue(page, `document.getElementById('open-done')?.textContent.startsWith('Saved')`);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = treeCpu(browser.pid) - cpu0;
  await browser.send('Target.disposeBrowserContext', { browserContextId: page.browserContextId });
  const saved = join(downloads, guid);
  if (progress.state !== 'completed') throw new Error(`download ${progress.state}`);
  const size = statSync(saved).size;
  const sha = await sha256File(saved);
  rmSync(saved, { force: true });
  if (size !== expected.size || sha !== expected.sha256) throw new Error(`downloaded ${size} bytes, sha ${sha}: not the file`);
  return { seconds, cpu };
}

// ---------------------------------------------------------------------------------------------
// The UI through Playwright's normal page

async function playwrightRound(url, path, expected, serverPid) {
  const { chromium } = await import('../tests/ui/node_modules/playwright-core/index.mjs');
  const browser = await chromium.launch({ executablePath: opts.chromium, args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    await page.goto(`${url}/`);
    await page.locator('#file').setInputFiles(path);
    await settle(process.pid);
    const up = await sampledRss(
      () => treeRss(process.pid, serverPid),
      async () => {
        const t0 = performance.now();
        await page.locator('#share').click();
        await page.waitForFunction(() => document.getElementById('res-link')?.value || document.getElementById('form-error')?.textContent, null, { timeout: 1800000, polling: 5 });
        return { seconds: (performance.now() - t0) / 1000, link: await page.locator('#res-link').inputValue() };
      },
    );
    if (!up.result.link) throw new Error(`UI upload (Playwright) failed: ${await page.evaluate(FORM_ERROR)}`);
    await context.close();
    const reader = await (await browser.newContext({ acceptDownloads: true })).newPage();
    await reader.goto(up.result.link);
    await reader.locator('#open-go').waitFor();
    await settle(process.pid);
    const t0 = performance.now();
    const [download] = await Promise.all([reader.waitForEvent('download', { timeout: 1800000 }), reader.locator('#open-go').click()]);
    const saved = await download.path();
    await reader.waitForFunction(() => document.getElementById('open-done')?.textContent.startsWith('Saved'), null, { timeout: 1800000, polling: 5 });
    const downSeconds = (performance.now() - t0) / 1000;
    if (statSync(saved).size !== expected.size || (await sha256File(saved)) !== expected.sha256) throw new Error('Playwright download: not the file');
    return { up: up.result.seconds, upGrowth: up.peak - up.base, down: downSeconds };
  } finally {
    await browser.close();
  }
}

// ---------------------------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const f1 = (x) => x.toFixed(1);
const pad = (s, n) => String(s).padStart(n);

async function main() {
  const size = Math.round(opts.size * MIB);
  const work = mkdtempSync(join(tmpdir(), 'ferry-bench-browser-files-'));
  const downloads = join(work, 'downloads');
  const path = join(work, 'bench.bin');
  const server = await startServer(opts.bin);
  let browser = null;
  try {
    process.stdout.write(`writing ${opts.size} MiB to ${path} ... `);
    const sha256 = await makeFile(path, size);
    console.log('done');
    const config = await (await fetch(`${server.url}/api/config`)).json();
    const plan = chunkPlan(size, 65536, config.chunkSize);
    const source = new ApiSource(path, size, plan);
    await source.prepare();
    console.log(`ferry ${opts.bin} at ${server.url}; chunkSize ${config.chunkSize}, ${plan.totalChunks} chunks, V4 stream ${plan.streamLength} bytes; ${opts.rounds} round(s)`);
    browser = await rawBrowser();
    const rows = [];
    for (let r = 1; r <= opts.rounds; r++) {
      const load = loadavg()[0];
      const a = await apiUpload(server.url, source);
      const b = await uiUploadCdp(browser, server.url, path);
      const id = new URL(b.link).pathname.split('/')[2];
      const c = await apiDownload(server.url, id, plan.streamLength);
      const d = await uiDownloadCdp(browser, b.link, downloads, { size, sha256 });
      const row = {
        round: r,
        apiUp: opts.size / a.seconds,
        uiUp: opts.size / b.seconds,
        apiDown: opts.size / c.seconds,
        uiDown: opts.size / d.seconds,
        rssBase: b.base / MIB,
        rssGrowth: (b.peak - b.base) / MIB,
        upCpu: (b.cpu * 1000) / opts.size,
        downCpu: (d.cpu * 1000) / opts.size,
        load,
      };
      rows.push(row);
      console.log(
        `round ${r}: api-up ${f1(row.apiUp)} MiB/s, ui-up ${f1(row.uiUp)} MiB/s (${b.seconds.toFixed(2)} s), api-down ${f1(row.apiDown)} MiB/s, ui-down ${f1(row.uiDown)} MiB/s (${d.seconds.toFixed(2)} s), browser RSS ${f1(row.rssBase)} MiB + ${f1(row.rssGrowth)} MiB peak growth, Chromium CPU ${f1(row.upCpu)} / ${f1(row.downCpu)} ms per MiB up / down, load ${load.toFixed(2)}`,
      );
    }
    await browser.close();
    browser = null;
    const pw = [];
    for (let r = 1; r <= opts.playwright; r++) pw.push(await playwrightRound(server.url, path, { size, sha256 }, server.pid));

    const med = (k) => median(rows.map((x) => x[k]));
    const up = med('uiUp') / med('apiUp');
    const down = med('uiDown') / med('apiDown');
    const growth = Math.max(...rows.map((x) => x.rssGrowth));
    console.log('');
    console.log(`| round | API upload | UI upload (CDP) | API download | UI download (CDP) | browser RSS growth during UI upload | Chromium CPU per MiB up / down | load avg |`);
    console.log(`|---|---|---|---|---|---|---|---|`);
    for (const x of rows) console.log(`| ${x.round} | ${f1(x.apiUp)} MiB/s | ${f1(x.uiUp)} MiB/s | ${f1(x.apiDown)} MiB/s | ${f1(x.uiDown)} MiB/s | ${f1(x.rssGrowth)} MiB | ${f1(x.upCpu)} / ${f1(x.downCpu)} ms | ${x.load.toFixed(2)} |`);
    console.log(`| median | ${f1(med('apiUp'))} MiB/s | ${f1(med('uiUp'))} MiB/s | ${f1(med('apiDown'))} MiB/s | ${f1(med('uiDown'))} MiB/s | ${f1(med('rssGrowth'))} MiB (max ${f1(growth)}) | ${f1(med('upCpu'))} / ${f1(med('downCpu'))} ms | |`);
    for (const [i, p] of pw.entries()) {
      console.log(`| Playwright page ${i + 1} | | ${f1(opts.size / p.up)} MiB/s | | ${f1(opts.size / p.down)} MiB/s | ${f1(p.upGrowth / MIB)} MiB | | |`);
    }
    console.log('');
    const verdict = (ok) => (ok ? 'ok' : 'MISSED');
    console.log(`upload ratio   ui/api = ${up.toFixed(2)} (target >= ${TARGET.upload}) ${verdict(up >= TARGET.upload)}`);
    console.log(`download ratio ui/api = ${down.toFixed(2)} (target >= ${TARGET.download}) ${verdict(down >= TARGET.download)}`);
    console.log(`browser RSS growth (max over rounds, ${opts.size} MiB upload) = ${f1(growth)} MiB (target < ${TARGET.rssMiB}) ${verdict(growth < TARGET.rssMiB)}`);
    console.log(
      `RESULT size_mib=${opts.size} rounds=${opts.rounds} api_up=${f1(med('apiUp'))} ui_up=${f1(med('uiUp'))} up_ratio=${up.toFixed(2)} api_down=${f1(med('apiDown'))} ui_down=${f1(med('uiDown'))} down_ratio=${down.toFixed(2)} rss_growth_mib=${f1(growth)} up_cpu_ms_per_mib=${f1(med('upCpu'))} down_cpu_ms_per_mib=${f1(med('downCpu'))}` +
        (pw.length ? ` pw_ui_up=${f1(median(pw.map((p) => opts.size / p.up)))} pw_ui_down=${f1(median(pw.map((p) => opts.size / p.down)))}` : ''),
    );
    const ok = up >= TARGET.upload && down >= TARGET.download && growth < TARGET.rssMiB;
    return opts.check && !ok ? 1 : 0;
  } finally {
    await browser?.close();
    await server.stop();
    agent.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e?.stack ?? e);
    process.exit(2);
  },
);
