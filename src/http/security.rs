//! Response hardening on every route: a strict Content-Security-Policy with no third-party
//! origins (API answers load nothing at all), no framing, no referrer, no MIME sniffing; and
//! CORS only for configured origins (a request from any other Origin simply gets no CORS
//! headers, never an error).

use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Policy for API responses (JSON, text): they load nothing and are never framed. Pages of a
/// browser UI, when served, need their own policy allowing this origin's scripts and styles.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Headers set on every response unless the handler chose its own (downloads set a sandbox
/// policy).
pub const HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, API_CSP),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// CORS for the configured origins, or `None` (same-origin only) when there are none.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::RANGE,
                header::IF_RANGE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("x-chunk-sha256"),
                HeaderName::from_static("x-delete-token"),
                HeaderName::from_static("expire"),
                HeaderName::from_static("one-time"),
                HeaderName::from_static("max-downloads"),
                HeaderName::from_static("access-code"),
            ])
            .expose_headers([
                header::CONTENT_DISPOSITION,
                header::CONTENT_RANGE,
                header::ETAG,
                HeaderName::from_static("x-delete-token"),
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}
