// ferry's service worker. It does two things: a page hands it a prepared download (clip id,
// access-code hash, the V4 keys as non-extractable CryptoKeys) under a random token, then opens
// /_download/<token> in a hidden frame; the worker fetches the ciphertext, authenticates and
// decrypts it record by record, and streams the plaintext to the browser's download manager with
// its real length. The first record is authenticated before any answer, so a wrong key or a
// changed file saves nothing; a later failure aborts the download. And it takes what a phone
// shares to ferry (below). No caching, no other requests touched.
//
// download.js registers this one script under three scopes, and each registration plays one
// part, chosen by its scope when the script starts:
//   /_download/    the download frames (fetch) and the jobs for them (message 'download');
//   /share-target  the share target (fetch, POST) and what was shared ('take-shared');
//   /              nothing but 'take-shared', passed on: it adds no fetch handler, so the pages
//                  it controls and their workers send every request straight to the network.
// Why: a worker with a fetch handler is handed every request of every page it controls, and of
// the dedicated workers those pages start (the static routing API does not cover those), each
// with its body: every 5 MiB upload chunk crossed into this worker and was kept there until its
// garbage collection (measured: a 200 MiB upload cost the browser about 12 ms of CPU per MiB and
// 180 MiB more memory than without).

import { Decryptor, FormatError, inOrder, plainSize } from '{{ASSETS}}/js/crypto/v4.js';
import { contentDisposition, safeType } from '{{ASSETS}}/js/filename.js';

const PREFIX = '/_download/';
const SHARE_PATH = '/share-target';
const ROLE = { [PREFIX]: 'download', [SHARE_PATH]: 'share' }[new URL(self.registration.scope).pathname] ?? 'root';
/** Ciphertext gathered from the network before its records are opened together. */
const BATCH = 1 << 20;
/** Plaintext decrypted ahead of the download manager (the response stream's high-water mark). */
const AHEAD = 8 << 20;
const jobs = new Map();

self.addEventListener('install', (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

if (ROLE === 'download') {
  self.addEventListener('message', (event) => {
    const msg = event.data ?? {};
    if (msg.type !== 'download' || !event.ports[0] || !/^[0-9a-f]{32}$/.test(msg.token)) return;
    const port = event.ports[0];
    jobs.set(msg.token, { ...msg, port });
    // A prepared download nobody opens is dropped with its keys.
    setTimeout(() => jobs.delete(msg.token), 60000);
    port.postMessage({ type: 'ready' });
  });

  self.addEventListener('fetch', (event) => {
    const url = new URL(event.request.url);
    if (url.origin !== self.location.origin || !url.pathname.startsWith(PREFIX)) return;
    const token = url.pathname.slice(PREFIX.length);
    const job = jobs.get(token);
    jobs.delete(token);
    event.respondWith(job ? serve(job).catch((e) => refuse(job, 'server', String(e?.message ?? e))) : new Response(null, { status: 204 }));
  });
}

function kindOf(status) {
  if (status === 401) return 'password';
  if (status === 404 || status === 410) return 'gone';
  if (status === 429) return 'rate';
  return 'server';
}

/** End the job: tell the page, and answer the frame with nothing (no download). */
function refuse(job, kind, detail = '') {
  job.port.postMessage({ type: 'error', kind, detail });
  return new Response(null, { status: 204 });
}

async function serve(job) {
  let upstream;
  try {
    upstream = await fetch(`/api/file/${job.id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(job.accessCode ? { accessCode: job.accessCode } : {}),
      cache: 'no-store',
      credentials: 'same-origin',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    return refuse(job, 'network');
  }
  if (!upstream.ok) return refuse(job, kindOf(upstream.status), String(upstream.status));
  // The length the file's own metadata implies is what must arrive. A declared length that
  // differs settles it at once; none (a proxy re-chunking or compressing) is checked as the
  // bytes come.
  if (plainSize(job.streamLength, job.keys.header.recordSize) !== job.size) return refuse(job, 'tampered', 'metadata');
  const declared = upstream.headers.has('content-encoding') ? NaN : Number(upstream.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declared) && declared !== job.streamLength) {
    upstream.body?.cancel();
    return refuse(job, declared < job.streamLength ? 'truncated' : 'tampered', 'length');
  }

  const reader = upstream.body.getReader();
  const decryptor = new Decryptor(job.keys, job.streamLength);
  let delivered = 0;
  let lastReport = 0;
  const report = (force = false) => {
    const now = Date.now();
    if (force || now - lastReport > 200) {
      lastReport = now;
      job.port.postMessage({ type: 'progress', bytes: delivered, total: job.size });
    }
  };

  // One network read is always in flight, so the connection keeps flowing while records are
  // opened; a read that fails is reported when its turn comes.
  let ahead = null;
  const read = () => {
    const step = ahead ?? reader.read();
    ahead = null;
    return step.then(
      (s) => {
        if (!s.done) (ahead = reader.read()).catch(() => {});
        return s;
      },
      () => {
        throw new FormatError('network', 'The connection broke during the download.');
      },
    );
  };

  /**
   * The next plaintext records, or null at the end of the stream: network reads are gathered
   * until about BATCH bytes, and all their records are opened at once (WebCrypto works through
   * them back to back instead of waiting for this thread between records).
   */
  async function next() {
    for (;;) {
      const opening = [];
      let gathered = 0;
      let ended = false;
      while (gathered < BATCH) {
        const step = await read().catch((e) => {
          opening.push(Promise.reject(e));
          return { done: true, failed: true };
        });
        if (step.failed) break;
        if (step.done) {
          opening.push(decryptor.finish());
          ended = true;
          break;
        }
        opening.push(decryptor.push(step.value));
        gathered += step.value.length;
      }
      const parts = (await inOrder(opening)).flat();
      if (parts.length) return parts;
      if (ended) return null;
    }
  }

  const fail = (e) => {
    reader.cancel().catch(() => {});
    job.port.postMessage({ type: 'error', kind: e instanceof FormatError ? e.kind : 'network', detail: e.message });
  };

  let first;
  try {
    first = await next();
  } catch (e) {
    fail(e);
    return new Response(null, { status: 204 });
  }
  let finished = first === null;
  const body = new ReadableStream(
    {
      start(controller) {
        for (const part of first ?? []) {
          controller.enqueue(part);
          delivered += part.length;
        }
        report();
      },
      async pull(controller) {
        if (finished) {
          controller.close();
          report(true);
          job.port.postMessage({ type: 'done', bytes: delivered });
          return;
        }
        try {
          const parts = await next();
          if (parts === null) {
            finished = true;
            controller.close();
            report(true);
            job.port.postMessage({ type: 'done', bytes: delivered });
            return;
          }
          for (const part of parts) {
            controller.enqueue(part);
            delivered += part.length;
          }
          report();
        } catch (e) {
          fail(e);
          controller.error(e);
        }
      },
      cancel() {
        reader.cancel().catch(() => {});
        job.port.postMessage({ type: 'error', kind: 'cancelled', detail: 'The download was stopped.' });
      },
    },
    { highWaterMark: AHEAD, size: (part) => part.byteLength },
  );
  return new Response(body, {
    headers: {
      'content-type': safeType(job.mimeType),
      'content-length': String(job.size),
      'content-disposition': contentDisposition(job.name),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'content-security-policy': "default-src 'none'; sandbox",
    },
  });
}

// Share target (manifest.webmanifest): "Share → ferry" on a phone POSTs the shared files (or a
// title, text or link) to /share-target. The worker registered there keeps them, in memory, for
// the page it sends the browser to (`/?shared=1`), which asks for them once; nothing is written
// to disk and nothing is sent anywhere. What no page collects within a minute is dropped. The
// page may ask whichever of the three workers it reaches: one that does not hold them asks the
// share worker over a BroadcastChannel (Files pass through it as they are).
let shared = null;
const sharing = typeof BroadcastChannel === 'function' ? new BroadcastChannel('ferry-share') : null;

function takeHere() {
  const got = shared ? { files: shared.files, text: shared.text } : null;
  shared = null;
  return got;
}

/** What was shared, once: this worker's, or the share worker's if it answers within a second. */
function takeShared() {
  if (ROLE === 'share' || !sharing) return Promise.resolve(takeHere());
  return new Promise((resolve) => {
    const id = crypto.randomUUID();
    const answer = ({ data }) => {
      if (data?.type !== 'shared' || data.id !== id) return;
      clearTimeout(timer);
      sharing.removeEventListener('message', answer);
      resolve(data.got);
    };
    const timer = setTimeout(() => {
      sharing.removeEventListener('message', answer);
      resolve(null);
    }, 1000);
    sharing.addEventListener('message', answer);
    sharing.postMessage({ type: 'take', id });
  });
}

if (ROLE === 'share') {
  self.addEventListener('fetch', (event) => {
    const url = new URL(event.request.url);
    if (event.request.method !== 'POST' || url.origin !== self.location.origin || url.pathname !== SHARE_PATH) return;
    event.respondWith(
      (async () => {
        try {
          const form = await event.request.formData();
          const files = form.getAll('files').filter((f) => typeof f === 'object' && typeof f.size === 'number');
          const text = ['title', 'text', 'url'].map((k) => form.get(k)).filter((v) => typeof v === 'string' && v).join('\n');
          const at = Date.now();
          shared = { files, text, at };
          setTimeout(() => shared?.at === at && (shared = null), 60000);
          return Response.redirect('/?shared=1', 303);
        } catch {
          return Response.redirect('/?shared=lost', 303);
        }
      })(),
    );
  });
  sharing?.addEventListener('message', ({ data }) => {
    if (data?.type === 'take') sharing.postMessage({ type: 'shared', id: data.id, got: takeHere() });
  });
}

self.addEventListener('message', (event) => {
  if (event.data?.type !== 'take-shared' || !event.ports[0]) return;
  const port = event.ports[0];
  event.waitUntil(takeShared().then((got) => port.postMessage(got)));
});
