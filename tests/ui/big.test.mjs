// Memory is a feature: a 512 MiB file is encrypted and uploaded, then downloaded through the
// streaming service worker and compared by SHA-256, while the resident memory of every
// Chromium process is sampled; the growth over the idle page must stay under 300 MiB in both
// directions. The figures are printed as test diagnostics. Chromium runs under the bare CDP
// client (rawcdp.mjs), not Playwright, whose Network instrumentation copies every upload body.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { makeFile, sha256File, startServer } from './harness.mjs';
import { rawBrowser } from './rawcdp.mjs';
import { descendants } from './procs.mjs';

const SIZE = 512 * 1024 * 1024;
const LIMIT = 300 * 1024 * 1024;

let server;
let browser;
before(async () => {
  server = await startServer({ FERRY_RATE_LIMITS: 'off' });
  browser = await rawBrowser();
});
after(async () => {
  await browser?.close();
  await server?.stop();
});


/** Summed RSS and PSS (bytes) of the Chromium processes this test started. */
function browserMemory() {
  let rss = 0;
  let pss = 0;
  for (const pid of [browser.pid, ...descendants(browser.pid)]) {
    try {
      const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      rss += Number(rollup.match(/^Rss:\s+(\d+)/m)[1]) * 1024;
      pss += Number(rollup.match(/^Pss:\s+(\d+)/m)[1]) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  return { rss, pss };
}

/** Sample browser memory every 200 ms while `work` runs; returns its result and the peaks. */
async function sampled(work) {
  const peak = { rss: 0, pss: 0 };
  const timer = setInterval(() => {
    const m = browserMemory();
    peak.rss = Math.max(peak.rss, m.rss);
    peak.pss = Math.max(peak.pss, m.pss);
  }, 200);
  try {
    return { result: await work(), peak };
  } finally {
    clearInterval(timer);
  }
}

const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

test('a 512 MiB file goes up and comes down with the browser growing by less than 300 MiB', async (t) => {
  const file = await makeFile('big.bin', SIZE);
  const downloads = mkdtempSync(join(tmpdir(), 'ferry-downloads-'));
  try {
    const writer = await browser.newPage();
    await writer.goto(`${server.url}/`);
    await writer.click('#tab-file');
    await writer.setFile('#file', file.path);
    await new Promise((r) => setTimeout(r, 1000));
    const base = browserMemory();
    const started = Date.now();
    const up = await sampled(async () => {
      await writer.click('#share');
      await writer.until(`document.getElementById('res-link').value`);
      return writer.evaluate(`document.getElementById('res-link').value`);
    });
    const upSeconds = (Date.now() - started) / 1000;
    await browser.send('Target.disposeBrowserContext', { browserContextId: writer.browserContextId });

    const reader = await browser.newPage();
    await browser.send('Browser.setDownloadBehavior', {
      behavior: 'allowAndName',
      downloadPath: downloads,
      eventsEnabled: true,
      browserContextId: reader.browserContextId,
    });
    await reader.goto(up.result);
    await reader.until(`!document.getElementById('open-go').hidden`);
    await new Promise((r) => setTimeout(r, 1000));
    const base2 = browserMemory();
    const began = Date.now();
    const down = await sampled(async () => {
      const begin = browser.waitEvent('Browser.downloadWillBegin');
      await reader.click('#open-go');
      const { guid, suggestedFilename } = await begin;
      await browser.waitEvent('Browser.downloadProgress', (p) => p.guid === guid && p.state !== 'inProgress');
      await reader.until(`document.getElementById('open-done').textContent.startsWith('Saved')`);
      return { path: join(downloads, guid), name: suggestedFilename };
    });
    const downSeconds = (Date.now() - began) / 1000;
    assert.equal(down.result.name, 'big.bin');
    assert.equal(await sha256File(down.result.path), file.sha256);

    const upGrowth = up.peak.rss - base.rss;
    const downGrowth = down.peak.rss - base2.rss;
    t.diagnostic(`upload: ${upSeconds.toFixed(1)} s (${mib(SIZE / upSeconds)}/s); browser RSS ${mib(base.rss)} → peak ${mib(up.peak.rss)} (growth ${mib(upGrowth)}); PSS growth ${mib(up.peak.pss - base.pss)}`);
    t.diagnostic(`download: ${downSeconds.toFixed(1)} s (${mib(SIZE / downSeconds)}/s); browser RSS ${mib(base2.rss)} → peak ${mib(down.peak.rss)} (growth ${mib(downGrowth)}); PSS growth ${mib(down.peak.pss - base2.pss)}`);
    assert.ok(upGrowth < LIMIT, `upload grew the browser by ${mib(upGrowth)}`);
    assert.ok(downGrowth < LIMIT, `download grew the browser by ${mib(downGrowth)}`);
  } finally {
    rmSync(file.dir, { recursive: true, force: true });
    rmSync(downloads, { recursive: true, force: true });
  }
});
