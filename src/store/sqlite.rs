//! The embedded store: SQLite (bundled) in WAL mode under the data directory. Owns a small
//! pool of connections; every call runs on the blocking thread pool, never on the async
//! runtime, bounded by a semaphore sized to the pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;
use super::migrate::{self, MigrationReport};
use super::records::{Decode, P};
use crate::config::StoreConfig;

/// SQLite spells PostgreSQL's `$n` placeholders `?n`.
pub fn lite(sql: &str) -> String {
    sql.replace('$', "?")
}

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    query_timeout: std::time::Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// Returns the connection to the pool however the closure ends (including a panic), and only
/// then releases the permit, so permits and connections always match.
struct Lease {
    inner: Arc<Inner>,
    conn: Option<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A transaction left open (a caller that went away, a panic mid-transaction) must
            // not reach the next borrower: roll it back before the connection goes back.
            if !conn.is_autocommit() && conn.execute_batch("ROLLBACK").is_err() {
                return; // dropped, not pooled; the pool is one connection smaller until restart
            }
            self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
    }
}

/// One statement on `conn`, every row decoded.
fn run_query<T>(conn: &Connection, sql: &str, params: &[P], decode: Decode<T>) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(&lite(sql))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// One statement on `conn`; the number of rows it changed.
fn run_execute(conn: &Connection, sql: &str, params: &[P]) -> Result<u64, StoreError> {
    Ok(conn.prepare_cached(&lite(sql))?.execute(rusqlite::params_from_iter(params.iter()))? as u64)
}

/// A transaction holding one pooled connection (`BEGIN IMMEDIATE`: SQLite's single writer lock
/// is taken up front, so two transactions never deadlock upgrading a read). Each statement runs
/// on the blocking pool; dropped uncommitted, it rolls back (`Lease::drop`).
pub struct SqliteTx {
    lease: Option<Lease>,
}

impl SqliteTx {
    pub fn query_timeout(&self) -> std::time::Duration {
        self.lease.as_ref().map_or(std::time::Duration::from_secs(5), |l| l.inner.query_timeout)
    }

    async fn on_conn<T, F>(&mut self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let mut lease = self.lease.take().ok_or(StoreError::Closed)?;
        let (lease, result) = tokio::task::spawn_blocking(move || {
            let result = match lease.conn.as_mut() {
                Some(conn) => f(conn),
                None => Err(StoreError::Closed),
            };
            (lease, result)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        self.lease = Some(lease);
        result
    }

    pub async fn query<T: Send + 'static>(
        &mut self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.on_conn(move |conn| run_query(conn, sql, &params, decode)).await
    }

    pub async fn execute(&mut self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        self.on_conn(move |conn| run_execute(conn, sql, &params)).await
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        self.on_conn(|conn| Ok(conn.execute_batch("COMMIT")?)).await
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // Uncommitted: the lease rolls back as it goes, which is blocking work.
        if let Some(lease) = self.lease.take()
            && lease.conn.as_ref().is_some_and(|c| !c.is_autocommit())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn_blocking(move || drop(lease));
        }
    }
}

impl SqliteStore {
    pub async fn open(path: &Path, config: &StoreConfig) -> Result<SqliteStore, StoreError> {
        let path = path.to_path_buf();
        let n = config.sqlite_connections;
        let busy = config.sqlite_busy_timeout;
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> Result<Vec<Connection>, StoreError> {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                        context: format!("create data directory {}", dir.display()),
                        source,
                    })?;
                }
                (0..n)
                    .map(|_| {
                        let conn = Connection::open_with_flags(
                            &path,
                            OpenFlags::SQLITE_OPEN_READ_WRITE
                                | OpenFlags::SQLITE_OPEN_CREATE
                                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                        )?;
                        conn.busy_timeout(busy)?;
                        // WAL lets readers run beside the one writer; NORMAL sync is durable
                        // across process crashes, and blobs are fsynced before rows commit.
                        conn.pragma_update(None, "journal_mode", "WAL")?;
                        conn.pragma_update(None, "synchronous", "NORMAL")?;
                        conn.pragma_update(None, "foreign_keys", "ON")?;
                        Ok(conn)
                    })
                    .collect()
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                query_timeout: config.query_timeout,
                idle: Mutex::new(opened),
                permits: Arc::new(Semaphore::new(n)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn query_timeout(&self) -> std::time::Duration {
        self.inner.query_timeout
    }

    /// Begin a transaction on a connection of its own.
    pub async fn begin(&self) -> Result<SqliteTx, StoreError> {
        let permit = self.inner.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        let conn = inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut tx = SqliteTx { lease: Some(Lease { inner, conn, _permit: permit }) };
        tx.on_conn(|conn| Ok(conn.execute_batch("BEGIN IMMEDIATE")?)).await?;
        Ok(tx)
    }

    /// Run `f` with a pooled connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self.inner.permits.clone().acquire_owned().await.map_err(|_| StoreError::Closed)?;
        let inner = self.inner.clone();
        // The lease lives inside the blocking task, so a caller that goes away (a client
        // disconnect drops the handler) cannot strand the connection.
        tokio::task::spawn_blocking(move || {
            let conn = inner.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut lease = Lease { inner: inner.clone(), conn, _permit: permit };
            let conn = lease.conn.as_mut().ok_or(StoreError::Closed)?;
            f(conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Run one statement and decode every row it returns.
    pub async fn query<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        self.call(move |conn| run_query(conn, sql, &params, decode)).await
    }

    /// Run one statement; the number of rows it changed.
    pub async fn execute(&self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        self.call(move |conn| run_execute(conn, sql, &params)).await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(|conn| {
            // Reads the schema table, so a missing or unreadable file fails here.
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        self.call(|conn| {
            // IMMEDIATE takes the write lock up front, so two processes migrating at once
            // serialise here and the second sees the first's work.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS ferry_migrations (
                     version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                     checksum TEXT NOT NULL, applied_at INTEGER NOT NULL)",
            )?;
            let recorded: Vec<(i64, String)> = tx
                .prepare("SELECT version, checksum FROM ferry_migrations ORDER BY version")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let todo = migrate::plan(migrate::SQLITE, &recorded)?;
            let mut report = MigrationReport::default();
            for m in todo {
                tx.execute_batch(m.sql)
                    .map_err(|e| StoreError::Migration(format!("V{} ({}): {e}", m.version, m.name)))?;
                tx.execute(
                    "INSERT INTO ferry_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![m.version, m.name, m.checksum(), crate::domain::clock::system_now_ms()],
                )?;
                report.applied.push(m.version);
            }
            report.current =
                tx.query_row("SELECT coalesce(max(version), 0) FROM ferry_migrations", [], |r| r.get(0))?;
            tx.commit()?;
            Ok(report)
        })
        .await
    }

    pub fn close(&self) {
        self.inner.permits.close();
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    async fn fresh() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db"), &Config::defaults().store).await.unwrap();
        store.migrate().await.unwrap();
        (dir, store)
    }

    async fn plan_of(store: &SqliteStore, sql: &'static str) -> String {
        store
            .call(move |conn| {
                let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", lite(sql)))?;
                let all: [&dyn rusqlite::ToSql; 5] = [&"AAAAAAAAAA", &100_i64, &"w", &10_i64, &","];
                let params = &all[..stmt.parameter_count()];
                let rows: Vec<String> = stmt.query_map(params, |r| r.get::<_, String>(3))?.collect::<Result<_, _>>()?;
                Ok(rows.join(" | "))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn hot_queries_use_their_partial_indexes() {
        let (_dir, store) = fresh().await;
        use crate::store::sql;
        for (sql, index) in [
            (sql::UNRETIRED_CLIP_BY_CODE, "clips_live_code_idx"),
            (sql::TOMBSTONES_BATCH, "clip_tombstones_gone_idx"),
            (sql::CLIP_BY_UPLOAD, "clips_upload_idx"),
            (sql::EXPIRED_CLIPS_BATCH, "clips_live_expiry_idx"),
            (sql::ABANDONED_UPLOADS_BATCH, "upload_sessions_abandoned_idx"),
            (sql::CLAIM_JOBS, "jobs_runnable_idx"),
            (sql::RESCUE_JOBS, "jobs_lease_idx"),
            (sql::PRUNE_DONE_JOBS, "jobs_done_idx"),
            (sql::PRUNE_FAILED_JOBS, "jobs_failed_idx"),
            (sql::RECENT_FAILED_JOBS, "jobs_failed_idx"),
            (sql::THUMB_EXISTS, "clips_thumb_key_idx"),
        ] {
            let plan = plan_of(&store, sql).await;
            assert!(plan.contains(index), "expected {index} in plan: {plan}");
        }
    }

    #[tokio::test]
    async fn migrating_twice_applies_nothing_the_second_time() {
        let (_dir, store) = fresh().await;
        let again = store.migrate().await.unwrap();
        assert!(again.applied.is_empty());
        assert_eq!(again.current, migrate::SQLITE.last().unwrap().version);
    }

    #[tokio::test]
    async fn a_panicking_call_does_not_lose_its_connection() {
        let (_dir, store) = fresh().await;
        let n = Config::defaults().store.sqlite_connections;
        for _ in 0..n + 1 {
            let r = store.call(|_conn| -> Result<(), StoreError> { panic!("boom") }).await;
            assert!(matches!(r, Err(StoreError::Task(_))));
        }
        store.ping().await.unwrap();
    }
}
