// mixed.js — a realistic mix of traffic, and a one-time race that must give exactly one 200.
//
// What it measures: latency and errors of ferry under a mix of MIXED_RATE iterations/s for
// MIXED_DURATION, split like real traffic:
//   80 %  reads     (constant-arrival-rate): GET /api/clip/<id>/info + GET /api/clip/<id> on a
//                   pool of MIXED_READ_CLIPS clips made in setup()
//   15 %  uploads   (constant-arrival-rate): three-step upload of 1 KiB, 64 KiB or 1 MiB of
//                   random bytes, sha256 checked, then info on the new clip
//    5 %  one-time downloads (per-vu-iterations): see below.
//
// One-time race. setup() creates a pool of ONETIME_CLIPS one-time clips (default: enough for
// 5 % of the iterations, MIXED_RACERS racers per clip). MIXED_RACERS VUs each walk the pool in
// the same order; iteration i of every racer sleeps until the same instant
// (scenario start + i * slot) and then POSTs /api/file/<clip i>, so the racers really hit the
// same clip concurrently. ferry must answer exactly one 200 per clip (with the right bytes) and
// 404/410 to the others. k6 VUs share no memory, so instead of a "taken" flag every response is
// counted in Counters tagged with the clip index, and the thresholds assert:
//   onetime_successes{clip:cNNN}  count==1   for every clip  (two 200s, or none, fails)
//   onetime_successes             count==ONETIME_CLIPS
//   onetime_rejections            count==ONETIME_CLIPS*(MIXED_RACERS-1)  (every loser 404/410)
// These can fail: MIXED_ONETIME_SELFTEST=reusable creates the pool WITHOUT oneTime, every racer
// then gets 200, and the run must end with those thresholds crossed (exit code 99).
// Iterations that did not run (e.g. a run cut short) also fail them: untested is not passed.
//
// Run:
//   k6 run loadtests/mixed.js
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 -e MIXED_DURATION=15s -e MIXED_RATE=40 loadtests/mixed.js
// Env: FERRY_URL, MIXED_RATE (50 iterations/s), MIXED_DURATION (30s), MIXED_READ_CLIPS (20),
//      MIXED_RACERS (4), MIXED_ONETIME_CLIPS (default round(5 % * rate * duration / racers)),
//      MIXED_READ_P99_MS (100), MIXED_UPLOAD_P95_MS (2000), MIXED_VUS (32 pre-allocated per
//      arrival-rate scenario), MIXED_ONETIME_SELFTEST (unset | reusable).
//
// Thresholds: unexpected request failures < 1 % (404/410 are declared expected on the race
// requests only); checks > 99 %; p99 of info and read < MIXED_READ_P99_MS; p95 of upload-step
// requests < MIXED_UPLOAD_P95_MS; and the one-time thresholds above.

import http from 'k6/http';
import exec from 'k6/execution';
import { check, sleep } from 'k6';
import { Counter } from 'k6/metrics';
import {
  uploadThreeStep,
  createTextClip,
  info,
  read,
  download,
  randomBytes,
  randomText,
  freshen,
  sha256Hex,
  jsonOf,
  envInt,
  envNum,
  envStr,
  durationSeconds,
} from './lib/ferry.js';

const RATE = envNum('MIXED_RATE', 50);
const DURATION = envStr('MIXED_DURATION', '30s');
const DURATION_S = durationSeconds(DURATION);
const READ_CLIPS = Math.max(1, envInt('MIXED_READ_CLIPS', 20));
const RACERS = Math.max(2, envInt('MIXED_RACERS', 4));
const ONETIME_CLIPS = Math.max(1, envInt('MIXED_ONETIME_CLIPS', Math.round((0.05 * RATE * DURATION_S) / RACERS)));
const READ_P99_MS = envInt('MIXED_READ_P99_MS', 100);
const UPLOAD_P95_MS = envInt('MIXED_UPLOAD_P95_MS', 2000);
const VUS = envInt('MIXED_VUS', 32);
const SELFTEST = envStr('MIXED_ONETIME_SELFTEST', '');
const SLOT_MS = (DURATION_S * 1000) / ONETIME_CLIPS;
const UPLOAD_SIZES = [1024, 64 * 1024, 1024 * 1024];

const onetimeSuccesses = new Counter('onetime_successes');
const onetimeRejections = new Counter('onetime_rejections');
const onetimeOther = new Counter('onetime_unexpected');

const clipTag = (i) => `c${String(i).padStart(3, '0')}`;

const thresholds = {
  http_req_failed: ['rate<0.01'],
  checks: ['rate>0.99'],
  'http_req_duration{name:info}': [`p(99)<${READ_P99_MS}`],
  'http_req_duration{name:read}': [`p(99)<${READ_P99_MS}`],
  'http_req_duration{scenario:uploads}': [`p(95)<${UPLOAD_P95_MS}`],
  onetime_successes: [`count==${ONETIME_CLIPS}`],
  onetime_rejections: [`count==${ONETIME_CLIPS * (RACERS - 1)}`],
  onetime_unexpected: ['count==0'],
};
for (let i = 0; i < ONETIME_CLIPS; i++) thresholds[`onetime_successes{clip:${clipTag(i)}}`] = ['count==1'];

// Arrival rates per minute, so that small MIXED_RATE values keep their proportions.
const perMinute = (share) => Math.max(1, Math.round(share * RATE * 60));

export const options = {
  scenarios: {
    reads: {
      executor: 'constant-arrival-rate',
      rate: perMinute(0.8),
      timeUnit: '1m',
      duration: DURATION,
      preAllocatedVUs: VUS,
      maxVUs: VUS * 4,
      exec: 'reads',
    },
    uploads: {
      executor: 'constant-arrival-rate',
      rate: perMinute(0.15),
      timeUnit: '1m',
      duration: DURATION,
      preAllocatedVUs: Math.max(4, Math.ceil(VUS / 4)),
      maxVUs: VUS,
      exec: 'uploads',
    },
    onetime: {
      executor: 'per-vu-iterations',
      vus: RACERS,
      iterations: ONETIME_CLIPS,
      maxDuration: `${Math.ceil(DURATION_S + 60)}s`,
      exec: 'onetime',
    },
  },
  thresholds,
};

export function setup() {
  const reads = [];
  for (let i = 0; i < READ_CLIPS; i++) {
    const c =
      i % 2 === 0
        ? createTextClip(`mixed read ${i} ${randomText(200)}`, { expiration: '1hr' })
        : uploadThreeStep(randomBytes(16 * 1024), `mixed-${i}.bin`, { expiration: '1hr' });
    if (!c) throw new Error('setup: could not create read clips (FERRY_RATE_LIMITS=off?)');
    reads.push(c.clipId);
  }
  const onetime = [];
  for (let i = 0; i < ONETIME_CLIPS; i++) {
    const c = uploadThreeStep(randomBytes(8 * 1024), `race-${i}.bin`, {
      expiration: '1hr',
      oneTime: SELFTEST !== 'reusable',
    });
    if (!c) throw new Error('setup: could not create one-time clips');
    onetime.push({ id: c.clipId, sha256: c.sha256 });
  }
  if (SELFTEST === 'reusable') console.warn('MIXED_ONETIME_SELFTEST=reusable: the one-time thresholds MUST fail');
  return { reads, onetime };
}

export function reads(data) {
  const id = data.reads[Math.floor(Math.random() * data.reads.length)];
  const ri = info(id);
  check(ri, { 'read: info 200': (r) => r.status === 200 && (jsonOf(r) || {}).clipId === id });
  const rr = read(id);
  check(rr, { 'read: read 200 + redirectTo': (r) => r.status === 200 && (jsonOf(r) || {}).redirectTo === `/api/file/${id}` });
}

const buffers = {};

export function uploads() {
  const size = UPLOAD_SIZES[Math.floor(Math.random() * UPLOAD_SIZES.length)];
  if (!buffers[size]) buffers[size] = randomBytes(size);
  const buf = freshen(buffers[size]);
  const sha = sha256Hex(buf);
  const c = uploadThreeStep(buf, `mixed-up-${size}.bin`, { expiration: '5min' });
  if (!c) return;
  check(c, { 'upload: sha256 == local': (x) => x.sha256 === sha && x.size === size });
  const ri = info(c.clipId);
  check(ri, { 'upload: info of new clip 200': (r) => r.status === 200 });
}

const raceOk = http.expectedStatuses(200, 404, 410);

export function onetime(data) {
  const i = exec.vu.iterationInScenario;
  const clip = data.onetime[i];
  const tags = { clip: clipTag(i) };
  // Every racer wakes at the same instant for clip i.
  const at = exec.scenario.startTime + i * SLOT_MS + 50;
  const wait = at - Date.now();
  if (wait > 0) sleep(wait / 1000);
  const res = download(clip.id, {}, { tags: { name: 'onetime' }, responseCallback: raceOk });
  const won = res.status === 200;
  const lost = res.status === 404 || res.status === 410;
  onetimeSuccesses.add(won ? 1 : 0, tags);
  onetimeRejections.add(lost ? 1 : 0, tags);
  onetimeOther.add(won || lost ? 0 : 1, tags);
  check(res, {
    'onetime: 200 or 404/410': () => won || lost,
    'onetime: winner got the right bytes': (r) => !won || sha256Hex(r.body) === clip.sha256,
  });
}
