//! ferry: a self-hosted, temporary clip and file sharing server speaking Qopy's wire API.

/// Application wiring: build (bind, open stores) and run until shutdown.
pub mod app;
/// Blob storage seam (filesystem backend).
pub mod blob;
/// Lookup cache seam: moka in process, Redis as shared second level.
pub mod cache;
/// Typed configuration: defaults, file, `FERRY_*` environment.
pub mod config;
/// Domain types and rules, free of HTTP, SQL and files.
pub mod domain;
/// The HTTP edge: router, layers, handlers, the one error map.
pub mod http;
/// Image thumbnails: bounded decoding, EXIF orientation, small JPEG/WebP output.
pub mod images;
/// Background jobs: the durable queue, its workers and job kinds, and the sweep.
pub mod jobs;
/// Log output: a buffered, non-blocking writer that drops (and counts) lines rather than block.
pub mod logging;
/// Property tests (proptest) of every parser that sees client bytes, and of configuration values.
#[cfg(test)]
mod props;
/// Metadata store seam (embedded SQLite or PostgreSQL) and migrations.
pub mod store;

pub use app::{AppState, Application};
pub use config::Config;
