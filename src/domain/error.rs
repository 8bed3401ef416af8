//! The domain's one error type: what went wrong in terms a client can act on. `http/error.rs`
//! maps each variant to a status; store and blob failures pass through as internal errors.

use crate::blob::BlobError;
use crate::store::StoreError;

/// Where a bad value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Body,
    Params,
    Query,
    Header,
}

impl Location {
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Body => "body",
            Location::Params => "params",
            Location::Query => "query",
            Location::Header => "header",
        }
    }
}

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub msg: String,
    pub location: Location,
}

impl FieldError {
    pub fn new(path: impl Into<String>, msg: impl Into<String>, location: Location) -> FieldError {
        FieldError { path: path.into(), msg: msg.into(), location }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("upload not found")]
    UploadNotFound,
    #[error("upload already completed")]
    UploadCompleted,
    #[error("upload incomplete")]
    UploadIncomplete { missing: Vec<u32> },
    #[error("assembled size {actual} differs from the declared {declared}")]
    SizeMismatch { declared: u64, actual: u64 },
    #[error("chunk checksum mismatch")]
    ChecksumMismatch,
    #[error("body exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("clip not found")]
    ClipNotFound,
    /// The clip existed and stopped being live for this reason, recently enough that its
    /// tombstone remembers it. Answered like `ClipNotFound` (404), saying why.
    #[error("clip {}", .0.as_str())]
    ClipEnded(crate::store::GoneReason),
    #[error("clip already downloaded")]
    ClipGone,
    #[error("access code required")]
    AccessCodeRequired,
    #[error("access code wrong")]
    AccessCodeInvalid,
    #[error("raw download not allowed")]
    RawNotAllowed,
    #[error("delete token required")]
    DeleteTokenRequired,
    #[error("delete token wrong")]
    DeleteTokenInvalid,
    #[error("range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    /// The client's body broke off or was malformed mid-stream.
    #[error("request body: {0}")]
    BadBody(String),
    /// Blob storage (or the database) is out of space, or the declared size cannot fit.
    #[error("insufficient storage")]
    InsufficientStorage { needed: Option<u64>, free: Option<u64> },
    /// `limits.max_total_storage` would be exceeded.
    #[error("storage limit reached")]
    StorageLimit { limit: u64, used: u64 },
    /// The clip has no thumbnail (not yet, or never: encrypted, one-time, not an image).
    #[error("thumbnail not found")]
    ThumbnailNotFound,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Blob(BlobError),
    #[error("{0}")]
    Internal(String),
}

impl From<BlobError> for DomainError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::RangeNotSatisfiable { size, .. } => DomainError::RangeNotSatisfiable { size },
            // A stream error while writing is the client's body failing.
            BlobError::Source(msg) => DomainError::BadBody(msg),
            BlobError::NoSpace { .. } => DomainError::InsufficientStorage { needed: None, free: None },
            other => DomainError::Blob(other),
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        if e.is_out_of_space() {
            DomainError::InsufficientStorage { needed: None, free: None }
        } else {
            DomainError::Store(e)
        }
    }
}

impl DomainError {
    pub fn invalid(path: &str, msg: &str, location: Location) -> DomainError {
        DomainError::Validation(vec![FieldError::new(path, msg, location)])
    }
}
