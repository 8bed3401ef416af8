//! Content downloads: `POST /api/file/:id` (the Qopy download, with access code and the
//! one-time claim) and `GET /raw/:id` for curl users. Both stream the blob with exact length,
//! RFC 6266 Content-Disposition, ETag, and single-range support.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::error::ApiError;
use super::input::{JsonObject, header_str, param};
use super::wire;
use crate::app::AppState;
use crate::domain::clips::{self, Download, DownloadRequest};
use crate::domain::range::RangeHeader;
use crate::domain::types::ClipId;

/// RFC 8187 attr-char: what may stay unescaped in `filename*`.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Path segments: keep unreserved characters readable.
pub const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Bidirectional-text controls (embeddings, overrides, isolates, marks): in a file name they
/// can make `evil\u{202E}fdp.exe` display as `evilexe.pdf`, so names in headers never carry them.
const BIDI_CONTROLS: [char; 12] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    '\u{200E}', '\u{200F}', '\u{061C}',
];

/// `attachment; filename="<ascii fallback>"; filename*=UTF-8''<percent-encoded>` (RFC 6266),
/// without bidi controls (`download` when nothing else is left).
pub fn content_disposition(name: &str) -> HeaderValue {
    let name: String = name.chars().filter(|c| !BIDI_CONTROLS.contains(c)).collect();
    let name = if name.is_empty() { "download" } else { name.as_str() };
    let fallback: String = name
        .chars()
        .map(|c| if (c.is_ascii_graphic() || c == ' ') && c != '"' && c != '\\' && c != '%' { c } else { '_' })
        .collect();
    let encoded = utf8_percent_encode(name, ATTR);
    HeaderValue::from_str(&format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn download_request(headers: &HeaderMap, raw: bool) -> DownloadRequest {
    DownloadRequest {
        access_code: None,
        range: header_str(headers, header::RANGE.as_str()).map(RangeHeader::parse),
        // An If-Range that is not text matches no entity tag: the range is then ignored.
        if_range: headers.get(header::IF_RANGE).map(|v| v.to_str().unwrap_or_default().to_owned()),
        raw,
    }
}

fn stream_response(dl: Download) -> Response {
    let clip = &dl.clip;
    let spends = clip.one_time || clip.max_downloads.is_some();
    let size = clip.size as u64;
    let (status, length) = match &dl.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let mut res = Response::new(Body::empty());
    *res.status_mut() = status;
    let h = res.headers_mut();
    let mime = clip.mime_type.as_deref().unwrap_or("application/octet-stream");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CONTENT_DISPOSITION, content_disposition(clip.filename.as_deref().unwrap_or(&clip.code)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Stored bytes are never a document of this origin.
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    if let Ok(tag) = HeaderValue::from_str(&dl.etag()) {
        h.insert(header::ETAG, tag);
    }
    if !spends {
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if let Some(r) = &dl.range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    *res.body_mut() = Body::from_stream(dl.stream);
    res
}

/// POST /api/file/{id} — `{}` or `{"accessCode"}`.
#[utoipa::path(post, path = "/api/file/{id}", tag = "downloads", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$"),
        ("Range" = Option<String>, Header, description = "One byte range", nullable = false, pattern = "^bytes=[0-9]{0,15}-[0-9]{0,15}$")),
    request_body = wire::AccessCodeBody,
    responses((status = 200, description = "The content (counts as a download)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Access code missing or wrong", body = wire::ErrorBody),
        (status = 410, description = "No downloads left", body = wire::ErrorBody),
        (status = 415, description = "Not JSON", body = wire::ErrorBody),
        (status = 416, description = "Range outside the content", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn download(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let id = param("clipId", &raw, ClipId::parse)?;
    let mut req = download_request(&headers, false);
    req.access_code = super::clips::access_code(&body)?;
    let dl = clips::open_download(state.deps(), &id, req).await?;
    Ok(stream_response(dl))
}

/// GET /raw/{id} — public, reusable clips only.
#[utoipa::path(get, path = "/raw/{id}", tag = "downloads", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$"),
        ("Range" = Option<String>, Header, description = "One byte range", nullable = false, pattern = "^bytes=[0-9]{0,15}-[0-9]{0,15}$"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client has", nullable = false)),
    responses((status = 200, description = "The content of a public, reusable clip", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 403, description = "Protected, one-time or limited clips are served to POST only", body = wire::ErrorBody),
        (status = 416, description = "Range outside the content", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn raw(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let raw_id = params.iter().find(|(k, _)| k == "id").map(|(_, v)| v.as_str()).unwrap_or("");
    let id = param("clipId", raw_id, ClipId::parse)?;
    let dl = clips::open_download(state.deps(), &id, download_request(&headers, true)).await?;
    if header_str(&headers, header::IF_NONE_MATCH.as_str())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == dl.etag() || t.trim() == "*"))
    {
        let mut res = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(tag) = HeaderValue::from_str(&dl.etag()) {
            res.headers_mut().insert(header::ETAG, tag);
        }
        return Ok(res);
    }
    Ok(stream_response(dl))
}

/// GET /raw/{id}/{name} — as `/raw/{id}`; the name is for the browser's save dialog.
#[utoipa::path(get, path = "/raw/{id}/{name}", tag = "downloads", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$"),
        ("name" = String, Path, description = "Any file name (for the browser's save dialog)"),
        ("Range" = Option<String>, Header, description = "One byte range", nullable = false, pattern = "^bytes=[0-9]{0,15}-[0-9]{0,15}$"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of a copy the client has", nullable = false)),
    responses((status = 200, description = "The content of a public, reusable clip", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified"),
        (status = 403, description = "Protected, one-time or limited clips are served to POST only", body = wire::ErrorBody),
        (status = 416, description = "Range outside the content", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn raw_named(
    state: State<AppState>,
    params: Path<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    raw(state, params, headers).await
}
