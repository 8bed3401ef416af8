// ferry's service worker, at the root scope so it can answer the downloads of every page. It
// does one thing: a page hands it a prepared download (clip id, access-code hash, the V4 keys
// as non-extractable CryptoKeys) under a random token, then opens /_download/<token> in a
// hidden frame; the worker fetches the ciphertext, authenticates and decrypts it record by
// record, and streams the plaintext to the browser's download manager with its real length.
// The first record is authenticated before any answer, so a wrong key or a changed file saves
// nothing; a later failure aborts the download. No caching, no other requests touched.

import { Decryptor, FormatError, plainSize } from '{{ASSETS}}/js/crypto/v4.js';
import { contentDisposition, safeType } from '{{ASSETS}}/js/filename.js';

const PREFIX = '/_download/';
const jobs = new Map();

self.addEventListener('install', (event) => event.waitUntil(self.skipWaiting()));
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

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

  /** The next plaintext records, or null at the end of the stream. */
  async function next() {
    for (;;) {
      let step;
      try {
        step = await reader.read();
      } catch {
        throw new FormatError('network', 'The connection broke during the download.');
      }
      if (step.done) {
        const last = await decryptor.finish();
        return last.length ? last : null;
      }
      const out = await decryptor.push(step.value);
      if (out.length) return out;
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
    { highWaterMark: 1 },
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
// title, text or link) to /share-target. The worker keeps them here, in memory, for the page
// it sends the browser to (`/?shared=1`), which asks for them once; nothing is written to disk
// and nothing is sent anywhere. What no page collects within a minute is dropped.
const SHARE_PATH = '/share-target';
let shared = null;

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

self.addEventListener('message', (event) => {
  if (event.data?.type !== 'take-shared' || !event.ports[0]) return;
  event.ports[0].postMessage(shared ? { files: shared.files, text: shared.text } : null);
  shared = null;
});
