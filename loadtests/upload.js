// upload.js — concurrent three-step (chunked) uploads of mixed sizes.
//
// What it measures: upload throughput and latency. Three scenarios run at once for
// UPLOAD_DURATION, each a fixed number of looping VUs uploading one size:
//   small  10 KiB  (UPLOAD_SMALL_VUS, default 4)
//   medium  1 MiB  (UPLOAD_MEDIUM_VUS, default 2)
//   large  12 MiB  (UPLOAD_LARGE_VUS, default 2; three chunks of the server's 5 MiB chunkSize,
//                   sent UPLOAD_PARALLEL (default 2) at a time)
// Each upload is initiate + raw application/octet-stream chunks + complete; the bytes are
// random (generated once per VU, with fresh leading bytes per upload so no two files are
// equal), and the SHA-256 and size that complete returns are checked against the local ones.
// Custom metrics:
//   upload_mib          Counter: MiB (2^20 bytes) of completed uploads; its rate (shown as
//                       "/s" in the summary) is the aggregate upload throughput in MiB/s.
//   upload_duration     Trend (time): initiate -> complete answered, per upload, tagged size.
//   upload_mib_per_s    Trend: per-upload throughput in MiB/s (size / upload_duration).
// Client and server share the machine, so these figures include k6's own CPU and copies.
//
// Run:
//   k6 run loadtests/upload.js
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 -e UPLOAD_DURATION=10s loadtests/upload.js
// Env: FERRY_URL, UPLOAD_DURATION (30s), UPLOAD_SMALL_VUS (4), UPLOAD_MEDIUM_VUS (2),
//      UPLOAD_LARGE_VUS (2), UPLOAD_PARALLEL (2), UPLOAD_MIN_MIB_S (2: floor on the aggregate
//      rate), UPLOAD_LARGE_P95_MS (5000), UPLOAD_MEDIUM_P95_MS (1000), UPLOAD_SMALL_P95_MS (500).
//
// Thresholds: failed requests < 1 %; checks > 99 %; aggregate throughput (upload_mib rate)
// above UPLOAD_MIN_MIB_S MiB/s; p95 of a whole upload (initiate -> complete answered) below
// UPLOAD_LARGE_P95_MS (12 MiB), UPLOAD_MEDIUM_P95_MS (1 MiB), UPLOAD_SMALL_P95_MS (10 KiB).
// Every completed upload is fsynced by ferry, so even 10 KiB uploads cost a disk flush.

import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { uploadThreeStep, randomBytes, freshen, sha256Hex, envInt, envStr } from './lib/ferry.js';

const DURATION = envStr('UPLOAD_DURATION', '30s');
const PARALLEL = Math.max(1, envInt('UPLOAD_PARALLEL', 2));
const MIN_MIB_S = envInt('UPLOAD_MIN_MIB_S', 2);
const LARGE_P95_MS = envInt('UPLOAD_LARGE_P95_MS', 5000);
const MEDIUM_P95_MS = envInt('UPLOAD_MEDIUM_P95_MS', 1000);
const SMALL_P95_MS = envInt('UPLOAD_SMALL_P95_MS', 500);

const SIZES = {
  small: { bytes: 10 * 1024, label: '10KiB', vus: envInt('UPLOAD_SMALL_VUS', 4) },
  medium: { bytes: 1024 * 1024, label: '1MiB', vus: envInt('UPLOAD_MEDIUM_VUS', 2) },
  large: { bytes: 12 * 1024 * 1024, label: '12MiB', vus: envInt('UPLOAD_LARGE_VUS', 2) },
};

const uploadMib = new Counter('upload_mib');
const uploadDuration = new Trend('upload_duration', true);
const uploadMibPerS = new Trend('upload_mib_per_s');

const scenarios = {};
for (const [name, s] of Object.entries(SIZES)) {
  if (s.vus > 0) {
    scenarios[name] = {
      executor: 'constant-vus',
      vus: s.vus,
      duration: DURATION,
      gracefulStop: '30s',
      tags: { size: s.label },
    };
  }
}

export const options = {
  scenarios,
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    upload_mib: [`rate>${MIN_MIB_S}`],
    'upload_duration{size:12MiB}': [`p(95)<${LARGE_P95_MS}`],
    'upload_duration{size:1MiB}': [`p(95)<${MEDIUM_P95_MS}`],
    'upload_duration{size:10KiB}': [`p(95)<${SMALL_P95_MS}`],
    upload_mib_per_s: ['avg>0'],
  },
};

let buffer = null; // this VU's random file, generated on its first iteration

export default function () {
  const size = SIZES[exec.scenario.name];
  if (buffer === null) buffer = randomBytes(size.bytes);
  freshen(buffer);
  const localSha = sha256Hex(buffer);
  const t0 = Date.now();
  const c = uploadThreeStep(buffer, `load-${size.label}.bin`, { expiration: '5min', parallel: PARALLEL });
  const ms = Date.now() - t0;
  if (!c) return;
  const ok = check(c, {
    'complete size == sent': (x) => x.size === size.bytes,
    'complete sha256 == local': (x) => x.sha256 === localSha,
  });
  if (ok) {
    uploadMib.add(size.bytes / 1048576);
    uploadDuration.add(ms);
    uploadMibPerS.add(size.bytes / 1048576 / Math.max(ms, 1) * 1000);
  }
}
