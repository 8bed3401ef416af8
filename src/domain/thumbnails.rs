//! Serving a clip's thumbnail: found through the same lookup as the clip (so an expired,
//! consumed or deleted clip has none), behind the clip's access code, and never counted as a
//! download: a one-time or limited clip is not spent by it (one-time clips get no thumbnail at
//! all, and client-encrypted ones cannot have one).

use futures_util::stream::BoxStream;

use super::Deps;
use super::clips::{check_access, lookup};
use super::error::DomainError;
use super::types::{AccessCode, ClipId};
use crate::blob::BlobKey;
use crate::store::ThumbnailRef;

/// An open thumbnail.
pub struct ThumbnailDownload {
    pub thumbnail: ThumbnailRef,
    pub stream: BoxStream<'static, std::io::Result<bytes::Bytes>>,
}

impl ThumbnailDownload {
    /// Strong and stable: a thumbnail's key is unique and its bytes never change.
    pub fn etag(&self) -> String {
        let key = &self.thumbnail.key;
        format!("\"{}\"", key.rsplit('/').next().unwrap_or(key))
    }
}

pub async fn open(deps: &Deps, id: &ClipId, code: Option<&AccessCode>) -> Result<ThumbnailDownload, DomainError> {
    let clip = lookup(deps, id).await?;
    check_access(deps, &clip, code).await?;
    let thumbnail = clip.thumbnail.clone().ok_or(DomainError::ThumbnailNotFound)?;
    let key = BlobKey::parse(&thumbnail.key).map_err(|e| DomainError::Internal(e.to_string()))?;
    match deps.blobs.read(&key, None).await {
        Ok(read) => Ok(ThumbnailDownload { thumbnail, stream: read.stream }),
        Err(crate::blob::BlobError::NotFound) => Err(DomainError::ThumbnailNotFound),
        Err(e) => Err(e.into()),
    }
}
