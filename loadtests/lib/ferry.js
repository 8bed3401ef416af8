// Shared helpers for the ferry k6 load tests (loadtests/*.js).
//
// Every request is tagged with a short `name` (health, initiate, chunk, complete, info, read,
// download, download_range, onetime, metrics, ...) so that thresholds can target one group,
// e.g. 'http_req_duration{name:info}', and so that concrete clip ids never become metric
// labels (k6 would otherwise use the URL as the name tag).
//
// Base URL: __ENV.FERRY_URL (default http://127.0.0.1:8080), e.g.
//   k6 run -e FERRY_URL=http://127.0.0.1:8081 loadtests/smoke.js
// The server must run with FERRY_RATE_LIMITS=off: every k6 VU shares one client address, so
// the per-client limits (60 upload starts, 300 reads, 120 downloads a minute) would answer 429.

import http from 'k6/http';
import { check } from 'k6';
import { randomBytes as k6RandomBytes, sha256 } from 'k6/crypto';

export const BASE_URL = (__ENV.FERRY_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');

const JSON_HEADERS = { 'Content-Type': 'application/json' };
const OCTET_HEADERS = { 'Content-Type': 'application/octet-stream' };

// ---- small utilities ----------------------------------------------------------------------

/** Integer from __ENV[name], or `def` when unset/empty. Throws on garbage (fail fast). */
export function envInt(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${JSON.stringify(v)}`);
  return Math.floor(n);
}

/** Number (may be fractional) from __ENV[name], or `def`. */
export function envNum(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${JSON.stringify(v)}`);
  return n;
}

/** String from __ENV[name], or `def`. */
export function envStr(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

/** Seconds in a k6 duration string such as "30s", "2m", "1m30s", "500ms", "1h". */
export function durationSeconds(d) {
  if (typeof d === 'number') return d;
  let total = 0;
  let matched = '';
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let m;
  while ((m = re.exec(d)) !== null) {
    matched += m[0];
    const n = parseFloat(m[1]);
    total += m[2] === 'ms' ? n / 1000 : m[2] === 's' ? n : m[2] === 'm' ? n * 60 : n * 3600;
  }
  if (matched !== d) throw new Error(`not a duration: ${JSON.stringify(d)} (use e.g. 30s, 2m, 1m30s)`);
  return total;
}

/** `n` random bytes as an ArrayBuffer (k6/crypto, Go's crypto/rand: fast for MiBs). */
export function randomBytes(n) {
  return n > 0 ? k6RandomBytes(n) : new ArrayBuffer(0);
}

/** Overwrite the first bytes of `buf` with fresh random bytes, so that re-uploading the same
 * buffer yields a different file (and a different SHA-256) without regenerating it all. */
export function freshen(buf, n = 32) {
  const len = Math.min(n, buf.byteLength);
  if (len > 0) new Uint8Array(buf).set(new Uint8Array(k6RandomBytes(len)), 0);
  return buf;
}

/** A random ASCII string of `n` characters (letters and digits). */
export function randomText(n) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  const bytes = new Uint8Array(k6RandomBytes(Math.max(n, 1)));
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[bytes[i] % alphabet.length];
  return s;
}

/** UTF-8 encoding of a JS string as an ArrayBuffer (k6 has no TextEncoder). */
export function utf8(str) {
  const out = [];
  for (let i = 0; i < str.length; i++) {
    let c = str.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < str.length) {
      const d = str.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out).buffer;
}

/** Lower-case hex SHA-256 of a string or ArrayBuffer. */
export function sha256Hex(data) {
  return sha256(data, 'hex');
}

/** Byte length of a response body (ArrayBuffer with responseType 'binary', else string). */
export function bodyLength(res) {
  if (res.body === null || res.body === undefined) return -1;
  return typeof res.body === 'string' ? res.body.length : res.body.byteLength;
}

/** res.json() that returns null instead of throwing on a non-JSON body. */
export function jsonOf(res) {
  try {
    return res.json();
  } catch (e) {
    return null;
  }
}

/** Merge request params: our tags win over nothing, caller tags are added. */
function params(name, extra = {}) {
  const p = Object.assign({}, extra);
  p.tags = Object.assign({ name }, extra.tags || {});
  return p;
}

// ---- routes -------------------------------------------------------------------------------

/** GET /health (tag health). */
export function health() {
  return http.get(`${BASE_URL}/health`, params('health'));
}

/** GET /metrics (tag metrics). 404 is "expected" so that an older build without the route
 * does not count as a failed request. */
export function metrics() {
  return http.get(
    `${BASE_URL}/metrics`,
    params('metrics', { responseCallback: http.expectedStatuses(200, 404) }),
  );
}

/** Sum of every sample of metric `name` in Prometheus text `text` (all label sets), or null
 * when the metric is absent. */
export function promValue(text, name) {
  if (!text) return null;
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.length === 0 || line[0] === '#') continue;
    const sp = line.lastIndexOf(' ');
    if (sp < 0) continue;
    const key = line.slice(0, sp);
    const metric = key.indexOf('{') >= 0 ? key.slice(0, key.indexOf('{')) : key;
    if (metric !== name) continue;
    const v = parseFloat(line.slice(sp + 1));
    if (Number.isFinite(v)) {
      found = true;
      sum += v;
    }
  }
  return found ? sum : null;
}

/** GET /api/clip/<id>/info (tag info): the hot, cached metadata route. */
export function info(id, extra = {}) {
  return http.get(`${BASE_URL}/api/clip/${id}/info`, params('info', extra));
}

/** GET /api/clip/<id> (tag read): metadata with redirectTo; never consumes. */
export function read(id, extra = {}) {
  return http.get(`${BASE_URL}/api/clip/${id}`, params('read', extra));
}

/**
 * POST /api/file/<id> with body `{}` (tag download): the content download.
 * headers: extra request headers (e.g. { Range: 'bytes=0-1023' }).
 * extra: more k6 params, e.g. { responseType: 'none' } to discard the body,
 *        { tags: { name: 'onetime' } }, { responseCallback: http.expectedStatuses(200, 404, 410) }.
 * The default responseType is 'binary' (res.body is an ArrayBuffer).
 */
export function download(id, headers = {}, extra = {}) {
  const p = params('download', Object.assign({ responseType: 'binary' }, extra));
  p.headers = Object.assign({}, JSON_HEADERS, headers, extra.headers || {});
  return http.post(`${BASE_URL}/api/file/${id}`, '{}', p);
}

/**
 * The three-step Qopy upload: POST /api/upload/initiate, one raw
 * `application/octet-stream` POST per chunk of the returned chunkSize to
 * /api/upload/chunk/<uploadId>/<i>, then POST /api/upload/complete/<uploadId> with `{}`.
 *
 * bytes: ArrayBuffer (or a string, sent as UTF-8).
 * opts: contentType 'file' | 'text' (default 'file'), expiration (default '1hr'),
 *       oneTime (false), maxDownloads (unset), mimeType (unset),
 *       parallel: chunks in flight at once (default 1; >1 uses http.batch),
 *       chunkSha256: send X-Chunk-Sha256 with each chunk (default false),
 *       tags: extra tags for all three steps.
 * Returns the complete JSON ({clipId, sha256, size, url, oneTime, deleteToken, ...}) or null
 * after a failed step; every step is a k6 check ("initiate 200", "chunk 200", "complete 200"),
 * so failures show in the `checks` rate.
 */
export function uploadThreeStep(bytes, filename, opts = {}) {
  const buf = typeof bytes === 'string' ? utf8(bytes) : bytes;
  const size = buf.byteLength;
  const tags = opts.tags || {};
  const init = {
    filename,
    filesize: size,
    contentType: opts.contentType || 'file',
    expiration: opts.expiration || '1hr',
    oneTime: !!opts.oneTime,
  };
  if (opts.maxDownloads !== undefined && opts.maxDownloads !== null) init.maxDownloads = opts.maxDownloads;
  if (opts.mimeType) init.mimeType = opts.mimeType;

  const ri = http.post(
    `${BASE_URL}/api/upload/initiate`,
    JSON.stringify(init),
    params('initiate', { headers: JSON_HEADERS, tags }),
  );
  const ij = ri.status === 200 ? jsonOf(ri) : null;
  const initOk = check(ri, {
    'initiate 200': (r) => r.status === 200,
    'initiate has uploadId and chunkSize': () => !!(ij && ij.uploadId && ij.chunkSize > 0),
  });
  if (!initOk) {
    console.warn(`initiate ${filename} (${size} B): ${ri.status} ${String(ri.body).slice(0, 200)}`);
    return null;
  }
  const uploadId = ij.uploadId;
  const chunkSize = ij.chunkSize;
  const total = Math.max(1, Math.ceil(size / chunkSize));

  const chunkReq = (i) => {
    const body = buf.slice(i * chunkSize, Math.min(size, (i + 1) * chunkSize));
    const headers = Object.assign({}, OCTET_HEADERS);
    if (opts.chunkSha256) headers['X-Chunk-Sha256'] = sha256(body, 'hex');
    return {
      method: 'POST',
      url: `${BASE_URL}/api/upload/chunk/${uploadId}/${i}`,
      body,
      params: params('chunk', { headers, tags }),
    };
  };
  const parallel = Math.max(1, opts.parallel || 1);
  let chunksOk = true;
  for (let first = 0; first < total; first += parallel) {
    const reqs = [];
    for (let i = first; i < Math.min(total, first + parallel); i++) reqs.push(chunkReq(i));
    const responses =
      reqs.length === 1 ? [http.request(reqs[0].method, reqs[0].url, reqs[0].body, reqs[0].params)] : http.batch(reqs);
    for (const rc of responses) {
      if (!check(rc, { 'chunk 200': (r) => r.status === 200 })) {
        chunksOk = false;
        console.warn(`chunk of ${uploadId}: ${rc.status} ${String(rc.body).slice(0, 200)}`);
      }
    }
    if (!chunksOk) return null;
  }

  const rk = http.post(
    `${BASE_URL}/api/upload/complete/${uploadId}`,
    '{}',
    params('complete', { headers: JSON_HEADERS, tags }),
  );
  const cj = rk.status === 200 ? jsonOf(rk) : null;
  const completeOk = check(rk, {
    'complete 200': (r) => r.status === 200,
    'complete has clipId and sha256': () => !!(cj && cj.clipId && cj.sha256),
  });
  if (!completeOk) {
    console.warn(`complete ${uploadId}: ${rk.status} ${String(rk.body).slice(0, 200)}`);
    return null;
  }
  return cj;
}

/** A text clip through the three-step upload (contentType "text"). Returns the complete JSON
 * or null. opts as uploadThreeStep (expiration, oneTime, ...). */
export function createTextClip(text, opts = {}) {
  return uploadThreeStep(utf8(text), opts.filename || 'clip.txt', Object.assign({}, opts, { contentType: 'text' }));
}
