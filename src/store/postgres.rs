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
    target: String,
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
        if pg.get_application_name().is_none() {
            pg.application_name("ferry");
        }
        let target = describe(&pg);
        let manager = Manager::from_config(pg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.acquire_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let store = PgStore { pool, target };
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

    /// Run one (cached, prepared) statement and decode every row it returns.
    pub async fn query<T>(&self, sql: &'static str, params: Vec<P>, decode: Decode<T>) -> Result<Vec<T>, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        let rows = client.query(&stmt, &refs).await?;
        rows.iter().map(|r| decode(r)).collect()
    }

    /// Run one statement; the number of rows it changed.
    pub async fn execute(&self, sql: &'static str, params: Vec<P>) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(sql).await?;
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        Ok(client.execute(&stmt, &refs).await?)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
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
