//! The metadata store seam: one `Store` value chosen at startup, embedded SQLite or PostgreSQL.
//! Owns connections, migrations and every SQL statement; nothing outside this module names a
//! concrete backend or writes SQL. It knows nothing of HTTP or blob bytes.

pub mod jobs;
pub mod migrate;
pub mod postgres;
pub mod records;
pub mod sql;
pub mod sqlite;

use std::path::PathBuf;

use crate::config::Config;

pub use jobs::{Claim, JobCount, JobRecord, NewJob, UsageRow};
pub use migrate::{Migration, MigrationReport};
pub use records::{
    ChunkRecord, ClientFormat, ClipRecord, ClipStats, GoneClip, GoneReason, NewClip, ThumbnailRef, Tombstone,
    UploadRecord,
};

use records::{Decode, P};

/// Everything that can go wrong talking to a metadata store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach PostgreSQL at {target}: {cause}")]
    Unreachable { target: String, cause: String },
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration: {0}")]
    Migration(String),
    #[error("the store is shut down")]
    Closed,
    #[error("store task failed: {0}")]
    Task(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// The call did not finish within `store.query_timeout` (a hung or frozen database, or no
    /// free connection).
    #[error("no answer from the database within {0:?}")]
    Timeout(std::time::Duration),
}

impl StoreError {
    /// The database could not write for lack of space (SQLITE_FULL; PostgreSQL's 53100).
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StoreError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull),
            StoreError::Postgres(e) => e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL),
            StoreError::Io { source, .. } => crate::blob::is_out_of_space(source),
            _ => false,
        }
    }

    /// The database is down, unreachable, overloaded or too slow, rather than the request or
    /// ferry being wrong: worth a 503 the client retries. Refused, reset and closed
    /// connections, pool and statement timeouts, a server shutting down or out of connections,
    /// SQLite's lock not granted within its busy timeout.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unreachable { .. } | StoreError::Pool(_) | StoreError::Closed | StoreError::Timeout(_) => true,
            StoreError::Postgres(e) => postgres::is_unavailable(e),
            StoreError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StoreError::Migration(_) | StoreError::Task(_) | StoreError::Io { .. } => false,
        }
    }

    /// A unique index refused the write (e.g. a second queued job with one dedupe key).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            StoreError::Postgres(e) => e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            // Keep the driver's error so its cause (refused, auth failed) can be shown.
            deadpool_postgres::PoolError::Backend(pg) => StoreError::Postgres(pg),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

/// The metadata store chosen at startup.
#[derive(Clone)]
pub enum Store {
    Embedded(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

impl Store {
    /// Open the backend the configuration selects: PostgreSQL when a database URL is set,
    /// otherwise SQLite under the data directory. Does not migrate.
    pub async fn open(config: &Config) -> Result<Store, StoreError> {
        match &config.database_url {
            Some(url) => Ok(Store::Postgres(postgres::PgStore::connect(url, &config.store).await?)),
            None => Ok(Store::Embedded(sqlite::SqliteStore::open(&Self::sqlite_path(config), &config.store).await?)),
        }
    }

    /// Where the embedded database lives.
    pub fn sqlite_path(config: &Config) -> PathBuf {
        config.data_dir.join("ferry.db")
    }

    /// Apply pending migrations; safe when several processes do it at once.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        match self {
            Store::Embedded(s) => s.migrate().await,
            Store::Postgres(s) => s.migrate().await,
        }
    }

    /// A real round trip to the database, for health checks. On PostgreSQL it reads the clips
    /// table through the pool, so an exhausted pool or a lock that would hold requests up holds
    /// the probe up too; on SQLite (where readers never wait for the writer) it reads the
    /// schema table.
    pub async fn ping(&self) -> Result<(), StoreError> {
        timed(self.kind(), self.query_timeout(), async {
            match self {
                Store::Embedded(s) => s.ping().await,
                Store::Postgres(s) => s.probe().await,
            }
        })
        .await
    }

    /// The bound of one store call (`store.query_timeout`).
    pub fn query_timeout(&self) -> std::time::Duration {
        match self {
            Store::Embedded(s) => s.query_timeout(),
            Store::Postgres(s) => s.query_timeout(),
        }
    }

    /// `embedded` or `postgres`, as shown by /health.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Embedded(_) => "embedded",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Where the store is, without credentials, for the startup log.
    pub fn describe(&self) -> String {
        match self {
            Store::Embedded(s) => format!("embedded SQLite at {}", s.path().display()),
            Store::Postgres(s) => format!("PostgreSQL at {}", s.target()),
        }
    }

    /// Until `shutdown`, wake `wake` whenever another process enqueues a job (PostgreSQL's
    /// LISTEN/NOTIFY on a connection of its own). On the embedded store there is nothing to
    /// listen to (one process writes it, and wakes its own workers), so this returns at once.
    pub async fn forward_job_notifications(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        if let Store::Postgres(s) = self {
            postgres::listen(s.config().clone(), postgres::JOBS_CHANNEL, wake, shutdown).await;
        }
    }

    /// Stop handing out connections and close the idle ones.
    pub fn close(&self) {
        match self {
            Store::Embedded(s) => s.close(),
            Store::Postgres(s) => s.close(),
        }
    }
}

/// Time one statement under the backend's label, and bound it: a call that has not finished
/// within `limit` (waiting for a connection included) fails with `StoreError::Timeout`.
async fn timed<T>(
    backend: &'static str,
    limit: std::time::Duration,
    run: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(limit, run).await.unwrap_or(Err(StoreError::Timeout(limit)));
    metrics::histogram!("ferry_store_query_seconds", "backend" => backend).record(started.elapsed().as_secs_f64());
    if let Err(e) = &result
        && e.is_unavailable()
    {
        metrics::counter!("ferry_store_unavailable_total", "backend" => backend).increment(1);
    }
    result
}

/// Generic execution, dispatched to the backend.
impl Store {
    async fn query<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        timed(self.kind(), self.query_timeout(), async {
            match self {
                Store::Embedded(s) => s.query(sql, params, decode).await,
                Store::Postgres(s) => s.query(sql, params, decode).await,
            }
        })
        .await
    }

    async fn query_opt<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.query(sql, params, decode).await?.into_iter().next())
    }

    async fn execute(&self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        timed(self.kind(), self.query_timeout(), async {
            match self {
                Store::Embedded(s) => s.execute(sql, params).await,
                Store::Postgres(s) => s.execute(sql, params).await,
            }
        })
        .await
    }

    /// `query` for the job queue's bookkeeping, whose commits need not wait for the disk (on
    /// PostgreSQL, `synchronous_commit = off`; SQLite's WAL commits never wait for it).
    async fn query_relaxed<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        timed(self.kind(), self.query_timeout(), async {
            match self {
                Store::Embedded(s) => s.query(sql, params, decode).await,
                Store::Postgres(s) => s.query_relaxed(sql, params, decode).await,
            }
        })
        .await
    }

    async fn execute_relaxed(&self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        timed(self.kind(), self.query_timeout(), async {
            match self {
                Store::Embedded(s) => s.execute(sql, params).await,
                Store::Postgres(s) => s.execute_relaxed(sql, params).await,
            }
        })
        .await
    }
}

/// Jobs to enqueue in the same transaction as a write, made from the rows the write returned
/// (`None`: nothing can follow, so the write runs alone).
pub type FollowUp<'a, T> = Option<Box<dyn FnOnce(&[T]) -> Vec<NewJob> + Send + 'a>>;

/// A transaction: several statements that commit together or not at all. Dropped without
/// `commit`, it rolls back.
pub enum Tx {
    Embedded(sqlite::SqliteTx),
    Postgres(postgres::PgTx),
}

impl Tx {
    fn kind(&self) -> &'static str {
        match self {
            Tx::Embedded(_) => "embedded",
            Tx::Postgres(_) => "postgres",
        }
    }

    fn query_timeout(&self) -> std::time::Duration {
        match self {
            Tx::Embedded(t) => t.query_timeout(),
            Tx::Postgres(t) => t.query_timeout(),
        }
    }

    pub async fn query<T: Send + 'static>(
        &mut self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        let (kind, limit) = (self.kind(), self.query_timeout());
        timed(kind, limit, async {
            match self {
                Tx::Embedded(t) => t.query(sql, params, decode).await,
                Tx::Postgres(t) => t.query(sql, params, decode).await,
            }
        })
        .await
    }

    pub async fn execute(&mut self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        let (kind, limit) = (self.kind(), self.query_timeout());
        timed(kind, limit, async {
            match self {
                Tx::Embedded(t) => t.execute(sql, params).await,
                Tx::Postgres(t) => t.execute(sql, params).await,
            }
        })
        .await
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        let (kind, limit) = (self.kind(), self.query_timeout());
        timed(kind, limit, async {
            match self {
                Tx::Embedded(t) => t.commit().await,
                Tx::Postgres(t) => t.commit().await,
            }
        })
        .await
    }
}

impl Store {
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        timed(self.kind(), self.query_timeout(), async {
            Ok(match self {
                Store::Embedded(s) => Tx::Embedded(s.begin().await?),
                Store::Postgres(s) => Tx::Postgres(s.begin().await?),
            })
        })
        .await
    }

    /// Run one statement and enqueue, in the same transaction, the jobs `follow` makes of the
    /// rows it returned. Without a `follow` the statement runs alone (no transaction).
    async fn query_then<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
        now: i64,
        follow: FollowUp<'_, T>,
    ) -> Result<Vec<T>, StoreError> {
        let Some(follow) = follow else { return self.query(sql, params, decode).await };
        let mut tx = self.begin().await?;
        let rows = tx.query(sql, params, decode).await?;
        let jobs = follow(&rows);
        if !jobs.is_empty() {
            tx.enqueue(&jobs, now).await?;
        }
        tx.commit().await?;
        Ok(rows)
    }
}

/// A statement to run in the same transaction as a write (see `Store::write_with`).
type Beside = Option<(&'static str, Vec<P>)>;

impl Store {
    /// Run one write with statements beside it in one transaction: `before` it, and `after`
    /// it only when it returned rows; then enqueue what `follow` makes of those rows. With
    /// nothing beside it, this is `query_then`.
    #[allow(clippy::too_many_arguments)]
    async fn write_with<T: Send + 'static>(
        &self,
        before: Beside,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
        after: Beside,
        now: i64,
        follow: FollowUp<'_, T>,
    ) -> Result<Vec<T>, StoreError> {
        if before.is_none() && after.is_none() {
            return self.query_then(sql, params, decode, now, follow).await;
        }
        let mut tx = self.begin().await?;
        if let Some((sql, params)) = before {
            tx.execute(sql, params).await?;
        }
        let rows = tx.query(sql, params, decode).await?;
        if !rows.is_empty()
            && let Some((sql, params)) = after
        {
            tx.execute(sql, params).await?;
        }
        if let Some(follow) = follow {
            let jobs = follow(&rows);
            if !jobs.is_empty() {
                tx.enqueue(&jobs, now).await?;
            }
        }
        tx.commit().await?;
        Ok(rows)
    }
}

fn text(s: &str) -> P {
    P::Text(s.to_string())
}

/// What recording a chunk did: the blob leaf of the attempt it replaced, and how many chunks
/// the session has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRecorded {
    pub replaced: Option<String>,
    pub uploaded: u32,
}

/// Upload sessions and their chunks.
impl Store {
    pub async fn insert_upload(&self, u: &UploadRecord) -> Result<(), StoreError> {
        let params = vec![
            text(&u.id),
            text(&u.filename),
            P::OptI64(u.filesize),
            P::I32(u.total_chunks),
            P::I64(u.chunk_size),
            P::OptText(u.mime_type.clone()),
            text(&u.kind),
            P::I64(u.expiry_ms),
            P::Bool(u.one_time),
            P::Bool(u.has_password),
            P::Bool(u.quick_share),
            P::Bool(u.is_text),
            P::OptI32(u.max_downloads),
            P::I64(u.created_at),
            text(&u.delete_token),
        ];
        self.execute(sql::INSERT_UPLOAD, params).await.map(|_| ())
    }

    pub async fn upload(&self, id: &str) -> Result<Option<UploadRecord>, StoreError> {
        self.query_opt(sql::UPLOAD_BY_ID, vec![text(id)], UploadRecord::decode).await
    }

    /// Record a received chunk (replacing an earlier one); `None` when the session no longer
    /// accepts chunks. On PostgreSQL this is one statement (one round trip, one commit), since
    /// it runs for every chunk.
    pub async fn record_chunk(
        &self,
        id: &str,
        index: u32,
        size: u64,
        sha256: Option<&str>,
        leaf: &str,
        now: i64,
    ) -> Result<Option<ChunkRecorded>, StoreError> {
        let params = vec![
            text(id),
            P::I32(index as i32),
            P::I64(size as i64),
            P::OptText(sha256.map(str::to_owned)),
            P::I64(now),
            text(leaf),
        ];
        match self {
            Store::Postgres(_) => {
                let decode: Decode<(i64, i64, Option<String>, i64)> =
                    |r| Ok((r.i64("recorded")?, r.i64("had_old")?, r.opt_text("old_leaf")?, r.i64("before_count")?));
                let Some((recorded, had_old, old_leaf, before)) =
                    self.query_opt(sql::RECORD_CHUNK_PG, params, decode).await?
                else {
                    return Ok(None);
                };
                if recorded == 0 {
                    return Ok(None);
                }
                let replaced = (had_old > 0).then(|| old_leaf.unwrap_or_else(|| index.to_string()));
                let uploaded = (before + if had_old > 0 { 0 } else { 1 }) as u32;
                Ok(Some(ChunkRecorded { replaced, uploaded }))
            }
            Store::Embedded(_) => {
                let earlier = self.chunk(id, index).await?;
                if self.execute(sql::RECORD_CHUNK, params).await? != 1 {
                    return Ok(None);
                }
                let uploaded = self.query_opt(sql::COUNT_CHUNKS, vec![text(id)], |r| r.i64("n")).await?.unwrap_or(0);
                Ok(Some(ChunkRecorded { replaced: earlier.map(|c| c.leaf), uploaded: uploaded as u32 }))
            }
        }
    }

    pub async fn chunks(&self, id: &str) -> Result<Vec<ChunkRecord>, StoreError> {
        self.query(sql::LIST_CHUNKS, vec![text(id)], ChunkRecord::decode).await
    }

    /// Mark an uploading session active at `now` unless it was within `idle_since`.
    pub async fn touch_upload(&self, id: &str, now: i64, idle_since: i64) -> Result<(), StoreError> {
        self.execute(sql::TOUCH_IDLE_UPLOAD, vec![text(id), P::I64(now), P::I64(idle_since)]).await.map(|_| ())
    }

    /// Record the SHA-256 of a chunk hashed after it arrived, unless that attempt was replaced.
    pub async fn set_chunk_sha256(&self, id: &str, index: u32, leaf: &str, sha256: &str) -> Result<(), StoreError> {
        let params = vec![text(id), P::I32(index as i32), text(leaf), text(sha256)];
        self.execute(sql::SET_CHUNK_SHA256, params).await.map(|_| ())
    }

    /// The recorded chunk at `index`, if any.
    pub async fn chunk(&self, id: &str, index: u32) -> Result<Option<ChunkRecord>, StoreError> {
        self.query_opt(sql::CHUNK_LEAF, vec![text(id), P::I32(index as i32)], ChunkRecord::decode).await
    }

    pub async fn forget_chunk(&self, id: &str, index: u32) -> Result<(), StoreError> {
        self.execute(sql::DELETE_CHUNK_ROW, vec![text(id), P::I32(index as i32)]).await.map(|_| ())
    }

    /// Take the assembly lock; `None` when another caller holds it or the session is not
    /// waiting for assembly.
    pub async fn begin_assembly(
        &self,
        id: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<Option<UploadRecord>, StoreError> {
        self.query_opt(sql::BEGIN_ASSEMBLY, vec![text(id), P::I64(now), P::I64(stale_before)], UploadRecord::decode)
            .await
    }

    /// Renew the claim made or last renewed at `claim`; `false` when another took it over.
    pub async fn touch_assembly(&self, id: &str, claim: i64, now: i64) -> Result<bool, StoreError> {
        Ok(self.execute(sql::TOUCH_ASSEMBLY, vec![text(id), P::I64(claim), P::I64(now)]).await? == 1)
    }

    /// Give back the claim made or last renewed at `claim` (a claim taken over stays).
    pub async fn abort_assembly(&self, id: &str, claim: i64, now: i64) -> Result<(), StoreError> {
        self.execute(sql::ABORT_ASSEMBLY, vec![text(id), P::I64(claim), P::I64(now)]).await.map(|_| ())
    }

    pub async fn mark_upload_complete(&self, id: &str, code: &str, now: i64) -> Result<(), StoreError> {
        self.execute(sql::MARK_UPLOAD_COMPLETE, vec![text(id), text(code), P::I64(now)]).await.map(|_| ())
    }

    /// Remove a session and its chunk rows; `false` when there was none.
    pub async fn delete_upload(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute(sql::DELETE_UPLOAD, vec![text(id)]).await? > 0)
    }
}

/// Clips.
impl Store {
    /// Insert a clip; `None` when its code collides with a live clip or its upload already
    /// produced one. The jobs `follow` makes of the inserted clip (given no row when it was
    /// not inserted) commit with it, and so does the removal of a tombstone its code had.
    pub async fn insert_clip(
        &self,
        c: &NewClip,
        now: i64,
        follow: FollowUp<'_, ClipRecord>,
    ) -> Result<Option<ClipRecord>, StoreError> {
        let params = vec![
            text(&c.code),
            text(&c.kind),
            text(&c.blob_key),
            P::OptText(c.filename.clone()),
            P::OptText(c.mime_type.clone()),
            P::I64(c.size),
            text(&c.sha256),
            P::I64(c.created_at),
            P::I64(c.expires_at),
            P::Bool(c.one_time),
            P::OptI32(c.max_downloads),
            P::OptText(c.access_code_hash.clone()),
            P::Bool(c.quick_share),
            text(&c.delete_token_hash),
            P::OptText(c.upload_id.clone()),
            P::OptI32(c.client.as_ref().map(|f| i32::from(f.format))),
            P::OptText(c.client.as_ref().and_then(|f| f.meta.clone())),
            P::OptText(c.client.as_ref().and_then(|f| f.stream_header.clone())),
            P::OptText(c.parts.clone()),
        ];
        let inserted = match self {
            Store::Postgres(_) => self.query_then(sql::INSERT_CLIP_PG, params, ClipRecord::decode, now, follow).await?,
            Store::Embedded(_) => {
                let forget = Some((sql::FORGET_TOMBSTONE, vec![text(&c.code)]));
                self.write_with(None, sql::INSERT_CLIP, params, ClipRecord::decode, forget, now, follow).await?
            }
        };
        Ok(inserted.into_iter().next())
    }

    pub async fn clip_by_upload(&self, upload_id: &str) -> Result<Option<ClipRecord>, StoreError> {
        self.query_opt(sql::CLIP_BY_UPLOAD, vec![text(upload_id)], ClipRecord::decode).await
    }

    /// A clip by its row id, live or not.
    pub async fn clip_by_id(&self, id: i64) -> Result<Option<ClipRecord>, StoreError> {
        self.query_opt(sql::CLIP_BY_ID, vec![P::I64(id)], ClipRecord::decode).await
    }

    /// The clip with this code unless it was consumed or deleted: live, or expired and not yet
    /// swept (the caller compares its expiry with the time).
    pub async fn unretired_clip(&self, code: &str) -> Result<Option<ClipRecord>, StoreError> {
        self.query_opt(sql::UNRETIRED_CLIP_BY_CODE, vec![text(code)], ClipRecord::decode).await
    }

    /// Why `code` no longer opens, if its tombstone is younger than `since` (exclusive).
    pub async fn tombstone(&self, code: &str, since: i64) -> Result<Option<Tombstone>, StoreError> {
        self.query_opt(sql::TOMBSTONE_BY_CODE, vec![text(code), P::I64(since)], Tombstone::decode).await
    }

    /// Atomically take one download of a one-time or limited clip; `None` when none is left.
    /// With `remember`, a claim that consumes the clip writes its tombstone with it (one
    /// statement on PostgreSQL, one transaction on SQLite). The jobs `follow` makes of the clip
    /// as claimed commit with the claim.
    pub async fn claim_download(
        &self,
        id: i64,
        now: i64,
        remember: bool,
        follow: FollowUp<'_, ClipRecord>,
    ) -> Result<Option<ClipRecord>, StoreError> {
        let params = vec![P::I64(id), P::I64(now)];
        let claimed = match (self, remember) {
            (_, false) => self.query_then(sql::CLAIM_DOWNLOAD, params, ClipRecord::decode, now, follow).await?,
            (Store::Postgres(_), true) => {
                self.query_then(sql::CLAIM_DOWNLOAD_REMEMBERED_PG, params, ClipRecord::decode, now, follow).await?
            }
            (Store::Embedded(_), true) => {
                let mark = Some((sql::REMEMBER_CONSUMED, params.clone()));
                self.write_with(None, sql::CLAIM_DOWNLOAD, params, ClipRecord::decode, mark, now, follow).await?
            }
        };
        Ok(claimed.into_iter().next())
    }

    /// Retire a live clip; `false` when it was not live. With `remember` its tombstone is
    /// written with it. `jobs` commit with it (only if it was live).
    pub async fn mark_clip_deleted(
        &self,
        id: i64,
        now: i64,
        remember: bool,
        jobs: Vec<NewJob>,
    ) -> Result<bool, StoreError> {
        let follow: FollowUp<'_, i64> = if jobs.is_empty() {
            None
        } else {
            Some(Box::new(move |rows: &[i64]| if rows.is_empty() { Vec::new() } else { jobs }))
        };
        let params = vec![P::I64(id), P::I64(now)];
        let decode: Decode<i64> = |r| r.i64("id");
        let retired = match (self, remember) {
            (_, false) => self.query_then(sql::MARK_CLIP_DELETED, params, decode, now, follow).await?,
            (Store::Postgres(_), true) => {
                self.query_then(sql::MARK_CLIP_DELETED_REMEMBERED_PG, params, decode, now, follow).await?
            }
            (Store::Embedded(_), true) => {
                let mark = Some((sql::REMEMBER_DELETED, params.clone()));
                self.write_with(None, sql::MARK_CLIP_DELETED, params, decode, mark, now, follow).await?
            }
        };
        Ok(!retired.is_empty())
    }

    /// Attach a thumbnail to a live clip; `false` when the clip is gone (or has one).
    pub async fn set_thumbnail(&self, id: i64, thumb: &ThumbnailRef) -> Result<bool, StoreError> {
        let params = vec![P::I64(id), text(&thumb.key), text(&thumb.content_type), P::I64(thumb.size)];
        Ok(self.execute(sql::SET_THUMBNAIL, params).await? == 1)
    }

    /// Whether any clip row owns this thumbnail blob.
    pub async fn thumb_has_clip(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.query_opt(sql::THUMB_EXISTS, vec![text(key)], |r| r.i32("found")).await?.is_some())
    }
}

/// The sweep's batched deletes. Each is one statement (on PostgreSQL with SKIP LOCKED), so
/// several instances sweeping at once never take the same rows.
impl Store {
    pub(crate) fn pick(&self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Store::Embedded(_) => sqlite,
            Store::Postgres(_) => postgres,
        }
    }

    /// Delete up to `limit` expired live clips; what they were. With `remember` each leaves
    /// its tombstone (reason expired, at its expiry), written with the delete. The jobs
    /// `follow` makes of them commit with the delete.
    pub async fn sweep_expired_clips(
        &self,
        now: i64,
        limit: i64,
        remember: bool,
        follow: FollowUp<'_, GoneClip>,
    ) -> Result<Vec<GoneClip>, StoreError> {
        let params = vec![P::I64(now), P::I64(limit)];
        match (self, remember) {
            (Store::Postgres(_), false) => {
                self.query_then(sql::SWEEP_EXPIRED_CLIPS_PG, params, GoneClip::decode, now, follow).await
            }
            (Store::Postgres(_), true) => {
                self.query_then(sql::SWEEP_EXPIRED_CLIPS_REMEMBERED_PG, params, GoneClip::decode, now, follow).await
            }
            (Store::Embedded(_), false) => {
                self.query_then(sql::SWEEP_EXPIRED_CLIPS, params, GoneClip::decode, now, follow).await
            }
            (Store::Embedded(_), true) => {
                let mark = Some((sql::REMEMBER_EXPIRED, params.clone()));
                self.write_with(mark, sql::SWEEP_EXPIRED_CLIPS, params, GoneClip::decode, None, now, follow).await
            }
        }
    }

    /// Delete up to `limit` tombstones from `cutoff` or before; how many went.
    pub async fn sweep_tombstones(&self, cutoff: i64, limit: i64) -> Result<u64, StoreError> {
        let sql = self.pick(sql::SWEEP_TOMBSTONES, sql::SWEEP_TOMBSTONES_PG);
        self.execute(sql, vec![P::I64(cutoff), P::I64(limit)]).await
    }

    /// Delete up to `limit` clips consumed or deleted before `cutoff`; what they were.
    pub async fn sweep_retired_clips(&self, cutoff: i64, limit: i64) -> Result<Vec<GoneClip>, StoreError> {
        let sql = self.pick(sql::SWEEP_RETIRED_CLIPS, sql::SWEEP_RETIRED_CLIPS_PG);
        self.query(sql, vec![P::I64(cutoff), P::I64(limit)], GoneClip::decode).await
    }

    /// Delete up to `limit` uploading sessions idle since `cutoff`; their ids.
    pub async fn sweep_abandoned_uploads(&self, cutoff: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        let sql = self.pick(sql::SWEEP_ABANDONED_UPLOADS, sql::SWEEP_ABANDONED_UPLOADS_PG);
        self.query(sql, vec![P::I64(cutoff), P::I64(limit)], |r| r.text("id")).await
    }

    /// Delete up to `limit` finished sessions older than `cutoff`; their ids.
    pub async fn sweep_finished_uploads(&self, cutoff: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        let sql = self.pick(sql::SWEEP_FINISHED_UPLOADS, sql::SWEEP_FINISHED_UPLOADS_PG);
        self.query(sql, vec![P::I64(cutoff), P::I64(limit)], |r| r.text("id")).await
    }

    /// Whether any clip row owns `blob_key`.
    pub async fn blob_has_clip(&self, blob_key: &str) -> Result<bool, StoreError> {
        Ok(self.query_opt(sql::CLIP_BLOB_EXISTS, vec![text(blob_key)], |r| r.i32("found")).await?.is_some())
    }
}

/// Multipart uploads opened in the object store by an assembly.
impl Store {
    pub async fn record_multipart(&self, upload_id: &str, blob_key: &str, now: i64) -> Result<(), StoreError> {
        self.execute(sql::RECORD_MULTIPART, vec![text(upload_id), text(blob_key), P::I64(now)]).await.map(|_| ())
    }

    pub async fn forget_multipart(&self, upload_id: &str) -> Result<(), StoreError> {
        self.execute(sql::FORGET_MULTIPART, vec![text(upload_id)]).await.map(|_| ())
    }

    /// When the multipart upload was recorded, if it is.
    pub async fn multipart_created(&self, upload_id: &str) -> Result<Option<i64>, StoreError> {
        self.query_opt(sql::MULTIPART_CREATED, vec![text(upload_id)], |r| r.i64("created_at")).await
    }

    /// Recorded multipart uploads opened at or before `cutoff`: (upload id, blob key).
    pub async fn stale_multiparts(&self, cutoff: i64, limit: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.query(sql::STALE_MULTIPARTS, vec![P::I64(cutoff), P::I64(limit)], |r| {
            Ok((r.text("upload_id")?, r.text("blob_key")?))
        })
        .await
    }
}

/// Admin views.
impl Store {
    pub async fn clip_stats(&self, now: i64) -> Result<ClipStats, StoreError> {
        Ok(self.query_opt(sql::CLIP_STATS, vec![P::I64(now)], ClipStats::decode).await?.unwrap_or_default())
    }

    /// The newest clips with their deletion time.
    pub async fn recent_clips(&self, limit: i64) -> Result<Vec<(ClipRecord, Option<i64>)>, StoreError> {
        self.query(sql::RECENT_CLIPS, vec![P::I64(limit)], |r| Ok((ClipRecord::decode(r)?, r.opt_i64("deleted_at")?)))
            .await
    }
}
