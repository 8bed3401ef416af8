// Starting the page's helper workers (seal-worker.js, send-worker.js) so that a worker which
// cannot start never swallows work: a worker counts as started only once it has said "ready"
// (its module imports loaded). Offline, for one, a new worker's scripts may not load at all;
// the caller then does the work on the page instead.

/** How long a worker may take to start before the page does without it. */
export const WORKER_START_MS = 10000;

/** The worker at `url` once ready, or null if it failed or did not start within `ms`. */
export function startWorker(url, ms = WORKER_START_MS) {
  return new Promise((resolve) => {
    let worker;
    try {
      worker = new Worker(url, { type: 'module' });
    } catch {
      resolve(null);
      return;
    }
    const give = (w) => {
      clearTimeout(timer);
      worker.onmessage = null;
      worker.onerror = null;
      if (!w) worker.terminate();
      resolve(w);
    };
    const timer = setTimeout(() => give(null), ms);
    worker.onmessage = ({ data }) => data?.type === 'ready' && give(worker);
    worker.onerror = () => give(null);
  });
}
