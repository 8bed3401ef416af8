//! The accept loop and what each connection may hold: the server's own defence against slow,
//! idle and too many clients. Owns the hyper connection settings (HTTP/1 keep-alive, HTTP/2
//! stream, header-list and ping limits), the connection budget (`server.max_connections`,
//! checked against the process's descriptor limit at startup), and one watchdog per
//! connection that closes it when
//! - a request's head has not fully arrived `server.header_read_timeout` after the connection
//!   opened, or after the first byte of a later request (slow headers);
//! - it has been idle between requests for `server.idle_timeout`;
//! - an answer could not be written for `server.body_idle_timeout` (a client that stopped
//!   reading).
//!
//! A request body that sends nothing for `server.body_idle_timeout`, or less than
//! `server.body_min_rate` a second over that long, fails its reads here ([`BodyStall`]); `edge::Observe` turns that into the 408 answer. At the connection limit the
//! connection idle the longest (between requests, or still sending its head) is closed to make
//! room; when every connection is busy with a request, the new one is closed at once rather
//! than left in the kernel's backlog. Knows nothing of routes, the store or the domain.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ServerConfig};

/// Descriptors kept free for everything that is not a client connection: the store's
/// connections (SQLite opens three files per connection), blob files being read or written,
/// Redis, S3 and webhook connections, the log, the listener.
const RESERVED_DESCRIPTORS: u64 = 256;

/// Connection limits and timeouts, from `[server]`.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// Bytes a second a request body must average over each `body_idle_timeout` of waiting
    /// (0: no minimum).
    pub body_min_rate: u64,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
    pub http2_max_header_list_size: u32,
    pub http2_keepalive_interval: Duration,
    pub http2_keepalive_timeout: Duration,
}

impl ConnSettings {
    /// `max_connections` is the resolved budget (see [`descriptor_budget`]).
    pub fn new(server: &ServerConfig, max_connections: usize) -> ConnSettings {
        ConnSettings {
            header_read_timeout: server.header_read_timeout,
            idle_timeout: server.idle_timeout,
            body_idle_timeout: server.body_idle_timeout,
            body_min_rate: server.body_min_rate.bytes(),
            max_connections,
            http2_max_concurrent_streams: server.http2_max_concurrent_streams,
            http2_max_header_list_size: server.http2_max_header_list_size.bytes() as u32,
            http2_keepalive_interval: server.http2_keepalive_interval,
            http2_keepalive_timeout: server.http2_keepalive_timeout,
        }
    }
}

/// Why the descriptor budget does not allow the configured connections.
#[derive(Debug, thiserror::Error)]
#[error(
    "server.max_connections = {wanted} needs {needed} file descriptors ({reserved} kept for files and \
     services), but this process may open only {limit} (RLIMIT_NOFILE); lower server.max_connections \
     to at most {fits}, or raise the limit (ulimit -n, LimitNOFILE=)"
)]
pub struct BudgetError {
    wanted: u64,
    needed: u64,
    reserved: u64,
    limit: u64,
    fits: u64,
}

/// Raise the soft descriptor limit to the hard one, then resolve `server.max_connections`:
/// 0 means as many as the limit leaves room for (at most 10 000); a configured number that
/// does not fit is an error, so the server refuses to start rather than fail under load.
pub fn descriptor_budget(config: &Config) -> Result<usize, BudgetError> {
    let limit = raise_nofile_limit();
    resolve_budget(config.server.max_connections as u64, limit).map(|n| n as usize)
}

fn resolve_budget(wanted: u64, limit: u64) -> Result<u64, BudgetError> {
    let fits = limit.saturating_sub(RESERVED_DESCRIPTORS);
    if wanted == 0 {
        if fits < 16 {
            return Err(BudgetError {
                wanted: 16,
                needed: 16 + RESERVED_DESCRIPTORS,
                reserved: RESERVED_DESCRIPTORS,
                limit,
                fits,
            });
        }
        return Ok(fits.min(10_000));
    }
    if wanted > fits {
        return Err(BudgetError {
            wanted,
            needed: wanted + RESERVED_DESCRIPTORS,
            reserved: RESERVED_DESCRIPTORS,
            limit,
            fits,
        });
    }
    Ok(wanted)
}

/// The soft RLIMIT_NOFILE after raising it to the hard limit (where that is allowed).
#[cfg(unix)]
fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        if lim.rlim_cur == libc::RLIM_INFINITY { u64::MAX } else { lim.rlim_cur }
    }
}

#[cfg(not(unix))]
fn raise_nofile_limit() -> u64 {
    u64::MAX
}

/// Milliseconds since the first connection of this process (the watchdogs' clock: monotonic,
/// and one atomic word per timestamp).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // +1 so that 0 can mean "not set".
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Why a connection was closed by the server, as counted in `ferry_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    Idle,
    WriteStall,
    Evicted,
    Refused,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::Idle => "idle",
            Closed::WriteStall => "write_stall",
            Closed::Evicted => "evicted",
            Closed::Refused => "refused",
        }
    }
}

fn count_closed(reason: Closed) {
    metrics::counter!("ferry_connections_closed_total", "reason" => reason.label()).increment(1);
}

/// What the watchdog, the I/O wrapper and the request guards share about one connection.
struct ConnState {
    opened: u64,
    /// Requests being answered (several at once on HTTP/2, or pipelined on HTTP/1).
    in_flight: AtomicU32,
    /// When the last answer finished (0: no request yet).
    idle_since: AtomicU64,
    /// When the first byte of the next request's head arrived while idle (0: none yet).
    head_started: AtomicU64,
    /// Since when a write has been waiting for the client to read (0: not waiting).
    write_blocked: AtomicU64,
    /// HTTP/2: bytes between requests are pings and settings, not a slow head.
    h2: AtomicBool,
    /// Chosen to make room (so it is not chosen twice while it closes).
    evicted: AtomicBool,
    evict: Notify,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            opened: now_ms(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            write_blocked: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When this connection last did something a client would call activity.
    fn last_activity(&self) -> u64 {
        self.opened.max(self.idle_since.load(Ordering::Relaxed))
    }

    /// The moment the connection is to be closed unless something changes, and why; `None`
    /// while a request is answered and the client reads.
    fn deadline(&self, s: &ConnSettings) -> Option<(u64, Closed)> {
        let ms = |d: Duration| d.as_millis() as u64;
        if self.busy() {
            let blocked = self.write_blocked.load(Ordering::Relaxed);
            return (blocked != 0).then(|| (blocked + ms(s.body_idle_timeout), Closed::WriteStall));
        }
        let idle_since = self.idle_since.load(Ordering::Relaxed);
        if idle_since == 0 {
            // No request yet: the first head must arrive within the header timeout.
            return Some((self.opened + ms(s.header_read_timeout), Closed::HeaderTimeout));
        }
        let head = self.head_started.load(Ordering::Relaxed);
        if head != 0 && head >= idle_since {
            return Some((head + ms(s.header_read_timeout), Closed::HeaderTimeout));
        }
        Some((idle_since + ms(s.idle_timeout), Closed::Idle))
    }
}

/// Counts a request in flight on its connection until its answer is written (or dropped).
struct RequestGuard(Arc<ConnState>);

impl RequestGuard {
    fn enter(conn: &Arc<ConnState>) -> RequestGuard {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.head_started.store(0, Ordering::Relaxed);
        RequestGuard(conn.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle_since.store(now_ms(), Ordering::Relaxed);
            self.0.write_blocked.store(0, Ordering::Relaxed);
        }
    }
}

pin_project! {
    /// The answer's body, holding its request's guard until hyper has written it all.
    pub struct Tracked {
        #[pin]
        inner: Body,
        guard: Option<RequestGuard>,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Set on a request whose body stopped arriving for `server.body_idle_timeout`, or arrived
/// slower than `server.body_min_rate` over such a span: its reads failed, and the answer
/// becomes a 408 (`edge::Observe`).
#[derive(Clone)]
pub struct BodyStall {
    /// 0: not fired; 1: silent; 2: too slow.
    fired: Arc<AtomicU8>,
    after: Duration,
}

impl BodyStall {
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire) != 0
    }
    /// Whether the body trickled (slower than the minimum rate) rather than went silent.
    pub fn too_slow(&self) -> bool {
        self.fired.load(Ordering::Acquire) == 2
    }
    /// How long the body had been silent (or the span its rate was measured over).
    pub fn after(&self) -> Duration {
        self.after
    }
}

/// The error a stalled body's reads end with.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing (or too little) for {0:?}")]
pub struct BodyIdle(Duration);

pin_project! {
    /// A request body whose reads fail once the client has sent nothing for the body idle
    /// timeout while the handler waited for it, or sent less than `min_rate` bytes a second
    /// over that much waiting (a trickle that would hold the connection for the whole upload
    /// deadline). Only time the handler spends waiting for bytes counts: not reading (a full
    /// write buffer upstream) is not the client's doing.
    struct IdleBody {
        #[pin]
        inner: Incoming,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        stall: BodyStall,
        min_rate: u64,
        waiting_since: Option<Instant>,
        waited: Duration,
        window_bytes: u64,
    }
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.project();
        let after = this.stall.after;
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.timer = None;
                if let Some(since) = this.waiting_since.take() {
                    *this.waited += since.elapsed();
                }
                if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(|f| f.data_ref().map_or(0, Bytes::len))) {
                    *this.window_bytes += data as u64;
                }
                if *this.min_rate > 0 && *this.waited >= after {
                    if (*this.window_bytes as f64) < *this.min_rate as f64 * this.waited.as_secs_f64() {
                        this.stall.fired.store(2, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(BodyIdle(after)))));
                    }
                    *this.waited = Duration::ZERO;
                    *this.window_bytes = 0;
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if this.waiting_since.is_none() {
                    *this.waiting_since = Some(Instant::now());
                }
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(after)));
                ready!(timer.as_mut().poll(cx));
                this.stall.fired.store(1, Ordering::Release);
                Poll::Ready(Some(Err(Box::new(BodyIdle(after)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The socket, noting for the watchdog when a new request's head starts to arrive and when
    /// a write has to wait for the client.
    struct Watched {
        #[pin]
        io: TcpStream,
        conn: Arc<ConnState>,
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = ready!(this.io.poll_read(cx, buf));
        if buf.filled().len() > before
            && !this.conn.busy()
            && this.conn.head_started.load(Ordering::Relaxed) == 0
            && !this.conn.h2.load(Ordering::Relaxed)
        {
            this.conn.head_started.store(now_ms(), Ordering::Relaxed);
        }
        Poll::Ready(result)
    }
}

impl Watched {
    fn wrote<T>(conn: &ConnState, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match &poll {
            Poll::Pending => {
                if conn.write_blocked.load(Ordering::Relaxed) == 0 {
                    conn.write_blocked.store(now_ms(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                if conn.write_blocked.load(Ordering::Relaxed) != 0 {
                    conn.write_blocked.store(0, Ordering::Relaxed);
                }
            }
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        Watched::wrote(this.conn, this.io.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        Watched::wrote(this.conn, this.io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        Watched::wrote(this.conn, this.io.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// The open connections, so that one can be chosen to make room at the limit.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
}

impl Registry {
    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn insert(&self, conn: Arc<ConnState>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.insert(id, conn);
        metrics::gauge!("ferry_connections_open").set(open.len() as f64);
        id
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&id);
        metrics::gauge!("ferry_connections_open").set(open.len() as f64);
    }

    /// Ask the connection idle the longest (not answering a request) to close; `false` when
    /// every connection is busy. Runs only at the limit, so a scan is fine.
    fn evict_one(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let victim =
            open.values().filter(|c| !c.busy() && !c.evicted.load(Ordering::Relaxed)).min_by_key(|c| c.last_activity());
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                // A stored permit: the watchdog sees it even if it is not waiting right now.
                c.evict.notify_one();
                // Not waiting for it to go: counted out when its task ends.
                true
            }
            None => false,
        }
    }
}

/// Wait until the connection is due to be closed; the reason.
async fn watchdog(conn: &ConnState, s: &ConnSettings) -> Closed {
    loop {
        let now = now_ms();
        let wait = match conn.deadline(s) {
            Some((at, why)) if at <= now => return why,
            Some((at, _)) => Duration::from_millis(at - now),
            // Busy and writing: look again later (a stall starts the clock).
            None => s.body_idle_timeout.min(Duration::from_secs(5)),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = conn.evict.notified() => {
                if !conn.busy() {
                    return Closed::Evicted;
                }
                // A request arrived after it was chosen: it stays.
                conn.evicted.store(false, Ordering::Relaxed);
            }
        }
    }
}

fn builder(s: &ConnSettings) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // The watchdog times heads and idle keep-alive itself: hyper's header timer would also run
    // between requests, closing keep-alive connections after the (shorter) header timeout.
    b.http1().timer(TokioTimer::new()).header_read_timeout(None).keep_alive(true).max_headers(100);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(s.http2_max_concurrent_streams)
        .max_header_list_size(s.http2_max_header_list_size)
        .keep_alive_interval(s.http2_keepalive_interval)
        .keep_alive_timeout(s.http2_keepalive_timeout)
        // Rapid-reset (CVE-2023-44487) and error-reset floods end the connection.
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(64);
    b
}

/// Accept connections on `listener` and serve `app` on each until `shutdown`; then stop
/// accepting, let connections finish their requests (idle ones close at once), and return
/// once all have closed. The caller bounds that wait (the shutdown grace).
pub async fn serve<S>(listener: TcpListener, app: S, settings: ConnSettings, shutdown: CancellationToken)
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let settings = Arc::new(settings);
    let builder = Arc::new(builder(&settings));
    // Dropped (the caller's grace period is over): every connection still open closes.
    let hard_stop = CancellationToken::new();
    let _hard_stop_on_drop = hard_stop.clone().drop_guard();
    let registry = Arc::new(Registry::default());
    let tasks = TaskTracker::new();
    let mut last_accept_warning: Option<Instant> = None;
    let mut accept_errors: u64 = 0;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection gone before accept: make
                // room if an idle connection can go, and try again shortly; warn at most every
                // ten seconds, with how often it happened.
                accept_errors += 1;
                if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, errors = accept_errors, "accept failed");
                    last_accept_warning = Some(Instant::now());
                    accept_errors = 0;
                }
                registry.evict_one();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if registry.len() >= settings.max_connections && !registry.evict_one() {
            // Every connection is answering a request: refuse this one now rather than leave
            // it waiting in the backlog.
            count_closed(Closed::Refused);
            drop(stream);
            continue;
        }
        if let Err(e) = stream.set_nodelay(true) {
            // Small answers must not wait for delayed ACKs (Nagle).
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let conn = Arc::new(ConnState::new());
        let id = registry.insert(conn.clone());
        let task = serve_one(stream, peer, conn, app.clone(), builder.clone(), settings.clone(), shutdown.clone());
        let registry = registry.clone();
        let hard_stop = hard_stop.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = hard_stop.cancelled() => {}
            }
            registry.remove(id);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
}

async fn serve_one<S>(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<ConnState>,
    app: S,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    settings: Arc<ConnSettings>,
    shutdown: CancellationToken,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    let body_idle = settings.body_idle_timeout;
    let min_rate = settings.body_min_rate;
    let service = {
        let conn = conn.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = RequestGuard::enter(&conn);
            if req.version() == hyper::Version::HTTP_2 {
                conn.h2.store(true, Ordering::Relaxed);
            }
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = if body.is_end_stream() {
                Body::new(body)
            } else {
                let stall = BodyStall { fired: Arc::new(AtomicU8::new(0)), after: body_idle };
                parts.extensions.insert(stall.clone());
                Body::new(IdleBody {
                    inner: body,
                    timer: None,
                    stall,
                    min_rate,
                    waiting_since: None,
                    waited: Duration::ZERO,
                    window_bytes: 0,
                })
            };
            let call = tower::ServiceExt::oneshot(app.clone(), Request::from_parts(parts, body));
            async move {
                let Ok(response) = call.await;
                Ok::<_, Infallible>(response.map(|inner| Tracked { inner, guard: Some(guard) }))
            }
        })
    };
    let io = TokioIo::new(Watched { io: stream, conn: conn.clone() });
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            why = watchdog(&conn, &settings) => {
                // Dropping the connection closes the socket.
                count_closed(why);
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                // Finish what is in flight; an idle connection closes at once.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_keeps_room_for_files_and_refuses_what_cannot_fit() {
        assert_eq!(resolve_budget(0, 20_000).unwrap(), 10_000, "auto: capped");
        assert_eq!(resolve_budget(0, 1024).unwrap(), 1024 - RESERVED_DESCRIPTORS, "auto: what fits");
        assert_eq!(resolve_budget(500, 1024).unwrap(), 500);
        let err = resolve_budget(1000, 1024).unwrap_err().to_string();
        assert!(err.contains("server.max_connections = 1000") && err.contains("at most 768"), "{err}");
        assert!(resolve_budget(0, 100).is_err(), "too few descriptors to serve at all");
    }

    #[test]
    fn deadlines_follow_the_connection_state() {
        let s = ConnSettings {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(30),
            body_min_rate: 500,
            max_connections: 10,
            http2_max_concurrent_streams: 100,
            http2_max_header_list_size: 16 << 10,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
        };
        let conn = Arc::new(ConnState::new());
        let opened = conn.opened;
        assert_eq!(conn.deadline(&s), Some((opened + 10_000, Closed::HeaderTimeout)), "fresh: head due");
        let guard = RequestGuard::enter(&conn);
        assert_eq!(conn.deadline(&s), None, "answering: no deadline");
        conn.write_blocked.store(opened + 5, Ordering::Relaxed);
        assert_eq!(conn.deadline(&s), Some((opened + 30_005, Closed::WriteStall)), "client stopped reading");
        drop(guard);
        let idle = conn.idle_since.load(Ordering::Relaxed);
        assert!(idle >= opened);
        assert_eq!(conn.deadline(&s), Some((idle + 60_000, Closed::Idle)), "keep-alive idle");
        conn.head_started.store(idle + 1, Ordering::Relaxed);
        assert_eq!(conn.deadline(&s), Some((idle + 10_001, Closed::HeaderTimeout)), "next head trickling");
    }
}
