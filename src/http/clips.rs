//! Clip metadata routes: info, the Qopy read (`GET|POST /api/clip/:id`, never consuming),
//! file info, early delete with the delete token, and the 410 on `GET /api/file/:id`.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::error::ApiError;
use super::input::{Fields, JsonObject, header_str, param};
use crate::app::AppState;
use crate::domain::clips;
use crate::domain::types::{AccessCode, ClipId};
use crate::store::ClipRecord;

fn clip_id(raw: &str) -> Result<ClipId, ApiError> {
    param("clipId", raw, ClipId::parse)
}

/// The info answer, written straight into its buffer: the lookup is the hottest route and
/// this runs on every hit. Same bytes as serializing the fields with serde_json (tested).
fn info_body(clip: &ClipRecord) -> Bytes {
    let mut out = Vec::with_capacity(112 + clip.code.len() + clip.kind.len());
    out.extend_from_slice(b"{\"success\":true,\"clipId\":");
    json_str(&mut out, &clip.code);
    out.extend_from_slice(b",\"contentType\":");
    json_str(&mut out, &clip.kind);
    out.extend_from_slice(b",\"expiresAt\":");
    serde_json::to_writer(&mut out, &clip.expires_at).expect("writing to a Vec cannot fail");
    out.extend_from_slice(if clip.one_time { b",\"oneTime\":true" } else { b",\"oneTime\":false" });
    let protected = clip.access_code_hash.is_some();
    out.extend_from_slice(if protected { b",\"hasPassword\":true}" } else { b",\"hasPassword\":false}" });
    Bytes::from(out)
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
pub async fn info(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    info_response(&state, &raw).await
}

fn read_json(clip: &ClipRecord) -> Value {
    let mut body = json!({
        "success": true,
        "contentType": clip.kind,
        "redirectTo": format!("/api/file/{}", clip.code),
        "filename": clip.filename,
        "filesize": clip.size,
        "mimeType": clip.mime_type.as_deref().unwrap_or("application/octet-stream"),
        "expiresAt": clip.expires_at,
        "oneTime": clip.one_time,
    });
    if clip.kind == "text" {
        body["isTextFile"] = json!(true);
    }
    body
}

/// GET /api/clip/{id} — metadata; a protected clip answers 401 asking for the code.
pub async fn read(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
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
pub async fn read_with_code(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let id = clip_id(&raw)?;
    let code = access_code(&body)?;
    let deps = state.deps();
    let clip = clips::lookup(deps, &id).await?;
    clips::check_access(deps, &clip, code.as_ref()).await?;
    Ok(Json(read_json(&clip)))
}

/// GET /api/config — what the browser UI needs to derive access-code hashes.
pub async fn client_config(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "pbkdf2Salt": state.config().access.pbkdf2_salt }))
}

/// GET /api/file/{id}/info — file clips only.
pub async fn file_info(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Json<Value>, ApiError> {
    let clip = clips::lookup(state.deps(), &clip_id(&raw)?).await?;
    if clip.kind != "file" {
        return Err(crate::domain::DomainError::ClipNotFound.into());
    }
    Ok(Json(json!({
        "success": true,
        "clipId": clip.code,
        "filename": clip.filename,
        "filesize": clip.size,
        "mimeType": clip.mime_type.as_deref().unwrap_or("application/octet-stream"),
        "expiresAt": clip.expires_at,
        "oneTime": clip.one_time,
        "hasPassword": clip.access_code_hash.is_some(),
    })))
}

/// GET /api/file/{id} — never content (link previews must not spend clips).
pub async fn file_get(Path(raw): Path<String>) -> Result<(), ApiError> {
    clip_id(&raw)?;
    Err(ApiError::UsePost)
}

/// DELETE /api/clip/{id} with `X-Delete-Token`.
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
        let cases = [
            record("ABCDEFGHJK", "file", false, false, 1_795_508_059_260),
            record("Q7X2K9", "text", true, true, 0),
            record("x\"y\\z\u{1}é", "we\"ird\n", false, true, -5),
            record("", "", true, false, i64::MAX),
        ];
        for clip in cases {
            let expected = serde_json::json!({
                "success": true,
                "clipId": clip.code,
                "contentType": clip.kind,
                "expiresAt": clip.expires_at,
                "oneTime": clip.one_time,
                "hasPassword": clip.access_code_hash.is_some(),
            });
            let body = info_body(&clip);
            let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(parsed, expected, "{}", String::from_utf8_lossy(&body));
            // Field order is the order clients have always seen.
            let text = String::from_utf8(body.to_vec()).unwrap();
            let at: Vec<usize> = ["success", "clipId", "contentType", "expiresAt", "oneTime", "hasPassword"]
                .iter()
                .map(|k| text.find(&format!("\"{k}\":")).expect("key present"))
                .collect();
            assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
        }
    }
}
