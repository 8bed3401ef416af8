//! `GET /api/clip/:id/thumbnail` (access code, when the clip has one, in an `Access-Code`
//! header) and `POST /api/clip/:id/thumbnail` `{"accessCode"}` (ferry): the clip's thumbnail,
//! 404 until its job has made one. Never spends a download; `If-None-Match` answers 304.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::input::{JsonObject, header_str, param};
use super::wire;
use crate::app::AppState;
use crate::domain::thumbnails::{self, ThumbnailDownload};
use crate::domain::types::{AccessCode, ClipId};

fn respond(headers: &HeaderMap, t: ThumbnailDownload) -> Response {
    let etag = t.etag();
    let matched = header_str(headers, header::IF_NONE_MATCH.as_str())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let mut res = if matched {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut res = Response::new(Body::from_stream(t.stream));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&t.thumbnail.content_type).unwrap_or(HeaderValue::from_static("image/jpeg")),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(t.thumbnail.size.max(0) as u64));
        res
    };
    let h = res.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, tag);
    }
    // The clip may be protected and expires: no shared caches, and not for long.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=60"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    res
}

/// GET /api/clip/{id}/thumbnail
#[utoipa::path(get, path = "/api/clip/{id}/thumbnail", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$"),
        ("Access-Code" = Option<String>, Header, description = "The clip's access code, when it has one", nullable = false, min_length = 1, max_length = 256)),
    responses((status = 200, description = "A small JPEG or WebP of a plaintext image clip", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 401, description = "Access code missing or wrong", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = param("clipId", &raw, ClipId::parse)?;
    let code = match header_str(&headers, "access-code") {
        Some(v) => Some(param("Access-Code", v, AccessCode::parse)?),
        None => None,
    };
    Ok(respond(&headers, thumbnails::open(state.deps(), &id, code.as_ref()).await?))
}

/// POST /api/clip/{id}/thumbnail `{"accessCode"}`
#[utoipa::path(post, path = "/api/clip/{id}/thumbnail", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$")),
    request_body = wire::AccessCodeBody,
    responses((status = 200, description = "A small JPEG or WebP of a plaintext image clip", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 401, description = "Access code missing or wrong", body = wire::ErrorBody),
        (status = 415, description = "Not JSON", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn post(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let id = param("clipId", &raw, ClipId::parse)?;
    let code = super::clips::access_code(&body)?;
    Ok(respond(&headers, thumbnails::open(state.deps(), &id, code.as_ref()).await?))
}
