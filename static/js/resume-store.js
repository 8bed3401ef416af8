// Where an unfinished upload waits for a reload: one IndexedDB record per upload session,
// written after initiate and removed once the clip exists or the upload is given up. It holds
// what resuming needs and nothing is ever sent from it: the link secret, the stream header and,
// with a password, the derived password key and access-code hash (never the password). When
// IndexedDB is unavailable (some private modes) uploads still work; they just cannot resume.

const DB_NAME = 'ferry';
const STORE = 'uploads';

let opening = null;
function db() {
  opening ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: 'uploadId' });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  }).catch((e) => {
    opening = null;
    throw e;
  });
  return opening;
}

async function run(mode, work) {
  const database = await db();
  return new Promise((resolve, reject) => {
    const tx = database.transaction(STORE, mode);
    const req = work(tx.objectStore(STORE));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export async function saveUpload(record) {
  try {
    await run('readwrite', (s) => s.put(record));
    return true;
  } catch {
    return false;
  }
}

export async function unfinishedUploads() {
  try {
    const all = (await run('readonly', (s) => s.getAll())) ?? [];
    return all.sort((a, b) => b.createdAt - a.createdAt);
  } catch {
    return [];
  }
}

export async function forgetUpload(uploadId) {
  try {
    await run('readwrite', (s) => s.delete(uploadId));
  } catch {
    // Nothing to forget where nothing could be stored.
  }
}
