// Sending a clip: texts as one V3 blob, files as a V4 stream encrypted chunk by chunk while it
// uploads. `ChunkUploader` is the scheduler: a few chunks in flight, each made only when a
// sender is free (so about five chunks of plaintext and ciphertext exist at once, whatever the
// file size), retried with exponential backoff and jitter, 429 waiting for Retry-After, paused
// and resumed by the user or by the network going away. `shareFile`, `shareText` and
// `resumeFile` run the whole initiate → chunks → complete exchange; resuming proves the file
// unchanged first (FORMAT.md). No DOM here: the screens listen to events.

import { ApiError, ChunkSender, deleteClip, getJson, postJson, request, retryDelay, sleep, withRetries } from './api.js';
import { fromBase64Url, randomBytes, sha256Hex, toBase64Url, utf8 } from './crypto/bytes.js';
import { accessCodeHash } from './crypto/access.js';
import * as v3 from './crypto/v3.js';
import * as v4 from './crypto/v4.js';
import { forgetUpload, saveUpload } from './resume-store.js';
import { startWorker } from './workers.js';
import { newQuickSecret, newTextSecret } from './secret.js';
import { exactBytes, formatBytes } from './units.js';
import { ZipArchive } from './zip.js';

/** A refusal the person can act on (too large, a different file, ...). */
export class UserError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Cancelled extends Error {
  constructor() {
    super('The upload was cancelled.');
    this.code = 'cancelled';
  }
}

/**
 * Uploads the chunks of one session. Events: `state` ({state, error}), `progress` ({sent,
 * total, speed, eta}), `retry` ({index, attempt, delay, error}), `sending` ({index}) and
 * `chunk` ({index}) when one is acknowledged. States: running, paused, offline, stalled (a
 * chunk failed `maxAttempts` times; `resume()` tries again), done, cancelled.
 */
export class ChunkUploader extends EventTarget {
  constructor({ uploadId, totalChunks, chunkLength, makeChunk, acknowledged = [], concurrency = 4, maxAttempts = 8 }) {
    super();
    this.uploadId = uploadId;
    this.totalChunks = totalChunks;
    this.chunkLength = chunkLength;
    this.makeChunk = makeChunk;
    this.concurrency = concurrency;
    this.maxAttempts = maxAttempts;
    this.acked = new Set(acknowledged);
    this.queue = [];
    this.inflight = new Map();
    this.waiters = [];
    this.state = 'running';
    this.cancelled = false;
    this.total = 0;
    this.ackedBytes = 0;
    for (let c = 0; c < totalChunks; c++) {
      this.total += chunkLength(c);
      if (this.acked.has(c)) this.ackedBytes += chunkLength(c);
    }
    this.making = 0;
    this.makeWaiters = [];
    this.samples = [];
    this.onOnline = () => this.state === 'offline' && this.setState('running');
    this.onOffline = () => {
      if (this.state !== 'running') return;
      this.setState('offline');
      this.abortAll();
    };
  }

  get sent() {
    let s = this.ackedBytes;
    for (const f of this.inflight.values()) s += f.loaded;
    return Math.min(s, this.total);
  }

  setState(state, error = null) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state, error } }));
    if (state === 'running') this.wake();
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }

  abortAll() {
    for (const f of this.inflight.values()) f.abort();
  }

  pause() {
    if (this.state === 'running' || this.state === 'offline') {
      this.setState('paused');
      this.abortAll();
    }
  }

  resume() {
    if (this.state === 'paused' || this.state === 'stalled' || this.state === 'offline') {
      this.setState(navigator.onLine ? 'running' : 'offline');
    }
  }

  cancel() {
    this.cancelled = true;
    this.abortAll();
    this.setState('cancelled');
    this.wake();
  }

  /** Send these chunks again (the server lost or refused them at complete). */
  requeue(indexes) {
    for (const i of indexes) {
      if (this.acked.delete(i)) this.ackedBytes -= this.chunkLength(i);
    }
  }

  async gate() {
    for (;;) {
      if (this.cancelled) throw new Cancelled();
      if (this.state === 'running') return;
      await new Promise((resolve) => this.waiters.push(resolve));
    }
  }

  /**
   * Chunk `index` from `makeChunk`. At most `makeChunk.parallel` chunks (1 unless it says more:
   * fileChunks runs a small pool of workers) are made at once, in the order asked, so only a
   * few plaintext slices are being encrypted at any time.
   */
  async made(index) {
    if (this.making < (this.makeChunk.parallel ?? 1)) this.making++;
    else await new Promise((resolve) => this.makeWaiters.push(resolve));
    try {
      return await this.makeChunk(index);
    } finally {
      // Hand the turn straight to the next waiter, or give it back.
      const next = this.makeWaiters.shift();
      if (next) next();
      else this.making--;
    }
  }

  tick() {
    const now = performance.now();
    const sent = this.sent;
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    const [t0, s0] = this.samples[0];
    const speed = now - t0 > 400 ? ((sent - s0) * 1000) / (now - t0) : 0;
    const eta = speed > 0 ? (this.total - sent) / speed : null;
    this.dispatchEvent(new CustomEvent('progress', { detail: { sent, total: this.total, speed, eta } }));
  }

  async run() {
    if (this.state === 'cancelled') throw new Cancelled();
    this.cancelled = false;
    this.queue = [];
    for (let c = 0; c < this.totalChunks; c++) if (!this.acked.has(c)) this.queue.push(c);
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.setState(navigator.onLine ? 'running' : 'offline');
    const timer = setInterval(() => this.tick(), 250);
    try {
      const senders = Math.min(this.concurrency, this.queue.length);
      await Promise.all(Array.from({ length: senders }, () => this.sender()));
      this.tick();
      this.setState('done');
    } catch (e) {
      this.cancelled = true; // stop the other senders
      this.abortAll();
      this.wake();
      throw e;
    } finally {
      clearInterval(timer);
      window.removeEventListener('online', this.onOnline);
      window.removeEventListener('offline', this.onOffline);
    }
  }

  /**
   * One sender: takes chunks from the queue one after another, each made when the previous
   * one was answered and handed to its ChunkSender, so memory stays at about a chunk per sender.
   */
  async sender() {
    const channel = new ChunkSender({ onSpent: this.makeChunk.reuse ?? null });
    try {
      for (;;) {
        await this.gate();
        const index = this.queue.shift();
        if (index === undefined) return;
        await this.sendOne(index, channel);
      }
    } finally {
      channel.close();
    }
  }

  async sendOne(index, channel) {
    let attempt = 0;
    for (;;) {
      await this.gate();
      // Made again for every try: the bytes are handed over with each request.
      const { bytes, sha256: sha, ownBuffer = false } = await this.made(index);
      const length = bytes.length;
      await this.gate();
      const flight = channel.send(this.uploadId, index, bytes, sha, (loaded) => (flight.loaded = loaded), { ownBuffer });
      flight.loaded = 0;
      this.inflight.set(index, flight);
      this.dispatchEvent(new CustomEvent('sending', { detail: { index } }));
      try {
        await flight.done;
        this.inflight.delete(index);
        this.acked.add(index);
        this.ackedBytes += length;
        this.dispatchEvent(new CustomEvent('chunk', { detail: { index } }));
        return;
      } catch (e) {
        this.inflight.delete(index);
        if (e.code === 'aborted') continue; // paused, offline or cancelled: the gate decides
        const resend = e.status === 400 && e.code === 'checksum_mismatch';
        if (!e.transient && !resend) throw e;
        if (!navigator.onLine) {
          if (this.state === 'running') this.setState('offline');
          continue;
        }
        attempt++;
        if (attempt >= this.maxAttempts) {
          attempt = 0;
          if (this.state === 'running') this.setState('stalled', e);
          continue;
        }
        const delay = retryDelay(e, attempt - 1);
        this.dispatchEvent(new CustomEvent('retry', { detail: { index, attempt, delay, error: e } }));
        await sleep(delay);
      }
    }
  }
}

// Initiate creates a session, so it is tried again only where the server cannot have made
// one: no answer at all, a rate limit, a proxy saying the server is unavailable.
const initiate = (body) =>
  withRetries(() => postJson('/api/upload/initiate', body), { retryOn: (e) => [0, 429, 503].includes(e.status) });

/**
 * Complete the session (idempotent on the server), sending again any chunk it asks for. A
 * cancel that comes too late to stop it deletes the clip it made.
 */
async function complete(engine, body, hooks) {
  for (let round = 0; ; round++) {
    hooks.check();
    let done;
    try {
      done = await withRetries(() => postJson(`/api/upload/complete/${engine.uploadId}`, body));
    } catch (e) {
      const missing = e instanceof ApiError && e.status === 400 ? e.body.missingChunks : null;
      if (!Array.isArray(missing) || missing.length === 0 || round >= 3) throw e;
      engine.requeue(missing);
      hooks.phase('uploading');
      await engine.run();
      hooks.phase('finishing');
      continue;
    }
    if (hooks.cancelled()) {
      await deleteClip(done.clipId, done.deleteToken).catch(() => {});
      throw new Cancelled();
    }
    return done;
  }
}

/** Run `work`; when it is cancelled, `undo` gives the server's session back. */
async function undoOnCancel(work, undo) {
  try {
    return await work();
  } catch (e) {
    if (e instanceof Cancelled) await undo();
    throw e;
  }
}

/** A refusal naming the limit as the page advertised it, with the exact counts beside it. */
function sizeError(limit, size, what) {
  return new UserError(
    'too_large',
    `${what} (${exactBytes(size)} bytes) is larger than this server takes: ${formatBytes(limit)} (${exactBytes(limit)} bytes) at most.`,
  );
}

/** The refusal for a file (or set of files) over the server's maximum, or null. */
export const fileTooLarge = (size, config) => (size > config.maxUploadSize ? sizeError(config.maxUploadSize, size, 'This file') : null);

/** The refusal for a text over the server's maximum (its UTF-8 bytes), or null. */
export const textTooLarge = (bytes, config) => (bytes > config.maxTextSize ? sizeError(config.maxTextSize, bytes, 'This text') : null);

/**
 * Several files (or a folder) as one ZIP made on the fly (zip.js), shaped like a File for
 * `shareFile`: `name`, `size`, `type`, `lastModified`, `slice(a, b).arrayBuffer()`, and
 * `entries` (path and size of each file) for the encrypted metadata. Its chunks are made on the
 * page (a worker cannot be handed the archive), one at a time like any file's.
 */
export function archiveOf(entries, name) {
  const zip = new ZipArchive(entries, { name });
  return {
    name: zip.name,
    size: zip.size,
    type: zip.type,
    lastModified: zip.lastModified,
    entries: zip.entries,
    onPageOnly: true,
    slice: (a, b) => ({ arrayBuffer: async () => (await zip.read(a, b)).buffer }),
  };
}

/** The options every initiate carries, from the form. */
function optionFields(options) {
  const body = { expiration: options.expiry, oneTime: !!options.oneTime };
  if (options.maxDownloads) body.maxDownloads = options.maxDownloads;
  return body;
}

/**
 * Share a file as V4. `hooks.phase(name)` hears deriving → encrypting → uploading →
 * finishing; `hooks.engine(uploader)` gets the scheduler to follow and control;
 * `hooks.cancelled()` says whether the person gave up and `hooks.check()` throws Cancelled
 * then. A cancel gives the server's session back (and deletes a clip completed meanwhile).
 */
export async function shareFile(file, options, config, hooks) {
  hooks.phase('deriving');
  const password = (options.password ?? '').trim();
  const header = v4.parseHeader(v4.makeHeader({ password: !!password }));
  const secret = randomBytes(v4.SECRET_LENGTH);
  const pwKey = password ? await v4.passwordKey(password, header.salt) : null;
  const accessCode = password ? await accessCodeHash(password, config.pbkdf2Salt) : null;
  const tooLarge = fileTooLarge(file.size, config);
  if (tooLarge) throw tooLarge;
  const plan = v4.chunkPlan(file.size, header.recordSize, config.chunkSize);
  hooks.check();
  const init = await initiate({
    filename: 'file',
    filesize: plan.streamLength,
    totalChunks: plan.totalChunks,
    mimeType: 'application/octet-stream',
    contentType: 'file',
    hasPassword: !!accessCode,
    ...optionFields(options),
  });
  if (init.chunkSize !== config.chunkSize || init.totalChunks !== plan.totalChunks) {
    throw new UserError('config_changed', 'The server changed its chunk size; reload the page and try again.');
  }
  const record = {
    uploadId: init.uploadId,
    createdAt: Date.now(),
    name: file.name,
    size: file.size,
    lastModified: file.lastModified,
    type: file.type,
    secret: toBase64Url(secret),
    header: toBase64Url(header.bytes),
    pwKey: pwKey ? toBase64Url(pwKey) : null,
    accessCode,
    chunkSize: config.chunkSize,
    totalChunks: plan.totalChunks,
    options: { expiry: options.expiry, oneTime: !!options.oneTime, maxDownloads: options.maxDownloads ?? null },
  };
  return undoOnCancel(
    async () => {
      hooks.check();
      // An archive cannot be chosen again after a reload, so only a single file is kept for resuming.
      if (!file.entries) await saveUpload(record);
      const keys = await v4.deriveKeys(secret, header, pwKey);
      return sendFile(record, file, keys, plan, [], hooks);
    },
    () => discardUpload(record),
  );
}

/** Sealing workers per upload, side by side; each holds about one chunk (plaintext and sealed). */
const SEAL_WORKERS = 2;
/** Chunks a sealing worker makes before it is replaced (see seal-worker.js for why). */
const SEAL_RECYCLE = 4;

/**
 * `makeChunk(c)` for a V4 file: chunk `c` sealed, with its SHA-256, made by a pool of `workers`
 * sealing workers (seal-worker.js), each replaced after `recycleAfter` chunks by one started
 * while it makes its last (so no chunk waits for a worker to start); on the page, one chunk at
 * a time, when no worker starts (workers.js) or the file can only be read on the page.
 * `make.parallel` tells ChunkUploader how many chunks may be asked for at once, `make.reuse`
 * takes back a posted chunk's buffer to seal into again, `make.close()` ends the workers.
 */
function fileChunks(file, keys, plan, { workers = SEAL_WORKERS, recycleAfter = SEAL_RECYCLE } = {}) {
  const url = new URL('./seal-worker.js', import.meta.url);
  const pageOnly = !!file.onPageOnly || typeof Worker !== 'function';
  let closed = false;
  const onPage = async (c) => {
    const [start, end] = plan.plainRange(c);
    const bytes = await v4.sealChunk(keys, plan, c, new Uint8Array(await file.slice(start, end).arrayBuffer()));
    return { bytes, sha256: await sha256Hex(bytes) };
  };
  let pageTurn = Promise.resolve();
  const onPageInTurn = (c) => {
    const result = pageTurn.then(() => onPage(c));
    pageTurn = result.then(
      () => {},
      () => {},
    );
    return result;
  };

  const start = () =>
    startWorker(url).then((w) => {
      if (closed) w?.terminate();
      return closed ? null : w;
    });
  const slots = Array.from({ length: pageOnly ? 1 : Math.max(1, workers) }, () => ({ worker: null, used: 0, spare: null }));
  const idle = [...slots];
  const waiting = [];
  const acquire = () => (idle.length ? Promise.resolve(idle.pop()) : new Promise((resolve) => waiting.push(resolve)));
  const release = (slot) => {
    const next = waiting.shift();
    if (next) next(slot);
    else idle.push(slot);
  };
  /** The slot's worker for one more chunk (null: none started); its last one starts the spare. */
  const workerFor = async (slot) => {
    if (slot.worker && slot.used >= recycleAfter) {
      slot.worker.terminate();
      slot.worker = null;
    }
    if (!slot.worker) {
      const spare = slot.spare;
      slot.spare = null;
      slot.worker = await (spare ?? start());
      slot.used = 0;
      if (!slot.worker) return null;
    }
    slot.used++;
    if (slot.used >= recycleAfter && !slot.spare) slot.spare = start();
    return slot.worker;
  };
  // Sealed chunks are written into buffers that come back once posted (make.reuse), so that
  // no chunk needs a fresh one (see seal-worker.js); chunk 0 is the longest.
  const capacity = plan.chunkLength(0);
  const buffers = [];
  const inWorker = (w, c) =>
    new Promise((resolve, reject) => {
      w.onmessage = ({ data }) => {
        if (!data.error) return resolve({ bytes: data.bytes, sha256: data.sha256, ownBuffer: true });
        // A file edited or removed on disk cannot be read any more.
        if (data.name === 'NotReadableError' || data.name === 'NotFoundError') {
          return reject(new UserError('file_changed', 'The file changed on disk while it was being sent; share it again.'));
        }
        return reject(new Error(data.error));
      };
      w.onerror = (e) => reject(new Error(e.message || 'the sealing worker failed'));
      const buffer = buffers.pop() ?? new ArrayBuffer(capacity);
      w.postMessage({ id: c, file, keys, size: plan.size, recordSize: plan.recordSize, chunkSize: plan.chunkSize, index: c, buffer }, [buffer]);
    });

  const make = async (c) => {
    if (pageOnly) return onPageInTurn(c);
    const slot = await acquire();
    try {
      const w = await workerFor(slot);
      if (!w) return await onPageInTurn(c);
      try {
        return await inWorker(w, c);
      } catch (e) {
        // A worker that failed is not given more work.
        w.terminate();
        if (slot.worker === w) slot.worker = null;
        throw e;
      }
    } finally {
      release(slot);
    }
  };
  make.parallel = slots.length;
  make.reuse = (bytes) => {
    if (!closed && bytes.buffer.byteLength === capacity && buffers.length < slots.length + 4) buffers.push(bytes.buffer);
  };
  make.close = () => {
    closed = true;
    buffers.length = 0;
    for (const slot of slots) {
      slot.worker?.terminate();
      slot.worker = null;
      slot.spare?.then((w) => w?.terminate());
      slot.spare = null;
    }
  };
  return make;
}

/** Send the chunks not in `acknowledged` (none when `chunksDone`), then complete with the metadata. */
async function sendFile(record, file, keys, plan, acknowledged, hooks, { chunksDone = false } = {}) {
  const engine = new ChunkUploader({
    uploadId: record.uploadId,
    totalChunks: plan.totalChunks,
    chunkLength: (c) => plan.chunkLength(c),
    makeChunk: fileChunks(file, keys, plan),
    acknowledged: chunksDone ? [...Array(plan.totalChunks).keys()] : acknowledged,
  });
  hooks.engine(engine);
  try {
    if (!chunksDone) {
      hooks.phase('encrypting');
      engine.addEventListener('sending', () => hooks.phase('uploading'), { once: true });
      await engine.run();
    }
  } finally {
    engine.makeChunk.close?.();
  }
  hooks.phase('finishing');
  const meta = await v4.sealMeta(keys, {
    name: file.name,
    size: file.size,
    type: file.type || 'application/octet-stream',
    mtime: file.lastModified,
    ...(file.entries ? { files: file.entries.map((e) => [e.path, e.size]) } : {}),
  });
  const body = { format: 4, meta, contentType: 'file' };
  if (record.accessCode) Object.assign(body, { accessCodeHash: record.accessCode, requiresAccessCode: true });
  const done = await complete(engine, body, hooks);
  await forgetUpload(record.uploadId);
  return { ...done, kind: 'file', secret: record.secret, name: file.name, size: file.size };
}

/**
 * Resume `record` (from IndexedDB) with `file`, which must be the same file: same name, size
 * and last-modified time, and the first and last acknowledged chunks must re-encrypt to the
 * SHA-256 the server recorded. Only the missing chunks are sent.
 */
export async function resumeFile(record, file, hooks) {
  if (file.name !== record.name || file.size !== record.size || file.lastModified !== record.lastModified) {
    throw new UserError('different_file', `That is not the same file: choose “${record.name}” as it was, or discard the unfinished upload.`);
  }
  hooks.phase('checking');
  let status;
  try {
    status = await withRetries(() => getJson(`/api/upload/${record.uploadId}/status`));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      await forgetUpload(record.uploadId);
      throw new UserError('expired', 'The unfinished upload expired on the server. Share the file again.');
    }
    throw e;
  }
  const header = v4.parseHeader(fromBase64Url(record.header));
  const pwKey = record.pwKey ? fromBase64Url(record.pwKey) : null;
  const keys = await v4.deriveKeys(fromBase64Url(record.secret), header, pwKey);
  const plan = v4.chunkPlan(file.size, header.recordSize, record.chunkSize);
  const acked = (status.chunks ?? []).filter((c) => c.sha256);
  // Completed already (the answer was lost to the reload): complete again, send nothing.
  if (status.status === 'complete') return sendFile(record, file, keys, plan, [], hooks, { chunksDone: true });
  if (acked.length === 0) {
    throw new UserError('nothing_to_prove', 'None of the file reached the server before; it will be shared again from the start.');
  }
  const make = fileChunks(file, keys, plan);
  try {
    for (const proof of new Set([acked[0], acked[acked.length - 1]])) {
      if ((await make(proof.index)).sha256 !== proof.sha256) {
        throw new UserError('changed', `This “${record.name}” is not the file that was being sent: its content changed. Nothing more was sent.`);
      }
    }
  } finally {
    make.close();
  }
  return undoOnCancel(
    () => sendFile(record, file, keys, plan, acked.map((c) => c.index), hooks),
    () => discardUpload(record),
  );
}

/**
 * Give up an unfinished upload: this browser forgets its record first (so a reload or a
 * closed tab can never offer it again), then the server drops its chunks; a server that
 * cannot be reached abandons the session on its own after a day idle.
 */
export async function discardUpload(record) {
  await forgetUpload(record.uploadId);
  await request('DELETE', `/api/upload/${record.uploadId}`).catch(() => {});
}

/** Share a text as one V3 blob (quick shares too: a 6-character secret and code). */
export async function shareText(text, options, config, hooks) {
  // Sent exactly as typed: leading and trailing whitespace and a final newline are the text's.
  if (!text) throw new UserError('empty', 'Type or paste some text first.');
  const tooLarge = textTooLarge(utf8(text).length, config);
  if (tooLarge) throw tooLarge;
  hooks.phase('deriving');
  const quick = !!options.quick;
  const password = quick ? '' : (options.password ?? '').trim();
  const secret = quick ? newQuickSecret() : newTextSecret();
  const blob = await v3.encryptText(secret, password, text);
  const accessCode = password ? await accessCodeHash(password, config.pbkdf2Salt) : null;
  hooks.check();
  const chunkSize = config.chunkSize;
  const totalChunks = Math.max(1, Math.ceil(blob.length / chunkSize));
  const init = await initiate({
    filename: 'text',
    filesize: blob.length,
    totalChunks,
    mimeType: 'application/octet-stream',
    contentType: 'text',
    isTextContent: true,
    quickShare: quick,
    hasPassword: !!accessCode,
    ...optionFields(options),
  });
  const cancel = () => request('DELETE', `/api/upload/${init.uploadId}`).catch(() => {});
  return undoOnCancel(async () => {
    hooks.phase('uploading');
    const engine = new ChunkUploader({
      uploadId: init.uploadId,
      totalChunks,
      chunkLength: (c) => Math.min(blob.length, (c + 1) * chunkSize) - c * chunkSize,
      makeChunk: async (c) => {
        const bytes = blob.slice(c * chunkSize, (c + 1) * chunkSize);
        return { bytes, sha256: await sha256Hex(bytes) };
      },
    });
    hooks.engine(engine);
    await engine.run();
    hooks.phase('finishing');
    const body = { format: 3, contentType: 'text', isTextUpload: true };
    if (accessCode) Object.assign(body, { accessCodeHash: accessCode, requiresAccessCode: true });
    const done = await complete(engine, body, hooks);
    return { ...done, kind: 'text', secret, quick };
  }, cancel);
}

