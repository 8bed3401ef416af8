//! Wire answers: the JSON bodies of the public API as `Serialize` types, one per shape, so
//! each route's answer is visible in one place and the OpenAPI document (`openapi.rs`) is
//! generated from the same types the handlers send. Field names are Qopy's (camelCase, and the
//! admin clip list's snake_case). Request bodies are parsed leniently by `input` (Qopy clients
//! send loose types); the `*Request` types here describe them for the document.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// Every error answer: a short title, a sentence for people, and a stable code for programs.
/// Some codes add fields (see each).
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    /// Stable machine-readable code, e.g. `validation`, `clip_not_found`, `rate_limited`,
    /// `database_unavailable`, `body_timeout`. A clip that no longer opens answers 404 with
    /// `clip_expired`, `clip_consumed` (its one-time or last permitted download was taken) or
    /// `clip_deleted` (by its sender) while the server remembers it
    /// (`sweep.tombstone_retention`), else `clip_not_found`.
    pub code: String,
    /// `validation`: one entry per refused field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldProblem>>,
    /// `upload_incomplete`: the chunk numbers still missing.
    #[serde(rename = "missingChunks", skip_serializing_if = "Option::is_none")]
    pub missing_chunks: Option<Vec<u32>>,
    /// `rate_limited`: seconds to wait (also in `Retry-After`).
    #[serde(rename = "retryAfter", skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `access_code_required` / `access_code_invalid`.
    #[serde(rename = "requiresAccessCode", skip_serializing_if = "Option::is_none")]
    pub requires_access_code: Option<bool>,
    /// `job_not_failed`: the job's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `storage_limit_reached`: the configured limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl ErrorBody {
    pub fn new(error: &str, message: impl Into<String>, code: &str) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            message: message.into(),
            code: code.into(),
            details: None,
            missing_chunks: None,
            retry_after: None,
            requires_access_code: None,
            state: None,
            limit: None,
        }
    }
}

/// One refused field of a `validation` error.
#[derive(Serialize, ToSchema)]
pub struct FieldProblem {
    pub path: String,
    pub msg: String,
    /// `body`, `params`, `query` or `headers`.
    pub location: String,
}

/// A boolean as Qopy clients send it: `true`/`false`, or the strings `"true"`/`"false"`.
pub struct LooseBool;

impl utoipa::PartialSchema for LooseBool {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["true", "false"])))
            .into()
    }
}

impl ToSchema for LooseBool {}

/// A non-negative integer as Qopy clients send it: a number, or a string of 1 to 20 digits.
pub struct LooseCount;

impl utoipa::PartialSchema for LooseCount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]{1,20}$")))
            .into()
    }
}

impl ToSchema for LooseCount {}

/// `POST /api/upload/initiate` body.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = InitiateRequest)]
pub struct InitiateBody {
    /// The file's name.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^/\\\x00-\x1f\x7f-\x9f]*[^/\\\x00-\x1f\x7f-\x9f .][^/\\\x00-\x1f\x7f-\x9f]*$"
    )]
    pub filename: String,
    /// Total size in bytes, when known.
    #[schema(inline)]
    pub filesize: Option<LooseCount>,
    /// Chunks the client will send (1 to 1000000), when known.
    #[schema(inline, rename = "totalChunks")]
    pub total_chunks: Option<LooseCount>,
    #[schema(
        rename = "mimeType",
        max_length = 100,
        pattern = "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$",
        nullable = false
    )]
    pub mime_type: Option<String>,
    /// `5min`, `15min`, `30min`, `1hr`, `6hr` or `24hr` (default).
    #[schema(pattern = "^(5min|15min|30min|1hr|6hr|24hr)$", nullable = false)]
    pub expiration: Option<String>,
    #[schema(inline, rename = "oneTime")]
    pub one_time: Option<LooseBool>,
    #[schema(inline, rename = "hasPassword")]
    pub has_password: Option<LooseBool>,
    #[schema(inline, rename = "quickShare")]
    pub quick_share: Option<LooseBool>,
    #[schema(inline, rename = "isTextContent")]
    pub is_text_content: Option<LooseBool>,
    /// `text` (default) or `file`.
    #[schema(rename = "contentType", pattern = "^(text|file)$", nullable = false)]
    pub content_type: Option<String>,
    /// Downloads allowed, 1 to 10000.
    #[schema(inline, rename = "maxDownloads")]
    pub max_downloads: Option<LooseCount>,
}

/// `POST /api/clips` body (multipart/form-data).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The content; the part's filename names the clip.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// `POST /api/upload/initiate` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Initiated {
    pub success: bool,
    pub upload_id: String,
    pub chunk_size: u64,
    pub total_chunks: u32,
    pub upload_url: String,
    pub expires_at: i64,
}

/// `POST /api/upload/chunk/{uploadId}/{chunkNumber}` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChunkReceived {
    pub success: bool,
    pub chunk_number: u32,
    pub received: bool,
    pub uploaded_chunks: u32,
    pub total_chunks: u32,
}

/// `POST /api/upload/complete/{uploadId}` body.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = CompleteRequest)]
pub struct CompleteBody {
    /// The access code's hash (what the browser derives), when the clip is protected.
    #[schema(rename = "accessCodeHash", min_length = 1, max_length = 256, nullable = false)]
    pub access_code_hash: Option<String>,
    /// Older clients' name for `accessCodeHash`.
    #[schema(min_length = 1, max_length = 256, nullable = false)]
    pub password: Option<String>,
    #[schema(inline, rename = "requiresAccessCode")]
    pub requires_access_code: Option<LooseBool>,
    #[schema(inline, rename = "isTextUpload")]
    pub is_text_upload: Option<LooseBool>,
    #[schema(rename = "contentType", pattern = "^(text|file)$", nullable = false)]
    pub content_type: Option<String>,
    /// Client format: 3 or 4.
    #[schema(minimum = 3, maximum = 4, nullable = false)]
    pub format: Option<u8>,
    /// Encrypted metadata (base64url, no padding) of format 4 clips.
    #[schema(pattern = "^[A-Za-z0-9_-]{40,5500}$", nullable = false)]
    pub meta: Option<String>,
}

/// A finished clip: the answer of complete and (with `rawUrl`) of a one-request upload.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    pub success: bool,
    pub clip_id: String,
    pub url: String,
    pub filename: Option<String>,
    pub expires_at: i64,
    pub quick_share: bool,
    pub one_time: bool,
    pub is_file: bool,
    pub size: i64,
    pub sha256: String,
    /// Deletes the clip early (`DELETE /api/clip/{id}` with `X-Delete-Token`); shown once.
    pub delete_token: String,
    /// One-request uploads of public clips: a direct link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_url: Option<Option<String>>,
}

/// One received chunk in an upload's status.
#[derive(Serialize, ToSchema)]
pub struct ChunkState {
    pub index: i32,
    pub size: i64,
    pub sha256: Option<String>,
}

/// `GET /api/upload/{uploadId}/status` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UploadStatus {
    pub success: bool,
    pub upload_id: String,
    /// `uploading`, `assembling` or `complete`.
    pub status: String,
    pub uploaded_chunks: u32,
    pub total_chunks: u32,
    pub progress: u32,
    pub received_chunks: Vec<i32>,
    pub chunks: Vec<ChunkState>,
}

/// A plain success with a sentence.
#[derive(Serialize, ToSchema)]
pub struct Done {
    pub success: bool,
    pub message: String,
}

/// `GET /api/clip/{id}/info` answer (written by hand on the hot path; a test holds the two
/// equal).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClipInfo {
    pub success: bool,
    pub clip_id: String,
    /// `text` or `file`.
    pub content_type: String,
    pub expires_at: i64,
    pub one_time: bool,
    pub has_password: bool,
    /// 3, or 4 for clients that said so.
    pub format: u8,
    /// Bytes stored: the ciphertext's length for browser clips, from which a V4 file's
    /// plaintext size follows exactly.
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
    /// The V4 stream header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads_left: Option<i32>,
}

/// `GET|POST /api/clip/{id}` answer (Qopy's read; never consumes the clip).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClipRead {
    pub success: bool,
    pub content_type: String,
    pub redirect_to: String,
    pub filename: Option<String>,
    pub filesize: i64,
    pub mime_type: String,
    pub expires_at: i64,
    pub one_time: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_text_file: Option<bool>,
}

/// `POST /api/clip/{id}`, `POST /api/file/{id}` and thumbnail body.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = AccessCodeRequest)]
pub struct AccessCodeBody {
    /// The clip's access code (or its hash, as the browser sends it).
    #[schema(rename = "accessCode", min_length = 1, max_length = 256, nullable = false)]
    pub access_code: Option<String>,
}

/// `GET /api/file/{id}/info` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub success: bool,
    pub clip_id: String,
    pub filename: Option<String>,
    pub filesize: i64,
    pub mime_type: String,
    pub expires_at: i64,
    pub one_time: bool,
    pub has_password: bool,
}

/// `GET /api/config` answer: what a browser client needs.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientConfig {
    pub pbkdf2_salt: String,
    pub chunk_size: u64,
    pub max_upload_size: u64,
    pub max_text_size: u64,
    pub expiry_options: Vec<String>,
    pub default_expiry: String,
}

/// `POST /api/admin/auth` body.
#[derive(ToSchema)]
#[allow(dead_code)]
#[schema(as = AdminAuthRequest)]
pub struct AdminAuthBody {
    #[schema(min_length = 1, max_length = 256)]
    pub password: String,
}

/// `GET /api/admin/stats` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminStats {
    pub total_clips: i64,
    pub active_clips: i64,
    pub total_accesses: i64,
    pub password_clips: i64,
    pub password_percentage: i64,
    pub quick_share_clips: i64,
    pub quick_share_percentage: i64,
    pub one_time_clips: i64,
    pub normal_clips: i64,
    pub last_updated: i64,
    pub storage: StorageUse,
}

/// Storage in use, as the accounting job last computed it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageUse {
    pub bytes: u64,
    /// Bytes and items by kind (file, text, thumbnail, upload).
    #[schema(value_type = Object)]
    pub by_kind: Value,
    pub store: String,
    pub limit: Option<u64>,
    pub computed_at: Option<i64>,
}

/// One row of `GET /api/admin/clips` (Qopy's snake_case).
#[derive(Serialize, ToSchema)]
pub struct AdminClip {
    pub clip_id: String,
    pub created_at: i64,
    pub expiration_time: i64,
    pub is_expired: bool,
    pub access_count: i32,
    pub has_password: bool,
    pub one_time: bool,
}

/// `GET /api/admin/system` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminSystem {
    pub status: String,
    pub version: String,
    pub environment: String,
    pub database: String,
    pub store: String,
    pub last_cleanup: Option<i64>,
    pub current_time: i64,
    pub uptime: u64,
}

/// `GET /api/admin/performance` answer: cache, per-route latency and sweep figures.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminPerformance {
    #[schema(value_type = Object)]
    pub cache: Value,
    #[schema(value_type = Vec<Object>)]
    pub routes: Vec<Value>,
    #[schema(value_type = Object)]
    pub sweep: Value,
    pub in_flight: i64,
}

/// A background job as the admin API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: i64,
    pub kind: String,
    /// `queued`, `running`, `done` or `failed`.
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub run_at: i64,
    pub finished_at: Option<i64>,
    pub worker: Option<String>,
}

/// `GET /api/admin/jobs` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobQueue {
    pub success: bool,
    /// Per kind: `kind` and the count in each state.
    #[schema(value_type = Vec<Object>)]
    pub counts: Vec<Value>,
    /// Counts in each state over all kinds.
    #[schema(value_type = Object)]
    pub totals: Value,
    pub oldest_runnable_age_ms: Option<i64>,
    pub recent_failures: Vec<Job>,
    pub retrying: Vec<Job>,
    pub concurrency: usize,
}

/// `GET /api/admin/jobs/{id}` and its retry's answer.
#[derive(Serialize, ToSchema)]
pub struct OneJob {
    pub success: bool,
    pub job: Job,
}

/// `GET /health` answer (200 healthy, 503 with `failing` when a required dependency is down).
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `OK` or `ERROR`.
    pub status: String,
    pub uptime: f64,
    pub timestamp: i64,
    pub version: String,
    /// `connected` or `disconnected`.
    pub database: String,
    /// `embedded` or `postgres`.
    pub store: String,
    /// `fs` or `s3`.
    pub storage: String,
    /// Per check: `status` (`ok`, `full`, `error`) and `latencyMs`.
    #[schema(value_type = Object)]
    pub checks: Value,
    /// Present with Redis configured: `connected` or `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// Where rate limits are counted: `off`, `memory`, `redis`, `memory (redis unavailable)`.
    #[serde(rename = "rateLimits")]
    pub rate_limits: String,
    /// The checks that failed (503 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<Vec<String>>,
}

/// `GET /api/health` answer (no dependency checks).
#[derive(Serialize, ToSchema)]
pub struct Liveness {
    pub status: String,
    pub uptime: f64,
    pub timestamp: i64,
    pub version: String,
}

/// `GET /ping` answer.
#[derive(Serialize, ToSchema)]
pub struct Pong {
    pub pong: bool,
    pub timestamp: i64,
}

/// `GET /livez` answer.
#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

/// `GET /readyz` answer (200 ready; 503 `not ready` or `draining` with `failing`).
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<Vec<String>>,
}

/// Error answers any API route may give: bad input, an unknown id, a request (or its body)
/// too slow or too large, a rate limit, a dependency that is down.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Input refused: `validation` (with `details`), `invalid_json`, `bad_request`, `bad_body`.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No such route, clip, upload or job. For a clip id the `code` says why it does not open,
    /// as far as the server remembers: `clip_expired`, `clip_consumed`, `clip_deleted`, else
    /// `clip_not_found` (never seen, or ended longer ago than `sweep.tombstone_retention`).
    /// The status stays 404 in every case, as Qopy's clients expect.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// `timeout`: the request took longer than the server allows; `body_timeout`: its body
    /// stopped arriving for `server.body_idle_timeout`.
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// `payload_too_large`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// `rate_limited`, with `Retry-After` and `RateLimit-*` headers.
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// `database_unavailable` or `storage_unavailable`, with `Retry-After`: nothing was
    /// changed, try again.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
