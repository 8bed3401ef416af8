//! The integration suite: the real ferry server over HTTP on port 0, each test with its own
//! data directory and (for PostgreSQL) its own database. `all_backends!` runs a test against
//! the embedded store and against PostgreSQL (`FERRY_TEST_DATABASE_URL`).

#[macro_use]
mod helpers;

mod admin;
mod cache;
mod cli;
mod crash;
mod download;
mod edge;
mod health;
mod hostile;
mod intake;
mod pages;
mod protection;
mod ratelimit;
mod storage;
mod store;
mod upload;
