// soak.js — a long, steady mix: does ferry stay correct, leak nothing, and keep its store no
// larger than what the sweep leaves?
//
// Load (scenario `soak`, constant-arrival-rate): SOAK_RATE iterations/s (5) for SOAK_DURATION
// (10m; 30m by hand, 2m in CI). Iteration i does one of, chosen by a fixed hash of i (so the
// mix is interleaved but known in advance, see "Store" below):
//   80 %  info + read of a clip from a pool of 10 text clips (24hr) made in setup()
//   15 %  upload of 1..64 KiB of random bytes (size also a fixed function of i), expiry
//         SOAK_EXPIRY (5min, the shortest ferry accepts), then download it: 200, same sha256
//    5 %  a one-time clip of 2 KiB: upload, download (200, right bytes), download again (404/410)
// Expected statuses: only the second download of a one-time clip may answer 404 or 410 (it is
// declared so with responseCallback, and a 200 there counts as a failure); every other request
// must answer 2xx/3xx. Threshold: http_req_failed rate==0 and checks rate==1 — zero errors.
//
// Monitor (scenario `monitor`, one VU, one long iteration): GET /metrics every SOAK_SAMPLE_S
// (5 s) during the load, then every second until the end figures are final (below). It keeps
// start (read in setup(), before any clip is made), peak and end of
//   process_resident_memory_bytes  -> soak_rss_{start,peak,end}_mib, soak_rss_growth_mib
//   process_open_fds               -> soak_fds_{start,peak,end},     soak_fds_growth
// and fails when RSS grew by SOAK_MAX_RSS_GROWTH_MIB (32) or more from start to end, or open
// descriptors by SOAK_MAX_FD_GROWTH (16) or more. The load runs with noVUConnectionReuse (each
// iteration opens its connection and closes it at its end, like a browser following a link),
// so no idle k6 keep-alive connection is open on ferry's side at the end to blur the count.
// ferry_http_requests_in_flight at the end must be <= SOAK_MAX_IN_FLIGHT (1: the scrape itself).
//
// End of the run. After the load stops the monitor waits until ferry is quiet (in flight <= 1
// and no request but its own answered in the last second: T_quiet), then until the storage
// accounting job (`storage.refresh`, counted in ferry_job_runs_total) has finished twice more —
// the second of those started after T_quiet, so its figures include every clip the run made.
// That scrape (T_end) gives the end figures. SOAK_SETTLE_MAX_S (150) bounds the wait; missing it
// fails the run.
//
// Store: "no larger than what the sweep leaves". The server must be fresh (empty data dir or
// database) and run with a fast sweep and accounting, and the script told the sweep settings:
//   FERRY_SWEEP__INTERVAL=5s FERRY_SWEEP__RETIRED_GRACE=30s FERRY_JOBS__ACCOUNTING_INTERVAL=5s
//   (script: SOAK_SWEEP_INTERVAL_S=5, SOAK_RETIRED_GRACE_S=30, both the defaults)
// Because iteration i's kind and size are fixed functions of i, and a constant-arrival-rate
// iteration i starts at scenario start + i/SOAK_RATE (checked: soak_schedule_lag_s max <
// SOAK_MAX_LAG_S, 5; and no dropped iterations), the monitor knows which clips the run made
// when, without the VUs sharing memory. With E the expiry, SW the sweep interval, G the
// retired grace and M = SOAK_STORE_MARGIN_S (15, covers lag, upload time and a sweep pass):
//   * ferry_clips{kind="file"} and ferry_storage_bytes{kind="file"} (the accounting: clips not
//     consumed or deleted, expired ones included until the sweep removes them) must lie between
//       lower: the uploads started after T_end - E + M (they cannot have expired yet), and
//       upper: the uploads started after T_quiet - E - SW - M (anything older had expired
//              one sweep interval before the accounting counted, so the sweep must have
//              removed it).
//     The same upper bound is checked at every sample during the run, with the accounting's
//     time taken from the refresh counter's history. A sweep that stops, or stops deleting,
//     leaves every upload of the run counted and crosses the upper bound within E + SW + M;
//     an accounting that misses clips (or a sweep that deletes live ones) crosses the lower one.
//     In a run shorter than E - M (CI's 2 minutes) nothing expires, so both bounds are "every
//     upload of the run": an exact count, but no test of expiry (the next point tests the sweep).
//   * ferry_clips{kind="text"} and its bytes: exactly the 10 pool clips (24hr).
//   * ferry_storage_bytes{kind="upload"} (chunks of unfinished uploads) == 0: every upload
//     completed and left no session's chunks behind.
//   * ferry_sweep_rows_total{kind="expired_clips"} + {kind="retired_clips"} (rows the sweep
//     deleted, since start) must be at least the clips whose row must be gone at T_end — uploads
//     expired before T_end - SW - M and one-time clips consumed before T_end - G - SW - M (a
//     consumed clip's row stays for the retired grace) — and at most every clip the run made.
//     In CI (G = 30 s) this is ~20 one-time rows in 2 minutes: a sweep that does not run fails.
// Each violated bound adds to soak_store_failures (threshold count==0) with a console line
// naming the figures. The accounting's figures are what the store's rows say, not du of the
// data dir: bytes on disk that no row owns are the reconcile's business (orphan_grace, 1h).
//
// Run (fresh server, e.g. `FERRY_DATA_DIR=$(mktemp -d)`; see loadtests/README.md):
//   FERRY_RATE_LIMITS=off FERRY_SWEEP__INTERVAL=5s FERRY_SWEEP__RETIRED_GRACE=30s \
//   FERRY_JOBS__ACCOUNTING_INTERVAL=5s FERRY_DATA_DIR=$(mktemp -d) target/release/ferry
//   k6 run -e SOAK_DURATION=30m loadtests/soak.js
// Env: FERRY_URL, SOAK_DURATION (10m), SOAK_RATE (5), SOAK_SAMPLE_S (5), SOAK_MAX_IN_FLIGHT (1),
//      SOAK_MAX_RSS_GROWTH_MIB (32), SOAK_MAX_FD_GROWTH (16), SOAK_REQUIRE_METRICS (1; 0: a
//      build without /metrics is reported, not failed), SOAK_STORE_CHECK (1), SOAK_EXPIRY
//      (5min), SOAK_SWEEP_INTERVAL_S (5), SOAK_RETIRED_GRACE_S (30), SOAK_STORE_MARGIN_S (15),
//      SOAK_SETTLE_MAX_S (150), SOAK_MAX_LAG_S (5), SOAK_INFO_P99_MS (100).
//
// Thresholds: http_req_failed rate==0; checks rate==1; p99 of info < SOAK_INFO_P99_MS;
// dropped_iterations count==0; soak_schedule_lag_s max < SOAK_MAX_LAG_S; soak_rss_growth_mib
// < SOAK_MAX_RSS_GROWTH_MIB; soak_fds_growth < SOAK_MAX_FD_GROWTH; soak_in_flight_end <=
// SOAK_MAX_IN_FLIGHT; soak_store_failures count==0; soak_failures count==0 (metrics missing,
// never quiet, no accounting refresh); soak_monitor_done count==1 (the end checks ran at all).
// handleSummary prints requests, errors, latency per request name, and start/peak/end of RSS
// and descriptors, the store figures against their bounds, and every threshold.

import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter, Gauge, Trend } from 'k6/metrics';
import {
  BASE_URL,
  uploadThreeStep,
  createTextClip,
  info,
  read,
  download,
  metrics,
  randomBytes,
  randomText,
  sha256Hex,
  jsonOf,
  envInt,
  envNum,
  envStr,
  durationSeconds,
  utf8,
} from './lib/ferry.js';

const DURATION = envStr('SOAK_DURATION', '10m');
const DURATION_S = durationSeconds(DURATION);
const RATE = envNum('SOAK_RATE', 5);
const SAMPLE_S = envNum('SOAK_SAMPLE_S', 5);
const MAX_IN_FLIGHT = envInt('SOAK_MAX_IN_FLIGHT', 1);
const MAX_RSS_GROWTH_MIB = envNum('SOAK_MAX_RSS_GROWTH_MIB', 32);
const MAX_FD_GROWTH = envInt('SOAK_MAX_FD_GROWTH', 16);
const REQUIRE_METRICS = envStr('SOAK_REQUIRE_METRICS', '1') === '1';
const STORE_CHECK = envStr('SOAK_STORE_CHECK', '1') === '1';
const EXPIRY = envStr('SOAK_EXPIRY', '5min');
const EXPIRY_S = { '5min': 300, '15min': 900, '30min': 1800, '1hr': 3600, '6hr': 21600, '24hr': 86400 }[EXPIRY];
if (!EXPIRY_S) throw new Error(`SOAK_EXPIRY must be one of 5min 15min 30min 1hr 6hr 24hr, got ${EXPIRY}`);
const SWEEP_S = envNum('SOAK_SWEEP_INTERVAL_S', 5);
const GRACE_S = envNum('SOAK_RETIRED_GRACE_S', 30);
const MARGIN_S = envNum('SOAK_STORE_MARGIN_S', 15);
const SETTLE_MAX_S = envNum('SOAK_SETTLE_MAX_S', 150);
const MAX_LAG_S = envNum('SOAK_MAX_LAG_S', 5);
const INFO_P99_MS = envInt('SOAK_INFO_P99_MS', 100);

const POOL = 10;
const ONETIME_BYTES = 2048;
// Iterations the load scenario runs: constant-arrival-rate starts one every 1/RATE s from 0 up to
// and including the duration itself, so LAST = RATE * duration is the last one (which may or
// may not run: bounds that need a clip to exist leave it out, bounds that allow one count it).
const LAST = Math.round(RATE * DURATION_S);
const MIB = 1048576;

const scheduleLag = new Trend('soak_schedule_lag_s');
const rssStart = new Gauge('soak_rss_start_mib');
const rssPeak = new Gauge('soak_rss_peak_mib');
const rssEnd = new Gauge('soak_rss_end_mib');
const rssGrowth = new Gauge('soak_rss_growth_mib');
const fdsStart = new Gauge('soak_fds_start');
const fdsPeak = new Gauge('soak_fds_peak');
const fdsEnd = new Gauge('soak_fds_end');
const fdsGrowth = new Gauge('soak_fds_growth');
const inFlightEnd = new Gauge('soak_in_flight_end');
const storeGauges = {};
for (const n of [
  'clips', 'clips_min', 'clips_max', 'clips_peak', 'bytes', 'bytes_min', 'bytes_max',
  'text_clips', 'upload_bytes', 'swept', 'swept_min', 'swept_max', 'sweep_runs', 'refresh_runs',
]) {
  storeGauges[n] = new Gauge(`soak_store_${n}`);
}
const storeFailures = new Counter('soak_store_failures');
const failures = new Counter('soak_failures');
const monitorDone = new Counter('soak_monitor_done');

// Request names whose latency the summary lists (the always-true thresholds make k6 keep the
// sub-metrics; handleSummary leaves them out of the threshold list).
const NAMES = ['info', 'read', 'initiate', 'chunk', 'complete', 'download', 'onetime', 'onetime_spent', 'metrics'];
const thresholds = {
  http_req_failed: ['rate==0'],
  checks: ['rate==1'],
  'http_req_duration{name:info}': [`p(99)<${INFO_P99_MS}`],
  dropped_iterations: ['count==0'],
  soak_schedule_lag_s: [`max<${MAX_LAG_S}`],
  soak_rss_growth_mib: [`value<${MAX_RSS_GROWTH_MIB}`],
  soak_fds_growth: [`value<${MAX_FD_GROWTH}`],
  soak_in_flight_end: [`value<=${MAX_IN_FLIGHT}`],
  soak_store_failures: ['count==0'],
  soak_failures: ['count==0'],
  soak_monitor_done: ['count==1'],
};
for (const n of NAMES) {
  if (n !== 'info') thresholds[`http_req_duration{name:${n}}`] = ['max>=0'];
  thresholds[`http_reqs{name:${n}}`] = ['count>=0'];
}
thresholds['http_req_duration{name:info}'].push('max>=0');
thresholds['iterations{scenario:soak}'] = ['count>=0'];

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      exec: 'soak',
      rate: Math.round(RATE * 1000),
      timeUnit: '1000s',
      duration: DURATION,
      preAllocatedVUs: Math.max(4, Math.ceil(RATE * 2)),
      maxVUs: Math.max(16, Math.ceil(RATE * 8)),
    },
    monitor: {
      executor: 'per-vu-iterations',
      exec: 'monitor',
      vus: 1,
      iterations: 1,
      maxDuration: `${Math.ceil(DURATION_S + SETTLE_MAX_S + 60)}s`,
    },
  },
  noVUConnectionReuse: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  thresholds,
};

// ---- the fixed schedule -------------------------------------------------------------------

function hash32(n) {
  let x = (n + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** 'read' | 'upload' | 'onetime' for iteration i. */
function kindOf(i) {
  const r = hash32(i) % 100;
  return r < 80 ? 'read' : r < 95 ? 'upload' : 'onetime';
}

/** Size of iteration i's upload: 1 KiB .. 64 KiB. */
function sizeOf(i) {
  return 1024 + (hash32(i * 2 + 1) % (63 * 1024));
}

/** Scheduled start of iteration i, ms since the scenario's start. */
const startOf = (i) => (i * 1000) / RATE;

// ---- /metrics -----------------------------------------------------------------------------

/** Sum of the samples of `name` whose labels include all of `want` ({} for all), or null. */
function prom(text, name, want = {}) {
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.length === 0 || line[0] === '#' || !line.startsWith(name)) continue;
    const sp = line.lastIndexOf(' ');
    const key = line.slice(0, sp);
    const brace = key.indexOf('{');
    if ((brace >= 0 ? key.slice(0, brace) : key) !== name) continue;
    const labels = {};
    if (brace >= 0) {
      const re = /(\w+)="([^"]*)"/g;
      let m;
      while ((m = re.exec(key.slice(brace))) !== null) labels[m[1]] = m[2];
    }
    if (!Object.keys(want).every((k) => labels[k] === want[k])) continue;
    const v = parseFloat(line.slice(sp + 1));
    if (Number.isFinite(v)) {
      found = true;
      sum += v;
    }
  }
  return found ? sum : null;
}

function scrape() {
  const res = metrics();
  const t = Date.now();
  if (res.status !== 200) return null;
  const text = res.body;
  return {
    t,
    rss: prom(text, 'process_resident_memory_bytes'),
    fds: prom(text, 'process_open_fds'),
    inFlight: prom(text, 'ferry_http_requests_in_flight'),
    requests: prom(text, 'ferry_http_requests_total'),
    clipsFile: prom(text, 'ferry_clips', { kind: 'file' }),
    clipsText: prom(text, 'ferry_clips', { kind: 'text' }),
    clipsAll: prom(text, 'ferry_clips'),
    bytesFile: prom(text, 'ferry_storage_bytes', { kind: 'file' }),
    bytesText: prom(text, 'ferry_storage_bytes', { kind: 'text' }),
    bytesUpload: prom(text, 'ferry_storage_bytes', { kind: 'upload' }),
    swept:
      (prom(text, 'ferry_sweep_rows_total', { kind: 'expired_clips' }) || 0) +
      (prom(text, 'ferry_sweep_rows_total', { kind: 'retired_clips' }) || 0),
    sweepRuns: prom(text, 'ferry_job_runs_total', { kind: 'sweep', outcome: 'done' }) || 0,
    refreshRuns: prom(text, 'ferry_job_runs_total', { kind: 'storage.refresh', outcome: 'done' }) || 0,
  };
}

// ---- setup and load -----------------------------------------------------------------------

export function setup() {
  const start = scrape();
  if (!start) {
    const msg = 'GET /metrics unavailable: RSS, descriptors, in-flight and the store are not checked';
    if (REQUIRE_METRICS) throw new Error(`${msg} (SOAK_REQUIRE_METRICS=1)`);
    console.warn(msg);
  }
  const ids = [];
  let poolBytes = 0;
  for (let i = 0; i < POOL; i++) {
    const text = `soak ${i} ${randomText(100)}`;
    const c = createTextClip(text, { expiration: '24hr' });
    if (!c) throw new Error('setup: could not create clips (FERRY_RATE_LIMITS=off?)');
    ids.push(c.clipId);
    poolBytes += utf8(text).byteLength;
  }
  return { ids, poolBytes, start };
}

const spentOk = http.expectedStatuses(404, 410);

function readStep(data) {
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  check(info(id), { 'info 200': (r) => r.status === 200 && (jsonOf(r) || {}).clipId === id });
  check(read(id), { 'read 200': (r) => r.status === 200 });
}

function uploadStep(i) {
  const bytes = randomBytes(sizeOf(i));
  const c = uploadThreeStep(bytes, 'soak.bin', { expiration: EXPIRY });
  if (!c) return;
  check(c, { 'complete size': (x) => x.size === bytes.byteLength });
  const res = download(c.clipId);
  check(res, {
    'upload+download: 200': (r) => r.status === 200,
    'upload+download: sha256': (r) => r.status === 200 && sha256Hex(r.body) === sha256Hex(bytes),
  });
}

function oneTimeStep() {
  const bytes = randomBytes(ONETIME_BYTES);
  const c = uploadThreeStep(bytes, 'soak-once.bin', { oneTime: true, expiration: EXPIRY });
  if (!c) return;
  const first = download(c.clipId, {}, { tags: { name: 'onetime' } });
  check(first, { 'one-time: first 200 + bytes': (r) => r.status === 200 && sha256Hex(r.body) === c.sha256 });
  const second = download(c.clipId, {}, { tags: { name: 'onetime_spent' }, responseCallback: spentOk });
  check(second, { 'one-time: second 404/410': (r) => r.status === 404 || r.status === 410 });
}

export function soak(data) {
  const i = exec.scenario.iterationInTest;
  scheduleLag.add(Math.abs(Date.now() - exec.scenario.startTime - startOf(i)) / 1000);
  const kind = kindOf(i);
  if (kind === 'read') readStep(data);
  else if (kind === 'upload') uploadStep(i);
  else oneTimeStep();
}

// ---- the monitor --------------------------------------------------------------------------

/** What the schedule made, as functions of time (ms since the scenario's start). */
function tally() {
  const uploads = []; // [startMs, size, i]
  const onetimes = []; // [startMs, i]
  for (let i = 0; i <= LAST; i++) {
    const k = kindOf(i);
    if (k === 'upload') uploads.push([startOf(i), sizeOf(i), i]);
    else if (k === 'onetime') onetimes.push([startOf(i), i]);
  }
  return { uploads, onetimes };
}

/** File clips (count, bytes) whose iteration started after `afterMs` and no later than
 * `untilMs`; `sure`: leave out the last iteration, which may not have run. */
function uploadsBetween(t, afterMs, untilMs, sure = false) {
  let n = 0;
  let bytes = 0;
  for (const [s, size, i] of t.uploads) {
    if (s > afterMs && s <= untilMs && !(sure && i === LAST)) {
      n++;
      bytes += size;
    }
  }
  return { n, bytes };
}

/** The latest sample time at which the accounting had finished at most `runs - 2` runs: the
 * run whose figures are shown (number `runs`) started after it. null when unknown. */
function accountingAfter(history, runs) {
  let t = null;
  for (const h of history) if (h.refreshRuns <= runs - 2) t = h.t;
  return t;
}

export function monitor(data) {
  const t0 = exec.scenario.startTime;
  const loadEnd = t0 + DURATION_S * 1000;
  const start = data.start;
  if (!start) {
    monitorDone.add(1);
    return;
  }
  const t = tally();
  const expiryMs = EXPIRY_S * 1000;
  const slackMs = (SWEEP_S + MARGIN_S) * 1000;
  const fresh = (start.clipsAll || 0) === 0;
  const storeCheck = STORE_CHECK && fresh;
  if (STORE_CHECK && !fresh) {
    failures.add(1);
    console.error(
      `the store check needs a fresh server (empty data dir or database); /metrics shows ${start.clipsAll} clips ` +
        'before the run (SOAK_STORE_CHECK=0 skips the check)',
    );
  }
  const history = [start];
  let peakRss = start.rss || 0;
  let peakFds = start.fds || 0;
  let peakClips = 0;
  let runningViolations = 0;
  const note = (s) => {
    history.push(s);
    if (s.rss !== null) peakRss = Math.max(peakRss, s.rss);
    if (s.fds !== null) peakFds = Math.max(peakFds, s.fds);
    if (s.clipsFile !== null) peakClips = Math.max(peakClips, s.clipsFile);
    // The running upper bound: the figures shown come from an accounting run that started
    // after `acc`; every upload older than acc - E - SW - M had to be swept by then.
    if (!storeCheck || s.clipsFile === null) return;
    const acc = accountingAfter(history, s.refreshRuns);
    if (acc === null) return;
    const up = uploadsBetween(t, acc - t0 - expiryMs - slackMs, s.t - t0);
    if (s.clipsFile > up.n) {
      runningViolations++;
      if (runningViolations <= 5) {
        const at = (x) => ((x - t0) / 1000).toFixed(0);
        console.error(
          `at +${at(s.t)} s: ferry_clips{file} = ${s.clipsFile}, but at most ${up.n} uploads can be unexpired ` +
            `or expired within one sweep interval (the accounting started after +${at(acc)} s)`,
        );
      }
    }
  };

  // During the load.
  while (Date.now() < loadEnd) {
    const s = scrape();
    if (s) note(s);
    sleep(Math.max(0.1, Math.min(SAMPLE_S, (loadEnd - Date.now()) / 1000)));
  }

  // Until quiet: nothing in flight but this scrape, and no other request answered since the last.
  const deadline = Date.now() + SETTLE_MAX_S * 1000;
  let prev = scrape();
  let quiet = null;
  while (prev && Date.now() < deadline) {
    note(prev);
    sleep(1);
    const s = scrape();
    if (!s) break;
    if (s.inFlight !== null && s.inFlight <= MAX_IN_FLIGHT && s.requests - prev.requests <= 1) {
      quiet = s;
      break;
    }
    prev = s;
  }
  if (!quiet) {
    failures.add(1);
    console.error(`ferry never went quiet within SOAK_SETTLE_MAX_S=${SETTLE_MAX_S} s after the load`);
    monitorDone.add(1);
    return;
  }
  note(quiet);

  // Until two more accounting runs finished (the second started after the quiet point).
  let end = quiet;
  while (end.refreshRuns < quiet.refreshRuns + 2 && Date.now() < deadline) {
    sleep(1);
    const s = scrape();
    if (!s) break;
    note(s);
    end = s;
  }
  const refreshed = end.refreshRuns >= quiet.refreshRuns + 2;
  if (!refreshed) {
    failures.add(1);
    console.error(
      `the storage accounting did not run twice within SOAK_SETTLE_MAX_S=${SETTLE_MAX_S} s after the load ` +
        `(ferry_job_runs_total{kind="storage.refresh"} ${quiet.refreshRuns} -> ${end.refreshRuns}; ` +
        'start ferry with FERRY_JOBS__ACCOUNTING_INTERVAL=5s)',
    );
  }

  // Memory, descriptors, in flight.
  if (start.rss !== null && end.rss !== null) {
    rssStart.add(start.rss / MIB);
    rssPeak.add(peakRss / MIB);
    rssEnd.add(end.rss / MIB);
    rssGrowth.add((end.rss - start.rss) / MIB);
  } else {
    failures.add(1);
    console.error('process_resident_memory_bytes missing from /metrics: RSS not checked');
  }
  if (start.fds !== null && end.fds !== null) {
    fdsStart.add(start.fds);
    fdsPeak.add(peakFds);
    fdsEnd.add(end.fds);
    fdsGrowth.add(end.fds - start.fds);
  } else {
    failures.add(1);
    console.error('process_open_fds missing from /metrics: descriptors not checked');
  }
  if (end.inFlight !== null) inFlightEnd.add(end.inFlight);
  else {
    failures.add(1);
    console.error('ferry_http_requests_in_flight missing from /metrics');
  }

  // The store.
  if (storeCheck && refreshed) {
    const rel = end.t - t0;
    const lower = uploadsBetween(t, rel - expiryMs + MARGIN_S * 1000, Infinity, true);
    const upper = uploadsBetween(t, quiet.t - t0 - expiryMs - slackMs, Infinity);
    const fail = (msg) => {
      storeFailures.add(1);
      console.error(`store: ${msg}`);
    };
    const clips = end.clipsFile || 0;
    const bytes = end.bytesFile || 0;
    if (clips < lower.n || clips > upper.n) fail(`ferry_clips{kind="file"} = ${clips}, allowed ${lower.n}..${upper.n}`);
    if (bytes < lower.bytes || bytes > upper.bytes) {
      fail(`ferry_storage_bytes{kind="file"} = ${bytes}, allowed ${lower.bytes}..${upper.bytes}`);
    }
    if (end.clipsText !== POOL || end.bytesText !== data.poolBytes) {
      fail(`text clips ${end.clipsText} (${end.bytesText} B), expected the pool: ${POOL} (${data.poolBytes} B)`);
    }
    if ((end.bytesUpload || 0) !== 0) {
      fail(`ferry_storage_bytes{kind="upload"} = ${end.bytesUpload}: unfinished uploads' chunks left`);
    }
    // Rows the sweep must have deleted by now, and could have at most.
    const gone = rel - slackMs;
    let mustGo = 0;
    for (const [s, , i] of t.uploads) if (s + expiryMs < gone && i !== LAST) mustGo++;
    for (const [s, i] of t.onetimes) if (s + GRACE_S * 1000 < gone && i !== LAST) mustGo++;
    const made = t.uploads.length + t.onetimes.length;
    const swept = end.swept - start.swept;
    if (swept < mustGo || swept > made) {
      fail(`the sweep deleted ${swept} clip rows during the run, expected ${mustGo}..${made}`);
    }
    if (runningViolations > 0) fail(`${runningViolations} samples during the run were above the store's upper bound`);
    storeGauges.clips.add(clips);
    storeGauges.clips_min.add(lower.n);
    storeGauges.clips_max.add(upper.n);
    storeGauges.clips_peak.add(peakClips);
    storeGauges.bytes.add(bytes);
    storeGauges.bytes_min.add(lower.bytes);
    storeGauges.bytes_max.add(upper.bytes);
    storeGauges.text_clips.add(end.clipsText || 0);
    storeGauges.upload_bytes.add(end.bytesUpload || 0);
    storeGauges.swept.add(swept);
    storeGauges.swept_min.add(mustGo);
    storeGauges.swept_max.add(made);
  }
  storeGauges.sweep_runs.add(end.sweepRuns - start.sweepRuns);
  storeGauges.refresh_runs.add(end.refreshRuns - start.refreshRuns);
  console.log(
    `end figures at +${((end.t - t0) / 1000).toFixed(0)} s (load ended at +${DURATION_S} s, quiet at ` +
      `+${((quiet.t - t0) / 1000).toFixed(0)} s), ${history.length} samples`,
  );
  // The course of the run in about a dozen points (setup's sample, then every ~1/12 of it).
  const step = Math.max(1, Math.floor(history.length / 12));
  const points = history.filter((_, k) => k % step === 0 || k === history.length - 1);
  const series = (f) => points.map(f).join(' ');
  console.log(`at +s:       ${series((s) => ((s.t - t0) / 1000).toFixed(0))}`);
  console.log(`RSS MiB:     ${series((s) => (s.rss === null ? '-' : (s.rss / MIB).toFixed(1)))}`);
  console.log(`open fds:    ${series((s) => (s.fds === null ? '-' : s.fds))}`);
  console.log(`file clips:  ${series((s) => (s.clipsFile === null ? '-' : s.clipsFile))}`);
  monitorDone.add(1);
}

// ---- summary ------------------------------------------------------------------------------

function fmtMs(v) {
  if (v === undefined || v === null) return '-';
  return v >= 100 ? `${v.toFixed(0)} ms` : v >= 10 ? `${v.toFixed(1)} ms` : `${v.toFixed(2)} ms`;
}

function val(data, metric, stat) {
  const m = data.metrics[metric];
  return m && m.values ? m.values[stat] : undefined;
}

function fmt(v, digits = 1) {
  return v === undefined || v === null ? '-' : Number(v).toFixed(digits);
}

function allChecks(group, out = []) {
  for (const c of group.checks || []) out.push(c);
  for (const g of group.groups || []) allChecks(g, out);
  return out;
}

export function handleSummary(data) {
  const v = (metric, stat = 'value') => val(data, metric, stat);
  const checks = allChecks(data.root_group);
  const checkPass = checks.reduce((a, c) => a + c.passes, 0);
  const checkFail = checks.reduce((a, c) => a + c.fails, 0);
  const lines = [
    `soak: ${DURATION} at ${RATE} iterations/s against ${BASE_URL}, run ${(data.state.testRunDurationMs / 1000).toFixed(0)} s`,
    `  iterations ${v('iterations{scenario:soak}', 'count') || 0} (scheduled ${LAST + 1}), ` +
      `dropped ${v('dropped_iterations', 'count') || 0}, schedule lag max ${fmt(v('soak_schedule_lag_s', 'max'), 3)} s`,
    `  requests ${v('http_reqs', 'count') || 0} (${fmt(v('http_reqs', 'rate'))}/s), ` +
      `failed ${v('http_req_failed', 'passes') || 0} (${fmt((v('http_req_failed', 'rate') || 0) * 100, 3)} %), ` +
      `checks ${checkPass} passed, ${checkFail} failed`,
  ];
  for (const c of checks) {
    if (c.fails > 0) lines.push(`    ✗ check "${c.name}": ${c.fails} of ${c.passes + c.fails} failed`);
  }
  const stats = (d) => ['med', 'p(95)', 'p(99)', 'max'].map((st) => fmtMs(v(d, st)).padStart(8)).join(' ');
  lines.push(`  latency:              count      p50      p95      p99      max`);
  lines.push(`    ${'all'.padEnd(16)} ${String(v('http_reqs', 'count') || 0).padStart(8)} ${stats('http_req_duration')}`);
  for (const n of NAMES) {
    const count = v(`http_reqs{name:${n}}`, 'count') || 0;
    lines.push(`    ${n.padEnd(16)} ${String(count).padStart(8)} ${stats(`http_req_duration{name:${n}}`)}`);
  }
  lines.push(
    `  RSS (MiB): start ${fmt(v('soak_rss_start_mib'))}, peak ${fmt(v('soak_rss_peak_mib'))}, ` +
      `end ${fmt(v('soak_rss_end_mib'))}; growth ${fmt(v('soak_rss_growth_mib'))} (bound < ${MAX_RSS_GROWTH_MIB})`,
    `  open fds: start ${fmt(v('soak_fds_start'), 0)}, peak ${fmt(v('soak_fds_peak'), 0)}, ` +
      `end ${fmt(v('soak_fds_end'), 0)}; growth ${fmt(v('soak_fds_growth'), 0)} (bound < ${MAX_FD_GROWTH})`,
    `  in flight at the end: ${fmt(v('soak_in_flight_end'), 0)} (bound <= ${MAX_IN_FLIGHT}, the scrape itself)`,
  );
  const sg = (n) => fmt(v(`soak_store_${n}`), 0);
  if (data.metrics.soak_store_clips) {
    lines.push(
      `  store at the end: ${sg('clips')} file clips (allowed ${sg('clips_min')}..${sg('clips_max')}; ` +
        `peak during the run ${sg('clips_peak')}), ${sg('bytes')} B (allowed ${sg('bytes_min')}..${sg('bytes_max')})`,
      `    ${sg('text_clips')} text clips (the pool: ${POOL}); unfinished-upload bytes ${sg('upload_bytes')}`,
      `  sweep: ${sg('swept')} clip rows deleted (required ${sg('swept_min')}..${sg('swept_max')}) ` +
        `in ${sg('sweep_runs')} passes; ${sg('refresh_runs')} accounting runs`,
    );
  } else {
    lines.push('  store: not checked (see the messages above)');
  }
  lines.push('  thresholds:');
  for (const [name, m] of Object.entries(data.metrics)) {
    for (const [expr, r] of Object.entries(m.thresholds || {})) {
      if (expr === 'max>=0' || expr === 'count>=0') continue;
      lines.push(`    ${r.ok ? '✓' : '✗'} ${name} ${expr}`);
    }
  }
  return { stdout: `\n${lines.join('\n')}\n\n` };
}
