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
    /// Lookups in flight, counted in advance.
    pending: u32,
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
    /// `charged`: where a quick-share lookup was counted as a miss in advance (taken back if it
    /// finds its clip), so that lookups in flight at once cannot pass the miss limit together.
    Allowed {
        remaining: u32,
        charged: Option<Charged>,
    },
    Limited {
        retry_after: u64,
    },
    Blocked {
        retry_after: u64,
    },
}

/// Where a quick-share lookup's advance miss was counted.
#[derive(Clone, Copy)]
enum Charged {
    Memory,
    Shared,
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
        let window = Duration::from_millis(self.quick_block_ms.max(1) as u64);
        if let Some(shared) = &self.shared {
            let quick = quick.then_some((self.quick_max_misses, window));
            if let Ok(decision) = shared.acquire(group.name(), key, per_minute, quick).await {
                let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
                return match decision {
                    SharedDecision::Allowed { remaining } => {
                        Decision::Allowed { remaining, charged: quick.map(|_| Charged::Shared) }
                    }
                    SharedDecision::Limited { retry_after } => {
                        Decision::Limited { retry_after: secs(retry_after).max(1) }
                    }
                    SharedDecision::Blocked { retry_after } => {
                        Decision::Blocked { retry_after: secs(retry_after).max(1) }
                    }
                };
            }
        }
        if quick && let Some(left) = self.quick_charge(key, now) {
            return Decision::Blocked { retry_after: seconds(left) };
        }
        match self.limiter(group).keyed.check_key(&key) {
            Ok(snapshot) => Decision::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
                charged: quick.then_some(Charged::Memory),
            },
            Err(not_until) => {
                if quick {
                    self.quick_refund(key);
                }
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Decision::Limited { retry_after: retry_after.max(1) }
            }
        }
    }

    /// A quick-share lookup counted in advance as a miss: confirm it (`missed`, which may start
    /// the block) or take it back, where it was counted.
    async fn settle(&self, key: IpAddr, charged: Charged, missed: bool, now: i64) {
        match charged {
            Charged::Shared => {
                let shared = self.shared.as_ref().expect("charged in Redis only when shared");
                let window = Duration::from_millis(self.quick_block_ms.max(1) as u64);
                // A Redis that stopped answering meanwhile: its count expires with the window.
                let _ = shared.settle(key, missed, self.quick_max_misses, window).await;
            }
            Charged::Memory if missed => self.quick_confirm(key, now),
            Charged::Memory => self.quick_refund(key),
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
            .retain(|_, m| m.pending > 0 || m.blocked_until > now_ms || m.window_start + window > now_ms);
    }

    /// Count a quick-share lookup as a miss in advance; `Some(ms to wait)` when the client is
    /// blocked, or when the lookups it has in flight already fill its misses.
    fn quick_charge(&self, key: IpAddr, now: i64) -> Option<i64> {
        let mut map = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        let m = map.entry(key).or_default();
        if m.blocked_until > now {
            return Some(m.blocked_until - now);
        }
        if now - m.window_start >= self.quick_block_ms {
            // The window decays: old misses stop counting.
            m.count = 0;
            m.window_start = now;
        }
        if m.count + m.pending >= self.quick_max_misses {
            return Some(1000);
        }
        m.pending += 1;
        None
    }

    /// The lookup counted in advance missed: at the limit, the block starts.
    fn quick_confirm(&self, key: IpAddr, now: i64) {
        let mut map = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        let m = map.entry(key).or_default();
        m.pending = m.pending.saturating_sub(1);
        m.count += 1;
        if m.count >= self.quick_max_misses {
            m.blocked_until = now + self.quick_block_ms;
            m.count = 0;
            m.window_start = now;
        }
    }

    /// The lookup counted in advance found its clip (or was not made): take the count back.
    fn quick_refund(&self, key: IpAddr) {
        let mut map = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = map.get_mut(&key) {
            m.pending = m.pending.saturating_sub(1);
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
    let (remaining, charged) = match limits.decide(group, key, quick, now).await {
        Decision::Allowed { remaining, charged } => (remaining, charged),
        Decision::Limited { retry_after } => {
            return ApiError::RateLimited { retry_after, limit: limiter.per_minute }.into_response();
        }
        Decision::Blocked { retry_after } => {
            return ApiError::RateLimited { retry_after, limit: limits.quick_max_misses }.into_response();
        }
    };
    let mut response = next(req).await;
    if let Some(charged) = charged {
        let missed = response.status() == axum::http::StatusCode::NOT_FOUND;
        limits.settle(key, charged, missed, now).await;
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
