// ferry's HTTP API as the UI uses it (API.md): JSON calls with one error type, retries with
// exponential backoff and jitter for idempotent calls (429 waits for Retry-After; offline waits
// for the network), and chunk uploads through XMLHttpRequest, which reports upload progress.
// Nothing here sees plaintext, keys or passwords: callers hand it ciphertext and hashes.

export class ApiError extends Error {
  constructor(status, body = {}, retryAfter = null) {
    super(body.message || (status ? `The server answered ${status}.` : 'The network failed.'));
    this.status = status;
    this.code = body.code ?? null;
    this.body = body;
    this.retryAfter = retryAfter;
  }

  get network() {
    return this.status === 0;
  }

  /** Worth trying again: the network, a timeout, a rate limit or a server fault. */
  get transient() {
    return this.status === 0 || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

function retryAfterSeconds(value) {
  if (!value) return null;
  const n = Number(value);
  if (Number.isFinite(n)) return Math.max(0, n);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, (at - Date.now()) / 1000) : null;
}

const FETCH_DEFAULTS = { cache: 'no-store', credentials: 'same-origin', referrerPolicy: 'no-referrer' };

async function call(method, path, body, { signal, headers = {} } = {}) {
  let res;
  try {
    res = await fetch(path, {
      ...FETCH_DEFAULTS,
      method,
      signal,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0);
  }
  return res;
}

async function failure(res) {
  const body = await res.json().catch(() => ({}));
  return new ApiError(res.status, body, retryAfterSeconds(res.headers.get('retry-after')));
}

export async function request(method, path, body, options) {
  const res = await call(method, path, body, options);
  if (!res.ok) throw await failure(res);
  return res.status === 204 ? {} : res.json().catch(() => ({}));
}

export const getJson = (path, options) => request('GET', path, undefined, options);
export const postJson = (path, body = {}, options) => request('POST', path, body, options);

/** Retire a clip early with the delete token its creator got (204). */
export const deleteClip = (id, token) => request('DELETE', `/api/clip/${id}`, undefined, { headers: { 'x-delete-token': token } });

/** A whole (small) response body, e.g. an encrypted text. */
export async function postForBytes(path, body = {}, options) {
  const res = await call('POST', path, body, options);
  if (!res.ok) throw await failure(res);
  return new Uint8Array(await res.arrayBuffer());
}

let config = null;
/** `GET /api/config`, once per page. */
export async function serverConfig() {
  config ??= getJson('/api/config').catch((e) => {
    config = null;
    throw e;
  });
  return config;
}

/** Half the exponential step, plus up to as much again at random ("equal jitter"). */
export function backoff(attempt, base = 500, cap = 30000) {
  const step = Math.min(cap, base * 2 ** attempt);
  return step / 2 + (Math.random() * step) / 2;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once the browser says it is online again. */
export function online() {
  if (navigator.onLine) return Promise.resolve();
  return new Promise((resolve) => window.addEventListener('online', () => resolve(), { once: true }));
}

/** How long to wait before try number `attempt + 1` after `error`. */
export function retryDelay(error, attempt) {
  if (error.status === 429 && error.retryAfter !== null) return error.retryAfter * 1000 + Math.random() * 250;
  return backoff(attempt);
}

/**
 * Run `fn` until it succeeds, retrying transient failures up to `attempts` times; while the
 * browser is offline it waits without counting. `onRetry(error, delayMs)` hears each wait.
 */
export async function withRetries(fn, { attempts = 6, onRetry = () => {} } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof ApiError) || !e.transient || attempt + 1 >= attempts) throw e;
      if (!navigator.onLine) {
        onRetry(e, null);
        await online();
        attempt--;
        continue;
      }
      const delay = retryDelay(e, attempt);
      onRetry(e, delay);
      await sleep(delay);
    }
  }
}

/**
 * POST one chunk's ciphertext. Returns `{ done, abort }`: `done` resolves with the server's
 * answer or rejects with an ApiError (status 0 for the network, 'aborted' code when aborted);
 * `onProgress(bytesSent)` follows the upload.
 */
export function sendChunk(uploadId, index, bytes, sha256, onProgress) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open('POST', `/api/upload/chunk/${uploadId}/${index}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    xhr.setRequestHeader('x-chunk-sha256', sha256);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response ?? {});
      else reject(new ApiError(xhr.status, xhr.response ?? {}, retryAfterSeconds(xhr.getResponseHeader('retry-after'))));
    };
    xhr.onerror = () => reject(new ApiError(0));
    xhr.ontimeout = () => reject(new ApiError(0));
    xhr.onabort = () => reject(new ApiError(0, { code: 'aborted', message: 'Stopped.' }));
    xhr.send(bytes);
  });
  return { done, abort: () => xhr.abort() };
}
