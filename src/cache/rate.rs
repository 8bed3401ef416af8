//! Rate-limit counters shared by every instance, in Redis: one Lua script per request (one
//! round trip, atomic in Redis, on Redis's own clock so instances' clocks need not agree) runs
//! the same GCRA the in-process limiter uses (a quota of `n` per minute with bursts of `n`),
//! and for quick-share codes also honours the client's miss block and counts the lookup as a
//! miss in advance; a second script confirms that miss or takes it back. Client keys are hashed before they reach Redis, so addresses do not show
//! in `KEYS` or `MONITOR` output (an obfuscation, not anonymity: the address space is small).
//!
//! Every call has a short deadline. A failure is reported to the caller (which counts in memory
//! instead) and Redis is left alone for a second before the next try, so a Redis that hangs
//! costs one deadline per second, not one per request.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// KEYS[1] the GCRA key; for a quick-share code KEYS[2] its block key, KEYS[3] its miss count
/// and KEYS[4] its lookups in flight ("" otherwise). ARGV[1] the limit n per minute; ARGV[2] misses allowed, ARGV[3] their
/// window (and the block) in ms. A quick-share lookup is counted as a miss in advance, so that
/// lookups in flight at once cannot pass the limit together (`SETTLE` confirms or takes it
/// back). Returns {allowed (0/1), retry after ms, remaining, block ms}.
const ACQUIRE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local period = 60000 / n
if KEYS[2] ~= '' then
  local blocked = redis.call('PTTL', KEYS[2])
  if blocked > 0 then return {0, 0, 0, blocked} end
  local misses = tonumber(redis.call('GET', KEYS[3]) or '0') + tonumber(redis.call('GET', KEYS[4]) or '0')
  if misses >= tonumber(ARGV[2]) then return {0, 0, 0, 1000} end
end
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + period
local earliest = new_tat - period * n
if earliest > now then
  return {0, math.ceil(earliest - now), 0, 0}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now))
if KEYS[2] ~= '' then
  redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
end
return {1, 0, math.floor((now - earliest) / period), 0}
"#;

/// Settle a lookup counted in advance. KEYS[1] the miss count, KEYS[2] the block key, KEYS[3]
/// the lookups in flight; ARGV[1] 1 when the lookup missed (counted; at the limit the block
/// starts) or 0 when it found its clip, ARGV[2] misses allowed, ARGV[3] the window and block in
/// ms. Returns 1 when a block began.
const SETTLE: &str = r#"
if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
if ARGV[1] == '0' then return 0 end
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if count >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// What the shared counter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDecision {
    Allowed {
        remaining: u32,
    },
    Limited {
        retry_after: Duration,
    },
    /// The client's quick-share misses blocked it.
    Blocked {
        retry_after: Duration,
    },
}

/// The Redis side of the rate limits; cheap to clone.
#[derive(Clone)]
pub struct SharedRate {
    inner: Arc<Inner>,
}

struct Inner {
    conn: tokio::sync::RwLock<Option<ConnectionManager>>,
    acquire: redis::Script,
    settle: redis::Script,
    timeout: Duration,
    rest: super::Rest,
    /// Whether the last call worked (for /health and metrics).
    working: AtomicBool,
}

/// A failed or skipped call: count in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

fn hashed(kind: &str, group: &str, client: IpAddr) -> String {
    let mut h = Sha256::new();
    h.update(group.as_bytes());
    h.update([0]);
    match client {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    let digest = h.finalize();
    format!("ferry:rl:{kind}:{group}:{}", hex::encode(&digest[..12]))
}

impl SharedRate {
    /// Connect in the background (retrying until `shutdown`); until connected, calls report
    /// `Unavailable`.
    pub fn start(url: &str, timeout: Duration, shutdown: &CancellationToken) -> SharedRate {
        let rate = SharedRate {
            inner: Arc::new(Inner {
                conn: tokio::sync::RwLock::new(None),
                acquire: redis::Script::new(ACQUIRE),
                settle: redis::Script::new(SETTLE),
                timeout,
                rest: super::Rest::new(),
                working: AtomicBool::new(false),
            }),
        };
        match redis::Client::open(url) {
            Ok(client) => {
                tokio::spawn(rate.clone().connect_loop(client, shutdown.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "redis URL rejected; rate limits count per instance"),
        }
        rate
    }

    async fn connect_loop(self, client: redis::Client, shutdown: CancellationToken) {
        loop {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.inner.timeout.max(Duration::from_millis(500))))
                .set_response_timeout(Some(self.inner.timeout));
            let connect = ConnectionManager::new_with_config(client.clone(), config);
            if let Ok(Ok(manager)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                *self.inner.conn.write().await = Some(manager);
                self.inner.working.store(true, Ordering::Relaxed);
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Whether the limits are shared right now (the last Redis call worked).
    pub fn working(&self) -> bool {
        self.inner.working.load(Ordering::Relaxed)
    }

    /// A connection, unless Redis failed within the last second.
    async fn ready(&self) -> Result<ConnectionManager, Unavailable> {
        if self.inner.rest.resting() {
            return Err(Unavailable);
        }
        self.inner.conn.read().await.clone().ok_or(Unavailable)
    }

    fn failed(&self, why: &dyn std::fmt::Display) {
        if self.inner.working.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %why, "rate limits: Redis is not answering; counting per instance until it does");
        }
        self.inner.rest.failed();
    }

    fn succeeded(&self) {
        if !self.inner.working.swap(true, Ordering::Relaxed) {
            tracing::info!("rate limits: Redis answers again; limits are shared");
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, invocation: redis::ScriptInvocation<'_>) -> Result<T, Unavailable> {
        let mut conn = self.ready().await?;
        match tokio::time::timeout(self.inner.timeout, invocation.invoke_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.succeeded();
                Ok(v)
            }
            Ok(Err(e)) => {
                self.failed(&e);
                Err(Unavailable)
            }
            Err(_) => {
                self.failed(&format!("no answer within {:?}", self.inner.timeout));
                Err(Unavailable)
            }
        }
    }

    /// Take one request from `client`'s quota of `per_minute` in `group`; for a quick-share
    /// code (`quick`: misses allowed and their window), its block is honoured first and, when
    /// allowed, the lookup is counted as a miss until `settle` says otherwise.
    pub async fn acquire(
        &self,
        group: &str,
        client: IpAddr,
        per_minute: u32,
        quick: Option<(u32, Duration)>,
    ) -> Result<SharedDecision, Unavailable> {
        let mut call = self.inner.acquire.key(hashed("q", group, client));
        let (block, misses, pending) = match quick {
            Some(_) => (
                hashed("block", "quick", client),
                hashed("misses", "quick", client),
                hashed("pending", "quick", client),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let (max, window) = quick.unwrap_or((1, Duration::from_secs(1)));
        call.key(block)
            .key(misses)
            .key(pending)
            .arg(per_minute.max(1))
            .arg(max.max(1))
            .arg(window.as_millis().max(1) as u64);
        let (allowed, retry_ms, remaining, blocked_ms): (i64, i64, i64, i64) = self.run(call).await?;
        let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
        Ok(if blocked_ms > 0 {
            SharedDecision::Blocked { retry_after: ms(blocked_ms) }
        } else if allowed == 1 {
            SharedDecision::Allowed { remaining: remaining.clamp(0, u32::MAX as i64) as u32 }
        } else {
            SharedDecision::Limited { retry_after: ms(retry_ms) }
        })
    }

    /// Settle a quick-share lookup counted in advance: `missed` confirms it (`max` misses
    /// within `window` block the client for `window`), else the count is taken back.
    pub async fn settle(&self, client: IpAddr, missed: bool, max: u32, window: Duration) -> Result<(), Unavailable> {
        let mut call = self.inner.settle.key(hashed("misses", "quick", client));
        call.key(hashed("block", "quick", client))
            .key(hashed("pending", "quick", client))
            .arg(if missed { 1 } else { 0 })
            .arg(max.max(1))
            .arg(window.as_millis().max(1) as u64);
        let _: i64 = self.run(call).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_do_not_carry_the_address_and_differ_by_group_and_client() {
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "203.0.113.8".parse().unwrap();
        let k = hashed("q", "reads", a);
        assert!(k.starts_with("ferry:rl:q:reads:") && !k.contains("203.0.113.7"), "{k}");
        assert_ne!(k, hashed("q", "reads", b));
        assert_ne!(k, hashed("q", "downloads", a));
        assert_eq!(k, hashed("q", "reads", a), "every instance derives the same key");
    }
}
