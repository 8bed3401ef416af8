// Sending a clip: texts as one V3 blob, files as a V4 stream encrypted chunk by chunk while it
// uploads. `ChunkUploader` is the scheduler: a few chunks in flight, each made only when a
// sender is free (so about five chunks of plaintext and ciphertext exist at once, whatever the
// file size), retried with exponential backoff and jitter, 429 waiting for Retry-After, paused
// and resumed by the user or by the network going away. `shareFile`, `shareText` and
// `resumeFile` run the whole initiate → chunks → complete exchange; resuming proves the file
// unchanged first (FORMAT.md). No DOM here: the screens listen to events.

import { ApiError, getJson, postJson, request, retryDelay, sendChunk, sleep, withRetries } from './api.js';
import { fromBase64Url, randomBytes, sha256Hex, toBase64Url, utf8 } from './crypto/bytes.js';
import { accessCodeHash } from './crypto/access.js';
import * as v3 from './crypto/v3.js';
import * as v4 from './crypto/v4.js';
import { forgetUpload, saveUpload } from './resume-store.js';
import { newQuickSecret, newTextSecret } from './secret.js';

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
    this.encrypting = Promise.resolve();
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

  /** Chunks are made one at a time, so only one plaintext slice is ever being encrypted. */
  made(index) {
    const result = this.encrypting.then(() => this.makeChunk(index));
    this.encrypting = result.then(
      () => {},
      () => {},
    );
    return result;
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
    this.cancelled = false;
    if (this.state === 'done') this.state = 'running';
    this.queue = [];
    for (let c = 0; c < this.totalChunks; c++) if (!this.acked.has(c)) this.queue.push(c);
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    if (!navigator.onLine) this.setState('offline');
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

  async sender() {
    for (;;) {
      await this.gate();
      const index = this.queue.shift();
      if (index === undefined) return;
      await this.sendOne(index);
    }
  }

  async sendOne(index) {
    let attempt = 0;
    let bytes = null;
    let sha = null;
    for (;;) {
      await this.gate();
      if (!bytes) {
        bytes = await this.made(index);
        sha = await sha256Hex(bytes);
        await this.gate();
      }
      const flight = sendChunk(this.uploadId, index, bytes, sha, (loaded) => (flight.loaded = loaded));
      flight.loaded = 0;
      this.inflight.set(index, flight);
      this.dispatchEvent(new CustomEvent('sending', { detail: { index } }));
      try {
        await flight.done;
        this.inflight.delete(index);
        this.acked.add(index);
        this.ackedBytes += bytes.length;
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
        if (resend) bytes = null;
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

const initiate = (body) => withRetries(() => postJson('/api/upload/initiate', body));

/** Complete the session, sending again any chunk the server asks for. */
async function complete(engine, body) {
  for (let round = 0; ; round++) {
    try {
      return await withRetries(() => postJson(`/api/upload/complete/${engine.uploadId}`, body));
    } catch (e) {
      const missing = e instanceof ApiError && e.status === 400 ? e.body.missingChunks : null;
      if (!Array.isArray(missing) || missing.length === 0 || round >= 3) throw e;
      engine.requeue(missing);
      await engine.run();
    }
  }
}

function sizeError(limit, what) {
  const mib = (limit / 1048576).toFixed(limit < 10485760 ? 1 : 0);
  return new UserError('too_large', `${what} is larger than this server takes (${mib} MiB at most).`);
}

/** The options every initiate carries, from the form. */
function optionFields(options) {
  const body = { expiration: options.expiry, oneTime: !!options.oneTime };
  if (options.maxDownloads) body.maxDownloads = options.maxDownloads;
  return body;
}

/**
 * Share a file as V4. `hooks.phase(name)` hears deriving → encrypting → uploading →
 * finishing; `hooks.engine(uploader)` gets the scheduler to follow and control.
 */
export async function shareFile(file, options, config, hooks) {
  hooks.phase('deriving');
  const password = (options.password ?? '').trim();
  const header = v4.parseHeader(v4.makeHeader({ password: !!password }));
  const secret = randomBytes(v4.SECRET_LENGTH);
  const pwKey = password ? await v4.passwordKey(password, header.salt) : null;
  const accessCode = password ? await accessCodeHash(password, config.pbkdf2Salt) : null;
  const plan = v4.chunkPlan(file.size, header.recordSize, config.chunkSize);
  if (plan.streamLength > config.maxUploadSize) throw sizeError(config.maxUploadSize, 'This file');
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
  await saveUpload(record);
  const keys = await v4.deriveKeys(secret, header, pwKey);
  return sendFile(record, file, keys, plan, [], hooks);
}

function fileChunks(file, keys, plan) {
  return async (c) => {
    const [start, end] = plan.plainRange(c);
    const slice = new Uint8Array(await file.slice(start, end).arrayBuffer());
    return v4.sealChunk(keys, plan, c, slice);
  };
}

async function sendFile(record, file, keys, plan, acknowledged, hooks) {
  hooks.phase('encrypting');
  const engine = new ChunkUploader({
    uploadId: record.uploadId,
    totalChunks: plan.totalChunks,
    chunkLength: (c) => plan.chunkLength(c),
    makeChunk: fileChunks(file, keys, plan),
    acknowledged,
  });
  engine.addEventListener('sending', () => hooks.phase('uploading'), { once: true });
  hooks.engine(engine);
  await engine.run();
  hooks.phase('finishing');
  const meta = await v4.sealMeta(keys, {
    name: file.name,
    size: file.size,
    type: file.type || 'application/octet-stream',
    mtime: file.lastModified,
  });
  const body = { format: 4, meta, contentType: 'file' };
  if (record.accessCode) Object.assign(body, { accessCodeHash: record.accessCode, requiresAccessCode: true });
  const done = await complete(engine, body);
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
  if (status.status !== 'complete') {
    if (acked.length === 0) {
      throw new UserError('nothing_to_prove', 'None of the file reached the server before; it will be shared again from the start.');
    }
    const make = fileChunks(file, keys, plan);
    for (const proof of new Set([acked[0], acked[acked.length - 1]])) {
      const again = await sha256Hex(await make(proof.index));
      if (again !== proof.sha256) {
        throw new UserError('changed', `This “${record.name}” is not the file that was being sent: its content changed. Nothing more was sent.`);
      }
    }
  }
  return sendFile(record, file, keys, plan, acked.map((c) => c.index), hooks);
}

/** Give up an unfinished upload: the server drops its chunks, this browser its record. */
export async function discardUpload(record) {
  await request('DELETE', `/api/upload/${record.uploadId}`).catch(() => {});
  await forgetUpload(record.uploadId);
}

/** Share a text as one V3 blob (quick shares too: a 6-character secret and code). */
export async function shareText(text, options, config, hooks) {
  const trimmed = text.trim();
  if (!trimmed) throw new UserError('empty', 'Type or paste some text first.');
  hooks.phase('deriving');
  const quick = !!options.quick;
  const password = quick ? '' : (options.password ?? '').trim();
  if (v3.blobLength(utf8(trimmed).length) > config.maxTextSize) throw sizeError(config.maxTextSize, 'This text');
  const secret = quick ? newQuickSecret() : newTextSecret();
  const blob = await v3.encryptText(secret, password, trimmed);
  const accessCode = password ? await accessCodeHash(password, config.pbkdf2Salt) : null;
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
  hooks.phase('uploading');
  const engine = new ChunkUploader({
    uploadId: init.uploadId,
    totalChunks,
    chunkLength: (c) => Math.min(blob.length, (c + 1) * chunkSize) - c * chunkSize,
    makeChunk: async (c) => blob.slice(c * chunkSize, (c + 1) * chunkSize),
  });
  hooks.engine(engine);
  await engine.run();
  hooks.phase('finishing');
  const body = { format: 3, contentType: 'text', isTextUpload: true };
  if (accessCode) Object.assign(body, { accessCodeHash: accessCode, requiresAccessCode: true });
  const done = await complete(engine, body);
  return { ...done, kind: 'text', secret, quick };
}

