//! The HTTP edge: the axum router and its tower-http layers (request ids, tracing, timeouts,
//! body limits, JSON error bodies). Handlers here parse, call one service, and map the result;
//! they hold no business rules, SQL or file paths.

pub mod admin;
pub mod clips;
pub mod compression;
pub mod download;
pub mod error;
pub mod health;
pub mod input;
pub mod metrics;
pub mod oneshot;
pub mod ratelimit;
pub mod security;
pub mod upload;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::routing::{get, post, put};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::app::AppState;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Random 16-hex-digit request ids.
#[derive(Clone, Copy, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&format!("{:016x}", rand::random::<u64>())).ok().map(RequestId::new)
    }
}

/// The span of one request. It names the route template, never the concrete path: a clip id
/// in a URL is a capability and must not reach logs; nor do client addresses.
fn request_span(req: &Request) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = route.as_deref().unwrap_or("(unmatched)"),
        request_id = ?id,
    )
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let config = state.config();
    let timeout: Duration = config.server.request_timeout;
    let upload_timeout: Duration = config.server.upload_timeout;
    let body_limit = config.server.json_body_limit.bytes() as usize;

    let probes = Router::new()
        .route("/health", get(health::health))
        .route("/api/health", get(health::api_health))
        .route("/ping", get(health::ping))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render));

    let limited =
        |group: ratelimit::Group| axum::middleware::from_fn_with_state((state.clone(), group), ratelimit::limit);
    // JSON routes: small bodies, refused past the limit before any handler runs.
    let initiate = Router::new()
        .route("/api/upload/initiate", post(upload::initiate))
        .route_layer(limited(ratelimit::Group::Initiate));
    // The rest of an upload that was allowed at initiate is never throttled.
    let upload_steps = Router::new()
        .route("/api/upload/complete/{upload_id}", post(upload::complete))
        .route("/api/upload/{upload_id}/status", get(upload::status))
        .route("/api/upload/{upload_id}", axum::routing::delete(upload::cancel));
    let reads = Router::new()
        .route("/api/clip/{id}/info", get(clips::info))
        .route("/api/clip/{id}", get(clips::read).post(clips::read_with_code).delete(clips::delete))
        .route("/api/file/{id}/info", get(clips::file_info))
        .route("/api/config", get(clips::client_config))
        .route_layer(limited(ratelimit::Group::Reads));
    let downloads = Router::new()
        .route("/api/file/{id}", get(clips::file_get).post(download::download))
        .route("/raw/{id}", get(download::raw))
        .route("/raw/{id}/{name}", get(download::raw))
        .route_layer(limited(ratelimit::Group::Downloads));
    let admin = Router::new()
        .route("/api/admin/auth", post(admin::auth))
        .route_layer(limited(ratelimit::Group::AdminAuth))
        .route("/api/admin/stats", get(admin::stats))
        .route("/api/admin/clips", get(admin::clips))
        .route("/api/admin/system", get(admin::system))
        .route("/api/admin/performance", get(admin::performance));
    let json = Router::new()
        .merge(admin)
        .merge(initiate)
        .merge(upload_steps)
        .merge(reads)
        .merge(downloads)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(error::TIMEOUT_STATUS, timeout));
    // Streaming uploads: the services enforce chunk and clip size limits as bytes arrive.
    let one_shot = Router::new()
        .route("/api/clips", post(oneshot::post))
        .route("/api/clips/{filename}", put(oneshot::put))
        .route_layer(limited(ratelimit::Group::Initiate));
    let streams = Router::new()
        .route("/api/upload/chunk/{upload_id}/{chunk}", post(upload::chunk))
        .route("/api/clips/", put(oneshot::put_without_name))
        .merge(one_shot)
        .layer(DefaultBodyLimit::disable())
        // A slow client may take long to send a large body; it gets its own, longer deadline.
        .layer(TimeoutLayer::with_status_code(error::TIMEOUT_STATUS, upload_timeout));

    let mut app =
        Router::new().merge(probes).merge(json).merge(streams).fallback(error::not_found).layer(compression::layer());
    for layer in security::headers() {
        app = app.layer(layer);
    }
    if let Some(cors) = security::cors(&config.cors_origins.0) {
        app = app.layer(cors);
    }
    app.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
            .layer(
                TraceLayer::new_for_http().make_span_with(request_span).on_response(
                    DefaultOnResponse::new().level(Level::INFO).latency_unit(tower_http::LatencyUnit::Millis),
                ),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(metrics::track))
            .layer(axum::middleware::from_fn(error::json_error_bodies)),
    )
    .with_state(state)
}
