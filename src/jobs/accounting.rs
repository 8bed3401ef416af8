//! Storage accounting and queue observation. The accounting job (`storage.refresh`, enqueued
//! every `jobs.accounting_interval` with one dedupe key, so one runs per cluster) counts the
//! bytes and clips in use from the store and saves the figures; every instance loads them into
//! memory every few seconds (`observe_once`), together with the queue's depth by kind and
//! state, and publishes both as gauges. Requests read only that memory: none counts rows or
//! walks the blob store.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::queue::JobError;
use crate::domain::Deps;

const STATES: [&str; 4] = ["queued", "running", "done", "failed"];

/// The accounting job: count, save, and hold the figures here at once.
pub async fn refresh_usage_once(deps: &Deps, now: i64) -> Result<(), JobError> {
    let counted = deps.usage.pending();
    let rows = deps.store.compute_usage(now).await.map_err(|e| JobError::Retry(e.to_string()))?;
    deps.store.save_usage(&rows).await.map_err(|e| JobError::Retry(e.to_string()))?;
    deps.usage.computed(rows, counted);
    publish_usage(deps);
    Ok(())
}

fn publish_usage(deps: &Deps) {
    let store = deps.blobs.kind();
    for row in deps.usage.rows() {
        metrics::gauge!("ferry_storage_bytes", "kind" => row.kind.clone(), "store" => store).set(row.bytes as f64);
        if row.kind == "file" || row.kind == "text" {
            metrics::gauge!("ferry_clips", "kind" => row.kind.clone()).set(row.items as f64);
        }
    }
}

/// Load the saved figures and the queue's depth, and publish them.
pub async fn observe_once(deps: &Deps, known_kinds: &[&str]) -> Result<(), crate::store::StoreError> {
    let rows = deps.store.load_usage().await?;
    if !rows.is_empty() {
        deps.usage.loaded(rows);
        publish_usage(deps);
    }
    let counts = deps.store.job_counts().await?;
    let mut kinds: Vec<String> = known_kinds.iter().map(|k| k.to_string()).collect();
    for c in &counts {
        if !kinds.contains(&c.kind) {
            kinds.push(c.kind.clone());
        }
    }
    for kind in &kinds {
        for state in STATES {
            let n = counts.iter().find(|c| &c.kind == kind && c.state == state).map_or(0, |c| c.count);
            metrics::gauge!("ferry_jobs", "kind" => kind.clone(), "state" => state).set(n as f64);
        }
    }
    let now = deps.now();
    let oldest = deps.store.oldest_runnable_job(now).await?;
    metrics::gauge!("ferry_jobs_oldest_runnable_seconds").set(oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));
    Ok(())
}

/// `observe_once` every `every` until cancelled (first at once).
pub async fn observe_loop(deps: Deps, known_kinds: Vec<&'static str>, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = observe_once(&deps, &known_kinds).await {
            tracing::debug!(error = %e, "could not load storage figures and queue depth");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
