// lookup.js — the hot metadata route, GET /api/clip/<id>/info, at a rising arrival rate.
//
// What it measures: latency and errors of the info route (served from ferry's in-process
// lookup cache) while the offered load rises linearly from LOOKUP_START_RATE to
// LOOKUP_PEAK_RATE requests/s over LOOKUP_DURATION (ramping-arrival-rate: an open model, so a
// slow server does not slow the offered load down; if k6 runs out of VUs it reports
// `dropped_iterations` instead). setup() creates LOOKUP_CLIPS clips (default 1) and every
// request asks for one of them. Note that k6 runs on the same machine as ferry: at the top of
// the ramp the two compete for CPU, so the p99 includes client-side queueing.
//
// Run:
//   k6 run loadtests/lookup.js
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 -e LOOKUP_DURATION=10s -e LOOKUP_PEAK_RATE=500 loadtests/lookup.js
// Env: FERRY_URL, LOOKUP_DURATION (30s), LOOKUP_START_RATE (100), LOOKUP_PEAK_RATE (2000),
//      LOOKUP_VUS (64 pre-allocated), LOOKUP_MAX_VUS (256), LOOKUP_CLIPS (1), LOOKUP_P99_MS (50).
//
// Thresholds: p99 of info requests < LOOKUP_P99_MS; info requests failing (non-2xx/3xx or
// transport error) < 1 %; checks (200 and the right clipId) > 99 %. `http_reqs{name:info}` has
// a trivial count>0 threshold only so that its rate appears in --summary-export output.

import { check } from 'k6';
import { createTextClip, info, jsonOf, envInt, envStr, randomText } from './lib/ferry.js';

const DURATION = envStr('LOOKUP_DURATION', '30s');
const START_RATE = envInt('LOOKUP_START_RATE', 100);
const PEAK_RATE = envInt('LOOKUP_PEAK_RATE', 2000);
const VUS = envInt('LOOKUP_VUS', 64);
const MAX_VUS = Math.max(VUS, envInt('LOOKUP_MAX_VUS', 256));
const CLIPS = Math.max(1, envInt('LOOKUP_CLIPS', 1));
const P99_MS = envInt('LOOKUP_P99_MS', 50);

export const options = {
  discardResponseBodies: false,
  scenarios: {
    lookup: {
      executor: 'ramping-arrival-rate',
      startRate: START_RATE,
      timeUnit: '1s',
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
      stages: [{ target: PEAK_RATE, duration: DURATION }],
    },
  },
  thresholds: {
    'http_req_duration{name:info}': [`p(99)<${P99_MS}`],
    'http_req_failed{name:info}': ['rate<0.01'],
    'http_reqs{name:info}': ['count>0'],
    checks: ['rate>0.99'],
  },
};

export function setup() {
  const ids = [];
  for (let i = 0; i < CLIPS; i++) {
    const c = createTextClip(`lookup target ${i} ${randomText(64)}`, { expiration: '1hr' });
    if (!c) throw new Error('setup: could not create a clip (is ferry running with FERRY_RATE_LIMITS=off?)');
    ids.push(c.clipId);
  }
  return { ids };
}

export default function (data) {
  const id = data.ids[Math.floor(Math.random() * data.ids.length)];
  const res = info(id);
  check(res, {
    'info 200': (r) => r.status === 200,
    'info clipId': (r) => r.status === 200 && (jsonOf(r) || {}).clipId === id,
  });
}
