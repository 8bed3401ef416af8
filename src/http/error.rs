//! The one error map: every error that reaches HTTP becomes a status and a JSON body
//! `{error, message, code}` here, and nowhere else is a `StatusCode` chosen. 5xx bodies say
//! nothing internal; their cause travels in the answer's extensions to the request's log line.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::wire::{ErrorBody, FieldProblem};
use crate::blob::BlobError;
use crate::domain::DomainError;
use crate::store::{GoneReason, StoreError};

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
    /// The request body sent nothing for `server.body_idle_timeout` (or, `too_slow`, less than
    /// `server.body_min_rate` a second over that long).
    #[error("request body stalled")]
    BodyStalled { after: std::time::Duration, too_slow: bool },
    /// The body is not the JSON object the route takes.
    #[error("bad json: {0}")]
    BadJson(String),
    /// A client error a layer or extractor produced without saying more (e.g. a path
    /// parameter that is not UTF-8).
    #[error("client error {0}")]
    Client(StatusCode),
    #[error("admin disabled")]
    AdminDisabled,
    #[error("admin login failed")]
    AdminLoginFailed,
    #[error("admin unauthorized")]
    AdminUnauthorized,
    #[error("rate limited")]
    RateLimited { retry_after: u64, limit: u32 },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("job not found")]
    JobNotFound,
    /// Only failed jobs are retried by hand.
    #[error("job not failed")]
    JobNotFailed { state: String },
    /// A queued or running job already has the retried job's dedupe key.
    #[error("duplicate job")]
    JobDuplicate,
    /// `GET /api/file/:id`: content is only served to POST, so previews cannot spend it.
    #[error("use POST")]
    UsePost,
    #[error(transparent)]
    Domain(#[from] DomainError),
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
            ApiError::Timeout | ApiError::BodyStalled { .. } => TIMEOUT_STATUS,
            ApiError::Unhealthy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UsePost => StatusCode::GONE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Client(status) => *status,
            ApiError::AdminDisabled | ApiError::JobNotFound => StatusCode::NOT_FOUND,
            ApiError::JobNotFailed { .. } | ApiError::JobDuplicate => StatusCode::CONFLICT,
            ApiError::AdminLoginFailed | ApiError::AdminUnauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Domain(e) => domain_status(e),
        }
    }

    /// The answer's body: the error shape, or (for a failed probe) the probe's report.
    fn body(&self) -> Result<ErrorBody, Value> {
        let (error, message, code) = match self {
            ApiError::NotFound => ("Not found", "No such route or resource.", "not_found"),
            ApiError::MethodNotAllowed => {
                ("Method not allowed", "This route does not accept that HTTP method.", "method_not_allowed")
            }
            ApiError::PayloadTooLarge => {
                ("Payload too large", "The request body exceeds the configured limit.", "payload_too_large")
            }
            ApiError::Timeout => ("Request timeout", "The request took longer than the server allows.", "timeout"),
            ApiError::BodyStalled { after, too_slow } => {
                let message = if *too_slow {
                    format!(
                        "The request body arrived too slowly (less than the server's minimum rate over {} s); \
                         nothing of it was kept. Send it again.",
                        after.as_secs()
                    )
                } else {
                    format!(
                        "The request body sent nothing for {} s; nothing of it was kept. Send it again.",
                        after.as_secs()
                    )
                };
                return Ok(ErrorBody::new("Request timeout", message, "body_timeout"));
            }
            ApiError::Unhealthy(report) => return Err(report.clone()),
            ApiError::Internal(_) => ("Internal server error", "Something went wrong on our side.", "internal"),
            ApiError::BadJson(why) => return Ok(ErrorBody::new("Invalid JSON", why.clone(), "invalid_json")),
            ApiError::RateLimited { retry_after, .. } => {
                let message = format!("Slow down; try again in {retry_after} s.");
                return Ok(ErrorBody {
                    retry_after: Some(*retry_after),
                    ..ErrorBody::new("Too many requests", message, "rate_limited")
                });
            }
            ApiError::Client(_) => ("Bad request", "The request could not be understood.", "bad_request"),
            ApiError::AdminDisabled => {
                ("Not found", "The admin API is disabled: no admin token is configured.", "admin_disabled")
            }
            ApiError::AdminLoginFailed => ("Authentication failed", "Invalid admin password", "admin_login_failed"),
            ApiError::AdminUnauthorized => ("Unauthorized", "Invalid admin token", "admin_unauthorized"),
            ApiError::JobNotFound => {
                ("Job not found", "No job has this id (finished jobs are removed after a while).", "job_not_found")
            }
            ApiError::JobNotFailed { state } => {
                let message = format!("Only failed jobs can be retried; this one is {state}.");
                return Ok(ErrorBody {
                    state: Some(state.clone()),
                    ..ErrorBody::new("Job not failed", message, "job_not_failed")
                });
            }
            ApiError::JobDuplicate => (
                "Duplicate job",
                "A queued or running job already does the same work; this one was left failed.",
                "job_duplicate",
            ),
            ApiError::UnsupportedMediaType => (
                "Unsupported media type",
                "Send application/octet-stream or multipart/form-data as this route expects.",
                "unsupported_media_type",
            ),
            ApiError::UsePost => (
                "Use POST",
                "Content is served to POST /api/file/:id (or GET /raw/:id for public clips) so link previews cannot consume it.",
                "use_post",
            ),
            ApiError::Domain(e) => return Ok(domain_body(e)),
        };
        Ok(ErrorBody::new(error, message, code))
    }

    /// The error a bare status from a layer or the router stands for.
    fn from_status(status: StatusCode) -> ApiError {
        match status {
            StatusCode::NOT_FOUND => ApiError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            TIMEOUT_STATUS => ApiError::Timeout,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            other if other.is_client_error() => ApiError::Client(other),
            other => ApiError::Internal(format!("bare {other} from a layer")),
        }
    }
}

fn store_is_down(e: &StoreError) -> bool {
    e.is_unavailable()
}

/// What a 503 for a dependency that is down asks clients to wait before trying again.
const UNAVAILABLE_RETRY_AFTER_SECS: u32 = 2;

fn domain_status(e: &DomainError) -> StatusCode {
    match e {
        DomainError::Validation(_)
        | DomainError::UploadIncomplete { .. }
        | DomainError::SizeMismatch { .. }
        | DomainError::ChecksumMismatch
        | DomainError::BadBody(_) => StatusCode::BAD_REQUEST,
        // A clip that ended answers as an unknown one (Qopy's clients rely on the 404); only
        // the body's code says why.
        DomainError::UploadNotFound
        | DomainError::ClipNotFound
        | DomainError::ClipEnded(_)
        | DomainError::ThumbnailNotFound => StatusCode::NOT_FOUND,
        DomainError::UploadCompleted => StatusCode::CONFLICT,
        DomainError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DomainError::ClipGone => StatusCode::GONE,
        DomainError::AccessCodeRequired | DomainError::AccessCodeInvalid | DomainError::DeleteTokenRequired => {
            StatusCode::UNAUTHORIZED
        }
        DomainError::RawNotAllowed | DomainError::DeleteTokenInvalid => StatusCode::FORBIDDEN,
        DomainError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        DomainError::InsufficientStorage { .. } | DomainError::StorageLimit { .. } => StatusCode::INSUFFICIENT_STORAGE,
        DomainError::Store(s) if store_is_down(s) => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::Blob(BlobError::Unavailable { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        DomainError::Store(_) | DomainError::Blob(_) | DomainError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn domain_body(e: &DomainError) -> ErrorBody {
    let simple = |error: &str, message: &str, code: &str| ErrorBody::new(error, message, code);
    match e {
        DomainError::Validation(details) => ErrorBody {
            details: Some(
                details
                    .iter()
                    .map(|d| FieldProblem {
                        path: d.path.to_string(),
                        msg: d.msg.to_string(),
                        location: d.location.as_str().to_string(),
                    })
                    .collect(),
            ),
            ..ErrorBody::new(
                "Validation failed",
                details.iter().map(|d| format!("{} {}", d.path, d.msg)).collect::<Vec<_>>().join("; "),
                "validation",
            )
        },
        DomainError::UploadNotFound => {
            simple("Upload not found", "No such upload session, or it expired.", "upload_not_found")
        }
        DomainError::UploadCompleted => simple(
            "Upload completed",
            "This upload is completed or being completed; it takes no more changes.",
            "upload_completed",
        ),
        DomainError::UploadIncomplete { missing } => ErrorBody {
            missing_chunks: Some(missing.clone()),
            ..simple(
                "Upload incomplete",
                &format!("{} chunk(s) missing; send them and complete again.", missing.len()),
                "upload_incomplete",
            )
        },
        DomainError::SizeMismatch { declared, actual } => simple(
            "Size mismatch",
            &format!("The chunks add up to {actual} bytes but filesize declared {declared}."),
            "size_mismatch",
        ),
        DomainError::ChecksumMismatch => simple(
            "Checksum mismatch",
            "The chunk's SHA-256 differs from X-Chunk-Sha256; it was not stored.",
            "checksum_mismatch",
        ),
        DomainError::TooLarge { limit } => {
            simple("Payload too large", &format!("The body exceeds the limit of {limit} bytes."), "payload_too_large")
        }
        DomainError::ClipNotFound => simple(
            "Clip not found",
            "No such clip, or it ended longer ago than this server remembers.",
            "clip_not_found",
        ),
        DomainError::ClipEnded(GoneReason::Expired) => {
            simple("Clip not found", "This clip expired; its content has been deleted.", "clip_expired")
        }
        DomainError::ClipEnded(GoneReason::Consumed) => simple(
            "Clip not found",
            "This clip was already opened as many times as its sender allowed; its content has been deleted.",
            "clip_consumed",
        ),
        DomainError::ClipEnded(GoneReason::Deleted) => {
            simple("Clip not found", "The sender deleted this clip.", "clip_deleted")
        }
        DomainError::ClipGone => simple("Clip gone", "This clip has no downloads left.", "clip_gone"),
        DomainError::AccessCodeRequired => ErrorBody {
            requires_access_code: Some(true),
            ..simple("Access code required", "This clip is protected by an access code.", "access_code_required")
        },
        DomainError::AccessCodeInvalid => ErrorBody {
            requires_access_code: Some(true),
            ..simple("Invalid access code", "The access code is wrong.", "access_code_invalid")
        },
        DomainError::RawNotAllowed => simple(
            "Not available here",
            "Protected, one-time and download-limited clips are only served to POST /api/file/:id.",
            "raw_not_allowed",
        ),
        DomainError::DeleteTokenRequired => {
            simple("Delete token required", "Send the clip's delete token in X-Delete-Token.", "delete_token_required")
        }
        DomainError::DeleteTokenInvalid => {
            simple("Invalid delete token", "The delete token is wrong.", "invalid_delete_token")
        }
        DomainError::RangeNotSatisfiable { .. } => {
            simple("Range not satisfiable", "The requested range lies outside the content.", "range_not_satisfiable")
        }
        DomainError::BadBody(_) => {
            simple("Bad request body", "The request body ended early or was malformed.", "bad_body")
        }
        DomainError::InsufficientStorage { needed, free } => {
            let message = match (needed, free) {
                (Some(n), Some(f)) => {
                    format!("This server has room for {f} more bytes, not {n}; try a smaller file or later.")
                }
                _ => "This server's storage is full; nothing was stored. Try again later.".to_string(),
            };
            simple("Insufficient storage", &message, "insufficient_storage")
        }
        DomainError::StorageLimit { limit, .. } => ErrorBody {
            limit: Some(*limit),
            ..simple(
                "Storage limit reached",
                &format!(
                    "This server keeps at most {limit} bytes of clips, and this upload would pass that, so nothing \
                     was stored. Try a smaller file, or later when clips have expired."
                ),
                "storage_limit_reached",
            )
        },
        DomainError::ThumbnailNotFound => simple(
            "Thumbnail not found",
            "This clip has no thumbnail (yet): only plaintext images that are not one-time get one, a moment after upload.",
            "thumbnail_not_found",
        ),
        DomainError::Store(s) if store_is_down(s) => simple(
            "Database unavailable",
            "The database is not answering; nothing was changed. Try again in a few seconds.",
            "database_unavailable",
        ),
        DomainError::Blob(BlobError::Unavailable { .. }) => simple(
            "Storage unavailable",
            "The blob storage is not answering; nothing was lost, try again shortly.",
            "storage_unavailable",
        ),
        DomainError::Store(_) | DomainError::Blob(_) | DomainError::Internal(_) => {
            simple("Internal server error", "Something went wrong on our side.", "internal")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = match self.body() {
            Ok(body) => (status, axum::Json(body)).into_response(),
            Err(report) => (status, axum::Json(report)).into_response(),
        };
        if status.is_server_error() && !matches!(self, ApiError::Unhealthy(_)) {
            // Logged once, with the request's method, route and id, by `edge::Observe`.
            response.extensions_mut().insert(super::edge::ErrorCause(self.to_string()));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && !matches!(self, ApiError::Unhealthy(_)) {
            // A dependency is down: the request may be sent again once it is back.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS));
        }
        if matches!(self, ApiError::BodyStalled { .. }) {
            // The rest of the body is never read: the connection cannot carry another request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::RateLimited { retry_after, limit } = &self {
            let h = response.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            h.insert("ratelimit-limit", HeaderValue::from(*limit));
            h.insert("ratelimit-remaining", HeaderValue::from(0u32));
            h.insert("ratelimit-reset", HeaderValue::from(*retry_after));
        }
        if let ApiError::Domain(DomainError::RangeNotSatisfiable { size }) = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        response
    }
}

/// Layers (body limit, timeout) and the router (405) answer with bare or plain-text bodies;
/// give every error response the JSON shape clients rely on.
pub fn fix_error_body<B>(response: axum::http::Response<B>) -> Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let response = response.map(axum::body::Body::new);
    let status = response.status();
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let (mut parts, _) = response.into_parts();
        let mut replaced = ApiError::from_status(status).into_response();
        // Keep the status and headers the layer chose (Allow, Retry-After, request id).
        *replaced.status_mut() = status;
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let (_, body) = replaced.into_parts();
        return Response::from_parts(parts, body);
    }
    response
}

/// Router fallback: unknown routes get the JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
