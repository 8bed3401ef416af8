//! The one error map: every error that reaches HTTP becomes a status and a JSON body
//! `{error, message, code}` here, and nowhere else is a `StatusCode` chosen. 5xx bodies say
//! nothing internal; their cause is logged once, here.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Errors a handler can return.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("request timed out")]
    Timeout,
    /// A health probe found a required dependency down; the body is the probe's report.
    #[error("unhealthy")]
    Unhealthy(Value),
    /// Something on our side failed; the cause is logged, not shown.
    #[error("internal: {0}")]
    Internal(String),
}

/// The status a timed-out request answers (used by the timeout layer).
pub const TIMEOUT_STATUS: StatusCode = StatusCode::REQUEST_TIMEOUT;

/// Health probes answer 200 when every required dependency is up.
pub const HEALTHY_STATUS: StatusCode = StatusCode::OK;

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout => TIMEOUT_STATUS,
            ApiError::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> Value {
        let (error, message, code) = match self {
            ApiError::NotFound => ("Not found", "No such route or resource.", "not_found"),
            ApiError::MethodNotAllowed => (
                "Method not allowed",
                "This route does not accept that HTTP method.",
                "method_not_allowed",
            ),
            ApiError::PayloadTooLarge => (
                "Payload too large",
                "The request body exceeds the configured limit.",
                "payload_too_large",
            ),
            ApiError::Timeout => (
                "Request timeout",
                "The request took longer than the server allows.",
                "timeout",
            ),
            ApiError::Unhealthy(report) => return report.clone(),
            ApiError::Internal(_) => (
                "Internal server error",
                "Something went wrong on our side.",
                "internal",
            ),
        };
        json!({ "error": error, "message": message, "code": code })
    }

    /// The error a bare status from a layer or the router stands for.
    fn from_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            TIMEOUT_STATUS => ApiError::Timeout,
            other => ApiError::Internal(format!("bare {other} from a layer")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        (status, axum::Json(self.body())).into_response()
    }
}

/// Layers (body limit, timeout) and the router (405) answer with bare or plain-text bodies;
/// give every error response the JSON shape clients rely on.
pub async fn json_error_bodies(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (mut parts, _) = response.into_parts();
        let mut replaced = ApiError::from_status(status).into_response();
        // Keep the status and headers the layer chose (Allow, Retry-After, request id).
        *replaced.status_mut() = status;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let (_, body) = replaced.into_parts();
        return Response::from_parts(parts, body);
    }
    response
}

/// Router fallback: unknown routes get the JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
