// smoke.js — does every main route of ferry work end to end, with correct bytes?
//
// What it measures: correctness, not capacity. 2 VUs x 2 iterations (at most 15 s); each
// iteration: GET /health (200, status OK); a text clip (three-step upload, contentType text)
// -> info -> read (redirectTo) -> download, comparing length and SHA-256 of the bytes with what
// was sent and with the sha256 that complete returned; a 6 MiB file (two 5 MiB-chunk uploads'
// worth: exercises multi-chunk assembly) downloaded whole and with a Range (206 +
// Content-Range); a one-time clip downloaded twice (200 with the right bytes, then 404/410) and
// then invisible to info (404).
//
// Run (against a ferry started with FERRY_RATE_LIMITS=off):
//   k6 run loadtests/smoke.js
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 loadtests/smoke.js
// Env: FERRY_URL, SMOKE_VUS (2), SMOKE_ITERATIONS (2 per VU), SMOKE_FILE_BYTES (6291456),
//      SMOKE_P95_MS (1000).
//
// Thresholds: every check passes (checks rate==1.0); no unexpected HTTP failure
// (http_req_failed rate==0 — the 404/410 of a spent one-time clip are declared expected on
// those requests only); p95 of all request durations below SMOKE_P95_MS.

import http from 'k6/http';
import { check, group } from 'k6';
import {
  health,
  createTextClip,
  uploadThreeStep,
  info,
  read,
  download,
  randomBytes,
  randomText,
  utf8,
  sha256Hex,
  bodyLength,
  jsonOf,
  envInt,
} from './lib/ferry.js';

const VUS = envInt('SMOKE_VUS', 2);
const ITERATIONS = envInt('SMOKE_ITERATIONS', 2);
const FILE_BYTES = envInt('SMOKE_FILE_BYTES', 6 * 1024 * 1024);
const P95_MS = envInt('SMOKE_P95_MS', 1000);

export const options = {
  scenarios: {
    smoke: { executor: 'per-vu-iterations', vus: VUS, iterations: ITERATIONS, maxDuration: '15s' },
  },
  thresholds: {
    checks: ['rate==1.0'],
    http_req_failed: ['rate==0'],
    http_req_duration: [`p(95)<${P95_MS}`],
  },
};

const spentOk = http.expectedStatuses(200, 404, 410);

// Download clip `id` and compare with the bytes sent (`sent`: ArrayBuffer) and the sha256
// reported by complete.
function checkDownload(label, id, sent, completeSha) {
  const res = download(id);
  const sha = res.status === 200 ? sha256Hex(res.body) : '';
  check(res, {
    [`${label}: download 200`]: (r) => r.status === 200,
    [`${label}: download length`]: (r) => bodyLength(r) === sent.byteLength,
    [`${label}: download sha256 == complete.sha256`]: () => sha === completeSha,
    [`${label}: download sha256 == local sha256`]: () => sha === sha256Hex(sent),
    [`${label}: ETag is the sha256`]: (r) => (r.headers['Etag'] || '').indexOf(completeSha) >= 0,
  });
}

export default function () {
  group('health', () => {
    const res = health();
    check(res, {
      'health 200': (r) => r.status === 200,
      'health status OK': (r) => (jsonOf(r) || {}).status === 'OK',
    });
  });

  group('text clip', () => {
    const text = `ferry smoke ✓ ${randomText(200)}\n`;
    const sent = utf8(text);
    const c = createTextClip(text, { expiration: '5min' });
    if (!c) return;
    check(c, {
      'text: complete size': (x) => x.size === sent.byteLength,
      'text: complete sha256 == local': (x) => x.sha256 === sha256Hex(sent),
    });
    const ri = info(c.clipId);
    const ij = jsonOf(ri) || {};
    check(ri, {
      'text: info 200': (r) => r.status === 200,
      'text: info clipId': () => ij.clipId === c.clipId,
      'text: info contentType text': () => ij.contentType === 'text',
      'text: info not one-time': () => ij.oneTime === false,
    });
    const rr = read(c.clipId);
    const rj = jsonOf(rr) || {};
    check(rr, {
      'text: read 200': (r) => r.status === 200,
      'text: read redirectTo': () => rj.redirectTo === `/api/file/${c.clipId}`,
      'text: read contentType text': () => rj.contentType === 'text',
    });
    checkDownload('text', c.clipId, sent, c.sha256);
  });

  group('file clip (multi-chunk) + range', () => {
    const sent = randomBytes(FILE_BYTES);
    const c = uploadThreeStep(sent, 'smoke.bin', { expiration: '5min', parallel: 2 });
    if (!c) return;
    check(c, {
      'file: complete size': (x) => x.size === FILE_BYTES,
      'file: complete sha256 == local': (x) => x.sha256 === sha256Hex(sent),
    });
    const rr = read(c.clipId);
    check(rr, {
      'file: read redirectTo': (r) => (jsonOf(r) || {}).redirectTo === `/api/file/${c.clipId}`,
    });
    checkDownload('file', c.clipId, sent, c.sha256);
    const start = Math.floor(FILE_BYTES / 3);
    const end = start + 1023;
    const rg = download(c.clipId, { Range: `bytes=${start}-${end}` }, { tags: { name: 'download_range' } });
    check(rg, {
      'range: 206': (r) => r.status === 206,
      'range: Content-Range': (r) => r.headers['Content-Range'] === `bytes ${start}-${end}/${FILE_BYTES}`,
      'range: bytes': (r) => r.status === 206 && sha256Hex(r.body) === sha256Hex(sent.slice(start, end + 1)),
    });
  });

  group('one-time clip', () => {
    const sent = randomBytes(4096);
    const c = uploadThreeStep(sent, 'once.bin', { oneTime: true, expiration: '5min' });
    if (!c) return;
    check(c, { 'one-time: complete says oneTime': (x) => x.oneTime === true });
    const first = download(c.clipId, {}, { tags: { name: 'onetime' }, responseCallback: spentOk });
    check(first, {
      'one-time: first download 200': (r) => r.status === 200,
      'one-time: first download bytes': (r) => r.status === 200 && sha256Hex(r.body) === c.sha256,
    });
    const second = download(c.clipId, {}, { tags: { name: 'onetime' }, responseCallback: spentOk });
    check(second, { 'one-time: second download 404/410': (r) => r.status === 404 || r.status === 410 });
    const after = info(c.clipId, { responseCallback: http.expectedStatuses(404) });
    check(after, { 'one-time: info 404 once spent': (r) => r.status === 404 });
  });
}
