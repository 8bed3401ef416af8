// A dedicated worker that makes the V4 chunks of a file upload: reads the chunk's slice of the
// file, seals its records and hashes the result, then hands the bytes back (transferred, not
// copied). Why a worker: WebCrypto keeps a native copy of each input until the garbage
// collector gets to the call, which it does late (sealing 500 MiB on a page grew it by about
// 190 MiB); the page ends this worker every two chunks, which frees all of that at once.

import { sha256Hex } from './crypto/bytes.js';
import { chunkPlan, sealChunk } from './crypto/v4.js';

self.onmessage = async ({ data }) => {
  const { id, file, keys, size, recordSize, chunkSize, index } = data;
  try {
    const plan = chunkPlan(size, recordSize, chunkSize);
    const [start, end] = plan.plainRange(index);
    const slice = new Uint8Array(await file.slice(start, end).arrayBuffer());
    const bytes = await sealChunk(keys, plan, index, slice);
    self.postMessage({ id, bytes, sha256: await sha256Hex(bytes) }, [bytes.buffer]);
  } catch (e) {
    self.postMessage({ id, error: e?.message ?? String(e), name: e?.name ?? 'Error' });
  }
};
self.postMessage({ type: 'ready' });
