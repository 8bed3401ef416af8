// download.js — concurrent content downloads, whole and ranged.
//
// What it measures: download throughput and latency of POST /api/file/<id> with DOWNLOAD_VUS
// looping VUs for DOWNLOAD_DURATION. setup() uploads one clip of each size in DOWNLOAD_SIZES
// (default 64 KiB, 1 MiB and 12 MiB) and passes their ids, sizes and SHA-256s to the VUs.
// Each iteration picks a clip at random and, with probability DOWNLOAD_RANGE_PCT % (50), asks
// for a random single range `Range: bytes=a-b` (expects 206, `Content-Range: bytes a-b/size`
// and b-a+1 bytes), otherwise for the whole clip (expects 200, exact length, ETag = sha256;
// every DOWNLOAD_VERIFY_EVERY-th whole download per VU (default 4) also hashes the body and
// compares it with the sha256 from complete — hashing every 12 MiB body would make k6, not
// ferry, the bottleneck on a small machine).
// Custom metric download_mib (Counter): MiB (2^20 bytes) of bodies received; its rate (shown
// as "/s" in the summary) is the aggregate download throughput in MiB/s. Client and server share the
// machine's CPUs.
//
// Run:
//   k6 run loadtests/download.js
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 -e DOWNLOAD_DURATION=10s loadtests/download.js
// Env: FERRY_URL, DOWNLOAD_DURATION (30s), DOWNLOAD_VUS (8), DOWNLOAD_SIZES (bytes,
//      comma-separated; 65536,1048576,12582912), DOWNLOAD_RANGE_PCT (50),
//      DOWNLOAD_VERIFY_EVERY (4), DOWNLOAD_RANGE_P95_MS (100), DOWNLOAD_MIN_MIB_S (10).
//
// Thresholds: failed requests < 1 %; checks > 99 %; p95 of ranged downloads (tag
// download_range, at most 64 KiB each) < DOWNLOAD_RANGE_P95_MS; aggregate throughput
// (download_mib rate) above DOWNLOAD_MIN_MIB_S MiB/s.

import { check } from 'k6';
import { Counter } from 'k6/metrics';
import { uploadThreeStep, download, randomBytes, sha256Hex, bodyLength, envInt, envStr } from './lib/ferry.js';

const DURATION = envStr('DOWNLOAD_DURATION', '30s');
const VUS = envInt('DOWNLOAD_VUS', 8);
const SIZES = envStr('DOWNLOAD_SIZES', '65536,1048576,12582912')
  .split(',')
  .map((s) => parseInt(s.trim(), 10))
  .filter((n) => n > 0);
const RANGE_PCT = envInt('DOWNLOAD_RANGE_PCT', 50);
const VERIFY_EVERY = Math.max(1, envInt('DOWNLOAD_VERIFY_EVERY', 4));
const RANGE_P95_MS = envInt('DOWNLOAD_RANGE_P95_MS', 100);
const MIN_MIB_S = envInt('DOWNLOAD_MIN_MIB_S', 10);

const downloadMib = new Counter('download_mib');

export const options = {
  scenarios: {
    download: { executor: 'constant-vus', vus: VUS, duration: DURATION, gracefulStop: '30s' },
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    'http_req_duration{name:download_range}': [`p(95)<${RANGE_P95_MS}`],
    'http_req_duration{name:download}': ['max>=0'], // reported, not bounded (sizes differ 200x)
    download_mib: [`rate>${MIN_MIB_S}`],
  },
};

export function setup() {
  const clips = [];
  for (const size of SIZES) {
    const c = uploadThreeStep(randomBytes(size), `download-${size}.bin`, { expiration: '1hr', parallel: 2 });
    if (!c) throw new Error(`setup: could not upload a ${size}-byte clip (FERRY_RATE_LIMITS=off?)`);
    clips.push({ id: c.clipId, size: c.size, sha256: c.sha256 });
  }
  return { clips };
}

let whole = 0; // whole downloads done by this VU

export default function (data) {
  const clip = data.clips[Math.floor(Math.random() * data.clips.length)];
  if (Math.random() * 100 < RANGE_PCT) {
    const len = 1 + Math.floor(Math.random() * Math.min(65536, clip.size));
    const start = Math.floor(Math.random() * (clip.size - len + 1));
    const end = start + len - 1;
    const res = download(clip.id, { Range: `bytes=${start}-${end}` }, { tags: { name: 'download_range' } });
    check(res, {
      'range: 206': (r) => r.status === 206,
      'range: Content-Range': (r) => r.headers['Content-Range'] === `bytes ${start}-${end}/${clip.size}`,
      'range: body length': (r) => bodyLength(r) === len,
    });
    if (res.status === 206) downloadMib.add(Math.max(0, bodyLength(res)) / 1048576);
  } else {
    whole++;
    const res = download(clip.id);
    check(res, {
      'whole: 200': (r) => r.status === 200,
      'whole: body length == size': (r) => bodyLength(r) === clip.size,
      'whole: Content-Length': (r) => r.headers['Content-Length'] === String(clip.size),
      'whole: ETag is sha256': (r) => (r.headers['Etag'] || '').indexOf(clip.sha256) >= 0,
    });
    if (whole % VERIFY_EVERY === 0 && res.status === 200) {
      check(res, { 'whole: body sha256 == complete.sha256': (r) => sha256Hex(r.body) === clip.sha256 });
    }
    if (res.status === 200) downloadMib.add(Math.max(0, bodyLength(res)) / 1048576);
  }
}
