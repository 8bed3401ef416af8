//! The PostgreSQL store: a deadpool-postgres pool built from the configured URL. Owns pool
//! sizing and timeouts, fail-fast startup, and migrations serialised across instances by a
//! transaction-scoped advisory lock. Credentials never leave this file in any message.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::StoreError;
use super::migrate::{self, MigrationReport};
use super::records::{Decode, P};
use crate::config::{Secret, StoreConfig};

/// Key of the advisory lock held while migrating ("ferry" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0066_6572_7279;

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// Connections whose commits do not wait for the WAL to reach disk
    /// (`synchronous_commit = off`) and that plan every statement for its parameters, for the
    /// job queue's own bookkeeping: a claim or an outcome lost to a database crash only means a
    /// job runs again, which at-least-once delivery allows anyway.
    relaxed: Pool,
    target: String,
    /// Shared: a store is cloned into every request's dependencies.
    config: std::sync::Arc<tokio_postgres::Config>,
    query_timeout: std::time::Duration,
}

async fn run_query<T>(
    client: &deadpool_postgres::Object,
    sql: &str,
    params: &[P],
    decode: Decode<T>,
) -> Result<Vec<T>, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    let rows = client.query(&stmt, &refs).await?;
    rows.iter().map(|r| decode(r)).collect()
}

async fn run_execute(client: &deadpool_postgres::Object, sql: &str, params: &[P]) -> Result<u64, StoreError> {
    let stmt = client.prepare_cached(sql).await?;
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    Ok(client.execute(&stmt, &refs).await?)
}

/// A transaction on one pooled connection. Dropped uncommitted (an error, a caller that went
/// away), it is rolled back before the connection returns to the pool, or the connection is
/// closed when that cannot be done.
pub struct PgTx {
    client: Option<deadpool_postgres::Object>,
    query_timeout: std::time::Duration,
}

impl PgTx {
    pub fn query_timeout(&self) -> std::time::Duration {
        self.query_timeout
    }

    fn client(&self) -> Result<&deadpool_postgres::Object, StoreError> {
        self.client.as_ref().ok_or(StoreError::Closed)
    }

    pub async fn query<T>(
        &mut self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        run_query(self.client()?, sql, &params, decode).await
    }

    pub async fn execute(&mut self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        run_execute(self.client()?, sql, &params).await
    }

    pub async fn commit(mut self) -> Result<(), StoreError> {
        let client = self.client.take().ok_or(StoreError::Closed)?;
        match client.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) => {
                // Unknown state: never pool this connection again.
                drop(deadpool_postgres::Object::take(client));
                Err(e.into())
            }
        }
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if client.batch_execute("ROLLBACK").await.is_err() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            // No runtime to roll back on: close the connection, which aborts the transaction.
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

/// host:port/database, never the user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

impl PgStore {
    /// Build the pool and prove the server answers, within the connect timeout.
    pub async fn connect(url: &Secret, config: &StoreConfig) -> Result<PgStore, StoreError> {
        let mut pg = tokio_postgres::Config::from_str(url.expose())
            .map_err(|e| StoreError::Unreachable { target: "(unparseable URL)".into(), cause: e.to_string() })?;
        pg.connect_timeout(config.connect_timeout);
        // The server ends a statement (a lock wait included) at the query timeout, leaving
        // the connection usable; the client-side bound (`timed`) covers a server that does not
        // answer at all.
        let bounded = format!("-c statement_timeout={}", config.query_timeout.as_millis().max(1));
        let options = match pg.get_options() {
            Some(given) => format!("{given} {bounded}"),
            None => bounded,
        };
        pg.options(&options);
        // Keepalives notice a server that vanished without closing the connection.
        pg.keepalives(true).keepalives_idle(std::time::Duration::from_secs(30));
        if pg.get_application_name().is_none() {
            pg.application_name("ferry");
        }
        let target = describe(&pg);
        let build = |pg: tokio_postgres::Config, size: usize| {
            let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
            Pool::builder(manager)
                .max_size(size)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(config.acquire_timeout))
                .create_timeout(Some(config.connect_timeout))
                .recycle_timeout(Some(config.connect_timeout))
                .build()
                .map_err(|e| StoreError::Pool(e.to_string()))
        };
        let pool = build(pg.clone(), config.pool_size)?;
        let mut relaxed = pg.clone();
        // Custom plans always: a generic plan cached while the jobs table was small (a seq
        // scan) would stay with the connection as the queue grows; measured, 5 ms per claim
        // of 20 000 queued jobs instead of 0.3 ms.
        const RELAXED: &str = "-c synchronous_commit=off -c plan_cache_mode=force_custom_plan";
        let options = match pg.get_options() {
            Some(given) => format!("{given} {RELAXED}"),
            None => RELAXED.to_string(),
        };
        relaxed.options(&options);
        let relaxed = build(relaxed, config.pool_size.div_ceil(2))?;
        let store =
            PgStore { pool, relaxed, target, config: std::sync::Arc::new(pg), query_timeout: config.query_timeout };
        let deadline = config.connect_timeout + std::time::Duration::from_millis(500);
        match tokio::time::timeout(deadline, store.ping()).await {
            Ok(Ok(())) => Ok(store),
            Ok(Err(e)) => Err(StoreError::Unreachable { target: store.target.clone(), cause: root_cause(&e) }),
            Err(_) => Err(StoreError::Unreachable {
                target: store.target.clone(),
                cause: format!("no answer within {:?}", config.connect_timeout),
            }),
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn query_timeout(&self) -> std::time::Duration {
        self.query_timeout
    }

    /// Run one (cached, prepared) statement and decode every row it returns.
    pub async fn query<T>(&self, sql: &'static str, params: Vec<P>, decode: Decode<T>) -> Result<Vec<T>, StoreError> {
        run_query(&self.pool.get().await?, sql, &params, decode).await
    }

    /// Run one statement; the number of rows it changed.
    pub async fn execute(&self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        run_execute(&self.pool.get().await?, sql, &params).await
    }

    /// `query` on a connection whose commit does not wait for the WAL flush (see `relaxed`).
    pub async fn query_relaxed<T>(
        &self,
        sql: &'static str,
        params: Vec<P>,
        decode: Decode<T>,
    ) -> Result<Vec<T>, StoreError> {
        run_query(&self.relaxed.get().await?, sql, &params, decode).await
    }

    /// `execute` on a connection whose commit does not wait for the WAL flush.
    pub async fn execute_relaxed(&self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        run_execute(&self.relaxed.get().await?, sql, &params).await
    }

    /// The connection settings, for a connection of its own outside the pool (LISTEN).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// Begin a transaction on a pooled connection of its own.
    pub async fn begin(&self) -> Result<PgTx, StoreError> {
        // The transaction value exists before BEGIN is sent: a caller dropped while BEGIN is
        // in flight leaves it to roll back, never a pooled connection inside a transaction.
        let tx = PgTx { client: Some(self.pool.get().await?), query_timeout: self.query_timeout };
        tx.client()?.batch_execute("BEGIN").await?;
        Ok(tx)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    /// The health probe: a pooled connection (so an exhausted pool shows) reading the clips
    /// table (so a lock that holds requests up holds the probe up too).
    pub async fn probe(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.query("SELECT 1 FROM clips LIMIT 1", &[]).await?;
        Ok(())
    }

    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Held until commit: a second instance starting at the same moment waits here, then
        // finds the migrations recorded and applies nothing.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
        // "already exists, skipping" notices are expected on every start; keep them out of logs.
        tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
        // A migration may rewrite a large table: not bounded by the per-statement timeout.
        tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS ferry_migrations (
                 version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                 checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let recorded: Vec<(i64, String)> = tx
            .query("SELECT version, checksum FROM ferry_migrations ORDER BY version", &[])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let todo = migrate::plan(migrate::POSTGRES, &recorded)?;
        let mut report = MigrationReport::default();
        for m in todo {
            tx.batch_execute(m.sql).await.map_err(|e| {
                StoreError::Migration(format!("V{} ({}): {}", m.version, m.name, root_cause(&e.into())))
            })?;
            tx.execute(
                "INSERT INTO ferry_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
                &[&m.version, &m.name, &m.checksum(), &crate::domain::clock::system_now_ms()],
            )
            .await?;
            report.applied.push(m.version);
        }
        report.current = tx.query_one("SELECT coalesce(max(version), 0) FROM ferry_migrations", &[]).await?.get(0);
        tx.commit().await?;
        Ok(report)
    }

    pub fn close(&self) {
        self.pool.close();
        self.relaxed.close();
    }
}

/// Whether a driver error means the server is down, unreachable, overloaded or too slow
/// (see `StoreError::is_unavailable`): SQLSTATE classes 08 (connection), 53 (resources, disk
/// full aside, which is handled as out of space), 57 (operator intervention: a cancelled
/// statement, i.e. `statement_timeout`, and shutdowns) and a lock not granted; or no server
/// answer at all (a closed connection, an I/O error underneath).
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("08")
            || (code.starts_with("53") && code != "53100")
            || code.starts_with("57")
            || code == "55P03";
    }
    if e.is_closed() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    // Connect-time failures without a source ("timeout", "unexpected EOF").
    let text = e.to_string();
    text.contains("timed out") || text.contains("timeout") || text.contains("connection")
}

/// The channel job inserts notify on (migration V5's trigger).
pub const JOBS_CHANNEL: &str = "ferry_jobs";

/// Keep a connection of its own (pooled ones are recycled and would drop notifications)
/// LISTENing on `channel`, and `notify_one` on every notification, until `shutdown`. Reconnects
/// with backoff after a failure, and wakes once on every (re)connect, since what was enqueued
/// while no connection listened was never announced.
pub async fn listen(
    config: tokio_postgres::Config,
    channel: &'static str,
    wake: std::sync::Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures_util::StreamExt;
    let mut failures: u32 = 0;
    loop {
        let session = async {
            let (client, mut connection) = config.connect(NoTls).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            // Polling for messages is also what drives the connection.
            let driver = tokio::spawn(async move {
                let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                            if tx.send(()).is_err() {
                                return Ok(());
                            }
                        }
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            });
            client.batch_execute(&format!("LISTEN {channel}")).await?;
            failures = 0;
            wake.notify_one();
            while rx.recv().await.is_some() {
                wake.notify_one();
            }
            drop(client);
            match driver.await {
                Ok(Err(e)) => Err(e),
                _ => Ok::<(), tokio_postgres::Error>(()),
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            ended = session => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "job notifications: connection lost; reconnecting");
                }
            }
        }
        failures = failures.saturating_add(1);
        let wait = std::time::Duration::from_millis(250u64 << failures.min(7));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The innermost message of an error chain: tokio-postgres hides the server's words (or the
/// connection refusal) behind "db error" / "error connecting to server".
fn root_cause(e: &StoreError) -> String {
    match e {
        StoreError::Postgres(pg) => {
            if let Some(db) = pg.as_db_error() {
                return db.message().to_string();
            }
            let mut cause: &dyn std::error::Error = pg;
            while let Some(next) = cause.source() {
                cause = next;
            }
            if std::ptr::eq(cause as *const _ as *const u8, pg as *const _ as *const u8) {
                pg.to_string()
            } else {
                format!("{pg}: {cause}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_never_contains_credentials() {
        let cfg = tokio_postgres::Config::from_str("postgres://alice:hunter2@db.internal:6543/clips").unwrap();
        let d = describe(&cfg);
        assert_eq!(d, "db.internal:6543/clips");
        assert!(!d.contains("hunter2") && !d.contains("alice"));
    }
}
