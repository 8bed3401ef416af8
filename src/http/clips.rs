//! Clip metadata routes: info, the Qopy read (`GET|POST /api/clip/:id`, never consuming),
//! file info, early delete with the delete token, and the 410 on `GET /api/file/:id`.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use super::error::ApiError;
use super::input::{Fields, JsonObject, header_str, param};
use super::wire;
use crate::app::AppState;
use crate::domain::clips;
use crate::domain::types::{AccessCode, ClipId, ClipKind, Expiry};
use crate::store::ClipRecord;

fn clip_id(raw: &str) -> Result<ClipId, ApiError> {
    param("clipId", raw, ClipId::parse)
}

/// The info answer, written straight into its buffer: the lookup is the hottest route and
/// this runs on every hit. Same bytes as serializing the fields with serde_json (tested).
/// ferry's own fields follow Qopy's: `format` (3 unless a client said 4), `size` (the bytes
/// stored, so a page can state a V4 file's exact size before any password), the client's
/// encrypted `meta` and V4 stream `header` when it gave them, `downloadsLeft` for limited clips.
fn info_body(clip: &ClipRecord) -> Bytes {
    let client = clip.client.as_ref();
    let extra = client.map_or(0, |f| {
        f.meta.as_ref().map_or(0, |m| m.len() + 10) + f.stream_header.as_ref().map_or(0, |h| h.len() + 12)
    });
    let mut out = Vec::with_capacity(160 + clip.code.len() + clip.kind.len() + extra);
    out.extend_from_slice(b"{\"success\":true,\"clipId\":");
    json_str(&mut out, &clip.code);
    out.extend_from_slice(b",\"contentType\":");
    json_str(&mut out, &clip.kind);
    out.extend_from_slice(b",\"expiresAt\":");
    serde_json::to_writer(&mut out, &clip.expires_at).expect("writing to a Vec cannot fail");
    out.extend_from_slice(if clip.one_time { b",\"oneTime\":true" } else { b",\"oneTime\":false" });
    let protected = clip.access_code_hash.is_some();
    out.extend_from_slice(if protected { b",\"hasPassword\":true" } else { b",\"hasPassword\":false" });
    out.extend_from_slice(if client.is_some_and(|f| f.format == 4) { b",\"format\":4" } else { b",\"format\":3" });
    out.extend_from_slice(b",\"size\":");
    serde_json::to_writer(&mut out, &clip.size).expect("writing to a Vec cannot fail");
    if let Some(meta) = client.and_then(|f| f.meta.as_deref()) {
        out.extend_from_slice(b",\"meta\":");
        json_str(&mut out, meta);
    }
    if let Some(header) = client.and_then(|f| f.stream_header.as_deref()) {
        out.extend_from_slice(b",\"header\":");
        json_str(&mut out, header);
    }
    if let Some(left) = downloads_left(clip) {
        out.extend_from_slice(b",\"downloadsLeft\":");
        serde_json::to_writer(&mut out, &left).expect("writing to a Vec cannot fail");
    }
    out.push(b'}');
    Bytes::from(out)
}

/// Downloads a limited clip has left (none for unlimited ones).
fn downloads_left(clip: &ClipRecord) -> Option<i32> {
    clip.max_downloads.map(|max| (max - clip.download_count).max(0))
}

/// A JSON string: copied as is when nothing in it needs escaping, else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("writing to a Vec cannot fail");
    }
}

/// The info answer for the clip code `raw`: shared by the routed handler and the hot path.
pub async fn info_response(state: &AppState, raw: &str) -> Result<Response, ApiError> {
    let clip = clips::lookup(state.deps(), &clip_id(raw)?).await?;
    let mut response = Response::new(Body::from(info_body(&clip)));
    // Room for the headers every response gets at the edge, so the map is allocated once.
    let headers = response.headers_mut();
    headers.reserve(8);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// GET /api/clip/{id}/info — the hot path (see `hot`; this is its routed twin, for HEAD and
/// ids the hot path leaves to the router).
#[utoipa::path(get, path = "/api/clip/{id}/info", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$")),
    responses((status = 200, description = "What the clip is; never consumes it", body = wire::ClipInfo), wire::CommonErrors))]
pub async fn info(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    info_response(&state, &raw).await
}

fn read_json(clip: &ClipRecord) -> wire::ClipRead {
    wire::ClipRead {
        success: true,
        content_type: clip.kind.clone(),
        redirect_to: format!("/api/file/{}", clip.code),
        filename: clip.filename.clone(),
        filesize: clip.size,
        mime_type: clip.mime_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
        expires_at: clip.expires_at,
        one_time: clip.one_time,
        is_text_file: (clip.kind == "text").then_some(true),
    }
}

/// GET /api/clip/{id} — metadata; a protected clip answers 401 asking for the code.
#[utoipa::path(get, path = "/api/clip/{id}", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$")),
    responses((status = 200, description = "Metadata (Qopy's read); never consumes the clip", body = wire::ClipRead),
        (status = 401, description = "The clip needs its access code: POST it", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn read(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Json<wire::ClipRead>, ApiError> {
    let deps = state.deps();
    let clip = clips::lookup(deps, &clip_id(&raw)?).await?;
    clips::check_access(deps, &clip, None).await?;
    Ok(Json(read_json(&clip)))
}

/// The access code a POST body carries, if any.
pub fn access_code(body: &serde_json::Map<String, Value>) -> Result<Option<AccessCode>, ApiError> {
    let mut f = Fields::new(body);
    let code = f.parsed("accessCode", AccessCode::parse);
    f.finish()?;
    Ok(code)
}

/// POST /api/clip/{id} `{"accessCode"}` — metadata after checking the code.
#[utoipa::path(post, path = "/api/clip/{id}", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$")),
    request_body = wire::AccessCodeBody,
    responses((status = 200, description = "Metadata after checking the code", body = wire::ClipRead),
        (status = 401, description = "Access code missing or wrong", body = wire::ErrorBody),
        (status = 415, description = "Not JSON", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn read_with_code(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<wire::ClipRead>, ApiError> {
    let id = clip_id(&raw)?;
    let code = access_code(&body)?;
    let deps = state.deps();
    let clip = clips::lookup(deps, &id).await?;
    clips::check_access(deps, &clip, code.as_ref()).await?;
    Ok(Json(read_json(&clip)))
}

/// GET /api/config — what a browser client needs: the salt of access-code hashes (Qopy's
/// field) and ferry's limits, so its UI offers only what this server accepts.
#[utoipa::path(get, path = "/api/config", tag = "clips",
    responses((status = 200, description = "Salt of access-code hashes and this server's limits", body = wire::ClientConfig), wire::CommonErrors))]
pub async fn client_config(State(state): State<AppState>) -> Json<wire::ClientConfig> {
    let limits = state.deps().limits;
    let expiry = Expiry::ALL.into_iter().filter(|e| *e <= limits.max_expiry).map(|e| e.as_str().to_string()).collect();
    Json(wire::ClientConfig {
        pbkdf2_salt: state.config().access.pbkdf2_salt.clone(),
        chunk_size: limits.chunk_size,
        max_upload_size: limits.max_upload,
        max_text_size: limits.max_for(ClipKind::Text),
        expiry_options: expiry,
        default_expiry: limits.expiry(Expiry::Hr24).as_str().to_string(),
    })
}

/// GET /api/file/{id}/info — file clips only.
#[utoipa::path(get, path = "/api/file/{id}/info", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$")),
    responses((status = 200, description = "A file clip's metadata", body = wire::FileInfo), wire::CommonErrors))]
pub async fn file_info(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<wire::FileInfo>, ApiError> {
    let clip = clips::lookup(state.deps(), &clip_id(&raw)?).await?;
    if clip.kind != "file" {
        return Err(crate::domain::DomainError::ClipNotFound.into());
    }
    Ok(Json(wire::FileInfo {
        success: true,
        clip_id: clip.code.clone(),
        filename: clip.filename.clone(),
        filesize: clip.size,
        mime_type: clip.mime_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
        expires_at: clip.expires_at,
        one_time: clip.one_time,
        has_password: clip.access_code_hash.is_some(),
    }))
}

/// GET /api/file/{id} — never content (link previews must not spend clips).
#[utoipa::path(get, path = "/api/file/{id}", tag = "downloads", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$")),
    responses((status = 410, description = "Content is served to POST only (link previews must not spend clips)", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn file_get(Path(raw): Path<String>) -> Result<(), ApiError> {
    clip_id(&raw)?;
    Err(ApiError::UsePost)
}

/// DELETE /api/clip/{id} with `X-Delete-Token`.
#[utoipa::path(delete, path = "/api/clip/{id}", tag = "clips", params(("id" = String, Path, description = "The clip's id (10 characters, or 6 for quick share)", pattern = "^([A-Z0-9]{6}|[A-Z0-9]{10})$"),
        ("X-Delete-Token" = Option<String>, Header, description = "The token the upload answered", nullable = false, min_length = 1, max_length = 256)),
    responses((status = 204, description = "Deleted"),
        (status = 401, description = "No delete token", body = wire::ErrorBody),
        (status = 403, description = "Wrong delete token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let id = clip_id(&raw)?;
    clips::delete(state.deps(), &id, header_str(&headers, "x-delete-token")).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClientFormat;

    fn record(code: &str, kind: &str, one_time: bool, protected: bool, expires_at: i64) -> ClipRecord {
        ClipRecord {
            kind: kind.into(),
            expires_at,
            one_time,
            access_code_hash: protected.then(|| "hash".into()),
            ..ClipRecord::sample(code)
        }
    }

    #[test]
    fn the_info_body_is_what_serde_json_writes_for_the_same_fields() {
        let v4 = ClientFormat {
            format: 4,
            meta: Some("BHmZSrvnqYiK8x3t".into()),
            stream_header: Some("BAAQAGSHsaMi5jinmDLfOO2Vmqhm".into()),
        };
        let cases = [
            record("ABCDEFGHJK", "file", false, false, 1_795_508_059_260),
            record("Q7X2K9", "text", true, true, 0),
            record("x\"y\\z\u{1}é", "we\"ird\n", false, true, -5),
            record("", "", true, false, i64::MAX),
            ClipRecord {
                client: Some(v4.clone()),
                max_downloads: Some(3),
                download_count: 1,
                ..record("K", "file", false, false, 9)
            },
            ClipRecord { client: Some(ClientFormat { meta: None, ..v4 }), ..record("K", "file", false, false, 9) },
            ClipRecord {
                client: Some(ClientFormat { format: 3, meta: None, stream_header: None }),
                max_downloads: Some(2),
                download_count: 5,
                ..record("K", "text", false, false, 9)
            },
        ];
        for clip in cases {
            let mut expected = serde_json::json!({
                "success": true,
                "clipId": clip.code,
                "contentType": clip.kind,
                "expiresAt": clip.expires_at,
                "oneTime": clip.one_time,
                "hasPassword": clip.access_code_hash.is_some(),
                "format": clip.client.as_ref().map_or(3, |f| f.format),
                "size": clip.size,
            });
            let mut keys =
                vec!["success", "clipId", "contentType", "expiresAt", "oneTime", "hasPassword", "format", "size"];
            if let Some(f) = &clip.client {
                if let Some(meta) = &f.meta {
                    expected["meta"] = meta.clone().into();
                    keys.push("meta");
                }
                if let Some(header) = &f.stream_header {
                    expected["header"] = header.clone().into();
                    keys.push("header");
                }
            }
            if let Some(max) = clip.max_downloads {
                expected["downloadsLeft"] = (max - clip.download_count).max(0).into();
                keys.push("downloadsLeft");
            }
            let body = info_body(&clip);
            let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(parsed, expected, "{}", String::from_utf8_lossy(&body));
            // And exactly what the documented wire type serialises to.
            let typed = wire::ClipInfo {
                success: true,
                clip_id: clip.code.clone(),
                content_type: clip.kind.clone(),
                expires_at: clip.expires_at,
                one_time: clip.one_time,
                has_password: clip.access_code_hash.is_some(),
                format: clip.client.as_ref().map_or(3, |f| f.format),
                size: clip.size,
                meta: clip.client.as_ref().and_then(|f| f.meta.clone()),
                header: clip.client.as_ref().and_then(|f| f.stream_header.clone()),
                downloads_left: clip.max_downloads.map(|m| (m - clip.download_count).max(0)),
            };
            assert_eq!(serde_json::to_vec(&typed).unwrap(), body.to_vec(), "same bytes as the wire type");
            // Field order is the order clients have always seen, ferry's fields after Qopy's.
            let text = String::from_utf8(body.to_vec()).unwrap();
            let at: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\":")).expect("key present")).collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        }
    }
}
