//! Clips once they exist: lookup of live clips (expired, consumed and deleted ones are
//! invisible, and answered with why while their tombstone is remembered), access-code checks,
//! downloads with the atomic claim for one-time and download-limited clips, early deletion with
//! the delete token, and one-request uploads. A clip that stops being live here (its last
//! download claimed, its sender's delete) leaves its tombstone in the same store write.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use futures_util::stream::BoxStream;

use super::Deps;
use super::access::{constant_time_eq, token_hash};
use super::error::DomainError;
use super::range::{RangeHeader, RangeSpec};
use super::types::{AccessCode, ClipId, ClipKind, Expiry, Filename, MaxDownloads, MimeType, UploadId};
use super::uploads::clip_blob_key;
use crate::blob::{BlobError, BlobStore, Content, Durability};
use crate::cache::Cached;
use crate::store::{ClipRecord, GoneReason, NewClip, Tombstone};

/// A committed clip plus the delete token its creator gets back.
#[derive(Debug, Clone)]
pub struct Completed {
    pub clip: ClipRecord,
    pub delete_token: String,
}

/// The live clip with this id; else `ClipEnded` with the reason while the clip's tombstone is
/// remembered, or `ClipNotFound`. From the cache when it knows, else the store (filling the
/// cache either way). Expiry is checked against the service clock on every read, so a cached
/// entry is never served past its clip's expiry, and a clip that expired but is not yet swept
/// answers `expired` from its own row. A live clip always wins over a tombstone of its code.
pub async fn lookup(deps: &Deps, id: &ClipId) -> Result<Arc<ClipRecord>, DomainError> {
    let now = deps.now();
    let since = deps.limits.remembered_since(now);
    match deps.cache.get(id.as_str()).await {
        Some(Cached::Found(clip)) if clip.expires_at > now => return Ok(clip),
        Some(Cached::Found(clip)) => return Err(not_live(Some(expired(&clip)), since)),
        Some(Cached::Missing(gone)) => return Err(not_live(gone, since)),
        None => {}
    }
    let answer = match deps.store.unretired_clip(id.as_str()).await? {
        Some(clip) if clip.expires_at > now => Cached::Found(Arc::new(clip)),
        Some(clip) => Cached::Missing(Some(expired(&clip))),
        None => match since {
            Some(since) => Cached::Missing(deps.store.tombstone(id.as_str(), since).await?),
            None => Cached::Missing(None),
        },
    };
    metrics::counter!("ferry_cache_lookups_total", "level" => "store", "result" => "read").increment(1);
    deps.cache.fill(id.as_str(), answer.clone()).await;
    match answer {
        Cached::Found(clip) => Ok(clip),
        Cached::Missing(gone) => Err(not_live(gone, since)),
    }
}

/// What an expired clip's tombstone says (or will, once the sweep removes it).
fn expired(clip: &ClipRecord) -> Tombstone {
    Tombstone { reason: GoneReason::Expired, at: clip.expires_at }
}

/// The answer for a code that opens nothing: why, if that is remembered (the tombstone is
/// younger than the retention), else plain not found.
fn not_live(gone: Option<Tombstone>, since: Option<i64>) -> DomainError {
    match (gone, since) {
        (Some(t), Some(since)) if t.at > since => DomainError::ClipEnded(t.reason),
        _ => DomainError::ClipNotFound,
    }
}

/// Refuse unless the clip is unprotected or `code` matches.
pub async fn check_access(deps: &Deps, clip: &ClipRecord, code: Option<&AccessCode>) -> Result<(), DomainError> {
    let Some(stored) = &clip.access_code_hash else {
        return Ok(());
    };
    let Some(code) = code else {
        return Err(DomainError::AccessCodeRequired);
    };
    if deps.access.verify(code, stored).await? { Ok(()) } else { Err(DomainError::AccessCodeInvalid) }
}

/// Insert `new` under a fresh random code, retrying on the (rare) collision with a live clip;
/// when the upload already produced a clip, that clip is returned instead. Its follow-up jobs
/// (`clip.created`, a plaintext image's thumbnail) commit with it.
pub async fn insert_with_fresh_code(
    deps: &Deps,
    mut new: NewClip,
    quick: bool,
    plaintext: bool,
) -> Result<ClipRecord, DomainError> {
    for _ in 0..16 {
        new.code = ClipId::generate(quick).as_str().to_string();
        let now = deps.now();
        let follow = deps.followups.created(plaintext, now);
        let follows = follow.is_some();
        if let Some(clip) = deps.store.insert_clip(&new, now, follow).await? {
            if follows {
                deps.followups.wake();
            }
            // The code may be remembered as unknown (here or in other instances).
            deps.cache.invalidate(&clip.code).await;
            return Ok(clip);
        }
        if let Some(upload) = &new.upload_id
            && let Some(existing) = deps.store.clip_by_upload(upload).await?
        {
            return Ok(existing);
        }
    }
    Err(DomainError::Internal("no free clip code after 16 tries".into()))
}

/// How a download asks for bytes.
#[derive(Debug, Clone, Default)]
pub struct DownloadRequest {
    pub access_code: Option<AccessCode>,
    pub range: Option<RangeHeader>,
    /// `If-Range`: serve the range only while the entity tag still matches.
    pub if_range: Option<String>,
    /// The curl-friendly GET route: refuses protected, one-time and limited clips, because a
    /// link preview or crawler must not spend them.
    pub raw: bool,
}

/// An open download.
pub struct Download {
    pub clip: Arc<ClipRecord>,
    /// `Some` when a range is being served (206).
    pub range: Option<std::ops::Range<u64>>,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

impl Download {
    pub fn etag(&self) -> String {
        etag(&self.clip)
    }
}

pub fn etag(clip: &ClipRecord) -> String {
    format!("\"{}\"", clip.sha256)
}

fn claims(clip: &ClipRecord) -> bool {
    clip.one_time || clip.max_downloads.is_some()
}

pub async fn open_download(deps: &Deps, id: &ClipId, req: DownloadRequest) -> Result<Download, DomainError> {
    let mut clip = lookup(deps, id).await?;
    if req.raw && (claims(&clip) || clip.access_code_hash.is_some()) {
        return Err(DomainError::RawNotAllowed);
    }
    check_access(deps, &clip, req.access_code.as_ref()).await?;
    let size = clip.size as u64;
    let mut range = None;
    // Spending clips are always served whole: a range would spend a download on a fragment.
    if !claims(&clip)
        && let Some(RangeHeader::Single(spec)) = req.range
        && req.if_range.as_deref().is_none_or(|tag| tag == etag(&clip))
    {
        range = Some(resolve(spec, size)?);
    }
    let content = content_of(&clip)?;
    // Open the bytes before claiming: whoever wins a claim already holds them, even if the
    // last winner's finished download removes the blob a moment later.
    let read = match deps.blobs.read_content(&content, range.clone()).await {
        Ok(read) => read,
        Err(BlobError::NotFound) if claims(&clip) => return Err(DomainError::ClipGone),
        Err(BlobError::NotFound) => {
            tracing::error!("live clip has no blob");
            return Err(DomainError::ClipNotFound);
        }
        Err(e) => return Err(e.into()),
    };
    let mut last = false;
    if claims(&clip) {
        // One statement decides who gets it, before any byte is sent.
        let now = deps.now();
        let remember = deps.limits.tombstones();
        let claimed = deps.store.claim_download(clip.id, now, remember, deps.followups.claimed(now)).await?;
        let Some(claimed) = claimed else {
            deps.cache.invalidate(&clip.code).await;
            return Err(DomainError::ClipGone);
        };
        clip = Arc::new(claimed);
        last = clip.consumed_at.is_some();
        if deps.followups.webhooks() {
            deps.followups.wake();
        }
        // Gone (or one download fewer left, which info shows) for every instance's cache now,
        // not at the TTL.
        deps.cache.invalidate(&clip.code).await;
    } else if deps.followups.webhooks() {
        deps.enqueue_quietly(deps.followups.downloaded(&clip, deps.now())).await;
    }
    // The last permitted download removes the bytes however the transfer ends. Content in
    // parts is opened part by part, so where several downloads may still be streaming (a
    // download limit above one) it is left to the sweep of retired clips, after their grace.
    let sole_reader = clip.one_time || matches!(content, Content::Single(_));
    let stream = if last && sole_reader {
        Box::pin(DeleteWhenDone { inner: read.stream, blobs: deps.blobs.clone(), content: Some(content) })
    } else {
        read.stream
    };
    Ok(Download { clip, range, stream })
}

/// Where a clip's bytes are, from its row.
pub fn content_of(clip: &ClipRecord) -> Result<Content, DomainError> {
    Content::from_row(&clip.blob_key, clip.parts.as_deref()).map_err(|e| DomainError::Internal(e.to_string()))
}

fn resolve(spec: RangeSpec, size: u64) -> Result<std::ops::Range<u64>, DomainError> {
    spec.resolve(size).ok_or(DomainError::RangeNotSatisfiable { size })
}

/// Streams the inner body, then deletes the blob when dropped (finished or abandoned).
struct DeleteWhenDone {
    inner: BoxStream<'static, std::io::Result<Bytes>>,
    blobs: BlobStore,
    content: Option<Content>,
}

impl Stream for DeleteWhenDone {
    type Item = std::io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for DeleteWhenDone {
    fn drop(&mut self) {
        if let Some(content) = self.content.take() {
            let blobs = self.blobs.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = blobs.delete_content(&content).await {
                        tracing::warn!(error = %e, "could not remove a consumed clip's blob; the sweep will");
                    }
                });
            }
        }
    }
}

/// Retire a clip early with its delete token.
pub async fn delete(deps: &Deps, id: &ClipId, token: Option<&str>) -> Result<(), DomainError> {
    let clip = lookup(deps, id).await?;
    let Some(token) = token else {
        return Err(DomainError::DeleteTokenRequired);
    };
    if !constant_time_eq(token_hash(token).as_bytes(), clip.delete_token_hash.as_bytes()) {
        return Err(DomainError::DeleteTokenInvalid);
    }
    let now = deps.now();
    let remember = deps.limits.tombstones();
    let retired = deps.store.mark_clip_deleted(clip.id, now, remember, deps.followups.deleted(&clip, now)).await?;
    deps.cache.invalidate(&clip.code).await;
    if retired {
        if deps.followups.webhooks() {
            deps.followups.wake();
        }
        deps.blobs.delete_content(&content_of(&clip)?).await?;
        delete_thumbnail(deps, &clip).await;
    }
    Ok(())
}

/// Remove a retired clip's thumbnail, best effort (the sweep removes what is left).
pub async fn delete_thumbnail(deps: &Deps, clip: &ClipRecord) {
    if let Some(thumb) = &clip.thumbnail
        && let Ok(key) = crate::blob::BlobKey::parse(&thumb.key)
        && let Err(e) = deps.blobs.delete(&key).await
    {
        tracing::warn!(error = %e, "could not remove a deleted clip's thumbnail; the sweep will");
    }
}

/// A validated one-request upload.
#[derive(Debug, Clone)]
pub struct OneShotRequest {
    pub filename: Filename,
    pub mime_type: Option<MimeType>,
    pub expiry: Expiry,
    pub one_time: bool,
    pub max_downloads: Option<MaxDownloads>,
    pub access_code: Option<AccessCode>,
    pub content_length: Option<u64>,
}

/// Stream a whole body into a new file clip.
pub async fn create_one_shot<S, E>(deps: &Deps, req: OneShotRequest, body: S) -> Result<Completed, DomainError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let limit = deps.limits.max_upload;
    if req.content_length.is_some_and(|n| n > limit) {
        return Err(DomainError::TooLarge { limit });
    }
    if let Some(n) = req.content_length {
        super::uploads::refuse_if_no_room(deps, n).await?;
    } else {
        deps.usage.check(0)?;
    }
    let unique = UploadId::generate();
    let key = clip_blob_key(unique.as_str());
    let mut writer = deps.blobs.sized_writer(&key, true, req.content_length).await?;
    let mut body = std::pin::pin!(body);
    while let Some(item) = futures_util::StreamExt::next(&mut body).await {
        let bytes = item.map_err(|e| DomainError::BadBody(e.to_string()))?;
        if writer.written() + bytes.len() as u64 > limit {
            return Err(DomainError::TooLarge { limit });
        }
        if req.content_length.is_none() {
            deps.usage.check(writer.written() + bytes.len() as u64)?;
        }
        writer.write(bytes).await?;
    }
    let meta = writer.commit(Durability::Fsync).await?;
    metrics::counter!("ferry_upload_bytes_total").increment(meta.size);
    deps.usage.add(meta.size);
    let access_code_hash = match &req.access_code {
        Some(code) => Some(deps.access.hash(code).await?),
        None => None,
    };
    let delete_token = super::types::random_token();
    let now = deps.now();
    let new = NewClip {
        code: String::new(),
        kind: ClipKind::File.as_str().into(),
        blob_key: key.as_str().into(),
        filename: Some(req.filename.as_str().into()),
        mime_type: Some(req.mime_type.unwrap_or_else(MimeType::octet_stream).as_str().into()),
        size: meta.size as i64,
        sha256: meta.sha256.expect("a hashing writer reports its SHA-256"),
        created_at: now,
        expires_at: now + deps.limits.expiry(req.expiry).millis(),
        one_time: req.one_time,
        max_downloads: req.max_downloads.map(|m| m.0 as i32),
        access_code_hash,
        quick_share: false,
        delete_token_hash: token_hash(&delete_token),
        upload_id: None,
        client: None,
        parts: None,
    };
    match insert_with_fresh_code(deps, new, false, true).await {
        Ok(clip) => Ok(Completed { clip, delete_token }),
        Err(e) => {
            let _ = deps.blobs.delete(&key).await;
            Err(e)
        }
    }
}
