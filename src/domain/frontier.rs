//! The hash frontier: an upload's whole-file SHA-256, advanced while its chunks arrive, so
//! completing has at most the tail left to hash. When chunk i is recorded and every chunk
//! before it is hashed, chunk i is read back (from the page cache: it was just written) into
//! the running digest, and any later chunks that were waiting for it follow. State is per
//! process and kept only for a while: a complete on another instance, or after a restart,
//! starts from the first chunk whose recorded blob differs from what was hashed (from the
//! first chunk when nothing was). Memory: one 1 MiB read buffer per hashing task, at most
//! `permits` tasks at once, plus ~200 bytes of digest state per hashed chunk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Semaphore};

use crate::blob::{BlobError, BlobKey, BlobStore, Content};
use crate::store::ChunkRecord;

#[derive(Default)]
struct Frontier {
    /// The digest of every chunk in `done`.
    hasher: Sha256,
    /// Hashed chunks in index order: blob leaf, size and the digest state before it (so a
    /// replaced chunk rewinds the frontier to it instead of to the start).
    done: Vec<(String, u64, Sha256)>,
    /// Recorded chunks past the frontier, waiting for the ones before them.
    waiting: BTreeMap<u32, (String, u64)>,
    /// Whether the chunks recorded before this process saw the upload (before a restart, or
    /// through another instance) were read from the store.
    seeded: bool,
}

impl Frontier {
    fn rewind(&mut self, to: usize) {
        if to < self.done.len() {
            self.hasher = self.done[to].2.clone();
            self.done.truncate(to);
        }
    }
}

/// Every upload's frontier in this process.
#[derive(Clone)]
pub struct Frontiers {
    map: moka::sync::Cache<String, Arc<Mutex<Frontier>>>,
    permits: Arc<Semaphore>,
}

/// What finishing cost: bytes hashed by `finish` itself (the rest was hashed on arrival).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeHash {
    pub sha256: String,
    pub hashed_at_finish: u64,
}

impl Frontiers {
    /// `permits` bounds the hashing tasks of all uploads together; an upload idle for `idle`
    /// loses its frontier (its complete then hashes from the start).
    pub fn new(permits: usize, idle: Duration) -> Frontiers {
        Frontiers {
            map: moka::sync::Cache::builder().max_capacity(10_000).time_to_idle(idle).build(),
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    fn entry(&self, upload: &str) -> Arc<Mutex<Frontier>> {
        self.map.get_with(upload.to_string(), Default::default)
    }

    /// Chunk `index` of `upload` was recorded as `leaf` (below `prefix`): hash what has become
    /// contiguous, in the background.
    pub fn arrived(&self, deps: &super::Deps, prefix: BlobKey, upload: &str, index: u32, leaf: String, size: u64) {
        let frontier = self.entry(upload);
        let (store, blobs) = (deps.store.clone(), deps.blobs.clone());
        let (permits, upload) = (self.permits.clone(), upload.to_string());
        tokio::spawn(async move {
            let mut f = frontier.lock().await;
            if !f.seeded {
                // Chunks acknowledged before this process knew the upload still count: without
                // them the frontier would wait forever for chunk 0.
                f.seeded = true;
                if let Ok(recorded) = store.chunks(&upload).await {
                    let from = f.done.len() as u32;
                    for c in recorded.into_iter().filter(|c| c.index as u32 >= from) {
                        f.waiting.entry(c.index as u32).or_insert((c.leaf, c.size as u64));
                    }
                }
            }
            let at = index as usize;
            if at < f.done.len() {
                if f.done[at].0 == leaf {
                    return;
                }
                // A chunk behind the frontier was replaced: its bytes and all after it change.
                let replaced: Vec<(u32, (String, u64))> = f.done[at + 1..]
                    .iter()
                    .enumerate()
                    .map(|(i, d)| ((at + 1 + i) as u32, (d.0.clone(), d.1)))
                    .collect();
                f.rewind(at);
                f.waiting.extend(replaced);
            }
            f.waiting.insert(index, (leaf, size));
            while let Some((leaf, size)) = {
                let next = f.done.len() as u32;
                f.waiting.remove(&next)
            } {
                let Ok(_permit) = permits.acquire().await else { return };
                let key = Content::part_key(&prefix, &leaf);
                let before = f.hasher.clone();
                match blobs.hash_into(&key, before.clone()).await {
                    Ok((after, n)) if n == size => {
                        f.hasher = after;
                        f.done.push((leaf, size, before));
                    }
                    // Replaced and removed meanwhile, or unreadable: leave it to finish().
                    _ => return,
                }
            }
        });
    }

    /// The SHA-256 of `chunks` (every chunk of the upload, in index order) concatenated,
    /// reusing what was hashed on arrival. Forgets the upload's frontier.
    pub async fn finish(
        &self,
        blobs: &BlobStore,
        prefix: &BlobKey,
        upload: &str,
        chunks: &[ChunkRecord],
    ) -> Result<WholeHash, BlobError> {
        let frontier = self.entry(upload);
        let mut f = frontier.lock().await;
        let keep = f
            .done
            .iter()
            .zip(chunks)
            .take_while(|((leaf, size, _), c)| *leaf == c.leaf && *size == c.size as u64)
            .count();
        f.rewind(keep);
        let mut hasher = f.hasher.clone();
        let mut hashed_at_finish = 0;
        for c in &chunks[keep..] {
            let (next, n) = blobs.hash_into(&Content::part_key(prefix, &c.leaf), hasher).await?;
            if n != c.size as u64 {
                return Err(BlobError::Source(format!("chunk {} has {n} bytes, {} recorded", c.index, c.size)));
            }
            hasher = next;
            hashed_at_finish += n;
        }
        drop(f);
        self.map.invalidate(upload);
        Ok(WholeHash { sha256: hex::encode(hasher.finalize()), hashed_at_finish })
    }

    pub fn forget(&self, upload: &str) {
        self.map.invalidate(upload);
    }
}
