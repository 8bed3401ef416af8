// ferry's HTTP API as the UI uses it (API.md): JSON calls with one error type, retries with
// exponential backoff and jitter for idempotent calls (429 waits for Retry-After; offline waits
// for the network), and chunk uploads (ChunkSender, through a worker: see send-worker.js).
// Nothing here sees plaintext, keys or passwords: callers hand it ciphertext and hashes.

import { postChunk } from './chunk-xhr.js';
import { startWorker } from './workers.js';

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
 * Run `fn` until it succeeds, retrying failures `retryOn` accepts (transient ones by default)
 * up to `attempts` times; while the browser is offline it waits without counting.
 * `onRetry(error, delayMs)` hears each wait.
 */
export async function withRetries(fn, { attempts = 6, onRetry = () => {}, retryOn = (e) => e.transient } = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!(e instanceof ApiError) || !retryOn(e) || attempt + 1 >= attempts) throw e;
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

/** Chunks a sending worker posts before it is replaced (see send-worker.js for why). */
export const SEND_RECYCLE = 2;

/** How long a chunk upload may go without progress before it counts as a dropped connection. */
export const STALL_MS = 60000;

/**
 * Sends one upload sender's chunks, one at a time, through a dedicated worker that is replaced
 * every `recycleAfter` chunks (see send-worker.js for why); where no module worker can run,
 * from the page. `send` returns `{ done, abort }`: `done` resolves with the server's answer or
 * rejects with an ApiError (status 0 for the network; code 'aborted' when aborted, 'stalled'
 * after `stallMs` without progress). `onProgress(bytesSent)` follows the upload. The body's
 * buffer is handed over to the worker: the caller must not use `bytes` afterwards. A view
 * that does not span its buffer is copied first, unless `ownBuffer` says the whole buffer is
 * this chunk's to give. With `onSpent`, the body comes back as soon as the request has taken
 * its copy, for the caller to fill again: `onSpent(bytes)`.
 */
export class ChunkSender {
  constructor({ recycleAfter = SEND_RECYCLE, stallMs = STALL_MS, onSpent = null } = {}) {
    this.recycleAfter = recycleAfter;
    this.stallMs = stallMs;
    this.onSpent = onSpent;
    this.used = 0;
    this.worker = null;
    this.spare = null;
    this.closed = false;
  }

  start() {
    if (typeof Worker !== 'function') return Promise.resolve(null);
    return startWorker(new URL('./send-worker.js', import.meta.url)).then((w) => {
      if (this.closed) w?.terminate();
      return this.closed ? null : w;
    });
  }

  /**
   * A channel to post one chunk: `start(message, transfer)` and `abort()`. The worker that
   * will follow the current one is started while it posts its last chunk, so no chunk waits
   * for a worker to start.
   */
  async channel(report) {
    if (!this.worker || this.used >= this.recycleAfter) {
      this.worker?.terminate();
      const spare = this.spare;
      this.spare = null;
      this.worker = await (spare ?? this.start());
      this.used = 0;
    }
    const worker = this.worker;
    if (worker) {
      this.used++;
      if (this.used >= this.recycleAfter && !this.spare) this.spare = this.start();
      worker.onmessage = ({ data }) => report(data);
      worker.onerror = () => report({ type: 'failed' });
      return { start: (msg, transfer) => worker.postMessage(msg, transfer), abort: () => worker.postMessage({ type: 'abort' }) };
    }
    let abort = () => {};
    return {
      start: (msg) => {
        abort = postChunk(msg.url, msg.body, msg.sha256, report);
        if (msg.giveBack) report({ type: 'spent', body: msg.body });
      },
      abort: () => abort(),
    };
  }

  send(uploadId, index, bytes, sha256, onProgress, { ownBuffer = false } = {}) {
    let last = Date.now();
    let stalled = false;
    let stopped = false;
    let channel = null;
    let watchdog = null;
    const answered = new Promise((resolve, reject) => {
      this.channel((msg) => {
        if (msg.type === 'spent') return this.onSpent?.(msg.body);
        last = Date.now();
        if (msg.type === 'progress') return onProgress(msg.loaded);
        if (msg.type === 'sent') return undefined;
        clearInterval(watchdog);
        if (msg.type === 'answer') {
          let body = {};
          try {
            body = JSON.parse(msg.body || '{}');
          } catch {
            // not JSON: the status says enough
          }
          if (msg.status >= 200 && msg.status < 300) resolve(body);
          else reject(new ApiError(msg.status, body, retryAfterSeconds(msg.retryAfter)));
        } else if (msg.type === 'aborted') {
          reject(new ApiError(0, { code: stalled ? 'stalled' : 'aborted', message: 'Stopped.' }));
        } else {
          reject(new ApiError(0));
        }
        return undefined;
      }).then((ready) => {
        channel = ready;
        if (stopped) return reject(new ApiError(0, { code: 'aborted', message: 'Stopped.' }));
        // A connection that silently died (the browser still online) would never end: give
        // up on it after `stallMs` without progress, as a network failure the scheduler retries.
        last = Date.now();
        watchdog = setInterval(() => {
          if (Date.now() - last > this.stallMs) {
            stalled = true;
            channel.abort();
          }
        }, Math.min(5000, this.stallMs / 2));
        const whole = ownBuffer || (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength);
        const body = whole ? bytes : bytes.slice();
        channel.start({ url: `/api/upload/chunk/${uploadId}/${index}`, body, sha256, giveBack: !!this.onSpent }, [body.buffer]);
        return undefined;
      }, reject);
    });
    return {
      done: answered,
      abort: () => {
        stopped = true;
        channel?.abort();
      },
    };
  }

  close() {
    this.closed = true;
    this.worker?.terminate();
    this.worker = null;
    this.spare?.then((w) => w?.terminate());
    this.spare = null;
  }
}
