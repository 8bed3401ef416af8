//! Domain types and rules: newtypes parsed at the edge and the services built on them
//! (uploads, clips, access codes). Knows nothing of HTTP; reaches data only through the
//! `Store` and `BlobStore` seams.

pub mod access;
pub mod clips;
pub mod clock;
pub mod error;
pub mod followups;
pub mod frontier;
pub mod journal;
pub mod locks;
pub mod range;
pub mod sizes;
pub mod thumbnails;
pub mod types;
pub mod uploads;
pub mod usage;

use crate::blob::BlobStore;
use crate::config::Config;
use crate::store::Store;

pub use error::{DomainError, FieldError, Location};

/// Size rules the services enforce, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub chunk_size: u64,
    pub max_upload: u64,
    pub max_text: u64,
    pub max_expiry: types::Expiry,
    pub assembly_concurrency: usize,
    /// An assembly whose claim was last renewed longer ago than this is presumed dead (its
    /// process gone) and may be taken over; a running one renews it every quarter of this.
    pub stale_assembly_ms: i64,
    /// The longest one assembly may run, whoever waits for it (the longer request deadline).
    pub assembly_deadline: std::time::Duration,
    /// A recorded multipart upload older than this belongs to no running write or assembly
    /// (twice the longest an upload request or an assembly may take).
    pub stale_multipart_ms: i64,
    /// How long a clip that stopped being live is remembered (`sweep.tombstone_retention`);
    /// 0: not at all.
    pub tombstone_retention_ms: i64,
}

impl Limits {
    /// Bytes a chunk may exceed `chunk_size` by (client-side encryption overhead).
    pub const CHUNK_SLACK: u64 = 1024;

    pub fn from_config(c: &Config) -> Limits {
        let assembly_deadline = c.server.request_timeout.max(c.server.upload_timeout);
        Limits {
            chunk_size: c.limits.chunk_size.bytes(),
            max_upload: c.limits.max_upload_size.bytes(),
            max_text: c.limits.max_text_size.bytes(),
            max_expiry: types::Expiry::parse(&c.limits.max_expiry).unwrap_or(types::Expiry::Hr24),
            assembly_concurrency: c.upload.assembly_concurrency,
            stale_assembly_ms: (c.server.request_timeout.as_millis() as i64).saturating_mul(2),
            assembly_deadline,
            stale_multipart_ms: (assembly_deadline.as_millis() as i64).saturating_mul(2),
            tombstone_retention_ms: i64::try_from(c.sweep.tombstone_retention.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Whether clips that stop being live leave tombstones.
    pub fn tombstones(&self) -> bool {
        self.tombstone_retention_ms > 0
    }

    /// The oldest moment (exclusive) a tombstone read at `now` may be from; `None` when no
    /// tombstones are kept.
    pub fn remembered_since(&self, now: i64) -> Option<i64> {
        self.tombstones().then(|| now.saturating_sub(self.tombstone_retention_ms))
    }

    /// The lifetime a clip gets: what was asked, capped at the configured maximum.
    pub fn expiry(&self, asked: types::Expiry) -> types::Expiry {
        asked.min(self.max_expiry)
    }

    pub fn max_for(&self, kind: types::ClipKind) -> u64 {
        match kind {
            types::ClipKind::Text => self.max_text.min(self.max_upload),
            types::ClipKind::File => self.max_upload,
        }
    }
}

/// What the services need, built once at startup.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub blobs: BlobStore,
    pub clock: clock::SharedClock,
    pub limits: Limits,
    pub access: access::AccessHasher,
    pub complete_locks: locks::KeyedLocks,
    /// Assemblies running on as tasks of their own; shutdown waits for them within the grace.
    pub assemblies: tokio_util::task::TaskTracker,
    /// Whole-file hashes of uploads in progress, advanced as chunks arrive.
    pub frontiers: frontier::Frontiers,
    pub cache: crate::cache::Cache,
    /// Cancelled when the process stops: background helpers (Redis listener) end with it.
    pub background: tokio_util::sync::CancellationToken,
    /// When the last sweep pass finished (ms since the epoch; 0: never).
    pub last_sweep: std::sync::Arc<std::sync::atomic::AtomicI64>,
    /// The jobs a change to a clip makes, and the wake-up of this process's workers.
    pub followups: followups::Followups,
    /// Storage in use, as last computed (plus what arrived since).
    pub usage: std::sync::Arc<usage::Usage>,
}

impl Deps {
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn last_sweep_ms(&self) -> i64 {
        self.last_sweep.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Enqueue jobs on their own (not tied to another write) and wake this process's workers.
    /// A failure is logged, not returned: a notification must never fail the request it
    /// describes.
    pub async fn enqueue_quietly(&self, jobs: Vec<crate::store::NewJob>) {
        if jobs.is_empty() {
            return;
        }
        match self.store.enqueue(&jobs, self.now()).await {
            Ok(_) => self.followups.wake(),
            Err(e) => tracing::warn!(error = %e, kind = %jobs[0].kind, "could not enqueue a job"),
        }
    }
}
