//! The two layers every request passes through, written as plain tower services with one
//! future each. A stack of generic layers (request id, four header setters, an error-body map,
//! timeout, tracing, metrics) cost more per request than the cached lookup it wrapped; these
//! do the same work in two steps:
//! - [`Edge`], around the whole app once: the request id, the security headers, JSON bodies for
//!   bare error statuses, and compression for clients that accept it;
//! - [`Observe`], around each route (it needs the matched route template): the request's one
//!   log line (method, route template, request id, status, latency; for a server error, its
//!   cause), the request metrics, requests in flight, and the request deadline.
//!
//! The line carries its fields itself rather than inheriting them from a span: an enabled span
//! per request (created, entered on every poll, closed) cost 5–7 % of cached-lookup throughput
//! at the default `info` level. The span exists only at `debug`, for debug lines inside a
//! request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, Response, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::conn::BodyStall;
use super::error::{self, ApiError};
use super::{compression, metrics, security};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A server error's cause, put in the answer's extensions where the error is mapped
/// (`error.rs`) and logged once, with the request's fields, by `Observe`.
#[derive(Clone)]
pub struct ErrorCause(pub String);

/// A caller's request id is kept when it is a plain token of at most 64 characters; anything
/// else (a 100 KB header, bytes a log would have to escape) is replaced by one of ours.
fn acceptable_request_id(id: &HeaderValue) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// A random 16-hex-digit request id.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n: u64 = rand::random();
    let mut buf = [0u8; 16];
    for b in buf.iter_mut().rev() {
        *b = HEX[(n & 15) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

/// The outermost service. `compressed` is `plain` behind the compression layer; a request
/// that accepts no encoding skips that layer, since nothing would be compressed for it (its
/// answer still says `Vary: accept-encoding` where the layer would have).
#[derive(Clone)]
pub struct Edge<S, C> {
    plain: S,
    compressed: C,
}

impl<S: Clone, C> Edge<S, C> {
    pub fn new(plain: S, compression: impl Layer<S, Service = C>) -> Edge<S, C> {
        Edge { compressed: compression.layer(plain.clone()), plain }
    }
}

impl<S, C, CB> Service<Request> for Edge<S, C>
where
    S: Service<Request, Response = Response<Body>, Error = Infallible>,
    C: Service<Request, Response = Response<CB>, Error = Infallible>,
    CB: http_body::Body<Data = Bytes> + Send + 'static,
    CB::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future, C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        ready!(self.plain.poll_ready(cx))?;
        self.compressed.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        // A caller's own id is kept, so one id can follow a request across services.
        // A new one goes into the request's headers, where `Observe` reads it for the log line
        // (the headers are there already; extensions would cost an allocation per request).
        let id = match req.headers().get(REQUEST_ID) {
            Some(id) if acceptable_request_id(id) => id.clone(),
            _ => {
                let id = new_request_id();
                req.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        // Debug lines inside the request get its fields from this span (`Watch` records the
        // route template: never the concrete path, since a clip id in a URL is a capability
        // and must not reach logs; nor do client addresses). Disabled below debug, it costs
        // nothing.
        let span = tracing::debug_span!(
            "request",
            method = %req.method(),
            route = tracing::field::Empty,
            request_id = id.to_str().unwrap_or("-"),
        );
        let inner = span.in_scope(|| {
            tracing::debug!("started processing request");
            match req.headers().get(header::ACCEPT_ENCODING) {
                Some(accepted) if compression::negotiable(accepted.as_bytes()) => {
                    Inner::Compressed { fut: self.compressed.call(req) }
                }
                _ => Inner::Plain { fut: self.plain.call(req) },
            }
        });
        EdgeFuture { inner, id: Some(id), span }
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<P, C> {
        Plain { #[pin] fut: P },
        Compressed { #[pin] fut: C },
    }
}

pin_project! {
    pub struct EdgeFuture<P, C> {
        #[pin]
        inner: Inner<P, C>,
        id: Option<HeaderValue>,
        span: tracing::Span,
    }
}

impl<P, C, CB> Future for EdgeFuture<P, C>
where
    P: Future<Output = Result<Response<Body>, Infallible>>,
    C: Future<Output = Result<Response<CB>, Infallible>>,
    CB: http_body::Body<Data = Bytes> + Send + 'static,
    CB::Error: Into<axum::BoxError>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let (response, plain) = match this.inner.project() {
            InnerProj::Plain { fut } => (ready!(fut.poll(cx)), true),
            InnerProj::Compressed { fut } => (ready!(fut.poll(cx)).map(|r| r.map(Body::new)), false),
        };
        let Ok(response) = response;
        let mut response = error::fix_error_body(response);
        // What the compression layer would have said to caches had it seen this request.
        let vary = plain && compression::varies(&response);
        let headers = response.headers_mut();
        headers.reserve(security::HEADERS.len() + 2);
        if vary {
            headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        for (name, value) in security::HEADERS {
            // A handler's own choice wins (downloads set a sandbox policy).
            headers.entry(name).or_insert(HeaderValue::from_static(value));
        }
        if let Some(id) = this.id.take() {
            headers.entry(REQUEST_ID).or_insert(id);
        }
        Poll::Ready(Ok(response))
    }
}

/// How long a request may take to produce its answer: `upload` for the routes that stream
/// request bodies (`stream_routes`), `request` for every other.
#[derive(Clone, Copy)]
pub struct Deadlines {
    pub request: Duration,
    pub upload: Duration,
    pub stream_routes: &'static [&'static str],
}

/// Router layer adding [`Observe`] to every route.
#[derive(Clone, Copy)]
pub struct ObserveLayer(pub Deadlines);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, deadlines: self.0 }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    deadlines: Deadlines,
}

/// The route a request is counted and logged under: a template, never a concrete path.
pub enum RouteLabel {
    Matched(MatchedPath),
    Fixed(&'static str),
    Unmatched,
}

impl RouteLabel {
    fn as_str(&self) -> &str {
        match self {
            RouteLabel::Matched(m) => m.as_str(),
            RouteLabel::Fixed(s) => s,
            RouteLabel::Unmatched => "unmatched",
        }
    }
}

/// What is noted about a routed request when it starts, to count, time and log it. (It runs
/// inside the request's debug span, entered by `Edge`.)
pub struct Watch {
    started: Instant,
    deadline: Option<Instant>,
    route: RouteLabel,
    method: Method,
    id: Option<HeaderValue>,
    /// Present on requests with a body: whether it stopped arriving.
    stall: Option<BodyStall>,
    _in_flight: metrics::InFlight,
}

impl Watch {
    pub fn begin(req: &Request, route: RouteLabel, deadline: Duration) -> Watch {
        let started = Instant::now();
        tracing::Span::current().record("route", route.as_str());
        Watch {
            started,
            deadline: started.checked_add(deadline),
            route,
            method: req.method().clone(),
            id: req.headers().get(REQUEST_ID).cloned(),
            stall: req.extensions().get::<BodyStall>().cloned(),
            _in_flight: metrics::InFlight::enter(),
        }
    }

    /// Watch `fut`, the request's answer.
    pub fn wrap<F>(self, fut: F) -> ObserveFuture<F> {
        ObserveFuture { fut, timer: None, watch: self }
    }
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned().map_or(RouteLabel::Unmatched, RouteLabel::Matched);
        let deadline = if self.deadlines.stream_routes.contains(&route.as_str()) {
            self.deadlines.upload
        } else {
            self.deadlines.request
        };
        let watch = Watch::begin(&req, route, deadline);
        watch.wrap(self.inner.call(req))
    }
}

pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        fut: F,
        // Armed only when the answer is not ready at once: a cached lookup never touches the
        // timer wheel.
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
        watch: Watch,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let watch = &*this.watch;
        let response = match this.fut.poll(cx) {
            Poll::Ready(Ok(response)) => response,
            Poll::Pending => {
                let Some(deadline) = watch.deadline else { return Poll::Pending };
                let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                ready!(timer.as_mut().poll(cx));
                ApiError::Timeout.into_response()
            }
        };
        // Whatever the handler made of its failed body reads, the client stopped sending.
        let response = match &watch.stall {
            Some(stall) if stall.fired() => {
                ApiError::BodyStalled { after: stall.after(), too_slow: stall.too_slow() }.into_response()
            }
            _ => response,
        };
        let elapsed = watch.started.elapsed();
        metrics::record_request(watch.route.as_str(), &watch.method, response.status(), elapsed);
        let status = response.status().as_u16();
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        let (method, route) = (watch.method.as_str(), watch.route.as_str());
        let request_id = watch.id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("-");
        // The line every request gets; a server error's is an error line with its cause.
        match response.extensions().get::<ErrorCause>() {
            Some(ErrorCause(cause)) => {
                tracing::error!(method, route, request_id, status, latency_ms, cause = %cause, "request failed")
            }
            None => crate::logging::request_line(method, route, request_id, status, latency_ms),
        }
        Poll::Ready(Ok(response))
    }
}
