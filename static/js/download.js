// Getting a clip's bytes to the person. V4 files go through the service worker (sw.js), which
// streams the decrypted file to disk, so any size fits in flat memory; where no service worker
// can run, the file is decrypted in memory instead and the page warns above IN_MEMORY_WARN.
// Texts and Qopy's V3 files are small and decrypted in memory. Errors are DownloadErrors whose
// `kind` the screens turn into plain words.

import { ApiError, postForBytes } from './api.js';
import { randomBytes, toHex } from './crypto/bytes.js';
import * as v3 from './crypto/v3.js';
import { Decryptor, FormatError } from './crypto/v4.js';
import { safeName, safeType } from './filename.js';
import { saveBlob } from './ui/dom.js';

/** Above this, a download decrypted in memory gets a warning first. */
export const IN_MEMORY_WARN = 256 * 1024 * 1024;

export class DownloadError extends Error {
  constructor(kind, message = kind) {
    super(message);
    this.kind = kind; // gone | password | rate | network | tampered | truncated | server | cancelled
  }
}

function fromApi(e) {
  if (!(e instanceof ApiError)) return e instanceof FormatError ? new DownloadError(e.kind, e.message) : e;
  if (e.status === 0) return new DownloadError('network');
  if (e.status === 401) return new DownloadError('password');
  if (e.status === 404 || e.status === 410) return new DownloadError('gone');
  if (e.status === 429) return new DownloadError('rate', String(e.retryAfter ?? ''));
  return new DownloadError('server', e.message);
}

let registration = null;

/** `reg` once it has an active worker, or null after `ms`. */
function activeOf(reg, ms = 10000) {
  if (reg.active) return Promise.resolve(reg);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    const worker = reg.installing ?? reg.waiting;
    worker?.addEventListener('statechange', () => {
      if (reg.active) {
        clearTimeout(timer);
        resolve(reg);
      }
    });
  });
}

/**
 * Register the service worker (once) under its three scopes (see sw.js): /_download/ and
 * /share-target first, then / (so a page's `navigator.serviceWorker.ready` means all three
 * are active). Resolves to the /_download/ registration, or null where none can run.
 */
export function streamingWorker() {
  registration ??= (async () => {
    if (!('serviceWorker' in navigator)) return null;
    try {
      const register = (scope) => navigator.serviceWorker.register('/sw.js', { type: 'module', scope });
      const [download, share] = await Promise.all([register('/_download/'), register('/share-target')]);
      const [ready] = await Promise.all([activeOf(download), activeOf(share)]);
      await register('/');
      return ready;
    } catch {
      return null;
    }
  })();
  return registration;
}

const accessBody = (accessCode) => (accessCode ? { accessCode } : {});

/**
 * Download a V4 file: `file` is `{ id, accessCode, keys, size, streamLength, name, type }`.
 * `onProgress(bytes)` follows the plaintext written. Resolves with 'stream' or 'memory'.
 */
export async function downloadV4(file, onProgress) {
  const reg = await streamingWorker();
  if (reg) {
    await viaWorker(reg.active, file, onProgress);
    return 'stream';
  }
  await inMemory(file, onProgress);
  return 'memory';
}

/** Longest the page waits for the worker to start a download before calling it failed. */
const WORKER_START_MS = 60000;

function viaWorker(worker, file, onProgress) {
  return new Promise((resolve, reject) => {
    const token = toHex(randomBytes(16));
    const channel = new MessageChannel();
    const frame = document.createElement('iframe');
    const asked = Date.now();
    let started = false;
    const keepAlive = setInterval(() => {
      worker.postMessage({ type: 'keepalive' });
      // A worker that lost the job (restarted, replaced) answers the frame with nothing.
      if (!started && Date.now() - asked > WORKER_START_MS) {
        end();
        reject(new DownloadError('server', 'The download did not start.'));
      }
    }, 5000);
    const end = () => {
      clearInterval(keepAlive);
      channel.port1.close();
      setTimeout(() => frame.remove(), 1000);
    };
    channel.port1.onmessage = ({ data }) => {
      started ||= data.type !== 'ready';
      if (data.type === 'ready') {
        frame.hidden = true;
        frame.title = 'download';
        frame.src = `/_download/${token}`;
        document.body.append(frame);
      } else if (data.type === 'progress') {
        onProgress(data.bytes);
      } else if (data.type === 'done') {
        onProgress(data.bytes);
        end();
        resolve();
      } else if (data.type === 'error') {
        end();
        reject(new DownloadError(data.kind, data.detail));
      }
    };
    worker.postMessage(
      {
        type: 'download',
        token,
        id: file.id,
        accessCode: file.accessCode,
        keys: file.keys,
        size: file.size,
        streamLength: file.streamLength,
        name: safeName(file.name),
        mimeType: safeType(file.type),
      },
      [channel.port2],
    );
  });
}

async function inMemory(file, onProgress) {
  let res;
  try {
    res = await fetch(`/api/file/${file.id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(accessBody(file.accessCode)),
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    throw new DownloadError('network');
  }
  if (!res.ok) throw fromApi(new ApiError(res.status, await res.json().catch(() => ({}))));
  const decryptor = new Decryptor(file.keys, file.streamLength);
  const parts = [];
  let bytes = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      let step;
      try {
        step = await reader.read();
      } catch {
        throw new DownloadError('network');
      }
      const out = step.done ? await decryptor.finish() : await decryptor.push(step.value);
      for (const p of out) {
        parts.push(p);
        bytes += p.length;
      }
      onProgress(bytes);
      if (step.done) break;
    }
  } catch (e) {
    throw fromApi(e);
  }
  saveBlob(new Blob(parts, { type: safeType(file.type) }), safeName(file.name));
}

/** Fetch and decrypt a V3 text. */
export async function fetchText(id, accessCode, secret, password) {
  let blob;
  try {
    blob = await postForBytes(`/api/file/${id}`, accessBody(accessCode));
  } catch (e) {
    throw fromApi(e);
  }
  try {
    return await v3.decryptText(secret, password, blob);
  } catch (e) {
    throw fromApi(e);
  }
}

/** Fetch, decrypt and save a Qopy V3 file (at most 100 MiB, as Qopy allows). */
export async function downloadV3File(id, accessCode, secret, fallbackName) {
  let blob;
  try {
    blob = await postForBytes(`/api/file/${id}`, accessBody(accessCode));
  } catch (e) {
    throw fromApi(e);
  }
  let file;
  try {
    file = await v3.decryptFile(secret, blob);
  } catch (e) {
    throw fromApi(e);
  }
  saveBlob(new Blob([file.data], { type: safeType(file.type) }), safeName(file.name, fallbackName));
  return file;
}

export { fromApi };
