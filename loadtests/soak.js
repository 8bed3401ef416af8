// soak.js — a long, low-rate mix: does ferry stay correct and leak nothing over time?
//
// What it measures: correctness and error rate over a long run at a low, steady rate
// (SOAK_RATE iterations/s, default 5, for SOAK_DURATION, default 10m), each iteration one of
//   80 %  info + read of a clip from a pool made in setup()
//   15 %  upload of 1..64 KiB of random bytes, then download it and compare the sha256
//    5 %  a one-time clip: upload, download (200, right bytes), download again (404/410)
// and, from ferry's own GET /metrics, read in setup() (start) and in teardown() (end):
//   * ferry_http_requests_in_flight at the end must be back to ~0 (<= SOAK_MAX_IN_FLIGHT,
//     default 1: the /metrics request itself may be counted) — a stuck request or a leaked
//     in-flight guard shows here;
//   * process_resident_memory_bytes (ferry exports it on Linux): growth start -> end must stay
//     below SOAK_MAX_RSS_GROWTH_MIB (default 64).
// A server that does not export process_resident_memory_bytes (k6 cannot read /proc/<pid>
// after its init phase) is not checked for memory; the script says so in its output.
// scripts/bench.sh samples the server's VmRSS from /proc itself (every 0.2 s) and reports the
// peak per scenario.
// A build without GET /metrics (404) makes both /metrics checks "unavailable" (reported, not
// failed) unless SOAK_REQUIRE_METRICS=1, which fails the run then.
// After the load stops, teardown waits SOAK_SETTLE_S (2) seconds before its /metrics read.
//
// Run:
//   k6 run loadtests/soak.js
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 -e SOAK_DURATION=30m -e SOAK_RATE=10 loadtests/soak.js
// Env: FERRY_URL, SOAK_DURATION (10m), SOAK_RATE (5), SOAK_MAX_IN_FLIGHT (1),
//      SOAK_MAX_RSS_GROWTH_MIB (64), SOAK_REQUIRE_METRICS (0), SOAK_SETTLE_S (2).
//
// Thresholds: unexpected request failures < 0.5 %; checks > 99.9 %; p99 of info < 100 ms;
// soak_in_flight_end <= SOAK_MAX_IN_FLIGHT; soak_rss_growth_mib < SOAK_MAX_RSS_GROWTH_MIB;
// soak_failures == 0 (counts failed end-of-run assertions, e.g. /metrics required but absent).
// Gauges with no sample (figure unavailable) read 0 and pass; the console says which figures
// were actually available.

import http from 'k6/http';
import { check, sleep } from 'k6';
import { Counter, Gauge } from 'k6/metrics';
import {
  uploadThreeStep,
  createTextClip,
  info,
  read,
  download,
  metrics,
  promValue,
  randomBytes,
  randomText,
  sha256Hex,
  jsonOf,
  envInt,
  envStr,
} from './lib/ferry.js';

const DURATION = envStr('SOAK_DURATION', '10m');
const RATE = envInt('SOAK_RATE', 5);
const MAX_IN_FLIGHT = envInt('SOAK_MAX_IN_FLIGHT', 1);
const MAX_RSS_GROWTH_MIB = envInt('SOAK_MAX_RSS_GROWTH_MIB', 64);
const REQUIRE_METRICS = envStr('SOAK_REQUIRE_METRICS', '0') === '1';
const SETTLE_S = envInt('SOAK_SETTLE_S', 2);

const inFlightEnd = new Gauge('soak_in_flight_end');
const rssGrowth = new Gauge('soak_rss_growth_mib');
const metricsAvailable = new Gauge('soak_metrics_available');
const failures = new Counter('soak_failures');

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: Math.max(4, RATE * 2),
      maxVUs: Math.max(16, RATE * 8),
    },
  },
  thresholds: {
    http_req_failed: ['rate<0.005'],
    checks: ['rate>0.999'],
    'http_req_duration{name:info}': ['p(99)<100'],
    soak_in_flight_end: [`value<=${MAX_IN_FLIGHT}`],
    soak_rss_growth_mib: [`value<${MAX_RSS_GROWTH_MIB}`],
    soak_failures: ['count==0'],
  },
};

const spentOk = http.expectedStatuses(200, 404, 410);

function scrape() {
  const res = metrics();
  if (res.status !== 200) return null;
  const text = res.body;
  return {
    inFlight: promValue(text, 'ferry_http_requests_in_flight'),
    rss: promValue(text, 'process_resident_memory_bytes'),
  };
}

export function setup() {
  const ids = [];
  for (let i = 0; i < 10; i++) {
    const c = createTextClip(`soak ${i} ${randomText(100)}`, { expiration: '24hr' });
    if (!c) throw new Error('setup: could not create clips (FERRY_RATE_LIMITS=off?)');
    ids.push(c.clipId);
  }
  const start = scrape();
  if (!start) console.warn('GET /metrics unavailable at start: in-flight and RSS will not be checked');
  else if (start.rss === null) console.warn('ferry exports no process_resident_memory_bytes: RSS is NOT checked by soak.js');
  return { ids, start };
}

function readStep(data) {
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  check(info(id), { 'info 200': (r) => r.status === 200 && (jsonOf(r) || {}).clipId === id });
  check(read(id), { 'read 200': (r) => r.status === 200 });
}

function uploadStep() {
  const bytes = randomBytes(1024 + Math.floor(Math.random() * 63 * 1024));
  const c = uploadThreeStep(bytes, 'soak.bin', { expiration: '5min' });
  if (!c) return;
  const res = download(c.clipId);
  check(res, {
    'upload+download: 200': (r) => r.status === 200,
    'upload+download: sha256': (r) => r.status === 200 && sha256Hex(r.body) === sha256Hex(bytes),
  });
}

function oneTimeStep() {
  const bytes = randomBytes(2048);
  const c = uploadThreeStep(bytes, 'soak-once.bin', { oneTime: true, expiration: '5min' });
  if (!c) return;
  const first = download(c.clipId, {}, { tags: { name: 'onetime' }, responseCallback: spentOk });
  check(first, { 'one-time: first 200 + bytes': (r) => r.status === 200 && sha256Hex(r.body) === c.sha256 });
  const second = download(c.clipId, {}, { tags: { name: 'onetime' }, responseCallback: spentOk });
  check(second, { 'one-time: second 404/410': (r) => r.status === 404 || r.status === 410 });
}

export default function (data) {
  const p = Math.random();
  if (p < 0.8) readStep(data);
  else if (p < 0.95) uploadStep();
  else oneTimeStep();
}

export function teardown(data) {
  if (SETTLE_S > 0) sleep(SETTLE_S);
  const end = scrape();
  failures.add(0);
  if (!data.start || !end) {
    metricsAvailable.add(0);
    const msg = 'GET /metrics unavailable: in-flight and RSS not checked';
    if (REQUIRE_METRICS) {
      failures.add(1);
      console.error(`${msg} (SOAK_REQUIRE_METRICS=1: failing)`);
    } else {
      console.warn(msg);
    }
    return;
  }
  metricsAvailable.add(1);
  if (end.inFlight !== null) {
    inFlightEnd.add(end.inFlight);
    console.log(`in-flight requests: start ${data.start.inFlight}, end ${end.inFlight} (bound ${MAX_IN_FLIGHT})`);
  } else {
    console.warn('ferry_http_requests_in_flight absent from /metrics: not checked');
    if (REQUIRE_METRICS) failures.add(1);
  }
  if (data.start.rss !== null && end.rss !== null) {
    const growth = (end.rss - data.start.rss) / 1048576;
    rssGrowth.add(growth);
    console.log(
      `RSS: start ${(data.start.rss / 1048576).toFixed(1)} MiB, end ${(end.rss / 1048576).toFixed(1)} MiB, ` +
        `growth ${growth.toFixed(1)} MiB (bound ${MAX_RSS_GROWTH_MIB})`,
    );
  } else {
    console.warn('process_resident_memory_bytes not exported by ferry: RSS NOT checked (see header comment)');
  }
}
