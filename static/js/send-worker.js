// A dedicated worker that sends upload chunks for the page. Why a worker: a request keeps a
// native copy of its body until the garbage collector gets to the request, and the collector,
// seeing only a small object, lets hundreds of MiB of finished uploads wait (measured: 500 MiB
// sent from a page grew it by 500 MiB until a forced collection). The page replaces this worker
// every few chunks, which frees all of that at once. The request copies the body when it is
// sent, so the body's buffer goes straight back to the page (`spent`) to be sealed into again.

import { postChunk } from './chunk-xhr.js';

let abort = null;
self.onmessage = ({ data }) => {
  if (data.type === 'abort') {
    abort?.();
    return;
  }
  abort = postChunk(data.url, data.body, data.sha256, (msg) => self.postMessage(msg));
  if (data.giveBack) self.postMessage({ type: 'spent', body: data.body }, [data.body.buffer]);
};
self.postMessage({ type: 'ready' });
