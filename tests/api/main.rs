//! The integration suite: the real ferry server over HTTP on port 0, each test with its own
//! data directory, (for PostgreSQL) its own database and (for S3) its own key prefix.
//! `all_backends!` runs a test against every backend combination the suite covers: embedded or
//! PostgreSQL store, memory or Redis cache, filesystem or S3 blobs (see helpers.rs).

#[macro_use]
mod helpers;

mod accounting;
mod admin;
mod cache;
mod cli;
mod crash;
mod download;
mod edge;
mod health;
mod hostile;
mod intake;
mod jobs;
mod kill_mixed;
mod logging;
mod maximums;
mod outage;
mod pages;
mod protection;
mod ratelimit;
mod s3;
mod slow_clients;
mod storage;
mod store;
mod thumbnails;
mod tombstones;
mod upload;
mod webhooks;
