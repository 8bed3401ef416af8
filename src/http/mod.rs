//! The HTTP surface: the axum router behind the `hot` path for clip info, wrapped in the
//! `edge` layers (request ids, tracing, metrics, deadlines, security headers, JSON error
//! bodies, compression) and CORS. Handlers here parse, call one service, and map the result;
//! they hold no business rules, SQL or file paths.

pub mod admin;
pub mod clips;
pub mod compression;
pub mod conn;
pub mod download;
pub mod edge;
pub mod error;
pub mod health;
pub mod hot;
pub mod input;
pub mod metrics;
pub mod oneshot;
pub mod openapi;
pub mod pages;
pub mod ratelimit;
pub mod security;
pub mod thumbnails;
pub mod upload;
pub mod wire;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use tower::ServiceBuilder;

use crate::app::AppState;

/// The routes that stream request bodies: a slow client may take long to send a large body, so
/// they get the upload deadline instead of the request deadline.
const CHUNK_ROUTE: &str = "/api/upload/chunk/{upload_id}/{chunk}";
const ONE_SHOT_POST: &str = "/api/clips";
const ONE_SHOT_PUT: &str = "/api/clips/{filename}";
const ONE_SHOT_PUT_UNNAMED: &str = "/api/clips/";
const STREAM_ROUTES: [&str; 4] = [CHUNK_ROUTE, ONE_SHOT_POST, ONE_SHOT_PUT, ONE_SHOT_PUT_UNNAMED];

/// A streaming upload refused early (unknown session, too large, no space) leaves its body
/// unread, so hyper closes the connection after answering; saying so keeps an HTTP/1.1
/// client from sending its next request down a connection that is going away.
async fn close_after_refused_body(mut res: axum::response::Response) -> axum::response::Response {
    if res.status().is_client_error() || res.status().is_server_error() {
        res.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    res
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let config = state.config();
    let deadlines = edge::Deadlines {
        request: config.server.request_timeout,
        upload: config.server.upload_timeout,
        stream_routes: &STREAM_ROUTES,
    };

    let probes = Router::new()
        .route("/health", get(health::health))
        .route("/api/health", get(health::api_health))
        .route("/ping", get(health::ping))
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/openapi.json", get(openapi::openapi_json));

    // With limits off the middleware is left out entirely (it would only pass requests on).
    let limits_on = config.rate_limits == crate::config::Switch::On;
    let limited = |router: Router<AppState>, group: ratelimit::Group| {
        if limits_on {
            router.route_layer(axum::middleware::from_fn_with_state((state.clone(), group), ratelimit::limit))
        } else {
            router
        }
    };
    // JSON routes: small bodies, read by `input::JsonObject` up to the configured limit.
    let initiate =
        limited(Router::new().route("/api/upload/initiate", post(upload::initiate)), ratelimit::Group::Initiate);
    // The rest of an upload that was allowed at initiate is never throttled.
    let upload_steps = Router::new()
        .route("/api/upload/complete/{upload_id}", post(upload::complete))
        .route("/api/upload/{upload_id}/status", get(upload::status))
        .route("/api/upload/{upload_id}", axum::routing::delete(upload::cancel));
    let reads = limited(
        Router::new()
            .route(hot::INFO_ROUTE, get(clips::info))
            .route("/api/clip/{id}", get(clips::read).post(clips::read_with_code).delete(clips::delete))
            .route("/api/clip/{id}/thumbnail", get(thumbnails::get).post(thumbnails::post))
            .route("/api/file/{id}/info", get(clips::file_info))
            .route("/api/config", get(clips::client_config)),
        ratelimit::Group::Reads,
    );
    let downloads = limited(
        Router::new()
            .route("/api/file/{id}", get(clips::file_get).post(download::download))
            .route("/raw/{id}", get(download::raw))
            .route("/raw/{id}/{name}", get(download::raw_named)),
        ratelimit::Group::Downloads,
    );
    let admin = limited(Router::new().route("/api/admin/auth", post(admin::auth)), ratelimit::Group::AdminAuth)
        .route("/api/admin/stats", get(admin::stats))
        .route("/api/admin/clips", get(admin::clips))
        .route("/api/admin/system", get(admin::system))
        .route("/api/admin/performance", get(admin::performance))
        .route("/api/admin/jobs", get(admin::jobs))
        .route("/api/admin/jobs/{id}", get(admin::job))
        .route("/api/admin/jobs/{id}/retry", post(admin::retry_job));
    let json = Router::new().merge(admin).merge(initiate).merge(upload_steps).merge(reads).merge(downloads);
    // Streaming uploads: the services enforce chunk and clip size limits as bytes arrive.
    let one_shot = limited(
        Router::new().route(ONE_SHOT_POST, post(oneshot::post)).route(ONE_SHOT_PUT, put(oneshot::put)),
        ratelimit::Group::Initiate,
    );
    let streams = Router::new()
        .route(CHUNK_ROUTE, post(upload::chunk))
        .route(ONE_SHOT_PUT_UNNAMED, put(oneshot::put_without_name))
        .merge(one_shot)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::map_response(close_after_refused_body));

    // Only what needs the matched route runs per route (a Router layer is cloned with every
    // request's route service): span, metrics and deadline, in one service.
    // The browser UI (never rate limited: loading a page must not spend a client's budget).
    let ui = Router::new()
        .route("/", get(pages::shell))
        .route("/clip/{id}", get(pages::shell_clip))
        .route("/file/{id}", get(pages::shell_file))
        .route("/sw.js", get(pages::service_worker))
        .route("/robots.txt", get(pages::robots))
        .route("/share-target", post(pages::share_target))
        .route("/assets/{version}/{*path}", get(pages::asset));

    let r = Router::new().merge(probes).merge(json).merge(streams).merge(ui).fallback(error::not_found);
    r.layer(edge::ObserveLayer(deadlines)).with_state(state)
}

/// The whole application as one service: the router wrapped once in the layers every response
/// gets (request ids, JSON error bodies, security headers, compression) and CORS.
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
    let app = ServiceBuilder::new()
        .option_layer(security::cors(&state.config().cors_origins.0))
        .service(hot::HotPath::new(router(state.clone()), state));
    edge::Edge::new(app, compression::layer())
}
