//! Chunked uploads: initiate a session, stream chunks into blob storage (any order, in
//! parallel, replaceable until completion), and complete by committing the clip row. Each
//! chunk is written once, to a blob unique to that attempt, fdatasynced, and stays where it
//! landed: the clip's content is the ordered list of its chunk blobs (`blob::Content`), so
//! completing moves no bytes. What complete still does: check every chunk's size on disk and
//! fsync it (in parallel under `assembly_concurrency`), fsync the chunk directory, and finish
//! the whole-file SHA-256, most of which the hash frontier computed while chunks arrived.
//! Completion is locked per upload (in process) and claimed in the store (across processes),
//! so it is idempotent. Sizes: the maximums are plaintext bytes for browser clips (`sizes`), so
//! initiate allows what a plaintext of the maximum can become once encrypted, and complete
//! holds the stored bytes to the exact rule of the format the client declares.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::Digest as _;

use super::Deps;
use super::clips::{self, Completed};
use super::error::{DomainError, Location};
use super::sizes;
use super::types::{
    AccessCode, ChunkIndex, ClipKind, EncryptedMeta, Expiry, Filename, FormatVersion, MaxDownloads, MimeType,
    StreamHeader, UploadId,
};
use crate::blob::{BlobKey, BlobWriter, Content, Durability, Part};
use crate::store::{ChunkRecord, ClientFormat, NewClip, UploadRecord};

/// A validated initiate request.
#[derive(Debug, Clone)]
pub struct InitiateRequest {
    pub filename: Filename,
    pub filesize: Option<u64>,
    pub total_chunks: Option<u32>,
    pub mime_type: Option<MimeType>,
    pub expiry: Expiry,
    pub one_time: bool,
    pub has_password: bool,
    pub quick_share: bool,
    pub is_text: bool,
    pub kind: ClipKind,
    pub max_downloads: Option<MaxDownloads>,
}

#[derive(Debug, Clone)]
pub struct Initiated {
    pub upload_id: UploadId,
    pub chunk_size: u64,
    pub total_chunks: u32,
    pub expires_at: i64,
}

/// What the client may say at completion.
#[derive(Debug, Clone, Default)]
pub struct CompleteRequest {
    pub access_code: Option<AccessCode>,
    pub kind: Option<ClipKind>,
    /// ferry's clients say how they encrypted (FORMAT.md); Qopy's say nothing (format 3).
    pub format: Option<FormatVersion>,
    pub meta: Option<EncryptedMeta>,
}

#[derive(Debug, Clone)]
pub struct UploadStatus {
    pub upload_id: String,
    pub status: String,
    pub total_chunks: u32,
    /// The acknowledged chunks in index order, with the size and SHA-256 recorded for each, so
    /// a client resuming can prove its file unchanged (FORMAT.md).
    pub chunks: Vec<ChunkRecord>,
}

/// How stale a session's `last_activity` may get before a chunk stamps it again.
const TOUCH_EVERY_MS: i64 = 30_000;

/// A fresh blob leaf for one attempt at chunk `index`: `<index>.<random>`, so two attempts
/// (a retry racing a stalled original, two instances) never write the same blob.
fn attempt_leaf(index: u32) -> String {
    format!("{index}.{:016x}", rand::random::<u64>())
}

/// Where an upload's chunks are; after completion, where its clip's parts are.
pub fn chunk_prefix(id: &str) -> BlobKey {
    BlobKey::parse(&format!("chunks/{id}")).expect("upload ids make valid keys")
}

/// Where a clip's bytes live: unique per upload, never reused by a later clip with the same code.
pub fn clip_blob_key(unique: &str) -> BlobKey {
    BlobKey::parse(&format!("clips/{}/{unique}", &unique[..2])).expect("hex ids make valid keys")
}

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

pub async fn initiate(deps: &Deps, req: InitiateRequest) -> Result<Initiated, DomainError> {
    let limits = deps.limits;
    let plain_max = limits.max_for(req.kind);
    // The format is declared only at complete: until then, allow what a plaintext of the
    // maximum can become once encrypted; complete applies the exact rule.
    let max = sizes::ciphertext_ceiling(req.kind, plain_max);
    if let Some(size) = req.filesize
        && size > max
    {
        return Err(DomainError::invalid(
            "filesize",
            &format!(
                "exceeds the largest {} upload this server takes: {max} bytes (a maximum of {plain_max} bytes \
                 of content, plus what encrypting it adds)",
                req.kind.as_str()
            ),
            Location::Body,
        ));
    }
    if req.quick_share && req.has_password {
        return Err(DomainError::invalid(
            "hasPassword",
            "quick share clips cannot have an access code",
            Location::Body,
        ));
    }
    // Clients may cut chunks smaller than the chunk size (V4 fills a chunk with whole records,
    // 98.8 % of it at the default size): a file at the maximum size may use chunks of half the
    // chunk size on average.
    let max_chunks = div_ceil(max, (limits.chunk_size / 2).max(1)).max(1);
    let derived = req.filesize.map(|s| div_ceil(s, limits.chunk_size).max(1)).unwrap_or(1);
    let total = req.total_chunks.map(u64::from).unwrap_or(derived);
    if total == 0 || total > max_chunks {
        return Err(DomainError::invalid(
            "totalChunks",
            &format!("must be between 1 and {max_chunks} for this server's chunk size and maximum size"),
            Location::Body,
        ));
    }
    if let Some(size) = req.filesize
        && size > total * (limits.chunk_size + super::Limits::CHUNK_SLACK)
    {
        return Err(DomainError::invalid(
            "totalChunks",
            "is too small for filesize at this chunk size",
            Location::Body,
        ));
    }
    if let Some(size) = req.filesize {
        refuse_if_no_room(deps, size).await?;
    }
    // Quick shares always live five minutes, whatever the client asked.
    let expiry = if req.quick_share { Expiry::Min5 } else { limits.expiry(req.expiry) };
    let now = deps.now();
    let id = UploadId::generate();
    let record = UploadRecord {
        id: id.as_str().to_string(),
        filename: req.filename.as_str().to_string(),
        filesize: req.filesize.map(|s| s as i64),
        total_chunks: total as i32,
        chunk_size: limits.chunk_size as i64,
        mime_type: req.mime_type.map(|m| m.as_str().to_string()),
        kind: req.kind.as_str().to_string(),
        expiry_ms: expiry.millis(),
        one_time: req.one_time,
        has_password: req.has_password,
        quick_share: req.quick_share,
        is_text: req.is_text,
        max_downloads: req.max_downloads.map(|m| m.0 as i32),
        status: "uploading".into(),
        clip_code: None,
        created_at: now,
        last_activity: now,
        delete_token: super::types::random_token(),
    };
    deps.store.insert_upload(&record).await?;
    Ok(Initiated {
        upload_id: id,
        chunk_size: limits.chunk_size,
        total_chunks: total as u32,
        expires_at: now + expiry.millis(),
    })
}

/// Refuse up front what cannot fit in the free space of blob storage (when it can tell), or
/// would take storage in use past `limits.max_total_storage`.
pub async fn refuse_if_no_room(deps: &Deps, size: u64) -> Result<(), DomainError> {
    deps.usage.check(size)?;
    match deps.blobs.available().await {
        Some(free) if size > free => Err(DomainError::InsufficientStorage { needed: Some(size), free: Some(free) }),
        _ => Ok(()),
    }
}

async fn session(deps: &Deps, id: &UploadId) -> Result<UploadRecord, DomainError> {
    deps.store.upload(id.as_str()).await?.ok_or(DomainError::UploadNotFound)
}

/// A chunk being received: bytes go to a temp blob as they arrive; nothing is recorded until
/// `finish`, and dropping it discards the bytes.
pub struct ChunkSink {
    writer: BlobWriter,
    leaf: String,
    upload_id: UploadId,
    index: u32,
    total: u32,
    limit: u64,
}

/// Accepted chunk plus the session's progress.
#[derive(Debug, Clone)]
pub struct ReceivedChunk {
    pub index: u32,
    pub uploaded: u32,
    pub total: u32,
}

/// Start receiving chunk `index`; refuses at once when the session cannot take it or the
/// declared length is already too large.
/// `hashed`: hash while writing (the client sent a checksum to verify); otherwise the chunk's
/// SHA-256 is computed only when a status asks for it, so an upload's bytes are hashed once
/// (by the hash frontier) on the common path.
pub async fn open_chunk(
    deps: &Deps,
    id: &UploadId,
    index: ChunkIndex,
    content_length: Option<u64>,
    hashed: bool,
) -> Result<ChunkSink, DomainError> {
    let s = session(deps, id).await?;
    if s.status != "uploading" {
        return Err(DomainError::UploadCompleted);
    }
    if index.0 >= s.total_chunks as u32 {
        return Err(DomainError::invalid(
            "chunkNumber",
            &format!("must be less than totalChunks ({})", s.total_chunks),
            Location::Params,
        ));
    }
    let limit = s.chunk_size as u64 + super::Limits::CHUNK_SLACK;
    if content_length.is_some_and(|n| n > limit) {
        return Err(DomainError::TooLarge { limit });
    }
    // An upload that declared its size was checked against the storage limit at initiate.
    if s.filesize.is_none() {
        deps.usage.check(content_length.unwrap_or(limit))?;
    }
    // Activity keeps a session from being swept as abandoned; stamping it at most every
    // TOUCH_EVERY_MS keeps the session row out of every chunk's write.
    let now = deps.now();
    if s.last_activity < now - TOUCH_EVERY_MS {
        deps.store.touch_upload(id.as_str(), now, now - TOUCH_EVERY_MS).await?;
    }
    let leaf = attempt_leaf(index.0);
    let key = Content::part_key(&chunk_prefix(id.as_str()), &leaf);
    let writer = deps.blobs.sized_writer(&key, hashed, content_length).await?;
    Ok(ChunkSink { writer, leaf, upload_id: id.clone(), index: index.0, total: s.total_chunks as u32, limit })
}

impl ChunkSink {
    /// Append bytes; fails (and the chunk is discarded on drop) past the size limit.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), DomainError> {
        if self.writer.written() + bytes.len() as u64 > self.limit {
            return Err(DomainError::TooLarge { limit: self.limit });
        }
        Ok(self.writer.write(bytes).await?)
    }

    /// Drain a body stream into the chunk.
    pub async fn write_stream<S, E>(&mut self, stream: S) -> Result<(), DomainError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let bytes = item.map_err(|e| DomainError::BadBody(e.to_string()))?;
            self.write(bytes).await?;
        }
        Ok(())
    }

    /// Verify the optional checksum, make the chunk durable under its attempt's key and
    /// record it (replacing an earlier attempt, whose blob is then removed).
    pub async fn finish(self, deps: &Deps, expected_sha256: Option<&str>) -> Result<ReceivedChunk, DomainError> {
        let sha = self.writer.sha256_hex();
        if let Some(expected) = expected_sha256
            && !sha.as_deref().is_some_and(|sha| expected.eq_ignore_ascii_case(sha))
        {
            return Err(DomainError::ChecksumMismatch);
        }
        let id = self.upload_id.as_str().to_string();
        let prefix = chunk_prefix(&id);
        let key = Content::part_key(&prefix, &self.leaf);
        let meta = self.writer.commit(Durability::Data).await?;
        let recorded =
            deps.store.record_chunk(&id, self.index, meta.size, sha.as_deref(), &self.leaf, deps.now()).await;
        let recorded = match recorded {
            Ok(Some(recorded)) => recorded,
            other => {
                // Not recorded: the bytes must not linger.
                let _ = deps.blobs.delete(&key).await;
                other?;
                return Err(DomainError::UploadCompleted);
            }
        };
        if let Some(old) = recorded.replaced
            && old != self.leaf
        {
            // Best effort: an attempt lost in a race is removed with the upload or the clip.
            let _ = deps.blobs.delete(&Content::part_key(&prefix, &old)).await;
        }
        deps.frontiers.arrived(deps, prefix, &id, self.index, self.leaf.clone(), meta.size);
        metrics::counter!("ferry_upload_chunks_total").increment(1);
        metrics::counter!("ferry_upload_bytes_total").increment(meta.size);
        deps.usage.add(meta.size);
        Ok(ReceivedChunk { index: self.index, uploaded: recorded.uploaded, total: self.total })
    }
}

/// The session and its chunks, each with its SHA-256: those not hashed on arrival are hashed
/// now from disk (in parallel under `assembly_concurrency`) and recorded, once.
pub async fn status(deps: &Deps, id: &UploadId) -> Result<UploadStatus, DomainError> {
    let s = session(deps, id).await?;
    let chunks = deps.store.chunks(id.as_str()).await?;
    let prefix = chunk_prefix(id.as_str());
    let chunks = futures_util::stream::iter(chunks)
        .map(|mut c| {
            let prefix = prefix.clone();
            async move {
                if c.sha256.is_none() {
                    let key = Content::part_key(&prefix, &c.leaf);
                    match deps.blobs.hash_into(&key, sha2::Sha256::new()).await {
                        Ok((hasher, n)) if n == c.size as u64 => {
                            let sha = hex::encode(sha2::Digest::finalize(hasher));
                            deps.store.set_chunk_sha256(id.as_str(), c.index as u32, &c.leaf, &sha).await?;
                            c.sha256 = Some(sha);
                        }
                        // Replaced or removed meanwhile (a complete took it, or a newer attempt):
                        // listed without a hash, as a chunk the client must not rely on.
                        Ok(_) | Err(crate::blob::BlobError::NotFound) => {}
                        Err(e) => return Err(DomainError::from(e)),
                    }
                }
                Ok::<_, DomainError>(c)
            }
        })
        .buffered(deps.limits.assembly_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UploadStatus { upload_id: s.id, status: s.status, total_chunks: s.total_chunks as u32, chunks })
}

pub async fn cancel(deps: &Deps, id: &UploadId) -> Result<(), DomainError> {
    let s = session(deps, id).await?;
    if s.status != "uploading" {
        return Err(DomainError::UploadCompleted);
    }
    deps.store.delete_upload(id.as_str()).await?;
    deps.frontiers.forget(id.as_str());
    deps.blobs.delete_prefix(&chunk_prefix(id.as_str())).await?;
    Ok(())
}

/// Assemble and commit the clip, or return the clip an earlier call made.
pub async fn complete(deps: &Deps, id: &UploadId, req: CompleteRequest) -> Result<Completed, DomainError> {
    let _turn = deps.complete_locks.lock(id.as_str()).await;
    // Another process may hold the assembly; wait for it within a bound.
    for _ in 0..600 {
        let now = deps.now();
        if let Some(s) = deps.store.begin_assembly(id.as_str(), now, now - deps.limits.stale_assembly_ms).await? {
            // The assembly runs on as its own task: a request cut by its deadline or a client
            // that gave up does not throw the work away, and the client's next complete finds
            // it assembling, then complete. It renews its claim while it runs, so only a dead
            // process's assembly is taken over, and it is bounded by the longer request deadline
            // (what the sweep assumes of every write and assembly).
            let (deps, req) = (deps.clone(), req.clone());
            let task = deps.assemblies.clone().spawn(async move {
                let claim = std::sync::atomic::AtomicI64::new(now);
                let work = tokio::time::timeout(deps.limits.assembly_deadline, assemble(&deps, &s, &req));
                let result = tokio::select! {
                    r = work => r.unwrap_or_else(|_| Err(DomainError::Internal("the assembly ran past its deadline".into()))),
                    never = keep_assembly(&deps, &s.id, &claim) => match never {},
                };
                if result.is_err() {
                    let claim = claim.load(std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = deps.store.abort_assembly(s.id.as_str(), claim, deps.now()).await {
                        tracing::warn!(error = %e, "could not give back a failed assembly; it is taken over once stale");
                    }
                }
                result
            });
            return task.await.map_err(|e| DomainError::Internal(format!("the assembly task failed: {e}")))?;
        }
        let s = session(deps, id).await?;
        match s.status.as_str() {
            "complete" => {
                let clip = deps.store.clip_by_upload(id.as_str()).await?.ok_or(DomainError::ClipNotFound)?;
                return Ok(Completed { clip, delete_token: s.delete_token });
            }
            "assembling" => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            _ => {} // it went back to uploading between our two reads: claim again
        }
    }
    Err(DomainError::Internal("upload stayed in assembly for a minute".into()))
}

/// Renew an assembly's claim every quarter of the stale time, for as long as it runs; `claim`
/// holds the stamp last written. Once another process has taken the claim over (this one was
/// presumed dead), renewing stops: the clip row is unique per upload, so the two attempts still
/// make one clip.
async fn keep_assembly(deps: &Deps, id: &str, claim: &std::sync::atomic::AtomicI64) -> std::convert::Infallible {
    use std::sync::atomic::Ordering::Relaxed;
    let every = std::time::Duration::from_millis((deps.limits.stale_assembly_ms / 4).max(1) as u64);
    loop {
        tokio::time::sleep(every).await;
        let now = deps.now();
        match deps.store.touch_assembly(id, claim.load(Relaxed), now).await {
            Ok(true) => claim.store(now, Relaxed),
            Ok(false) => {
                tracing::warn!("an assembly still running was taken over by another; it no longer renews its claim");
                return std::future::pending().await;
            }
            Err(e) => tracing::warn!(error = %e, "could not renew an assembly's claim"),
        }
    }
}

async fn assemble(deps: &Deps, s: &UploadRecord, req: &CompleteRequest) -> Result<Completed, DomainError> {
    if s.quick_share && req.access_code.is_some() {
        return Err(DomainError::invalid(
            "accessCodeHash",
            "quick share clips cannot have an access code",
            Location::Body,
        ));
    }
    if s.has_password && req.access_code.is_none() {
        return Err(DomainError::invalid(
            "accessCodeHash",
            "is required because the upload was initiated with hasPassword",
            Location::Body,
        ));
    }
    let chunks = deps.store.chunks(&s.id).await?;
    let missing: Vec<u32> =
        (0..s.total_chunks as u32).filter(|i| !chunks.iter().any(|c| c.index as u32 == *i)).collect();
    if !missing.is_empty() {
        return Err(DomainError::UploadIncomplete { missing });
    }
    let kind = req.kind.unwrap_or(if s.kind == "text" { ClipKind::Text } else { ClipKind::File });
    let total: u64 = chunks.iter().map(|c| c.size as u64).sum();
    if let Some(declared) = s.filesize
        && declared as u64 != total
    {
        return Err(DomainError::SizeMismatch { declared: declared as u64, actual: total });
    }
    let (client, header) = client_format(deps, s, req, &chunks).await?;
    within_limit(kind, req.format, header.as_ref(), total, deps.limits.max_for(kind))?;

    let assembly_started = std::time::Instant::now();
    let prefix = chunk_prefix(&s.id);
    // Every chunk must be on disk at its recorded size, and durable before the row commits.
    let blobs = deps.blobs.clone();
    let checked: Vec<(u32, Option<u64>, u64)> = futures_util::stream::iter(chunks.iter().cloned())
        .map(|c| {
            let (blobs, key) = (blobs.clone(), Content::part_key(&prefix, &c.leaf));
            async move { Ok::<_, DomainError>((c.index as u32, blobs.sync(&key).await?, c.size as u64)) }
        })
        .buffer_unordered(deps.limits.assembly_concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let mut lost: Vec<u32> = checked.iter().filter(|(_, on_disk, size)| *on_disk != Some(*size)).map(|c| c.0).collect();
    if !lost.is_empty() {
        // Lost or torn on disk: ask the client to send those again.
        lost.sort_unstable();
        for index in &lost {
            deps.store.forget_chunk(&s.id, *index).await?;
        }
        return Err(DomainError::UploadIncomplete { missing: lost });
    }
    deps.blobs.sync_prefix(&prefix).await?;
    let parts = Content::Parts {
        prefix: prefix.clone(),
        parts: chunks.iter().map(|c| Part { leaf: c.leaf.clone(), size: c.size as u64 }).collect(),
    };
    // On the filesystem the parts are the content; on S3 they become one object, copied
    // server-side, under a key fresh to this attempt (a crashed attempt's object is an orphan
    // the reconcile removes, never one a later attempt writes again).
    // The hash's tail and the server-side copy overlap: neither needs the other.
    let dest = clip_blob_key(UploadId::generate().as_str());
    let (whole, content) = tokio::join!(
        deps.frontiers.finish(&deps.blobs, &prefix, &s.id, &chunks),
        deps.blobs.assemble(parts, &dest, deps.limits.assembly_concurrency),
    );
    let (whole, content) = (whole?, content?);
    let assembled = matches!(content, Content::Single(_));
    metrics::histogram!("ferry_assembly_seconds").record(assembly_started.elapsed().as_secs_f64());
    metrics::counter!("ferry_assembly_hashed_bytes_total").increment(whole.hashed_at_finish);

    let access_code_hash = match &req.access_code {
        Some(code) => Some(deps.access.hash(code).await?),
        None => None,
    };
    let now = deps.now();
    let new = NewClip {
        code: String::new(),
        kind: kind.as_str().into(),
        blob_key: match &content {
            Content::Single(key) => key.as_str().into(),
            Content::Parts { prefix, .. } => prefix.as_str().into(),
        },
        filename: Some(s.filename.clone()),
        mime_type: s.mime_type.clone(),
        size: total as i64,
        sha256: whole.sha256,
        created_at: now,
        expires_at: now + s.expiry_ms,
        one_time: s.one_time,
        max_downloads: s.max_downloads,
        access_code_hash,
        quick_share: s.quick_share,
        delete_token_hash: super::access::token_hash(&s.delete_token),
        upload_id: Some(s.id.clone()),
        client,
        parts: content.parts_column(),
    };
    // On an error the assembled object stays: the insert may have committed with only its
    // answer lost, and a retry then returns that row. An object no row owns goes with the
    // reconcile.
    let clip = clips::insert_with_fresh_code(deps, new, s.quick_share, false).await?;
    deps.store.mark_upload_complete(&s.id, &clip.code, now).await?;
    if assembled {
        if let Content::Single(key) = &content
            && clip.blob_key != key.as_str()
        {
            // An earlier attempt's clip won: this attempt's object is a duplicate.
            if let Err(e) = deps.blobs.delete(key).await {
                tracing::warn!(error = %e, "could not remove a duplicate assembled object; the reconcile will");
            }
        }
        // The clip has an object of its own: the chunks are no longer needed.
        if clip.blob_key != prefix.as_str()
            && let Err(e) = deps.blobs.delete_prefix(&prefix).await
        {
            tracing::warn!(error = %e, "could not remove assembled chunks; the sweep will");
        }
    } else {
        remove_strays(deps, &content).await;
    }
    Ok(Completed { clip, delete_token: s.delete_token.clone() })
}

/// Attempts that lost a race for their index are not part of the clip: remove them now (they
/// would otherwise go only with the clip).
async fn remove_strays(deps: &Deps, content: &Content) {
    let Content::Parts { prefix, parts } = content else { return };
    let keep: std::collections::HashSet<BlobKey> = parts.iter().map(|p| Content::part_key(prefix, &p.leaf)).collect();
    match deps.blobs.list(prefix.as_str()).await {
        Ok(all) => {
            let strays: Vec<BlobKey> = all.into_iter().filter(|k| !keep.contains(k)).collect();
            if !strays.is_empty()
                && let Err(e) = deps.blobs.delete_many(strays).await
            {
                tracing::warn!(error = %e, "could not remove superseded chunk attempts");
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list chunk attempts"),
    }
}

/// Refuse (413) stored bytes beyond the maximum `max`, which counts plaintext where the client
/// declared how it encrypted: a V4 stream's plaintext follows exactly from its length and
/// record size; a V3 text may be as long as the longest blob a text of `max` bytes makes.
/// Anything else (Qopy's clients, curl, plain uploads) is held to `max` stored bytes.
fn within_limit(
    kind: ClipKind,
    format: Option<FormatVersion>,
    header: Option<&StreamHeader>,
    total: u64,
    max: u64,
) -> Result<(), DomainError> {
    let fits = match (format, header, kind) {
        (Some(FormatVersion::V4), Some(header), _) => match sizes::v4_plaintext_len(total, header.record_log2()) {
            Some(plain) => plain <= max,
            None => {
                return Err(DomainError::invalid(
                    "format",
                    &format!("{total} bytes is not the length of any V4 stream with this record size"),
                    Location::Body,
                ));
            }
        },
        (Some(FormatVersion::V3), _, ClipKind::Text) => total <= sizes::v3_text_max_blob(max),
        _ => total <= max,
    };
    if fits { Ok(()) } else { Err(DomainError::TooLarge { limit: max }) }
}

/// What the client declared about its encryption, checked against the stored bytes: a V4
/// stream must start with a V4 header, which is kept (it is public: salt and nonce prefix) so
/// a reader can open the metadata before the download that may spend the clip. Also the
/// parsed header, whose record size the size rule needs.
async fn client_format(
    deps: &Deps,
    s: &UploadRecord,
    req: &CompleteRequest,
    chunks: &[ChunkRecord],
) -> Result<(Option<ClientFormat>, Option<StreamHeader>), DomainError> {
    let meta = req.meta.clone().map(EncryptedMeta::into_string);
    let header = match req.format {
        None | Some(FormatVersion::V3) if meta.is_some() => {
            return Err(DomainError::invalid("meta", "is only taken with format 4", Location::Body));
        }
        None => return Ok((None, None)),
        Some(FormatVersion::V3) => None,
        Some(FormatVersion::V4) => {
            let range = Some(0..StreamHeader::LEN as u64);
            let first_leaf = chunks.first().map(|c| c.leaf.as_str()).unwrap_or("0");
            let mut first = deps.blobs.read(&Content::part_key(&chunk_prefix(&s.id), first_leaf), range).await?.stream;
            let mut bytes = Vec::with_capacity(StreamHeader::LEN);
            while let Some(piece) = first.next().await {
                bytes.extend_from_slice(&piece.map_err(|e| DomainError::Internal(e.to_string()))?);
            }
            Some(StreamHeader::parse(&bytes).map_err(|m| DomainError::invalid("format", m, Location::Body))?)
        }
    };
    let stream_header = header.map(StreamHeader::to_base64url);
    Ok((Some(ClientFormat { format: req.format.map_or(3, |f| f as u8), meta, stream_header }), header))
}
