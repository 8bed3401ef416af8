//! The blob storage seam: bytes by key, chosen at startup (a filesystem directory, or an
//! S3-compatible bucket). Owns key validation, durable writes, ranged streaming reads, delete
//! and listing for reconciliation, content made of several blobs read as one (`Content`), and
//! the assembly of a chunked upload into a clip's content. Knows nothing of clips, SQL or HTTP.

pub mod content;
pub mod fs;
pub mod s3;

pub use content::{Content, Part};

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};

/// Where a backend's health probe may leave an object (`health/<per process>`, S3), should
/// the process die between the probe's write and its delete; the reconcile removes them.
pub const HEALTH_PREFIX: &str = "health";

/// Everything that can go wrong with blob storage.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob not found")]
    NotFound,
    #[error("invalid blob key: {0}")]
    InvalidKey(String),
    #[error("range {start}..{end} is outside a blob of {size} bytes")]
    RangeNotSatisfiable { start: u64, end: u64, size: u64 },
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("source stream failed: {0}")]
    Source(String),
    /// The storage is full (ENOSPC) or over quota: the client may try again once space is freed.
    #[error("{context}: no space left")]
    NoSpace { context: String },
    /// The object store did not answer, or answered with a server error: nothing is wrong
    /// with the request, and it may succeed once the store is back.
    #[error("object store unavailable: {context}")]
    Unavailable { context: String },
}

impl BlobError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BlobError {
        let context = context.into();
        move |source| BlobError::from_io(context, source)
    }

    pub(crate) fn from_io(context: impl Into<String>, source: std::io::Error) -> BlobError {
        if is_out_of_space(&source) {
            BlobError::NoSpace { context: context.into() }
        } else {
            BlobError::Io { context: context.into(), source }
        }
    }
}

/// ENOSPC or EDQUOT, however the error reached us.
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// A validated blob key: `/`-separated segments of `[A-Za-z0-9_-]` with inner dots, so it can
/// never name a parent directory, an absolute path or a hidden file.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    pub const MAX_LEN: usize = 200;
    pub const MAX_SEGMENTS: usize = 8;

    pub fn parse(raw: &str) -> Result<BlobKey, BlobError> {
        let bad = |why: &str| BlobError::InvalidKey(format!("{why}: {:?}", raw.chars().take(64).collect::<String>()));
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(bad("length must be 1..=200"));
        }
        let segments: Vec<&str> = raw.split('/').collect();
        if segments.len() > Self::MAX_SEGMENTS {
            return Err(bad("too many segments"));
        }
        for seg in segments {
            let ok_chars = seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if seg.is_empty() || !ok_chars || seg.starts_with('.') || seg.ends_with('.') || seg.contains("..") {
                return Err(bad("each segment must be [A-Za-z0-9_-] with inner dots"));
            }
        }
        Ok(BlobKey(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobKey({})", self.0)
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Size and SHA-256 of a committed blob, computed while its bytes went by (`None` from a
/// writer asked not to hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    pub size: u64,
    pub sha256: Option<String>,
}

/// A ranged read: the stream yields exactly `range` of a blob of `total_size` bytes.
pub struct BlobRead {
    pub total_size: u64,
    pub range: Range<u64>,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

/// How hard a commit works to survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the data and the directory entry: for blobs that back a committed row.
    Fsync,
    /// fdatasync the data, then rename: for upload chunks. A chunk survives a crash of the
    /// process at once; its directory entry is made durable by the complete that uses it
    /// (`sync_prefix`), so a 200 for complete survives power loss.
    Data,
}

/// The blob store chosen at startup.
#[derive(Clone, Debug)]
pub enum BlobStore {
    Fs(fs::FsBlobStore),
    S3(s3::S3BlobStore),
}

/// An in-progress write; nothing is visible under the key until `commit`. Dropping it
/// uncommitted discards the bytes.
pub enum BlobWriter {
    Fs(fs::FsWriter),
    S3(s3::S3Writer),
}

/// Where the multipart uploads the store opens (streamed writes and assemblies) are recorded
/// (the metadata store), so a crash leaves none the sweep cannot find.
pub trait MultipartJournal: Send + Sync {
    /// Called after the upload is created and before its first part.
    fn opened<'a>(&'a self, key: &'a BlobKey, upload_id: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;
    /// Called once it is completed or aborted.
    fn closed<'a>(&'a self, key: &'a BlobKey, upload_id: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;
}

pub use s3::OpenMultipart;

impl BlobStore {
    /// The filesystem store rooted at `root` (created if missing).
    pub async fn filesystem(root: PathBuf) -> Result<BlobStore, BlobError> {
        Ok(BlobStore::Fs(fs::FsBlobStore::open(root).await?))
    }

    /// The store `config` asks for: `data_dir/blobs`, or the S3 bucket (checked, within
    /// `s3.startup_timeout`).
    pub async fn open(config: &crate::config::Config) -> Result<BlobStore, BlobError> {
        match config.blob {
            crate::config::BlobBackend::Fs => BlobStore::filesystem(config.data_dir.join("blobs")).await,
            crate::config::BlobBackend::S3 => {
                // A chunk (with its slack) must fit one PUT.
                let largest_chunk = config.limits.chunk_size.bytes() + 1024;
                Ok(BlobStore::S3(s3::S3BlobStore::open(&config.s3, largest_chunk).await?))
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            BlobStore::Fs(_) => "fs",
            BlobStore::S3(_) => "s3",
        }
    }

    /// A writer that hashes what it writes (`BlobMeta::sha256`).
    pub async fn writer(&self, key: &BlobKey) -> Result<BlobWriter, BlobError> {
        match self {
            BlobStore::Fs(s) => Ok(BlobWriter::Fs(s.writer(key, true).await?)),
            BlobStore::S3(s) => Ok(BlobWriter::S3(s.writer(key, true))),
        }
    }

    /// A writer for a body of `expected` bytes when known (the HTTP Content-Length): on S3 its
    /// bytes stream straight into one PUT; elsewhere the same as `writer`.
    pub async fn sized_writer(
        &self,
        key: &BlobKey,
        hash: bool,
        expected: Option<u64>,
    ) -> Result<BlobWriter, BlobError> {
        match self {
            BlobStore::Fs(s) => Ok(BlobWriter::Fs(s.writer(key, hash).await?)),
            BlobStore::S3(s) => Ok(BlobWriter::S3(s.sized_writer(key, hash, expected).await?)),
        }
    }

    /// Turn a chunked upload's parts into the clip's content. On the filesystem the parts stay
    /// where they are and are the content. On S3 they are assembled server-side into `dest`
    /// (see `S3BlobStore::assemble`), which becomes the content; the caller removes the
    /// parts once the clip row is committed.
    pub async fn assemble(&self, parts: Content, dest: &BlobKey, concurrency: usize) -> Result<Content, BlobError> {
        match (self, &parts) {
            (BlobStore::S3(s), Content::Parts { prefix, parts: list }) => {
                let keys: Vec<(BlobKey, u64)> =
                    list.iter().map(|p| (Content::part_key(prefix, &p.leaf), p.size)).collect();
                s.assemble(&keys, dest, concurrency).await?;
                Ok(Content::Single(dest.clone()))
            }
            _ => Ok(parts),
        }
    }

    /// Where multipart uploads (S3) are recorded from now on, before their first part; set
    /// once at startup. Without one they are found only by listing.
    pub fn set_journal(&self, journal: std::sync::Arc<dyn MultipartJournal>) {
        if let BlobStore::S3(s) = self {
            s.set_journal(journal);
        }
    }

    /// Open multipart uploads in the store (none on the filesystem).
    pub async fn open_multiparts(&self) -> Result<Vec<OpenMultipart>, BlobError> {
        match self {
            BlobStore::Fs(_) => Ok(Vec::new()),
            BlobStore::S3(s) => s.open_multiparts().await,
        }
    }

    /// Abort an open multipart upload of `key` (relative to the store's prefix).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), BlobError> {
        match self {
            BlobStore::Fs(_) => Ok(()),
            BlobStore::S3(s) => s.abort_multipart(key, upload_id).await,
        }
    }

    /// Endpoint and bucket, or the directory: for startup logs.
    pub fn describe(&self) -> String {
        match self {
            BlobStore::Fs(_) => "fs".to_string(),
            BlobStore::S3(s) => format!("s3 {}", s.describe()),
        }
    }

    /// Write a whole stream under `key`, durably, replacing any previous blob atomically.
    pub async fn put_stream<S, E>(&self, key: &BlobKey, stream: S) -> Result<BlobMeta, BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let mut writer = self.writer(key).await?;
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            let bytes = item.map_err(|e| BlobError::Source(e.to_string()))?;
            writer.write(bytes).await?;
        }
        writer.commit(Durability::Fsync).await
    }

    /// Stream `range` (or the whole blob) of `key`.
    pub async fn read(&self, key: &BlobKey, range: Option<Range<u64>>) -> Result<BlobRead, BlobError> {
        match self {
            BlobStore::Fs(s) => s.read(key, range).await,
            BlobStore::S3(s) => s.read(key, range).await,
        }
    }

    /// Size of the blob, or `None` when absent.
    pub async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self {
            BlobStore::Fs(s) => s.size(key).await,
            BlobStore::S3(s) => s.size(key).await,
        }
    }

    /// Remove the blob; `false` when it was already gone.
    pub async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        match self {
            BlobStore::Fs(s) => s.delete(key).await,
            BlobStore::S3(s) => s.delete(key).await,
        }
    }

    /// Every key under `prefix` (a whole segment path, or "" for all), for reconciliation.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, BlobError> {
        match self {
            BlobStore::Fs(s) => s.list(prefix).await,
            BlobStore::S3(s) => s.list(prefix).await,
        }
    }

    /// The names of the entries directly under `prefix` (blobs and deeper prefixes alike),
    /// sorted: lets a caller walk one level at a time.
    pub async fn list_children(&self, prefix: &BlobKey) -> Result<Vec<String>, BlobError> {
        match self {
            BlobStore::Fs(s) => s.list_children(prefix).await,
            BlobStore::S3(s) => s.list_children(prefix).await,
        }
    }

    /// Remove many blobs at once; how many existed.
    pub async fn delete_many(&self, keys: Vec<BlobKey>) -> Result<u64, BlobError> {
        match self {
            BlobStore::Fs(s) => s.delete_many(keys).await,
            BlobStore::S3(s) => s.delete_many(keys).await,
        }
    }

    /// When the blob was last written (ms since the epoch), if it exists.
    pub async fn modified_ms(&self, key: &BlobKey) -> Result<Option<i64>, BlobError> {
        match self {
            BlobStore::Fs(s) => s.modified_ms(key).await,
            BlobStore::S3(s) => s.modified_ms(key).await,
        }
    }

    /// Remove every blob under `prefix` (a whole segment path).
    pub async fn delete_prefix(&self, prefix: &BlobKey) -> Result<(), BlobError> {
        match self {
            BlobStore::Fs(s) => s.delete_prefix(prefix).await,
            BlobStore::S3(s) => s.delete_prefix(prefix).await,
        }
    }

    /// Make a committed blob durable (fsync; cheap when its data was synced at commit) and
    /// return its size; `None` when it is gone.
    pub async fn sync(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self {
            BlobStore::Fs(s) => s.sync(key).await,
            BlobStore::S3(s) => s.sync(key).await,
        }
    }

    /// Make the entries under `prefix` durable (fsync of the directory on the filesystem).
    pub async fn sync_prefix(&self, prefix: &BlobKey) -> Result<(), BlobError> {
        match self {
            BlobStore::Fs(s) => s.sync_dir(prefix).await,
            // S3 acknowledges a write once it is durable.
            BlobStore::S3(_) => Ok(()),
        }
    }

    /// Feed the whole blob into `hasher` (from the page cache where it is warm); the hasher
    /// and the number of bytes read.
    pub async fn hash_into(&self, key: &BlobKey, hasher: sha2::Sha256) -> Result<(sha2::Sha256, u64), BlobError> {
        match self {
            BlobStore::Fs(s) => s.hash_into(key, hasher).await,
            BlobStore::S3(s) => s.hash_into(key, hasher).await,
        }
    }

    /// Bytes a new blob may still take, when the backend can tell.
    pub async fn available(&self) -> Option<u64> {
        match self {
            BlobStore::Fs(s) => s.available().await,
            BlobStore::S3(s) => s.available().await,
        }
    }

    /// Stream `range` (or all) of a clip's content, whatever its layout. The first part is
    /// opened before this returns, so a missing blob is an error here, not mid-stream.
    pub async fn read_content(&self, content: &Content, range: Option<Range<u64>>) -> Result<BlobRead, BlobError> {
        match content {
            Content::Single(key) => self.read(key, range).await,
            Content::Parts { .. } => content::read_parts(self, content, range).await,
        }
    }

    /// Remove every blob of a clip's content.
    pub async fn delete_content(&self, content: &Content) -> Result<(), BlobError> {
        self.delete_contents(vec![content.clone()]).await.map(|_| ())
    }

    /// Remove the content of many clips; how many blobs existed.
    pub async fn delete_contents(&self, contents: Vec<Content>) -> Result<u64, BlobError> {
        let mut singles = Vec::new();
        let mut removed = 0;
        for c in contents {
            match c {
                Content::Single(key) => singles.push(key),
                Content::Parts { prefix, .. } => {
                    removed += self.list(prefix.as_str()).await?.len() as u64;
                    self.delete_prefix(&prefix).await?;
                }
            }
        }
        Ok(removed + self.delete_many(singles).await?)
    }

    /// A real write-and-remove probe, for health checks.
    pub async fn check(&self) -> Result<(), BlobError> {
        match self {
            BlobStore::Fs(s) => s.check().await,
            BlobStore::S3(s) => s.check().await,
        }
    }
}

impl BlobWriter {
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        match self {
            BlobWriter::Fs(w) => w.write(bytes).await,
            BlobWriter::S3(w) => w.write(bytes).await,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        match self {
            BlobWriter::Fs(w) => w.written(),
            BlobWriter::S3(w) => w.written(),
        }
    }

    /// SHA-256 (hex) of the bytes written so far, if this writer hashes.
    pub fn sha256_hex(&self) -> Option<String> {
        match self {
            BlobWriter::Fs(w) => w.sha256_hex(),
            BlobWriter::S3(w) => w.sha256_hex(),
        }
    }

    /// Make the bytes visible under the key, as durable as asked.
    pub async fn commit(self, durability: Durability) -> Result<BlobMeta, BlobError> {
        match self {
            BlobWriter::Fs(w) => w.commit(durability).await,
            BlobWriter::S3(w) => w.commit(durability).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_or_hide() {
        for ok in ["a", "clips/AB/ABCDEFGHIJ", "chunks/0123456789ABCDEF/7", "x.bin", "a-b_c/d.e.f"] {
            assert!(BlobKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../etc/passwd",
            "a/../b",
            "/abs",
            "a//b",
            "a/",
            ".hidden",
            "a/.tmp/x",
            "a\\b",
            "a\0b",
            "a b",
            "é",
            "a..b",
            "trailing.",
            "1/2/3/4/5/6/7/8/9",
        ] {
            assert!(BlobKey::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(BlobKey::parse(&"a".repeat(201)).is_err());
    }
}
