//! The S3 blob backend (object_store's `AmazonS3`, path-style by default, tested on SeaweedFS).
//! Owns the mapping of blob keys to object paths under the configured prefix, streamed writes
//! with bounded memory (one PUT up to `part_size`, beyond it a multipart upload holding at most
//! two parts), ranged reads, server-side assembly of chunk objects (CopyObject, multipart
//! UploadPartCopy, or a streamed fallback when a part is under S3's 5 MiB minimum), and the
//! listing and aborting of open multipart uploads for the sweep. object_store has no
//! UploadPartCopy nor ListMultipartUploads: those two requests are presigned with
//! object_store's own SigV4 signer (`Signer::signed_url_opts`) and sent with reqwest.
//! Every failure to reach the store is `BlobError::Unavailable` (503 for a client), never a
//! hang: connects and each read are bounded, requests that move no content are bounded whole,
//! and retries stop after a few seconds. Knows nothing of clips or SQL.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::{BlobError, BlobKey, BlobMeta, BlobRead, Durability, HEALTH_PREFIX, MultipartJournal};
use crate::config::S3Config;

/// S3's smallest part (all but the last).
pub const MIN_PART: u64 = 5 << 20;
/// S3's most parts in one multipart upload.
const MAX_PARTS: usize = 10_000;
/// Multipart part uploads of one streamed write in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// How long a presigned request stays valid (it is sent at once).
const PRESIGN_FOR: Duration = Duration::from_secs(300);
/// Frames of a streamed PUT queued between the client's body and the store's request.
const STREAM_FRAMES: usize = 8;
/// S3's largest single PUT.
const MAX_SINGLE_PUT: u64 = 5 << 30;
/// Longest wait for write budget before a write gives up with 503.
const BUDGET_WAIT: Duration = Duration::from_secs(10);
/// Deadline of one server-side copy (CopyObject, UploadPartCopy, CompleteMultipartUpload):
/// the store copies up to a chunk's bytes, or puts a whole object together.
const COPY_DEADLINE: Duration = Duration::from_secs(300);
/// Tries of one UploadPartCopy (a part number may be sent again).
const COPY_TRIES: u32 = 3;

async fn bounded_by<T>(
    deadline: Duration,
    context: &str,
    fut: impl Future<Output = Result<T, BlobError>>,
) -> Result<T, BlobError> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(r) => r,
        Err(_) => Err(unavailable(context, format!("no answer within {deadline:?}"))),
    }
}

fn budget_kib(bytes: u64) -> usize {
    (bytes / 1024).clamp(1, Semaphore::MAX_PERMITS as u64 / 2) as usize
}

#[derive(Clone)]
pub struct S3BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    s3: AmazonS3,
    http: reqwest::Client,
    /// For streamed PUTs: no read timeout, which would run while the body is still being sent
    /// (reqwest starts it with the request); the answer is awaited with `request_timeout`.
    streaming_http: reqwest::Client,
    bucket: String,
    endpoint: String,
    prefix: String,
    part_size: usize,
    /// Largest write sent as one PUT: at least the largest chunk, so a chunk is never a
    /// multipart upload.
    single_put_max: usize,
    request_timeout: Duration,
    /// Longest a streamed PUT may wait for the store to take more of its body.
    read_timeout: Duration,
    /// This process's health-probe object: one key, written and deleted by every probe, so a
    /// probe cut between the two leaves at most this one object (the reconcile removes it).
    probe_key: BlobKey,
    /// KiB of write data held in memory by all writers together (`s3.write_buffer`).
    budget: Arc<Semaphore>,
    journal: std::sync::OnceLock<Arc<dyn MultipartJournal>>,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3BlobStore({})", self.describe())
    }
}

/// An open multipart upload found in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMultipart {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: Option<i64>,
}

fn unavailable(context: &str, e: impl std::fmt::Display) -> BlobError {
    BlobError::Unavailable { context: format!("{context}: {e}") }
}

fn map_err(context: &str) -> impl Fn(object_store::Error) -> BlobError + '_ {
    move |e| match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => unavailable(context, other),
    }
}

fn client(config: &S3Config) -> Result<AmazonS3, BlobError> {
    let options = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_connect_timeout(config.connect_timeout)
        // No whole-request deadline: a long download may take as long as bytes keep coming.
        .with_timeout_disabled()
        .with_read_timeout(config.read_timeout)
        .with_pool_idle_timeout(Duration::from_secs(30));
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(3),
    };
    let secret = |s: &Option<crate::config::Secret>| s.as_ref().map(|s| s.expose().to_string()).unwrap_or_default();
    let mut builder = AmazonS3Builder::new();
    if let Some(token) = &config.session_token {
        builder = builder.with_token(token.expose());
    }
    builder
        .with_endpoint(config.endpoint.clone().unwrap_or_default())
        .with_bucket_name(config.bucket.clone().unwrap_or_default())
        .with_region(&config.region)
        .with_access_key_id(secret(&config.access_key_id))
        .with_secret_access_key(secret(&config.secret_access_key))
        .with_virtual_hosted_style_request(config.virtual_hosted_style)
        .with_client_options(options)
        .with_retry(retry)
        .build()
        .map_err(|e| unavailable("configure S3 client", e))
}

impl S3BlobStore {
    /// Build the client and check the bucket (a listing of the prefix), within
    /// `startup_timeout`. The error names endpoint and bucket, never a credential.
    pub async fn open(config: &S3Config, largest_write_unit: u64) -> Result<S3BlobStore, BlobError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .build()
            .map_err(|e| unavailable("build HTTP client", e))?;
        let streaming_http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| unavailable("build HTTP client", e))?;
        let store = S3BlobStore {
            inner: Arc::new(Inner {
                s3: client(config)?,
                http,
                streaming_http,
                bucket: config.bucket.clone().unwrap_or_default(),
                endpoint: config.endpoint.clone().unwrap_or_default(),
                prefix: config.prefix.clone(),
                part_size: config.part_size.bytes() as usize,
                single_put_max: config.part_size.bytes().max(largest_write_unit) as usize,
                request_timeout: config.request_timeout,
                read_timeout: config.read_timeout,
                probe_key: BlobKey::parse(&format!("{HEALTH_PREFIX}/{:016x}", rand::random::<u64>()))
                    .expect("a valid key"),
                budget: Arc::new(Semaphore::new(budget_kib(config.write_buffer.bytes()))),
                journal: std::sync::OnceLock::new(),
            }),
        };
        let root = store.root();
        let probe = store.inner.s3.list_with_delimiter(root.as_ref());
        match tokio::time::timeout(config.startup_timeout, probe).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(unavailable(&format!("bucket check of {}", store.describe()), one_line(&e))),
            Err(_) => Err(unavailable(
                &format!("bucket check of {}", store.describe()),
                format!("no answer within {:?}", config.startup_timeout),
            )),
        }
    }

    pub fn set_journal(&self, journal: Arc<dyn MultipartJournal>) {
        let _ = self.inner.journal.set(journal);
    }

    /// Open a multipart upload of `key` and record it before anything is sent to it.
    async fn open_multipart(&self, key: &BlobKey, path: &Path) -> Result<String, BlobError> {
        let id = self
            .bounded("create multipart upload", async {
                self.inner.s3.create_multipart(path).await.map_err(map_err("create multipart upload"))
            })
            .await?;
        if let Some(journal) = self.inner.journal.get()
            && let Err(e) = journal.opened(key, &id).await
        {
            self.abort(path, &id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Forget a multipart upload once it is completed or aborted (one left open stays
    /// recorded for the sweep).
    async fn close_multipart(&self, key: &BlobKey, id: &str) {
        if let Some(journal) = self.inner.journal.get()
            && let Err(e) = journal.closed(key, id).await
        {
            tracing::warn!(error = %e, "could not forget a finished multipart upload; the sweep will");
        }
    }

    pub fn describe(&self) -> String {
        format!("bucket {:?} at {}", self.inner.bucket, self.inner.endpoint)
    }

    fn root(&self) -> Option<Path> {
        let p = self.inner.prefix.trim_end_matches('/');
        (!p.is_empty()).then(|| Path::from(p))
    }

    fn path(&self, key: &BlobKey) -> Path {
        Path::from(format!("{}{}", self.inner.prefix, key.as_str()))
    }

    fn key_of(&self, path: &Path) -> Option<BlobKey> {
        let raw = path.as_ref().strip_prefix(self.inner.prefix.as_str())?;
        BlobKey::parse(raw).ok()
    }

    async fn bounded<T>(&self, context: &str, fut: impl Future<Output = Result<T, BlobError>>) -> Result<T, BlobError> {
        bounded_by(self.inner.request_timeout, context, fut).await
    }

    /// A writer for a body of a known length: its bytes stream through to one PUT as they
    /// arrive (presigned by object_store's signer), holding only a few frames; of an unknown
    /// length, see `writer`.
    pub async fn sized_writer(&self, key: &BlobKey, hash: bool, expected: Option<u64>) -> Result<S3Writer, BlobError> {
        let mut writer = self.writer(key, hash);
        let Some(expected) = expected.filter(|n| *n <= MAX_SINGLE_PUT) else { return Ok(writer) };
        let url = self
            .inner
            .s3
            .signed_url(Method::PUT, &writer.path, PRESIGN_FOR)
            .await
            .map_err(|e| unavailable("sign PutObject", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_FRAMES);
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        let http = self.inner.streaming_http.clone();
        let request = http
            .put(url.as_str())
            .header(reqwest::header::CONTENT_LENGTH, expected)
            .body(reqwest::Body::wrap_stream(body));
        let task = tokio::spawn(async move { send_for_text(request, "put object").await.map(|_| ()) });
        writer.stream = Some(StreamPut { tx: Some(tx), task, expected });
        Ok(writer)
    }

    pub fn writer(&self, key: &BlobKey, hash: bool) -> S3Writer {
        S3Writer {
            stream: None,
            store: self.clone(),
            key: key.clone(),
            path: self.path(key),
            pending: Vec::new(),
            pending_len: 0,
            held: None,
            hasher: hash.then(Sha256::new),
            written: 0,
            multipart: None,
        }
    }

    pub async fn read(&self, key: &BlobKey, range: Option<Range<u64>>) -> Result<BlobRead, BlobError> {
        let path = self.path(key);
        if let Some(r) = &range
            && r.start >= r.end
        {
            // An empty range needs only the size (S3 refuses zero-length ranges).
            let size = self.size(key).await?.ok_or(BlobError::NotFound)?;
            if r.start > r.end || r.end > size {
                return Err(BlobError::RangeNotSatisfiable { start: r.start, end: r.end, size });
            }
            return Ok(BlobRead { total_size: size, range: r.clone(), stream: futures_util::stream::empty().boxed() });
        }
        let options = GetOptions { range: range.clone().map(GetRange::Bounded), ..Default::default() };
        let got = self.bounded("read object", async {
            // Ranges were checked against the row's size before they get here: any other
            // refusal is the store's.
            self.inner.s3.get_opts(&path, options).await.map_err(map_err("read object"))
        });
        let got = got.await?;
        let total_size = got.meta.size;
        let served = got.range.clone();
        let want = range.unwrap_or(0..total_size);
        if want.end > total_size || served != want {
            return Err(BlobError::RangeNotSatisfiable { start: want.start, end: want.end, size: total_size });
        }
        let stream = got.into_stream().map_err(|e| std::io::Error::other(format!("object store: {e}"))).boxed();
        Ok(BlobRead { total_size, range: want, stream })
    }

    pub async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        let path = self.path(key);
        self.bounded("head object", async {
            match self.inner.s3.head(&path).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(unavailable("head object", e)),
            }
        })
        .await
    }

    pub async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        let existed = self.size(key).await?.is_some();
        if existed {
            let path = self.path(key);
            self.bounded("delete object", async {
                match self.inner.s3.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(unavailable("delete object", e)),
                }
            })
            .await?;
        }
        Ok(existed)
    }

    pub async fn delete_many(&self, keys: Vec<BlobKey>) -> Result<u64, BlobError> {
        let results: Vec<Result<bool, BlobError>> = futures_util::stream::iter(keys)
            .map(|k| async move { self.delete(&k).await })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut n = 0;
        for r in results {
            n += r? as u64;
        }
        Ok(n)
    }

    /// Every object under `prefix` (whole segments), with its last-modified time.
    async fn list_meta(&self, prefix: &str) -> Result<Vec<(BlobKey, i64)>, BlobError> {
        let full = format!("{}{}", self.inner.prefix, prefix);
        let full = full.trim_end_matches('/');
        let path = (!full.is_empty()).then(|| Path::from(full));
        // Each page is its own request, bounded by the client's timeouts and retries; the whole
        // listing of a large prefix may take longer than any one request.
        let metas: Vec<_> = self.inner.s3.list(path.as_ref()).map_err(map_err("list objects")).try_collect().await?;
        Ok(metas.iter().filter_map(|m| Some((self.key_of(&m.location)?, m.last_modified.timestamp_millis()))).collect())
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobKey>, BlobError> {
        let mut keys: Vec<BlobKey> = self.list_meta(prefix).await?.into_iter().map(|(k, _)| k).collect();
        keys.sort();
        Ok(keys)
    }

    pub async fn list_children(&self, prefix: &BlobKey) -> Result<Vec<String>, BlobError> {
        let path = self.path(prefix);
        let listing = self.bounded("list objects", async {
            self.inner.s3.list_with_delimiter(Some(&path)).await.map_err(map_err("list objects"))
        });
        let listing = listing.await?;
        let mut names: Vec<String> = listing
            .common_prefixes
            .iter()
            .chain(listing.objects.iter().map(|o| &o.location))
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// The object's last-modified time; for a prefix with no object of its own, the newest
    /// object under it.
    pub async fn modified_ms(&self, key: &BlobKey) -> Result<Option<i64>, BlobError> {
        let path = self.path(key);
        let head = self.bounded("head object", async {
            match self.inner.s3.head(&path).await {
                Ok(meta) => Ok(Some(meta.last_modified.timestamp_millis())),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(unavailable("head object", e)),
            }
        });
        if let Some(ms) = head.await? {
            return Ok(Some(ms));
        }
        Ok(self.list_meta(key.as_str()).await?.into_iter().map(|(_, ms)| ms).max())
    }

    pub async fn delete_prefix(&self, prefix: &BlobKey) -> Result<(), BlobError> {
        let keys = self.list(prefix.as_str()).await?;
        self.delete_many(keys).await.map(|_| ())
    }

    pub async fn hash_into(&self, key: &BlobKey, mut hasher: Sha256) -> Result<(Sha256, u64), BlobError> {
        let mut read = self.read(key, None).await?;
        let mut n = 0u64;
        while let Some(piece) = read.stream.next().await {
            let piece = piece.map_err(|e| unavailable("read object", e))?;
            n += piece.len() as u64;
            hasher.update(&piece);
        }
        Ok((hasher, n))
    }

    /// The object's size, or `None`: an acknowledged S3 write is already durable.
    pub async fn sync(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        self.size(key).await
    }

    /// A bucket has no free-space figure.
    pub async fn available(&self) -> Option<u64> {
        None
    }

    /// A real write and delete of a small object.
    pub async fn check(&self) -> Result<(), BlobError> {
        let path = self.path(&self.inner.probe_key);
        self.bounded("health probe", async {
            self.inner.s3.put(&path, PutPayload::from_static(b"ok")).await.map_err(|e| unavailable("put probe", e))?;
            self.inner.s3.delete(&path).await.map_err(|e| unavailable("delete probe", e))
        })
        .await
    }

    /// Make `dest` the concatenation of `parts` (keys and sizes, in order) without their bytes
    /// passing through ferry where S3 allows: CopyObject for one part, UploadPartCopy for many;
    /// a streamed copy when a part before the last is under 5 MiB. The multipart upload is
    /// recorded in the journal before its first part and forgotten once closed.
    pub async fn assemble(
        &self,
        parts: &[(BlobKey, u64)],
        dest: &BlobKey,
        concurrency: usize,
    ) -> Result<(), BlobError> {
        let to = self.path(dest);
        if let [(only, _)] = parts {
            metrics::counter!("ferry_s3_assemblies_total", "method" => "copy_object").increment(1);
            let from = self.path(only);
            return self
                .bounded_copy("copy object", async {
                    self.inner.s3.copy(&from, &to).await.map_err(map_err("copy object"))
                })
                .await;
        }
        let copyable =
            parts.len() <= MAX_PARTS && parts[..parts.len().saturating_sub(1)].iter().all(|(_, s)| *s >= MIN_PART);
        let id = self.open_multipart(dest, &to).await?;
        let method = if copyable { "upload_part_copy" } else { "streamed" };
        metrics::counter!("ferry_s3_assemblies_total", "method" => method).increment(1);
        let result = if copyable {
            self.copy_parts(&to, &id, parts, concurrency).await
        } else {
            self.stream_parts(&to, &id, parts).await
        };
        let result = match result {
            Ok(ids) => self
                .bounded_copy("complete multipart upload", async {
                    self.inner.s3.complete_multipart(&to, &id, ids).await.map_err(map_err("complete multipart upload"))
                })
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        // The record goes only once the upload is closed; one left open stays recorded for
        // the sweep.
        if result.is_ok() || self.abort(&to, &id).await {
            self.close_multipart(dest, &id).await;
        }
        result
    }

    async fn copy_parts(
        &self,
        to: &Path,
        id: &str,
        parts: &[(BlobKey, u64)],
        concurrency: usize,
    ) -> Result<Vec<PartId>, BlobError> {
        let sources: Vec<(usize, Path)> =
            parts.iter().enumerate().map(|(i, (key, _))| (i + 1, self.path(key))).collect();
        let (this, to, id) = (self.clone(), to.clone(), id.to_string());
        futures_util::stream::iter(sources)
            .map(move |(number, from)| {
                let (this, to, id) = (this.clone(), to.clone(), id.clone());
                async move { this.upload_part_copy(&to, &id, number, &from).await }
            })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    async fn bounded_copy<T>(
        &self,
        context: &str,
        fut: impl Future<Output = Result<T, BlobError>>,
    ) -> Result<T, BlobError> {
        bounded_by(COPY_DEADLINE, context, fut).await
    }

    /// UploadPartCopy, tried again after a failure (a slow-down, a 5xx, a 200 with an error
    /// document): one bad answer among hundreds of parts should not fail the complete.
    async fn upload_part_copy(&self, to: &Path, id: &str, number: usize, from: &Path) -> Result<PartId, BlobError> {
        let mut pause = Duration::from_millis(200);
        for _ in 1..COPY_TRIES {
            match self.upload_part_copy_once(to, id, number, from).await {
                Ok(part) => return Ok(part),
                Err(e) => tracing::debug!(error = %e, part = number, "UploadPartCopy failed; trying again"),
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        self.upload_part_copy_once(to, id, number, from).await
    }

    /// One UploadPartCopy, presigned by object_store's signer with the part number, upload id
    /// and copy source bound into the signature.
    async fn upload_part_copy_once(
        &self,
        to: &Path,
        id: &str,
        number: usize,
        from: &Path,
    ) -> Result<PartId, BlobError> {
        let source = format!("/{}/{}", self.inner.bucket, from.as_ref());
        let source = percent_encoding::utf8_percent_encode(&source, COPY_SOURCE).to_string();
        let header = reqwest::header::HeaderValue::from_str(&source).map_err(|e| unavailable("copy source", e))?;
        let name = reqwest::header::HeaderName::from_static("x-amz-copy-source");
        let options = SignedUrlOptions::default()
            .with_query([("partNumber", number.to_string()), ("uploadId", id.to_string())])
            .with_signed_header(name.clone(), header.clone());
        let url = self
            .inner
            .s3
            .signed_url_opts(Method::PUT, to, PRESIGN_FOR, &options)
            .await
            .map_err(|e| unavailable("sign UploadPartCopy", e))?;
        let request =
            self.inner.http.put(url.as_str()).header(name, header).header(reqwest::header::CONTENT_LENGTH, "0");
        let body = self.bounded_copy("UploadPartCopy", send_for_text(request, "UploadPartCopy")).await?;
        // S3 may answer 200 with an error document for a copy.
        match xml_text(&body, "ETag") {
            etag if !etag.is_empty() => Ok(PartId { content_id: etag }),
            _ => Err(unavailable("UploadPartCopy", format!("no ETag in answer ({})", xml_text(&body, "Code")))),
        }
    }

    /// `len` bytes of the write budget (`s3.write_buffer`), shared by every write and streamed
    /// assembly; waits for room at most `BUDGET_WAIT`, then 503.
    async fn budget(&self, len: usize) -> Result<OwnedSemaphorePermit, BlobError> {
        let kib = len.div_ceil(1024).max(1) as u32;
        let budget = self.inner.budget.clone();
        match budget.clone().try_acquire_many_owned(kib) {
            Ok(p) => Ok(p),
            Err(_) => match tokio::time::timeout(BUDGET_WAIT, budget.acquire_many_owned(kib)).await {
                Ok(Ok(p)) => Ok(p),
                _ => Err(BlobError::Unavailable {
                    context: "s3.write_buffer is taken by other uploads in flight".into(),
                }),
            },
        }
    }

    /// The fallback: read the parts in order and upload them again in `part_size` pieces, at
    /// most `PARTS_IN_FLIGHT` at once, so memory stays flat; each piece holds its share of the
    /// write budget until it is sent, so many completes at once stay within `s3.write_buffer`.
    async fn stream_parts(&self, to: &Path, id: &str, parts: &[(BlobKey, u64)]) -> Result<Vec<PartId>, BlobError> {
        let mut upload = PartUploads::new(self.clone(), to.clone(), id.to_string());
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        let mut held = Some(self.budget(self.inner.part_size).await?);
        for (key, size) in parts {
            let mut read = self.read(key, None).await?;
            let mut seen = 0u64;
            while let Some(piece) = read.stream.next().await {
                let piece = piece.map_err(|e| unavailable("read part", e))?;
                seen += piece.len() as u64;
                pending_len += piece.len();
                pending.push(piece);
                if pending_len >= self.inner.part_size {
                    upload.send(std::mem::take(&mut pending), held.take()).await?;
                    pending_len = 0;
                    held = Some(self.budget(self.inner.part_size).await?);
                }
            }
            if seen != *size {
                let e = std::io::Error::other(format!("{seen} bytes, {size} recorded"));
                return Err(BlobError::Io { context: format!("part {key}"), source: e });
            }
        }
        if !pending.is_empty() || upload.next == 0 {
            upload.send(pending, held.take()).await?;
        }
        upload.finish().await
    }

    /// Abort, best effort: whether the upload is gone.
    async fn abort(&self, to: &Path, id: &str) -> bool {
        match self.abort_path(to, id).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not abort a multipart upload; the sweep will");
                false
            }
        }
    }

    /// Abort the multipart upload `upload_id` of `key` (gone already is fine).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), BlobError> {
        self.abort_path(&Path::from(format!("{}{key}", self.inner.prefix)), upload_id).await
    }

    async fn abort_path(&self, path: &Path, id: &str) -> Result<(), BlobError> {
        self.bounded("abort multipart upload", async {
            match self.inner.s3.abort_multipart(path, &id.to_string()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(unavailable("abort multipart upload", e)),
            }
        })
        .await
    }

    /// Every open multipart upload of ferry's keys (`clips/` and `chunks/` under the prefix;
    /// never another application's in a shared bucket), by ListMultipartUploads, all pages.
    pub async fn open_multiparts(&self) -> Result<Vec<OpenMultipart>, BlobError> {
        let mut out = Vec::new();
        for area in ["clips/", "chunks/"] {
            out.extend(self.open_multiparts_under(&format!("{}{area}", self.inner.prefix)).await?);
        }
        Ok(out)
    }

    async fn open_multiparts_under(&self, prefix: &str) -> Result<Vec<OpenMultipart>, BlobError> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (String::new(), String::new());
        loop {
            let mut query = vec![("uploads".to_string(), String::new()), ("prefix".to_string(), prefix.to_string())];
            if !key_marker.is_empty() {
                query.push(("key-marker".into(), key_marker.clone()));
                query.push(("upload-id-marker".into(), id_marker.clone()));
            }
            let options = SignedUrlOptions::default().with_query(query);
            let url = self
                .inner
                .s3
                .signed_url_opts(Method::GET, &Path::from(""), PRESIGN_FOR, &options)
                .await
                .map_err(|e| unavailable("sign ListMultipartUploads", e))?;
            let request = self.inner.http.get(url.as_str());
            let body = self.bounded("ListMultipartUploads", send_for_text(request, "ListMultipartUploads")).await?;
            for upload in xml_elements(&body, "Upload") {
                let key = xml_text(&upload, "Key");
                let Some(key) = key.strip_prefix(self.inner.prefix.as_str()) else { continue };
                let initiated = chrono::DateTime::parse_from_rfc3339(&xml_text(&upload, "Initiated"))
                    .ok()
                    .map(|t| t.timestamp_millis());
                out.push(OpenMultipart {
                    key: key.to_string(),
                    upload_id: xml_text(&upload, "UploadId"),
                    initiated_ms: initiated,
                });
            }
            let truncated = xml_text(&body, "IsTruncated") == "true";
            let next_key = xml_text(&body, "NextKeyMarker");
            let next_id = xml_text(&body, "NextUploadIdMarker");
            if !truncated || next_key.is_empty() || (next_key == key_marker && next_id == id_marker) {
                return Ok(out);
            }
            key_marker = next_key;
            id_marker = next_id;
        }
    }
}

/// Send one of ferry's own (presigned) requests; the answer's text, or `Unavailable` naming
/// `context`, the status and S3's error code (never the URL: it carries a signature).
async fn send_for_text(request: reqwest::RequestBuilder, context: &str) -> Result<String, BlobError> {
    let res = request.send().await.map_err(|e| unavailable(context, e.without_url()))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| unavailable(context, e.without_url()))?;
    if !status.is_success() {
        return Err(unavailable(context, format!("{status}: {}", xml_text(&text, "Code"))));
    }
    Ok(text)
}

/// What `x-amz-copy-source` may carry unescaped: the unreserved characters and '/'.
const COPY_SOURCE: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/');

/// The text of the first `<tag>` element in `xml`, unescaped; empty when absent.
fn xml_text(xml: &str, tag: &str) -> String {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event() {
            Ok(quick_xml::events::Event::Start(e)) if e.local_name().as_ref() == tag.as_bytes() => inside = true,
            Ok(quick_xml::events::Event::Text(t)) if inside => {
                text.push_str(&t.decode().map(|s| s.into_owned()).unwrap_or_default());
            }
            Ok(quick_xml::events::Event::GeneralRef(r)) if inside => {
                let name = r.decode().map(|s| s.into_owned()).unwrap_or_default();
                text.push(match name.as_str() {
                    "quot" => '"',
                    "amp" => '&',
                    "lt" => '<',
                    "gt" => '>',
                    "apos" => '\'',
                    _ => '?',
                });
            }
            Ok(quick_xml::events::Event::End(e)) if inside && e.local_name().as_ref() == tag.as_bytes() => return text,
            Ok(quick_xml::events::Event::Eof) | Err(_) => return String::new(),
            _ => {}
        }
    }
}

/// The inner XML of every `<tag>` element (not nested in another `<tag>`).
fn xml_elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(format!("<{tag}>{}</{tag}>", &after[..end]));
        rest = &after[end + close.len()..];
    }
    out
}

fn one_line(e: &object_store::Error) -> String {
    e.to_string().replace('\n', " ")
}

/// Parts of one multipart upload being sent, at most `PARTS_IN_FLIGHT` at once.
struct PartUploads {
    store: S3BlobStore,
    path: Path,
    id: String,
    next: usize,
    running: JoinSet<Result<(usize, PartId), BlobError>>,
    done: Vec<(usize, PartId)>,
}

impl PartUploads {
    fn new(store: S3BlobStore, path: Path, id: String) -> PartUploads {
        PartUploads { store, path, id, next: 0, running: JoinSet::new(), done: Vec::new() }
    }

    /// Upload `bufs` as the next part; `held` (its share of the write budget) is released once
    /// the part is sent.
    async fn send(&mut self, bufs: Vec<Bytes>, held: Option<OwnedSemaphorePermit>) -> Result<(), BlobError> {
        while self.running.len() >= PARTS_IN_FLIGHT {
            self.join_one().await?;
        }
        let (store, path, id, idx) = (self.store.clone(), self.path.clone(), self.id.clone(), self.next);
        self.next += 1;
        self.running.spawn(async move {
            let payload: PutPayload = bufs.into_iter().collect();
            let part = store.inner.s3.put_part(&path, &id, idx, payload).await.map_err(map_err("upload part"));
            drop(held);
            Ok((idx, part?))
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<(), BlobError> {
        if let Some(joined) = self.running.join_next().await {
            let done = joined.map_err(|e| unavailable("upload part", e))??;
            self.done.push(done);
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<PartId>, BlobError> {
        while !self.running.is_empty() {
            self.join_one().await?;
        }
        self.done.sort_by_key(|(i, _)| *i);
        Ok(std::mem::take(&mut self.done).into_iter().map(|(_, p)| p).collect())
    }
}

/// A PUT whose body is fed as the writer's bytes arrive.
struct StreamPut {
    tx: Option<tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>>,
    task: tokio::task::JoinHandle<Result<(), BlobError>>,
    expected: u64,
}

impl StreamPut {
    /// Why the request ended before its body did.
    async fn failure(&mut self) -> BlobError {
        self.tx = None;
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(())) => unavailable("put object", "the store answered before the whole body was sent"),
            Err(e) => unavailable("put object", e),
        }
    }
}

/// A streamed write: bytes are held until `part_size`; a blob that stays under it is one PUT
/// at commit, a larger one becomes a multipart upload of `part_size` parts. Dropped
/// uncommitted, an open multipart upload is aborted in the background.
pub struct S3Writer {
    /// Set when the length is known: bytes go straight into one PUT.
    stream: Option<StreamPut>,
    store: S3BlobStore,
    key: BlobKey,
    path: Path,
    pending: Vec<Bytes>,
    pending_len: usize,
    /// The write budget taken by `pending`.
    held: Option<OwnedSemaphorePermit>,
    hasher: Option<Sha256>,
    written: u64,
    multipart: Option<PartUploads>,
}

impl S3Writer {
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(put) = self.stream.as_mut() {
            self.written += bytes.len() as u64;
            if self.written > put.expected {
                return Err(BlobError::Source(format!("the body is longer than the {} bytes declared", put.expected)));
            }
            if let Some(h) = self.hasher.as_mut() {
                h.update(&bytes);
            }
            // A store that stops reading (stalled, not down) fails the write within the read
            // timeout instead of holding the upload until its request deadline.
            let wait = self.store.inner.read_timeout;
            let tx = put.tx.as_ref().expect("writer used after commit");
            return match tokio::time::timeout(wait, tx.send(Ok(bytes))).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(put.failure().await),
                Err(_) => Err(unavailable("stream to the store", format!("it took no bytes for {wait:?}"))),
            };
        }
        self.hold(bytes.len()).await?;
        self.written += bytes.len() as u64;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&bytes);
        }
        self.pending_len += bytes.len();
        self.pending.push(bytes);
        let limit = if self.multipart.is_some() { self.store.inner.part_size } else { self.store.inner.single_put_max };
        if self.pending_len > limit {
            if self.multipart.is_none() {
                let id = self.store.open_multipart(&self.key, &self.path).await?;
                self.multipart = Some(PartUploads::new(self.store.clone(), self.path.clone(), id));
            }
            let bufs = std::mem::take(&mut self.pending);
            self.pending_len = 0;
            let held = self.held.take();
            self.multipart.as_mut().expect("just opened").send(bufs, held).await?;
        }
        Ok(())
    }

    /// Take `len` bytes of the shared write budget, waiting a bounded time for other writes to
    /// release theirs: memory stays bounded however many uploads arrive at once, and a full
    /// budget is a fast 503, never a hang.
    async fn hold(&mut self, len: usize) -> Result<(), BlobError> {
        let permit = self.store.budget(len).await?;
        match self.held.as_mut() {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn sha256_hex(&self) -> Option<String> {
        self.hasher.clone().map(|h| hex::encode(h.finalize()))
    }

    /// S3 acknowledges a PUT or a completed multipart upload only once it is durable, so
    /// every durability level is the same here.
    pub async fn commit(mut self, _durability: Durability) -> Result<BlobMeta, BlobError> {
        let pending = std::mem::take(&mut self.pending);
        let meta = BlobMeta { size: self.written, sha256: self.sha256_hex() };
        if let Some(mut put) = self.stream.take() {
            if self.written != put.expected {
                put.task.abort();
                return Err(BlobError::Source(format!(
                    "the body has {} bytes, not the {} declared",
                    self.written, put.expected
                )));
            }
            put.tx = None;
            let deadline = self.store.inner.request_timeout;
            return match tokio::time::timeout(deadline, &mut put.task).await {
                Ok(Ok(Ok(()))) => Ok(meta),
                Ok(Ok(Err(e))) => Err(e),
                Ok(Err(e)) => Err(unavailable("put object", e)),
                Err(_) => {
                    put.task.abort();
                    Err(unavailable("put object", format!("no answer within {deadline:?}")))
                }
            };
        }
        match self.multipart.take() {
            None => {
                let payload: PutPayload = pending.into_iter().collect();
                let path = self.path.clone();
                self.store
                    .bounded("put object", async {
                        self.store.inner.s3.put(&path, payload).await.map_err(map_err("put object"))
                    })
                    .await?;
            }
            Some(mut parts) => {
                let id = parts.id.clone();
                let result = async {
                    if !pending.is_empty() {
                        parts.send(pending, self.held.take()).await?;
                    }
                    let ids = parts.finish().await?;
                    self.store
                        .inner
                        .s3
                        .complete_multipart(&self.path, &id, ids)
                        .await
                        .map_err(map_err("complete upload"))
                }
                .await;
                if let Err(e) = result {
                    if self.store.abort(&self.path, &id).await {
                        self.store.close_multipart(&self.key, &id).await;
                    }
                    return Err(e);
                }
                self.store.close_multipart(&self.key, &id).await;
            }
        }
        Ok(meta)
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if let Some(put) = self.stream.take() {
            // Dropping the request mid-body closes its connection: S3 keeps nothing of it.
            put.task.abort();
        }
        if let Some(parts) = self.multipart.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (store, key, path, id) = (self.store.clone(), self.key.clone(), self.path.clone(), parts.id.clone());
            drop(parts);
            handle.spawn(async move {
                if store.abort(&path, &id).await {
                    store.close_multipart(&key, &id).await;
                }
            });
        }
    }
}

/// Create the bucket when it does not exist (for test harnesses and first-time setup
/// scripts; the server itself never creates buckets). A PUT on the bucket, presigned.
pub async fn create_bucket_if_missing(config: &S3Config) -> Result<(), BlobError> {
    let s3 = client(config)?;
    if s3.list_with_delimiter(None).await.is_ok() {
        return Ok(());
    }
    // A presigned PUT of the bucket root: object_store's path for "" is the bucket itself.
    let url = s3
        .signed_url(Method::PUT, &Path::from(""), PRESIGN_FOR)
        .await
        .map_err(|e| unavailable("sign CreateBucket", e))?;
    let request =
        reqwest::Client::new().put(url.as_str().trim_end_matches('/')).header(reqwest::header::CONTENT_LENGTH, "0");
    match send_for_text(request, "CreateBucket").await {
        Err(BlobError::Unavailable { context }) if context.contains("BucketAlreadyOwnedByYou") => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields_are_found_and_unescaped() {
        let body = r#"<?xml version="1.0"?><CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>"#;
        assert_eq!(xml_text(body, "ETag"), "\"abc\"");
        assert_eq!(xml_text(body, "Missing"), "");
        let list = "<R><Upload><Key>a</Key><UploadId>1</UploadId></Upload><Upload><Key>b</Key><UploadId>2</UploadId></Upload><IsTruncated>false</IsTruncated></R>";
        let ups = xml_elements(list, "Upload");
        assert_eq!(ups.len(), 2);
        assert_eq!(xml_text(&ups[1], "Key"), "b");
        assert_eq!(xml_text(list, "IsTruncated"), "false");
    }
}
