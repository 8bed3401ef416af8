//! The three-step upload routes: initiate, chunk (multipart field `chunk` or a raw
//! octet-stream body, streamed), complete, status and cancel. Parses input into domain types,
//! makes one service call, shapes the Qopy response.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header;

use super::error::ApiError;
use super::input::{BaseUrl, Fields, JsonObject, content_length, header_str, param};
use super::wire;
use crate::app::AppState;
use crate::domain::clips::Completed;
use crate::domain::types::{
    AccessCode, ChunkIndex, ClipKind, EncryptedMeta, Expiry, Filename, FormatVersion, MaxDownloads, MimeType, UploadId,
};
use crate::domain::uploads::{self, CompleteRequest, InitiateRequest};
use crate::domain::{DomainError, Location};

/// POST /api/upload/initiate
#[utoipa::path(post, path = "/api/upload/initiate", tag = "uploads",
    request_body = wire::InitiateBody,
    responses((status = 200, description = "An upload session", body = wire::Initiated),
        (status = 415, description = "Not JSON", body = wire::ErrorBody),
        (status = 507, description = "No room for the upload", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn initiate(
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<wire::Initiated>, ApiError> {
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
    Ok(Json(wire::Initiated {
        success: true,
        upload_id: started.upload_id.as_str().to_string(),
        chunk_size: started.chunk_size,
        total_chunks: started.total_chunks,
        upload_url: format!("/api/upload/chunk/{}", started.upload_id),
        expires_at: started.expires_at,
    }))
}

fn bad_multipart(e: axum::extract::multipart::MultipartError) -> ApiError {
    DomainError::BadBody(e.body_text()).into()
}

/// POST /api/upload/chunk/{uploadId}/{chunkNumber}
#[utoipa::path(post, path = "/api/upload/chunk/{upload_id}/{chunk}", tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id", pattern = "^[0-9A-F]{16}$"),
        ("chunk" = u32, Path, description = "The chunk's number, from 0", minimum = 0, maximum = 9999999),
        ("X-Chunk-Sha256" = Option<String>, Header, description = "The chunk's SHA-256 (hex); a mismatch is refused", nullable = false, pattern = "^[0-9a-fA-F]{64}$")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The chunk's bytes (or multipart/form-data with a `chunk` field)"),
    responses((status = 200, description = "Stored", body = wire::ChunkReceived),
        (status = 409, description = "The upload is completed", body = wire::ErrorBody),
        (status = 415, description = "Neither octet-stream nor multipart", body = wire::ErrorBody),
        (status = 507, description = "No room", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn chunk(
    State(state): State<AppState>,
    Path((upload_id, chunk_number)): Path<(String, String)>,
    req: Request,
) -> Result<Json<wire::ChunkReceived>, ApiError> {
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
    Ok(Json(wire::ChunkReceived {
        success: true,
        chunk_number: received.index,
        received: true,
        uploaded_chunks: received.uploaded,
        total_chunks: received.total,
    }))
}

/// The response of complete (and, with `rawUrl`, of the one-request upload).
pub fn completed_json(base: &str, done: &Completed) -> wire::Completed {
    let clip = &done.clip;
    let is_file = clip.kind == "file";
    wire::Completed {
        success: true,
        clip_id: clip.code.clone(),
        url: format!("{base}/{}/{}", if is_file { "file" } else { "clip" }, clip.code),
        filename: clip.filename.clone(),
        expires_at: clip.expires_at,
        quick_share: clip.quick_share,
        one_time: clip.one_time,
        is_file,
        size: clip.size,
        sha256: clip.sha256.clone(),
        delete_token: done.delete_token.clone(),
        raw_url: None,
    }
}

/// POST /api/upload/complete/{uploadId}
#[utoipa::path(post, path = "/api/upload/complete/{upload_id}", tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id", pattern = "^[0-9A-F]{16}$")),
    request_body = wire::CompleteBody,
    responses((status = 200, description = "The clip", body = wire::Completed),
        (status = 409, description = "Completed by another request", body = wire::ErrorBody),
        (status = 415, description = "Not JSON", body = wire::ErrorBody),
        (status = 507, description = "No room", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn complete(
    State(state): State<AppState>,
    BaseUrl(base): BaseUrl,
    Path(upload_id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<wire::Completed>, ApiError> {
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
#[utoipa::path(get, path = "/api/upload/{upload_id}/status", tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id", pattern = "^[0-9A-F]{16}$")),
    responses((status = 200, description = "Received chunks", body = wire::UploadStatus), wire::CommonErrors))]
pub async fn status(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<Json<wire::UploadStatus>, ApiError> {
    let id = param("uploadId", &upload_id, UploadId::parse)?;
    let s = uploads::status(state.deps(), &id).await?;
    let uploaded = s.chunks.len() as u32;
    Ok(Json(wire::UploadStatus {
        success: true,
        upload_id: s.upload_id.clone(),
        status: s.status.clone(),
        uploaded_chunks: uploaded,
        total_chunks: s.total_chunks,
        progress: (uploaded as f64 * 100.0 / s.total_chunks.max(1) as f64).round() as u32,
        received_chunks: s.chunks.iter().map(|c| c.index).collect(),
        chunks: s
            .chunks
            .iter()
            .map(|c| wire::ChunkState { index: c.index, size: c.size, sha256: c.sha256.clone() })
            .collect(),
    }))
}

/// DELETE /api/upload/{uploadId}
#[utoipa::path(delete, path = "/api/upload/{upload_id}", tag = "uploads",
    params(("upload_id" = String, Path, description = "The upload's id", pattern = "^[0-9A-F]{16}$")),
    responses((status = 200, description = "Cancelled; its chunks are removed", body = wire::Done),
        (status = 409, description = "Completed already", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn cancel(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<Json<wire::Done>, ApiError> {
    let id = param("uploadId", &upload_id, UploadId::parse)?;
    uploads::cancel(state.deps(), &id).await?;
    Ok(Json(wire::Done { success: true, message: "Upload cancelled successfully".into() }))
}
