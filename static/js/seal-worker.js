// A dedicated worker that makes the V4 chunks of a file upload: reads the chunk's slice of the
// file, seals its records and hashes the result, then hands the bytes back (transferred, not
// copied). Why a worker: WebCrypto keeps a native copy of each input until the garbage
// collector gets to the call, which it does late (sealing 500 MiB on a page grew it by about
// 190 MiB); the page replaces this worker every few chunks, which frees all of that at once.
// The page runs a few of these side by side (upload.js, fileChunks).
//
// Fresh large buffers are what this machine class pays most for (each new MiB is faulted in and
// zeroed: measured ten times the cost of copying into memory already in use), so the slice is
// read into one buffer this worker keeps (a BYOB reader, where the browser has one), and the
// sealed chunk is written into a buffer the page hands back after an earlier chunk was posted.

import { sha256Hex } from './crypto/bytes.js';
import { chunkPlan, sealChunk } from './crypto/v4.js';

let plain = null;

/** Bytes [start, end) of `file`, in this worker's own buffer where the browser allows. */
async function read(file, start, end) {
  const length = end - start;
  const blob = file.slice(start, end);
  let reader = null;
  try {
    reader = blob.stream().getReader({ mode: 'byob' });
  } catch {
    return new Uint8Array(await blob.arrayBuffer());
  }
  if (!plain || plain.byteLength < length) plain = new ArrayBuffer(length);
  let at = 0;
  try {
    while (at < length) {
      const { done, value } = await reader.read(new Uint8Array(plain, at, length - at));
      if (value) plain = value.buffer; // the read hands the same memory back under a new ArrayBuffer
      if (done) break;
      at += value.byteLength;
    }
  } finally {
    reader.releaseLock();
  }
  if (at !== length) throw new DOMException('The file is shorter than it was.', 'NotReadableError');
  return new Uint8Array(plain, 0, length);
}

self.onmessage = async ({ data }) => {
  const { id, file, keys, size, recordSize, chunkSize, index, buffer } = data;
  try {
    const plan = chunkPlan(size, recordSize, chunkSize);
    const [start, end] = plan.plainRange(index);
    const slice = await read(file, start, end);
    const length = plan.chunkLength(index);
    const out = buffer && buffer.byteLength >= length ? new Uint8Array(buffer, 0, length) : new Uint8Array(length);
    const bytes = await sealChunk(keys, plan, index, slice, out);
    self.postMessage({ id, bytes, sha256: await sha256Hex(bytes) }, [bytes.buffer]);
  } catch (e) {
    self.postMessage({ id, error: e?.message ?? String(e), name: e?.name ?? 'Error' });
  }
};
self.postMessage({ type: 'ready' });
