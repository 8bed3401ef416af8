//! Clip metadata routes: info, the Qopy read (`GET|POST /api/clip/:id`, never consuming),
//! file info, early delete with the delete token, and the 410 on `GET /api/file/:id`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
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

/// The info answer, serialized straight from the record (no intermediate JSON tree).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Info<'a> {
    success: bool,
    clip_id: &'a str,
    content_type: &'a str,
    expires_at: i64,
    one_time: bool,
    has_password: bool,
}

/// GET /api/clip/{id}/info — the hot path.
pub async fn info(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let clip = clips::lookup(state.deps(), &clip_id(&raw)?).await?;
    Ok(Json(Info {
        success: true,
        clip_id: &clip.code,
        content_type: &clip.kind,
        expires_at: clip.expires_at,
        one_time: clip.one_time,
        has_password: clip.access_code_hash.is_some(),
    })
    .into_response())
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
