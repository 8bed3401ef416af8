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
    // Field values are only computed when the span is enabled (not at warn level).
    tracing::info_span!(
        "request",
        method = %req.method(),
        route = req.extensions().get::<MatchedPath>().map(|m| m.as_str()).unwrap_or("(unmatched)"),
        request_id = ?req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-"),
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

    // With limits off the middleware is left out entirely (it would only pass requests on).
    let limits_on = config.rate_limits == crate::config::Switch::On;
    let limited = |router: Router<AppState>, group: ratelimit::Group| {
        if limits_on {
            router.route_layer(axum::middleware::from_fn_with_state((state.clone(), group), ratelimit::limit))
        } else {
            router
        }
    };
    // JSON routes: small bodies, refused past the limit before any handler runs.
    let initiate =
        limited(Router::new().route("/api/upload/initiate", post(upload::initiate)), ratelimit::Group::Initiate);
    // The rest of an upload that was allowed at initiate is never throttled.
    let upload_steps = Router::new()
        .route("/api/upload/complete/{upload_id}", post(upload::complete))
        .route("/api/upload/{upload_id}/status", get(upload::status))
        .route("/api/upload/{upload_id}", axum::routing::delete(upload::cancel));
    let reads = limited(
        Router::new()
            .route("/api/clip/{id}/info", get(clips::info))
            .route("/api/clip/{id}", get(clips::read).post(clips::read_with_code).delete(clips::delete))
            .route("/api/file/{id}/info", get(clips::file_info))
            .route("/api/config", get(clips::client_config)),
        ratelimit::Group::Reads,
    );
    let downloads = limited(
        Router::new()
            .route("/api/file/{id}", get(clips::file_get).post(download::download))
            .route("/raw/{id}", get(download::raw))
            .route("/raw/{id}/{name}", get(download::raw)),
        ratelimit::Group::Downloads,
    );
    let admin = limited(Router::new().route("/api/admin/auth", post(admin::auth)), ratelimit::Group::AdminAuth)
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
    let one_shot = limited(
        Router::new().route("/api/clips", post(oneshot::post)).route("/api/clips/{filename}", put(oneshot::put)),
        ratelimit::Group::Initiate,
    );
    let streams = Router::new()
        .route("/api/upload/chunk/{upload_id}/{chunk}", post(upload::chunk))
        .route("/api/clips/", put(oneshot::put_without_name))
        .merge(one_shot)
        .layer(DefaultBodyLimit::disable())
        // A slow client may take long to send a large body; it gets its own, longer deadline.
        .layer(TimeoutLayer::with_status_code(error::TIMEOUT_STATUS, upload_timeout));

    // Only what needs the matched route runs per route (a Router layer is cloned with every
    // request's route service): the trace span and the metrics.
    Router::new()
        .merge(probes)
        .merge(json)
        .merge(streams)
        .fallback(error::not_found)
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http().make_span_with(request_span).on_response(
                    DefaultOnResponse::new().level(Level::INFO).latency_unit(tower_http::LatencyUnit::Millis),
                ))
                .layer(axum::middleware::from_fn(metrics::track)),
        )
        .with_state(state)
}

/// The whole application as one service: the router wrapped once in the layers every response
/// gets (request ids, JSON error bodies, security headers, CORS, compression).
pub fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let cors = security::cors(&state.config().cors_origins.0);
    let mut headers = security::headers().into_iter();
    let mut next_header = || headers.next().expect("four security headers");
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .map_response(error::fix_error_body)
        .layer(next_header())
        .layer(next_header())
        .layer(next_header())
        .layer(next_header())
        .option_layer(cors)
        .layer(compression::layer())
        .service(router(state))
}
