//! Rate limits per client key and route group (governor's keyed GCRA limiters), and the
//! quick-share miss throttle. The client key is the peer address, or — only when the peer is a
//! configured trusted proxy — the nearest untrusted address in X-Forwarded-For, read from the
//! right so a client cannot choose its own key by prepending entries. Client addresses are
//! never logged.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;

use super::error::ApiError;
use crate::app::AppState;
use crate::config::{Config, Switch};

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

/// Route groups with their own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Initiate,
    Reads,
    Downloads,
    AdminAuth,
}

struct Limiter {
    per_minute: u32,
    keyed: Keyed,
}

impl Limiter {
    fn new(per_minute: u32) -> Limiter {
        let n = NonZeroU32::new(per_minute.max(1)).expect("non-zero");
        Limiter { per_minute, keyed: RateLimiter::keyed(Quota::per_minute(n)).with_middleware() }
    }
}

/// Failed quick-share lookups per client.
#[derive(Default)]
struct Misses {
    count: u32,
    window_start: i64,
    blocked_until: i64,
}

pub struct RateLimits {
    enabled: bool,
    trusted: Vec<IpNet>,
    initiate: Limiter,
    reads: Limiter,
    downloads: Limiter,
    admin_auth: Limiter,
    quick_max_misses: u32,
    quick_block_ms: i64,
    misses: Mutex<HashMap<IpAddr, Misses>>,
}

impl RateLimits {
    pub fn from_config(c: &Config) -> RateLimits {
        RateLimits {
            enabled: c.rate_limits == Switch::On,
            trusted: c.trusted_proxy_nets(),
            initiate: Limiter::new(c.rate.initiate_per_minute),
            reads: Limiter::new(c.rate.reads_per_minute),
            downloads: Limiter::new(c.rate.downloads_per_minute),
            admin_auth: Limiter::new(c.rate.admin_auth_per_minute),
            quick_max_misses: c.rate.quick_share_misses,
            quick_block_ms: c.rate.quick_share_block.as_millis() as i64,
            misses: Mutex::new(HashMap::new()),
        }
    }

    fn limiter(&self, group: Group) -> &Limiter {
        match group {
            Group::Initiate => &self.initiate,
            Group::Reads => &self.reads,
            Group::Downloads => &self.downloads,
            Group::AdminAuth => &self.admin_auth,
        }
    }

    /// The client a request speaks for.
    pub fn client_key(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|n| n.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|hop| hop.trim().parse().ok())
            .collect();
        hops.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer)
    }

    /// Forget idle clients so the tables cannot grow without bound.
    pub fn forget_idle(&self, now_ms: i64) {
        for l in [&self.initiate, &self.reads, &self.downloads, &self.admin_auth] {
            l.keyed.retain_recent();
            l.keyed.shrink_to_fit();
        }
        let window = self.quick_block_ms;
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, m| m.blocked_until > now_ms || m.window_start + window > now_ms);
    }

    fn quick_blocked(&self, key: IpAddr, now: i64) -> Option<i64> {
        let map = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).filter(|m| m.blocked_until > now).map(|m| m.blocked_until - now)
    }

    fn quick_missed(&self, key: IpAddr, now: i64) {
        let mut map = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        let m = map.entry(key).or_default();
        if now - m.window_start >= self.quick_block_ms {
            // The window decays: old misses stop counting.
            m.count = 0;
            m.window_start = now;
        }
        m.count += 1;
        if m.count >= self.quick_max_misses {
            m.blocked_until = now + self.quick_block_ms;
            m.count = 0;
            m.window_start = now;
        }
    }
}

/// A 6-character clip code in a read or download path (`/api/clip/X`, `/api/file/X`, `/raw/X`).
fn quick_code(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    let id = match (segs.next(), segs.next(), segs.next()) {
        (Some("api"), Some("clip" | "file"), Some(id)) => id,
        (Some("raw"), Some(id), _) => id,
        _ => return false,
    };
    id.len() == 6 && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn seconds(ms: i64) -> u64 {
    (ms.max(0) as u64).div_ceil(1000).max(1)
}

/// Middleware for one route group.
pub async fn limit(State((state, group)): State<(AppState, Group)>, req: Request, next: Next) -> Response {
    check(&state, group, req, |req| next.run(req)).await
}

/// Answer `req` with `next` if the client is within `group`'s limit, else with 429; the one
/// implementation behind the middleware and the hot path.
pub async fn check<F, Fut>(state: &AppState, group: Group, req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let limits = state.rate_limits();
    if !limits.enabled {
        return next(req).await;
    }
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let key = limits.client_key(peer, req.headers());
    let now = state.now_ms();
    let quick = matches!(group, Group::Reads | Group::Downloads) && quick_code(req.uri().path());
    if quick && let Some(left) = limits.quick_blocked(key, now) {
        let limit = limits.quick_max_misses;
        return ApiError::RateLimited { retry_after: seconds(left), limit }.into_response();
    }
    let limiter = limits.limiter(group);
    let remaining = match limiter.keyed.check_key(&key) {
        Ok(snapshot) => snapshot.remaining_burst_capacity(),
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return ApiError::RateLimited { retry_after: retry_after.max(1), limit: limiter.per_minute }
                .into_response();
        }
    };
    let mut response = next(req).await;
    if quick && response.status() == axum::http::StatusCode::NOT_FOUND {
        limits.quick_missed(key, now);
    }
    let h = response.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(limiter.per_minute));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(60u32));
    response
}

/// Prune idle entries every minute until cancelled.
pub async fn forget_idle_loop(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(60)) => state.rate_limits().forget_idle(state.now_ms()),
        }
    }
}

/// Shared handle type used by the application state.
pub type SharedRateLimits = Arc<RateLimits>;

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &str) -> RateLimits {
        let mut c = Config::defaults();
        c.trusted_proxies = crate::config::CommaList(trusted.split(',').map(str::to_owned).collect());
        RateLimits::from_config(&c)
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy_and_is_read_from_the_right() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.7"));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(limits("").client_key(peer, &h), peer, "untrusted peer: header ignored");
        let l = limits("10.0.0.0/8");
        assert_eq!(l.client_key(peer, &h), "1.2.3.4".parse::<IpAddr>().unwrap(), "nearest untrusted hop");
        assert_eq!(l.client_key("9.9.9.9".parse().unwrap(), &h), "9.9.9.9".parse::<IpAddr>().unwrap());
        assert!(quick_code("/api/clip/ABC123/info") && quick_code("/raw/ABC123") && quick_code("/api/file/ABC123"));
        assert!(!quick_code("/api/clip/ABCDEFGHIJ") && !quick_code("/api/upload/ABC123/status"));
    }
}
