//! Per-key async locks (one per upload id), so concurrent completes in this process queue up
//! instead of racing; across processes the store's assembly claim does the same job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Default, Clone)]
pub struct KeyedLocks {
    inner: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while working on one key; the map entry goes away with its last holder.
pub struct KeyGuard {
    locks: KeyedLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let mutex = {
            let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard { locks: self.clone(), key: key.to_string(), guard: Some(guard) }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().len()
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it now: nobody is waiting, so forget the key.
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn holders_of_one_key_take_turns_and_the_map_empties() {
        let locks = KeyedLocks::default();
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (locks, counter) = (locks.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock("k").await;
                let before = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
                assert_eq!(counter.load(std::sync::atomic::Ordering::SeqCst), before + 1, "exclusive");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(locks.len(), 0);
    }
}
