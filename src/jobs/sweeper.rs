//! The scheduled sweep: deletes, in bounded batches driven by partial indexes, expired clips
//! (each leaving its tombstone, written with the delete), consumed and deleted clips, tombstones
//! past `sweep.tombstone_retention`, abandoned and finished upload sessions with their chunks, and (on
//! a slower cadence) blobs that no row owns. A completed upload's chunk directory belongs to
//! its clip (the chunks are the clip's parts) and goes with the clip, not with the session. Rows go first, in one statement per batch (SKIP
//! LOCKED on PostgreSQL, so instances share the work); blobs after, so a crash in between only
//! leaves orphans, which the reconcile pass removes.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::blob::{BlobKey, Content};
use crate::domain::{Deps, DomainError};
use crate::store::GoneClip;

use super::queue::record_run;

/// Sweep settings, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct SweepSettings {
    pub interval: Duration,
    pub batch_size: i64,
    /// Upload sessions with no activity for this long are abandoned.
    pub abandon_after_ms: i64,
    /// Completed sessions are kept this long, for idempotent repeated completes.
    pub finished_retention_ms: i64,
    /// Consumed or deleted clips keep their row this long (a download may still be streaming).
    pub retired_grace_ms: i64,
    /// Run the orphan reconcile every this many passes (0: never).
    pub reconcile_every: u32,
    /// Blobs younger than this are never orphans (their row may be about to commit).
    pub orphan_grace_ms: i64,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub expired_clips: u64,
    pub retired_clips: u64,
    /// Tombstones past the retention removed.
    pub tombstones: u64,
    pub abandoned_uploads: u64,
    pub finished_uploads: u64,
    pub blobs_deleted: u64,
    pub orphans_deleted: u64,
    /// Multipart uploads of dead assemblies aborted (S3).
    pub multiparts_aborted: u64,
    pub batches: u64,
}

/// Every blob of the removed clips: their content and their thumbnails.
fn contents(rows: &[GoneClip]) -> Vec<Content> {
    let content = rows.iter().filter_map(|g| Content::from_row(&g.blob_key, g.parts.as_deref()).ok());
    let thumbs = rows.iter().filter_map(|g| g.thumb_key.as_deref().and_then(|k| BlobKey::parse(k).ok()));
    content.chain(thumbs.map(Content::Single)).collect()
}

/// An upload's chunk directory, unless a clip owns it (its chunks became the clip's parts).
async fn chunk_dir_if_unowned(deps: &Deps, upload: &str) -> Result<Option<BlobKey>, DomainError> {
    let Ok(dir) = BlobKey::parse(&format!("chunks/{upload}")) else { return Ok(None) };
    Ok(if deps.store.blob_has_clip(dir.as_str()).await? { None } else { Some(dir) })
}

/// One pass over everything due at `now`, batch after batch until nothing is left.
pub async fn sweep_once(deps: &Deps, settings: &SweepSettings, now: i64) -> Result<SweepReport, DomainError> {
    let mut report = SweepReport::default();
    let limit = settings.batch_size;
    loop {
        // Each batch's clip.expired notifications commit with its delete.
        let remember = deps.limits.tombstones();
        let gone = deps.store.sweep_expired_clips(now, limit, remember, deps.followups.expired(now)).await?;
        if gone.is_empty() {
            break;
        }
        if deps.followups.webhooks() {
            deps.followups.wake();
        }
        report.batches += 1;
        report.expired_clips += gone.len() as u64;
        report.blobs_deleted += deps.blobs.delete_contents(contents(&gone)).await?;
    }
    loop {
        let gone = deps.store.sweep_retired_clips(now - settings.retired_grace_ms, limit).await?;
        if gone.is_empty() {
            break;
        }
        report.batches += 1;
        report.retired_clips += gone.len() as u64;
        report.blobs_deleted += deps.blobs.delete_contents(contents(&gone)).await?;
    }
    // With no retention (tombstones off) every tombstone left from before goes.
    let forget_before = now.saturating_sub(deps.limits.tombstone_retention_ms);
    loop {
        let removed = deps.store.sweep_tombstones(forget_before, limit).await?;
        if removed == 0 {
            break;
        }
        report.batches += 1;
        report.tombstones += removed;
        if removed < limit as u64 {
            break;
        }
    }
    for finished in [false, true] {
        loop {
            let gone = if finished {
                deps.store.sweep_finished_uploads(now - settings.finished_retention_ms, limit).await?
            } else {
                deps.store.sweep_abandoned_uploads(now - settings.abandon_after_ms, limit).await?
            };
            if gone.is_empty() {
                break;
            }
            report.batches += 1;
            for id in &gone {
                deps.frontiers.forget(id);
                if let Some(dir) = chunk_dir_if_unowned(deps, id).await? {
                    deps.blobs.delete_prefix(&dir).await?;
                }
            }
            if finished {
                report.finished_uploads += gone.len() as u64;
            } else {
                report.abandoned_uploads += gone.len() as u64;
            }
        }
    }
    // Writes and assemblies that died (a crash, a lost store) left their multipart uploads
    // recorded: one older than the stale bound is no longer running, so its upload can go.
    loop {
        let stale = deps.store.stale_multiparts(now - deps.limits.stale_multipart_ms, limit).await?;
        if stale.is_empty() {
            break;
        }
        report.batches += 1;
        for (upload_id, key) in stale {
            deps.blobs.abort_multipart(&key, &upload_id).await?;
            deps.store.forget_multipart(&upload_id).await?;
            report.multiparts_aborted += 1;
        }
    }
    deps.last_sweep.store(now, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("ferry_sweep_batches_total").increment(report.batches);
    for (kind, n) in [
        ("expired_clips", report.expired_clips),
        ("retired_clips", report.retired_clips),
        ("tombstones", report.tombstones),
        ("abandoned_uploads", report.abandoned_uploads),
        ("finished_uploads", report.finished_uploads),
        ("multiparts_aborted", report.multiparts_aborted),
    ] {
        metrics::counter!("ferry_sweep_rows_total", "kind" => kind).increment(n);
    }
    Ok(report)
}

/// Remove blobs no row owns: clip blobs without a clip row, chunk directories with neither an
/// unfinished upload session nor a clip made of them, and (S3) open multipart uploads no running
/// assembly owns. Only blobs older than the grace are considered. Walks one two-character
/// prefix directory at a time, so memory stays small however many blobs there are.
pub async fn reconcile_once(deps: &Deps, settings: &SweepSettings, now: i64) -> Result<u64, DomainError> {
    let mut deleted = 0;
    let old_enough = |modified: Option<i64>| modified.is_some_and(|m| m <= now - settings.orphan_grace_ms);
    for shard in 0..=255u8 {
        let prefix = format!("clips/{shard:02X}");
        for key in deps.blobs.list(&prefix).await? {
            if !deps.store.blob_has_clip(key.as_str()).await? && old_enough(deps.blobs.modified_ms(&key).await?) {
                deleted += deps.blobs.delete_many(vec![key]).await?;
            }
        }
        // Thumbnails whose clip row is gone (a crash between the sweep's delete and the
        // blob's), or that were stored for a clip retired at that moment.
        let prefix = format!("thumbs/{shard:02X}");
        for key in deps.blobs.list(&prefix).await? {
            if !deps.store.thumb_has_clip(key.as_str()).await? && old_enough(deps.blobs.modified_ms(&key).await?) {
                deleted += deps.blobs.delete_many(vec![key]).await?;
            }
        }
    }
    // Health-probe objects of processes that died between a probe's write and its delete.
    for key in deps.blobs.list(crate::blob::HEALTH_PREFIX).await? {
        if old_enough(deps.blobs.modified_ms(&key).await?) {
            deleted += deps.blobs.delete_many(vec![key]).await?;
        }
    }
    // One chunk directory at a time: a completed clip's parts live there too, so listing every
    // file would hold every part of every chunked clip in memory. A completed upload's chunks
    // are leftovers unless its clip is made of them (on S3 the clip is one object of its own;
    // a process that died while deleting them leaves some behind).
    let root = BlobKey::parse("chunks").expect("a valid key");
    for upload in deps.blobs.list_children(&root).await? {
        let Ok(dir) = BlobKey::parse(&format!("chunks/{upload}")) else { continue };
        let in_use = deps.store.upload(&upload).await?.is_some_and(|s| s.status != "complete");
        if !in_use
            && old_enough(deps.blobs.modified_ms(&dir).await?)
            && chunk_dir_if_unowned(deps, &upload).await?.is_some()
        {
            let count = deps.blobs.list(dir.as_str()).await?.len() as u64;
            deps.blobs.delete_prefix(&dir).await?;
            deleted += count;
        }
    }
    // Open multipart uploads (S3) that no running assembly owns: a streamed write or an
    // assembly that crashed before recording its upload, or one whose record is stale.
    for open in deps.blobs.open_multiparts().await? {
        if !old_enough(open.initiated_ms) {
            continue;
        }
        let running = deps
            .store
            .multipart_created(&open.upload_id)
            .await?
            .is_some_and(|created| created > now - deps.limits.stale_multipart_ms);
        if !running {
            deps.blobs.abort_multipart(&open.key, &open.upload_id).await?;
            deps.store.forget_multipart(&open.upload_id).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Sweep every `interval` until cancelled. Passes never overlap (each finishes before the next
/// sleep); failures back off up to ten intervals.
pub async fn run(deps: Deps, settings: SweepSettings, shutdown: CancellationToken) {
    let mut pass: u32 = 0;
    let mut failures: u32 = 0;
    loop {
        let wait = settings.interval * (1 + failures.min(9));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        pass = pass.wrapping_add(1);
        let now = deps.now();
        let started = std::time::Instant::now();
        match sweep_once(&deps, &settings, now).await {
            Ok(report) => {
                record_run("sweep", "done", started.elapsed());
                failures = 0;
                if report != SweepReport::default() {
                    tracing::info!(?report, "sweep");
                }
            }
            Err(e) => {
                record_run("sweep", "failed", started.elapsed());
                failures += 1;
                tracing::warn!(error = %e, "sweep failed; backing off");
                continue;
            }
        }
        if settings.reconcile_every > 0 && pass % settings.reconcile_every == 0 {
            let started = std::time::Instant::now();
            match reconcile_once(&deps, &settings, now).await {
                Ok(n) => {
                    record_run("reconcile", "done", started.elapsed());
                    if n > 0 {
                        tracing::info!(orphans = n, "reconcile removed orphan blobs");
                    }
                }
                Err(e) => {
                    record_run("reconcile", "failed", started.elapsed());
                    tracing::warn!(error = %e, "reconcile failed");
                }
            }
        }
    }
}
