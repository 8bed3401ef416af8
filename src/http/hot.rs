//! The hot path: `GET /api/clip/{id}/info`, the first request behind every shared link, is
//! answered before the general router — one string match instead of routing, path extraction
//! and per-route layers. It runs the routed handler's own code (`clips::info_response`) under
//! the same rate-limit group, span, metrics and deadline, so the answer is the same; any
//! request it does not recognise, HEAD included, goes on to the router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, Response};
use axum::response::IntoResponse;
use pin_project_lite::pin_project;
use tower::Service;

use super::clips;
use super::edge::{ObserveFuture, RouteLabel, Watch};
use super::ratelimit::{self, Group};
use crate::app::AppState;

/// The route template the hot path answers (and the router declares for its twin).
pub const INFO_ROUTE: &str = "/api/clip/{id}/info";

/// The id in an info path, when it is a plain one; anything percent-encoded or otherwise odd
/// is left to the router, which decodes and validates it.
pub(crate) fn info_id(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/api/clip/")?.strip_suffix("/info")?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// `inner` (the router) with the hot path in front.
#[derive(Clone)]
pub struct HotPath<S> {
    inner: S,
    state: AppState,
}

impl<S> HotPath<S> {
    pub fn new(inner: S, state: AppState) -> HotPath<S> {
        HotPath { inner, state }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S> Service<Request> for HotPath<S>
where
    S: Service<Request, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = HotFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let hot = req.method() == Method::GET && info_id(req.uri().path()).is_some();
        if !hot {
            return HotFuture::Routed { fut: self.inner.call(req) };
        }
        let deadline: Duration = self.state.config().server.request_timeout;
        let watch = Watch::begin(&req, RouteLabel::Fixed(INFO_ROUTE), deadline);
        let state = self.state.clone();
        let answer: Answer = Box::pin(async move {
            let state = &state;
            let response = ratelimit::check(state, Group::Reads, req, |req| async move {
                let id = info_id(req.uri().path()).unwrap_or_default();
                clips::info_response(state, id).await.unwrap_or_else(IntoResponse::into_response)
            })
            .await;
            Ok(response)
        });
        HotFuture::Hot { fut: watch.wrap(answer) }
    }
}

pin_project! {
    #[project = HotProj]
    pub enum HotFuture<F> {
        Routed { #[pin] fut: F },
        Hot { #[pin] fut: ObserveFuture<Answer> },
    }
}

impl<F> Future for HotFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HotProj::Routed { fut } => fut.poll(cx),
            HotProj::Hot { fut } => fut.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::info_id;

    #[test]
    fn only_plain_info_paths_take_the_hot_path() {
        assert_eq!(info_id("/api/clip/ABCDEF1234/info"), Some("ABCDEF1234"));
        assert_eq!(info_id("/api/clip/q7x2k9/info"), Some("q7x2k9"));
        for other in [
            "/api/clip//info",
            "/api/clip/AB%43/info",
            "/api/clip/a/b/info",
            "/api/clip/ABC/info/",
            "/api/clip/ABC",
            "/api/clips/ABC/info",
            "/api/clip/ABC-DEF/info",
        ] {
            assert_eq!(info_id(other), None, "{other}");
        }
    }
}
