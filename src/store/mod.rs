//! The metadata store seam: one `Store` value chosen at startup, embedded SQLite or PostgreSQL.
//! Owns connections, migrations and every SQL statement; nothing outside this module names a
//! concrete backend or writes SQL. It knows nothing of HTTP or blob bytes.

pub mod migrate;
pub mod postgres;
pub mod sqlite;

use std::path::PathBuf;

use crate::config::Config;

pub use migrate::{Migration, MigrationReport};

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
    Io {
        context: String,
        source: std::io::Error,
    },
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
            Some(url) => Ok(Store::Postgres(
                postgres::PgStore::connect(url, &config.store).await?,
            )),
            None => Ok(Store::Embedded(
                sqlite::SqliteStore::open(&Self::sqlite_path(config), &config.store).await?,
            )),
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

    /// A real round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.ping().await,
            Store::Postgres(s) => s.ping().await,
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

    /// Stop handing out connections and close the idle ones.
    pub fn close(&self) {
        match self {
            Store::Embedded(s) => s.close(),
            Store::Postgres(s) => s.close(),
        }
    }
}
