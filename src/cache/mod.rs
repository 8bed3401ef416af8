//! The lookup cache seam: clip metadata by code, chosen at startup. Level one is moka in this
//! process (bounded by entries, per-entry TTL, never past the clip's own expiry); level two is
//! Redis when configured, shared by every instance, which also carries invalidations over
//! pub/sub. Redis is a helper, never a dependency: when it is down, lookups fall through to the
//! store and nothing fails. Codes that open no clip are cached negatively in level one for a
//! short time, each with the tombstone (why and when the clip ended) the store had for it, so a
//! negative answer never loses its reason; the same invalidation that drops a consumed or
//! deleted clip drops them. Claims (one-time, download limits) never read from here.

/// Rate-limit counters shared by every instance (Redis).
pub mod rate;
mod redis_l2;

/// After a failed Redis call, Redis is left alone for a second, so a Redis that hangs costs one
/// deadline a second rather than one per request. Shared by the lookup cache and the limiter.
#[derive(Clone)]
pub(crate) struct Rest {
    until_ms: Arc<std::sync::atomic::AtomicU64>,
    epoch: std::time::Instant,
}

impl Rest {
    pub(crate) fn new() -> Rest {
        Rest { until_ms: Default::default(), epoch: std::time::Instant::now() }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether Redis is being left alone right now.
    pub(crate) fn resting(&self) -> bool {
        self.now_ms() < self.until_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A call failed: leave Redis alone for a second.
    pub(crate) fn failed(&self) {
        self.until_ms.store(self.now_ms() + 1000, std::sync::atomic::Ordering::Relaxed);
    }
}

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache as Moka;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{ClipRecord, Tombstone};

pub use redis_l2::RedisState;

/// What the cache knows about a code.
#[derive(Debug, Clone)]
pub enum Cached {
    Found(Arc<ClipRecord>),
    /// Recently looked up and not live; with its tombstone when the store remembered why.
    Missing(Option<Tombstone>),
}

#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    l1: Moka<String, Cached>,
    l2: Option<redis_l2::RedisL2>,
}

/// Per-entry lifetime: the configured TTL, the negative TTL for misses, and never past the
/// clip's expiry (by the wall clock; readers also check expiry against the service clock).
struct EntryExpiry {
    ttl: Duration,
    negative_ttl: Duration,
}

impl moka::Expiry<String, Cached> for EntryExpiry {
    fn expire_after_create(&self, _key: &String, value: &Cached, _at: std::time::Instant) -> Option<Duration> {
        Some(match value {
            Cached::Missing(_) => self.negative_ttl,
            Cached::Found(clip) => {
                let left = clip.expires_at - crate::domain::clock::system_now_ms();
                self.ttl.min(Duration::from_millis(left.max(0) as u64))
            }
        })
    }
}

/// Level one, bounded both by entries and by bytes. moka bounds one weighted total, so the
/// capacity is `max_bytes` and every entry weighs at least `max_bytes / max_entries` (rounded
/// up): then at most `max_entries` fit, and their estimated sizes add up to at most
/// `max_bytes` (moka enforces the bound at its next maintenance, so briefly a little more).
/// Past 4 GiB per entry the floor saturates; no real configuration comes near.
fn level_one(max_entries: u64, max_bytes: u64, expiry: EntryExpiry) -> Moka<String, Cached> {
    let floor = max_bytes.div_ceil(max_entries.max(1)).min(u64::from(u32::MAX)) as u32;
    Moka::builder()
        .max_capacity(max_bytes)
        .weigher(move |code: &String, value: &Cached| estimated_size(code, value).max(floor))
        .expire_after(expiry)
        .build()
}

/// What an entry takes in memory, roughly: its key, the record and the record's strings, and
/// moka's own bookkeeping per entry.
fn estimated_size(code: &str, value: &Cached) -> u32 {
    const PER_ENTRY: usize = 160;
    let record = match value {
        Cached::Missing(_) => 0,
        Cached::Found(clip) => {
            let strings = [&clip.code, &clip.kind, &clip.blob_key, &clip.sha256, &clip.delete_token_hash]
                .iter()
                .map(|s| s.len())
                .sum::<usize>()
                + [&clip.filename, &clip.mime_type, &clip.access_code_hash]
                    .iter()
                    .map(|s| s.as_ref().map_or(0, |s| s.len()))
                    .sum::<usize>()
                + clip.client.as_ref().map_or(0, |f| {
                    std::mem::size_of::<crate::store::ClientFormat>()
                        + f.meta.as_ref().map_or(0, String::len)
                        + f.stream_header.as_ref().map_or(0, String::len)
                });
            std::mem::size_of::<ClipRecord>() + strings
        }
    };
    u32::try_from(PER_ENTRY + code.len() + std::mem::size_of::<Cached>() + record).unwrap_or(u32::MAX)
}

/// Counters registered once (the hot path must not rebuild metric keys).
fn record(level: &'static str, hit: bool) {
    use std::sync::OnceLock;
    static C: OnceLock<[metrics::Counter; 4]> = OnceLock::new();
    let c = C.get_or_init(|| {
        let c = |level: &'static str, result: &'static str| {
            metrics::counter!("ferry_cache_lookups_total", "level" => level, "result" => result)
        };
        [c("l1", "hit"), c("l1", "miss"), c("l2", "hit"), c("l2", "miss")]
    });
    let i = match (level, hit) {
        ("l1", true) => 0,
        ("l1", false) => 1,
        (_, true) => 2,
        (_, false) => 3,
    };
    c[i].increment(1);
}

impl Cache {
    /// No caching at all (`cache = "none"`).
    pub fn none() -> Cache {
        Cache { inner: None }
    }

    /// Build from configuration; starts the Redis connection and invalidation listener in the
    /// background when a Redis URL is set (startup never waits for Redis).
    pub fn from_config(config: &Config, shutdown: &CancellationToken) -> Cache {
        if config.cache == crate::config::CacheMode::None {
            return Cache::none();
        }
        let c = &config.lookup_cache;
        let l1 =
            level_one(c.max_entries, c.max_bytes.bytes(), EntryExpiry { ttl: c.ttl, negative_ttl: c.negative_ttl });
        let l2 = config
            .redis_url
            .as_ref()
            .map(|url| redis_l2::RedisL2::start(url.expose(), c.ttl, c.redis_timeout, l1.clone(), shutdown));
        Cache { inner: Some(Arc::new(Inner { l1, l2 })) }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The cached answer for `code`, from level one, then level two (filling level one).
    pub async fn get(&self, code: &str) -> Option<Cached> {
        let inner = self.inner.as_ref()?;
        if let Some(hit) = inner.l1.get(code) {
            record("l1", true);
            return Some(hit);
        }
        record("l1", false);
        let l2 = inner.l2.as_ref()?;
        match l2.get(code).await {
            Some(clip) => {
                record("l2", true);
                let found = Cached::Found(Arc::new(clip));
                inner.l1.insert(code.to_string(), found.clone());
                Some(found)
            }
            None => {
                record("l2", false);
                None
            }
        }
    }

    /// Remember what the store said: a live clip in both levels, a negative answer (with its
    /// reason) in level one only.
    pub async fn fill(&self, code: &str, answer: Cached) {
        let Some(inner) = &self.inner else { return };
        if let (Cached::Found(clip), Some(l2)) = (&answer, &inner.l2) {
            l2.set(clip).await;
        }
        inner.l1.insert(code.to_string(), answer);
    }

    /// Forget `code` here at once and, through Redis, in every other instance.
    pub async fn invalidate(&self, code: &str) {
        let Some(inner) = &self.inner else { return };
        inner.l1.invalidate(code);
        if let Some(l2) = &inner.l2 {
            l2.invalidate(code).await;
        }
    }

    /// Redis as /health reports it (`None` when not configured).
    pub fn redis_state(&self) -> Option<RedisState> {
        self.inner.as_ref()?.l2.as_ref().map(|l2| l2.state())
    }

    /// Entries in level one (for the admin view).
    pub fn l1_entries(&self) -> u64 {
        self.inner.as_ref().map(|i| i.l1.entry_count()).unwrap_or(0)
    }

    /// Estimated bytes held by level one (for the admin view).
    pub fn l1_bytes(&self) -> u64 {
        self.inner.as_ref().map(|i| i.l1.weighted_size()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(code: &str, filename_len: usize) -> Cached {
        Cached::Found(Arc::new(ClipRecord {
            blob_key: format!("blobs/{code}"),
            filename: Some("f".repeat(filename_len)),
            size: 1,
            sha256: "0".repeat(64),
            delete_token_hash: "0".repeat(64),
            ..ClipRecord::sample(code)
        }))
    }

    fn expiry() -> EntryExpiry {
        EntryExpiry { ttl: Duration::from_secs(600), negative_ttl: Duration::from_secs(600) }
    }

    #[test]
    fn small_entries_are_bounded_by_count() {
        let l1 = level_one(100, 64 * 1024 * 1024, expiry());
        for i in 0..2000 {
            l1.insert(format!("CODE{i:06}"), record("C", 10));
            l1.insert(format!("MISS{i:06}"), Cached::Missing(None));
        }
        l1.run_pending_tasks();
        assert!(l1.entry_count() <= 100, "{} entries", l1.entry_count());
        assert!(l1.entry_count() >= 50, "the bound is the count, not the bytes: {}", l1.entry_count());
    }

    #[test]
    fn large_entries_are_bounded_by_bytes() {
        let max_bytes = 256 * 1024;
        let l1 = level_one(100_000, max_bytes, expiry());
        for i in 0..1000 {
            l1.insert(format!("CODE{i:06}"), record("C", 8 * 1024));
        }
        l1.run_pending_tasks();
        assert!(l1.weighted_size() <= max_bytes, "{} bytes", l1.weighted_size());
        let each = u64::from(estimated_size("CODE000000", &record("C", 8 * 1024)));
        assert!(each > 8 * 1024, "a record's strings are counted: {each}");
        assert!(l1.entry_count() <= max_bytes / each, "{} entries of {each} bytes", l1.entry_count());
        assert!(l1.entry_count() > 0);
    }
}
