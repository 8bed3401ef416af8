//! The three-step upload routes: initiate, chunk (multipart field `chunk` or a raw
//! octet-stream body, streamed), complete, status and cancel. Parses input into domain types,
//! makes one service call, shapes the Qopy response.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header;
use serde_json::{Value, json};

use super::error::ApiError;
use super::input::{BaseUrl, Fields, JsonObject, content_length, header_str, param};
use crate::app::AppState;
use crate::domain::clips::Completed;
use crate::domain::types::{
    AccessCode, ChunkIndex, ClipKind, EncryptedMeta, Expiry, Filename, FormatVersion, MaxDownloads, MimeType, UploadId,
};
use crate::domain::uploads::{self, CompleteRequest, InitiateRequest};
use crate::domain::{DomainError, Location};

/// POST /api/upload/initiate
pub async fn initiate(State(state): State<AppState>, JsonObject(body): JsonObject) -> Result<Json<Value>, ApiError> {
    let mut f = Fields::new(&body);
    let filename = f.required("filename", Filename::parse);
    let filesize = f.integer("filesize", i64::MAX as u64);
    let total_chunks = f.integer("totalChunks", 1_000_000).map(|n| n as u32);
    let mime_type = f.parsed("mimeType", MimeType::parse);
    let expiry = f.parsed("expiration", Expiry::parse).unwrap_or(Expiry::Hr24);
    let one_time = f.boolean("oneTime");
    let has_password = f.boolean("hasPassword");
    let quick_share = f.boolean("quickShare");
    let is_text = f.boolean("isTextContent");
    let kind = f.parsed("contentType", ClipKind::parse).unwrap_or(ClipKind::Text);
    let max_downloads = f.number("maxDownloads", MaxDownloads::new);
    f.finish()?;
    let req = InitiateRequest {
        filename: filename.expect("validated"),
        filesize,
        total_chunks,
        mime_type,
        expiry,
        one_time,
        has_password,
        quick_share,
        is_text,
        kind,
        max_downloads,
    };
    let started = uploads::initiate(state.deps(), req).await?;
    Ok(Json(json!({
        "success": true,
        "uploadId": started.upload_id.as_str(),
        "chunkSize": started.chunk_size,
        "totalChunks": started.total_chunks,
        "uploadUrl": format!("/api/upload/chunk/{}", started.upload_id),
        "expiresAt": started.expires_at,
    })))
}

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> ApiError {
    DomainError::BadBody(e.body_text()).into()
}

/// POST /api/upload/chunk/{uploadId}/{chunkNumber}
pub async fn chunk(
    State(state): State<AppState>,
    Path((upload_id, chunk_number)): Path<(String, String)>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let id = param("uploadId", &upload_id, UploadId::parse)?;
    let index = param("chunkNumber", &chunk_number, ChunkIndex::parse)?;
    let deps = state.deps();
    let headers = req.headers().clone();
    // A checksum that is not text cannot match: it is compared (and refused), never skipped.
    let sha = headers.get("x-chunk-sha256").map(|v| v.to_str().unwrap_or_default().to_owned());
    let content_type = header_str(&headers, header::CONTENT_TYPE.as_str()).unwrap_or("").to_ascii_lowercase();

    let received = if content_type.starts_with("multipart/form-data") {
        let mut form =
            Multipart::from_request(req, &()).await.map_err(|e| ApiError::from(DomainError::BadBody(e.body_text())))?;
        let mut sink = None;
        while let Some(mut field) = form.next_field().await.map_err(bad_multipart)? {
            if field.name() != Some("chunk") {
                continue; // other fields (Qopy sends some) are ignored
            }
            if sink.is_some() {
                return Err(DomainError::invalid("chunk", "must appear once", Location::Body).into());
            }
            let mut s = uploads::open_chunk(deps, &id, index, None, sha.is_some()).await?;
            while let Some(bytes) = field.chunk().await.map_err(bad_multipart)? {
                s.write(bytes).await?;
            }
            sink = Some(s);
        }
        let sink = sink.ok_or_else(|| DomainError::invalid("chunk", "is required", Location::Body))?;
        sink.finish(deps, sha.as_deref()).await?
    } else if content_type.is_empty() || content_type.starts_with("application/octet-stream") {
        let mut sink = uploads::open_chunk(deps, &id, index, content_length(&headers), sha.is_some()).await?;
        sink.write_stream(req.into_body().into_data_stream()).await?;
        sink.finish(deps, sha.as_deref()).await?
    } else {
        return Err(ApiError::UnsupportedMediaType);
    };
    Ok(Json(json!({
        "success": true,
        "chunkNumber": received.index,
        "received": true,
        "uploadedChunks": received.uploaded,
        "totalChunks": received.total,
    })))
}

/// The response of complete (and, with `rawUrl`, of the one-request upload).
pub fn completed_json(base: &str, done: &Completed) -> Value {
    let clip = &done.clip;
    let is_file = clip.kind == "file";
    json!({
        "success": true,
        "clipId": clip.code,
        "url": format!("{base}/{}/{}", if is_file { "file" } else { "clip" }, clip.code),
        "filename": clip.filename,
        "expiresAt": clip.expires_at,
        "quickShare": clip.quick_share,
        "oneTime": clip.one_time,
        "isFile": is_file,
        "size": clip.size,
        "sha256": clip.sha256,
        "deleteToken": done.delete_token,
    })
}

/// POST /api/upload/complete/{uploadId}
pub async fn complete(
    State(state): State<AppState>,
    BaseUrl(base): BaseUrl,
    Path(upload_id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let id = param("uploadId", &upload_id, UploadId::parse)?;
    let mut f = Fields::new(&body);
    let code = f.parsed("accessCodeHash", AccessCode::parse);
    // Legacy clients send the hash as `password`.
    let legacy = f.parsed("password", AccessCode::parse);
    let requires = f.boolean("requiresAccessCode");
    let is_text = f.boolean("isTextUpload");
    let kind = f.parsed("contentType", ClipKind::parse);
    let format = f.number("format", FormatVersion::from_number);
    let meta = f.parsed("meta", EncryptedMeta::parse);
    f.finish()?;
    let access_code = code.or(legacy);
    if requires && access_code.is_none() {
        return Err(DomainError::invalid(
            "accessCodeHash",
            "is required when requiresAccessCode is true",
            Location::Body,
        )
        .into());
    }
    let kind = kind.or(is_text.then_some(ClipKind::Text));
    let done = uploads::complete(state.deps(), &id, CompleteRequest { access_code, kind, format, meta }).await?;
    Ok(Json(completed_json(&base, &done)))
}

/// GET /api/upload/{uploadId}/status
pub async fn status(State(state): State<AppState>, Path(upload_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = param("uploadId", &upload_id, UploadId::parse)?;
    let s = uploads::status(state.deps(), &id).await?;
    let uploaded = s.chunks.len() as u32;
    let received: Vec<i32> = s.chunks.iter().map(|c| c.index).collect();
    let chunks: Vec<Value> =
        s.chunks.iter().map(|c| json!({ "index": c.index, "size": c.size, "sha256": c.sha256 })).collect();
    Ok(Json(json!({
        "success": true,
        "uploadId": s.upload_id,
        "status": s.status,
        "uploadedChunks": uploaded,
        "totalChunks": s.total_chunks,
        "progress": (uploaded as f64 * 100.0 / s.total_chunks.max(1) as f64).round() as u32,
        "receivedChunks": received,
        "chunks": chunks,
    })))
}

/// DELETE /api/upload/{uploadId}
pub async fn cancel(State(state): State<AppState>, Path(upload_id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = param("uploadId", &upload_id, UploadId::parse)?;
    uploads::cancel(state.deps(), &id).await?;
    Ok(Json(json!({ "success": true, "message": "Upload cancelled successfully" })))
}
