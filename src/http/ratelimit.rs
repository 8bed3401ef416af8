//! Rate limits per client key and route group (governor's keyed GCRA limiters), and the
//! quick-share miss throttle. The client key is the peer address, or — only when the peer is a
//! configured trusted proxy — the nearest untrusted address in X-Forwarded-For, read from the
//! right so a client cannot choose its own key by prepending entries. Client addresses are
//! never logged.
//!
//! With `rate.backend = "redis"` the counts (quotas and quick-share misses) live in Redis and
//! hold across every instance (`cache::rate`); while Redis does not answer, each instance
//! counts in its own memory again, and /health and `ferry_rate_limit_shared` say so.

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
use crate::cache::rate::{SharedDecision, SharedRate};
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

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Initiate => "initiate",
            Group::Reads => "reads",
            Group::Downloads => "downloads",
            Group::AdminAuth => "admin_auth",
        }
    }
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
    /// Counts shared by every instance, when configured.
    shared: Option<SharedRate>,
}

/// What the limits decided for one request.
enum Decision {
    Allowed { remaining: u32 },
    Limited { retry_after: u64 },
    Blocked { retry_after: u64 },
}

/// Where the counts are kept right now, for /health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Off,
    Memory,
    /// Configured for Redis and Redis answers.
    Shared,
    /// Configured for Redis, which does not answer: counting per instance meanwhile.
    SharedDegraded,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Off => "off",
            Backend::Memory => "memory",
            Backend::Shared => "redis",
            Backend::SharedDegraded => "memory (redis unavailable)",
        }
    }
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
            shared: None,
        }
    }

    /// Keep the counts in Redis, shared by every instance.
    pub fn with_shared(mut self, shared: SharedRate) -> RateLimits {
        self.shared = Some(shared);
        self
    }

    /// Where the counts are kept right now.
    pub fn backend(&self) -> Backend {
        match (&self.shared, self.enabled) {
            (_, false) => Backend::Off,
            (None, true) => Backend::Memory,
            (Some(s), true) if s.working() => Backend::Shared,
            (Some(_), true) => Backend::SharedDegraded,
        }
    }

    /// Decide on one request: in Redis when shared and answering, else in memory.
    async fn decide(&self, group: Group, key: IpAddr, quick: bool, now: i64) -> Decision {
        let per_minute = self.limiter(group).per_minute;
        if let Some(shared) = &self.shared
            && let Ok(decision) = shared.acquire(group.name(), key, per_minute, quick).await
        {
            let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
            return match decision {
                SharedDecision::Allowed { remaining } => Decision::Allowed { remaining },
                SharedDecision::Limited { retry_after } => Decision::Limited { retry_after: secs(retry_after).max(1) },
                SharedDecision::Blocked { retry_after } => Decision::Blocked { retry_after: secs(retry_after).max(1) },
            };
        }
        if quick && let Some(left) = self.quick_blocked(key, now) {
            return Decision::Blocked { retry_after: seconds(left) };
        }
        match self.limiter(group).keyed.check_key(&key) {
            Ok(snapshot) => Decision::Allowed { remaining: snapshot.remaining_burst_capacity() },
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Decision::Limited { retry_after: retry_after.max(1) }
            }
        }
    }

    /// Count a failed quick-share lookup where the decision was made.
    async fn record_miss(&self, key: IpAddr, now: i64) {
        if let Some(shared) = &self.shared {
            let window = Duration::from_millis(self.quick_block_ms.max(1) as u64);
            if shared.missed(key, self.quick_max_misses, window).await.is_ok() {
                return;
            }
        }
        self.quick_missed(key, now);
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
        // Lossy, so a stray non-ASCII byte a client put in its part of a line cannot hide the
        // entries a trusted proxy appended to that line.
        let lines: Vec<String> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        // From the right: past the trusted proxies to the first hop they vouch for. A hop that
        // is not an address (`unknown`, or bytes a client wrote) ends the walk at the peer:
        // what lies to its left is the client's own word.
        for hop in lines.iter().rev().flat_map(|l| l.rsplit(',')).map(str::trim).filter(|h| !h.is_empty()) {
            match forwarded_hop(hop) {
                Some(ip) if trusted(&ip) => {}
                Some(ip) => return ip,
                None => return peer,
            }
        }
        peer
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

/// One `X-Forwarded-For` entry: an address, also with a port (`10.0.0.1:443`, `[fd00::1]:80`)
/// or in brackets (`[fd00::1]`), as some proxies write them.
pub(crate) fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
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
    let limiter = limits.limiter(group);
    let remaining = match limits.decide(group, key, quick, now).await {
        Decision::Allowed { remaining } => remaining,
        Decision::Limited { retry_after } => {
            return ApiError::RateLimited { retry_after, limit: limiter.per_minute }.into_response();
        }
        Decision::Blocked { retry_after } => {
            return ApiError::RateLimited { retry_after, limit: limits.quick_max_misses }.into_response();
        }
    };
    let mut response = next(req).await;
    if quick && response.status() == axum::http::StatusCode::NOT_FOUND {
        limits.record_miss(key, now).await;
    }
    let h = response.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(limiter.per_minute));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(60u32));
    response
}

/// Prune idle entries every minute, and publish where the counts live every second, until
/// cancelled.
pub async fn forget_idle_loop(state: AppState, shutdown: tokio_util::sync::CancellationToken) {
    let mut ticks: u32 = 0;
    loop {
        let shared = matches!(state.rate_limits().backend(), Backend::Shared);
        metrics::gauge!("ferry_rate_limit_shared").set(if shared { 1.0 } else { 0.0 });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        ticks += 1;
        if ticks % 60 == 0 {
            state.rate_limits().forget_idle(state.now_ms());
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
