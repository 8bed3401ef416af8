//! One-request uploads for curl users: `PUT /api/clips/:filename` (raw body, `curl -T`) and
//! `POST /api/clips` (multipart field `file`). Options come from headers or the query string.
//! Answers one plain-text line with the link, or JSON when asked; the delete token rides in
//! `X-Delete-Token` either way.

use std::collections::HashMap;

use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::utf8_percent_encode;

use super::download::PATH_SEGMENT;
use super::error::ApiError;
use super::input::{BaseUrl, content_length, header_str};
use super::upload::completed_json;
use super::wire;
use crate::app::AppState;
use crate::domain::clips::{self, Completed, OneShotRequest};
use crate::domain::types::{AccessCode, Expiry, Filename, MaxDownloads, MimeType};
use crate::domain::{DomainError, FieldError, Location};

/// Options read from a header, else from the query under any of its spellings.
struct Options<'a> {
    headers: &'a HeaderMap,
    query: &'a HashMap<String, String>,
    errors: Vec<FieldError>,
}

impl<'a> Options<'a> {
    /// The option's name, where it was found, and its text (`None`: a header value that is
    /// not visible ASCII).
    fn get(&self, header: &str, query_names: &[&str]) -> Option<(String, Location, Option<&'a str>)> {
        if let Some(v) = self.headers.get(header) {
            return Some((header.to_string(), Location::Header, v.to_str().ok()));
        }
        query_names
            .iter()
            .find_map(|q| self.query.get_key_value(*q).map(|(k, v)| (k.clone(), Location::Query, Some(v.as_str()))))
    }

    fn parsed<T>(
        &mut self,
        header: &str,
        query: &[&str],
        parse: impl FnOnce(&str) -> Result<T, &'static str>,
    ) -> Option<T> {
        let (name, loc, raw) = self.get(header, query)?;
        // An unreadable header is refused, never read as some other value.
        let parsed = raw.ok_or("must be visible ASCII text").and_then(parse);
        parsed.map_err(|m| self.errors.push(FieldError::new(name, m, loc))).ok()
    }

    fn boolean(&mut self, header: &str, query: &[&str]) -> bool {
        self.parsed(header, query, |v| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("must be true or false"),
        })
        .unwrap_or(false)
    }
}

fn guess_mime(filename: &Filename, declared: Option<&str>) -> Option<MimeType> {
    declared
        .filter(|d| !d.is_empty() && !d.starts_with("application/octet-stream") && !d.starts_with("multipart/"))
        .and_then(|d| MimeType::parse(d).ok())
        .or_else(|| mime_guess::from_path(filename.as_str()).first().and_then(|m| MimeType::parse(m.as_ref()).ok()))
}

pub(crate) fn request(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    filename: Filename,
    declared_type: Option<&str>,
    content_length: Option<u64>,
) -> Result<OneShotRequest, ApiError> {
    let mut o = Options { headers, query, errors: Vec::new() };
    let expiry = o.parsed("expire", &["expire", "expiration"], Expiry::parse).unwrap_or(Expiry::Hr24);
    let one_time = o.boolean("one-time", &["oneTime", "one-time", "one_time"]);
    let max_downloads = o.parsed("max-downloads", &["maxDownloads", "max-downloads", "max_downloads"], |v| {
        v.parse::<u64>().map_err(|_| "must be an integer between 1 and 10000").and_then(MaxDownloads::new)
    });
    let access_code = o.parsed("access-code", &["accessCode", "access-code"], AccessCode::parse);
    if !o.errors.is_empty() {
        return Err(DomainError::Validation(o.errors).into());
    }
    let mime_type = guess_mime(&filename, declared_type);
    Ok(OneShotRequest { filename, mime_type, expiry, one_time, max_downloads, access_code, content_length })
}

fn respond(base: &str, headers: &HeaderMap, done: Completed) -> Response {
    let clip = &done.clip;
    let public = !clip.one_time && clip.max_downloads.is_none() && clip.access_code_hash.is_none();
    let raw_url = public.then(|| {
        let name = clip.filename.as_deref().unwrap_or(&clip.code);
        format!("{base}/raw/{}/{}", clip.code, utf8_percent_encode(name, PATH_SEGMENT))
    });
    let wants_json = header_str(headers, header::ACCEPT.as_str()).is_some_and(|a| a.contains("application/json"));
    let mut res = if wants_json {
        let mut body = completed_json(base, &done);
        body.raw_url = Some(raw_url);
        axum::Json(body).into_response()
    } else {
        let line = raw_url.unwrap_or_else(|| format!("{base}/file/{}", clip.code));
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{line}\n")).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&done.delete_token) {
        res.headers_mut().insert("x-delete-token", v);
    }
    res
}

/// PUT /api/clips/{filename}
#[utoipa::path(put, path = "/api/clips/{filename}", tag = "uploads",
    params(("filename" = String, Path, description = "The file's name", min_length = 1, max_length = 255, pattern = r"^[^/\\\x00-\x1f\x7f-\x9f]*[^/\\\x00-\x1f\x7f-\x9f .][^/\\\x00-\x1f\x7f-\x9f]*$"),
        ("expiration" = Option<String>, Query, description = "5min, 15min, 30min, 1hr, 6hr or 24hr (also the Expiration header)", nullable = false, pattern = "^(5min|15min|30min|1hr|6hr|24hr)$"),
        ("one-time" = Option<bool>, Query, description = "Served once (also the One-Time header)", nullable = false),
        ("max-downloads" = Option<u32>, Query, description = "Download limit, 1-10000", nullable = false, minimum = 1, maximum = 10000),
        ("access-code" = Option<String>, Query, description = "Required to download", nullable = false, min_length = 1, max_length = 256)),
    request_body(content = Option<Vec<u8>>, content_type = "application/octet-stream",
        description = "The content, as is (curl -T); an empty body makes an empty clip"),
    responses((status = 200, description = "The link as one text line, or JSON with Accept: application/json",
            content((wire::Completed = "application/json"), (String = "text/plain"))),
        (status = 507, description = "No room", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn put(
    State(state): State<AppState>,
    BaseUrl(base): BaseUrl,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let filename = Filename::parse(&name).map_err(|m| DomainError::invalid("filename", m, Location::Params))?;
    let declared = header_str(&headers, header::CONTENT_TYPE.as_str());
    let one = request(&headers, &query, filename, declared, content_length(&headers))?;
    let done = clips::create_one_shot(state.deps(), one, req.into_body().into_data_stream()).await?;
    Ok(respond(&base, &headers, done))
}

/// PUT /api/clips/ with no name: curl -T with a URL not ending in '/' or a bare stdin upload.
#[utoipa::path(put, path = "/api/clips/", tag = "uploads",
    responses((status = 400, description = "A file name is required: PUT /api/clips/<filename>", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn put_without_name() -> ApiError {
    DomainError::invalid(
        "filename",
        "is required: PUT /api/clips/<filename> (curl -T file URL/api/clips/)",
        Location::Params,
    )
    .into()
}

/// POST /api/clips — multipart field `file`.
#[utoipa::path(post, path = "/api/clips", tag = "uploads",
    params(("expiration" = Option<String>, Query, description = "5min, 15min, 30min, 1hr, 6hr or 24hr", nullable = false, pattern = "^(5min|15min|30min|1hr|6hr|24hr)$"),
        ("one-time" = Option<bool>, Query, description = "Served once", nullable = false),
        ("max-downloads" = Option<u32>, Query, description = "Download limit, 1-10000", nullable = false, minimum = 1, maximum = 10000),
        ("access-code" = Option<String>, Query, description = "Required to download", nullable = false, min_length = 1, max_length = 256)),
    request_body(content = wire::UploadForm, content_type = "multipart/form-data", description = "A `file` field (its filename names the clip)"),
    responses((status = 200, description = "The link as one text line, or JSON with Accept: application/json",
            content((wire::Completed = "application/json"), (String = "text/plain"))),
        (status = 415, description = "Not multipart/form-data", body = wire::ErrorBody),
        (status = 507, description = "No room", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn post(
    State(state): State<AppState>,
    BaseUrl(base): BaseUrl,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let is_form = header_str(&headers, header::CONTENT_TYPE.as_str())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_form {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bad = |e: axum::extract::multipart::MultipartError| ApiError::from(DomainError::BadBody(e.body_text()));
    let mut form =
        Multipart::from_request(req, &()).await.map_err(|e| ApiError::from(DomainError::BadBody(e.body_text())))?;
    let deps = state.deps();
    let mut done: Option<Completed> = None;
    let read_form = async {
        while let Some(field) = form.next_field().await.map_err(bad)? {
            if field.name() != Some("file") {
                continue;
            }
            if done.is_some() {
                return Err(DomainError::invalid("file", "must appear once", Location::Body).into());
            }
            let name = field.file_name().unwrap_or("upload.bin").to_string();
            let filename = Filename::parse(&name).map_err(|m| DomainError::invalid("file", m, Location::Body))?;
            let one = request(&headers, &query, filename, field.content_type(), None)?;
            done = Some(clips::create_one_shot(deps, one, field).await?);
        }
        Ok::<(), ApiError>(())
    };
    if let Err(e) = read_form.await {
        // The form broke (or repeated the file) after a clip was made: undo it.
        if let Some(made) = done.take() {
            let id = crate::domain::types::ClipId::parse(&made.clip.code).expect("stored codes parse");
            if let Err(undo) = clips::delete(deps, &id, Some(&made.delete_token)).await {
                tracing::warn!(error = %undo, "could not undo a half-received one-request upload");
            }
        }
        return Err(e);
    }
    let done = done.ok_or_else(|| DomainError::invalid("file", "is required", Location::Body))?;
    Ok(respond(&base, &headers, done))
}
