//! Redis as level two: clip records as JSON under `ferry:clip:<code>` with a TTL no longer than
//! the clip's own life, and invalidations published on `ferry:invalidate`, which every
//! instance's listener applies to its level one. Every call has a short deadline; any failure is
//! a miss (logged at debug), the connection manager reconnects by itself, and after the
//! listener reconnects level one is cleared, since invalidations may have been missed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use moka::sync::Cache as Moka;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::Cached;
use crate::store::ClipRecord;

const CHANNEL: &str = "ferry:invalidate";

fn key(code: &str) -> String {
    format!("ferry:clip:{code}")
}

/// How Redis is doing, for /health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    Connected,
    Degraded,
}

#[derive(Clone)]
pub struct RedisL2 {
    conn: Arc<tokio::sync::RwLock<Option<ConnectionManager>>>,
    ttl: Duration,
    timeout: Duration,
    healthy: Arc<AtomicBool>,
    rest: super::Rest,
}

impl RedisL2 {
    pub fn start(
        url: &str,
        ttl: Duration,
        timeout: Duration,
        l1: Moka<String, Cached>,
        shutdown: &CancellationToken,
    ) -> RedisL2 {
        let l2 = RedisL2 {
            conn: Arc::new(tokio::sync::RwLock::new(None)),
            ttl,
            timeout,
            healthy: Arc::new(AtomicBool::new(false)),
            rest: super::Rest::new(),
        };
        match redis::Client::open(url) {
            Ok(client) => {
                tokio::spawn(l2.clone().connect_loop(client.clone(), shutdown.clone()));
                tokio::spawn(listen(client, l1, l2.healthy.clone(), shutdown.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "redis URL rejected; running without the second cache level"),
        }
        l2
    }

    /// Keep trying to build the connection manager until it exists (it reconnects by itself
    /// afterwards).
    async fn connect_loop(self, client: redis::Client, shutdown: CancellationToken) {
        loop {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(500))))
                .set_response_timeout(Some(self.timeout));
            match tokio::time::timeout(
                Duration::from_secs(2),
                ConnectionManager::new_with_config(client.clone(), config),
            )
            .await
            {
                Ok(Ok(manager)) => {
                    *self.conn.write().await = Some(manager);
                    return;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "redis not reachable yet"),
                Err(_) => tracing::debug!("redis connect timed out"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn manager(&self) -> Option<ConnectionManager> {
        if self.rest.resting() {
            return None;
        }
        self.conn.read().await.clone()
    }

    fn outcome<T>(&self, r: Result<Result<T, redis::RedisError>, tokio::time::error::Elapsed>) -> Option<T> {
        let failed = match r {
            Ok(Ok(v)) => return Some(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::debug!(error = %failed, "redis call failed; resting it for a second");
        self.rest.failed();
        None
    }

    pub async fn get(&self, code: &str) -> Option<ClipRecord> {
        let mut conn = self.manager().await?;
        let raw: Option<Option<String>> =
            self.outcome(tokio::time::timeout(self.timeout, conn.get::<_, Option<String>>(key(code))).await);
        raw.flatten().and_then(|s| serde_json::from_str(&s).ok())
    }

    pub async fn set(&self, clip: &ClipRecord) {
        let Some(mut conn) = self.manager().await else { return };
        let left = clip.expires_at - crate::domain::clock::system_now_ms();
        let ttl_ms = (self.ttl.as_millis() as i64).min(left);
        if ttl_ms <= 0 {
            return;
        }
        let Ok(json) = serde_json::to_string(clip) else { return };
        let _: Option<()> = self.outcome(
            tokio::time::timeout(self.timeout, conn.pset_ex::<_, _, ()>(key(&clip.code), json, ttl_ms as u64)).await,
        );
    }

    pub async fn invalidate(&self, code: &str) {
        let Some(mut conn) = self.manager().await else { return };
        let _: Option<i64> = self.outcome(tokio::time::timeout(self.timeout, conn.del::<_, i64>(key(code))).await);
        let _: Option<i64> =
            self.outcome(tokio::time::timeout(self.timeout, conn.publish::<_, _, i64>(CHANNEL, code)).await);
    }

    pub fn state(&self) -> RedisState {
        if self.healthy.load(Ordering::Relaxed) { RedisState::Connected } else { RedisState::Degraded }
    }
}

/// Apply other instances' invalidations to level one, reconnecting forever.
async fn listen(
    client: redis::Client,
    l1: Moka<String, Cached>,
    healthy: Arc<AtomicBool>,
    shutdown: CancellationToken,
) {
    loop {
        let session = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(CHANNEL).await?;
            // Anything published while we were away is lost: start from a clean level one.
            l1.invalidate_all();
            healthy.store(true, Ordering::Relaxed);
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                if let Ok(code) = msg.get_payload::<String>() {
                    l1.invalidate(&code);
                }
            }
            Ok::<(), redis::RedisError>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = session => {
                healthy.store(false, Ordering::Relaxed);
                if let Err(e) = r {
                    tracing::debug!(error = %e, "redis invalidation listener disconnected");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
