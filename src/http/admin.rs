//! The admin API (Qopy's shapes): `POST /api/admin/auth`, and with `Authorization: Bearer
//! <admin token>`: `/api/admin/stats` (served from memory, refreshed in the background),
//! `/api/admin/clips` (newest 20), `/api/admin/system`. Disabled (404) when no token is
//! configured. The token is compared in constant time; odd input is a 401, never a 5xx.

use std::sync::RwLock;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use super::error::ApiError;
use super::input::{Fields, JsonObject};
use super::wire;
use crate::app::AppState;
use crate::domain::access::constant_time_eq;
use crate::domain::{DomainError, Location};
use crate::store::ClipStats;

/// Statistics as last computed, with when.
#[derive(Default)]
pub struct StatsCache(RwLock<Option<(ClipStats, i64)>>);

impl StatsCache {
    fn get(&self) -> Option<(ClipStats, i64)> {
        *self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Recompute the statistics once (one aggregate scan) and keep them in memory.
pub async fn refresh_stats_once(state: &AppState) -> Result<(), DomainError> {
    let now = state.now_ms();
    let stats = state.store().clip_stats(now).await?;
    *state.admin_stats().0.write().unwrap_or_else(|p| p.into_inner()) = Some((stats, now));
    Ok(())
}

/// Refresh every `every` until cancelled (first run at once).
pub async fn refresh_loop(state: AppState, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
    loop {
        if state.config().admin_token.is_some() {
            let started = std::time::Instant::now();
            match refresh_stats_once(&state).await {
                Ok(()) => crate::jobs::queue::record_run("admin_stats", "done", started.elapsed()),
                Err(e) => {
                    crate::jobs::queue::record_run("admin_stats", "failed", started.elapsed());
                    tracing::warn!(error = %e, "admin statistics refresh failed");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn token_matches(state: &AppState, given: &[u8]) -> Result<bool, ApiError> {
    let Some(token) = &state.config().admin_token else {
        return Err(ApiError::AdminDisabled);
    };
    Ok(constant_time_eq(given, token.expose().as_bytes()))
}

fn require_bearer(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| v.strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    if token_matches(state, given)? { Ok(()) } else { Err(ApiError::AdminUnauthorized) }
}

/// POST /api/admin/auth `{"password"}`
#[utoipa::path(post, path = "/api/admin/auth", tag = "admin", request_body = wire::AdminAuthBody,
    responses((status = 200, description = "The password is the admin token", body = wire::Done),
        (status = 401, description = "Wrong password", body = wire::ErrorBody),
        (status = 415, description = "Not JSON", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn auth(State(state): State<AppState>, JsonObject(body): JsonObject) -> Result<Json<wire::Done>, ApiError> {
    let mut f = Fields::new(&body);
    let password = f.required("password", |p| {
        if (1..=256).contains(&p.chars().count()) { Ok(p.to_string()) } else { Err("must be 1 to 256 characters") }
    });
    if state.config().admin_token.is_none() {
        return Err(ApiError::AdminDisabled);
    }
    f.finish()?;
    let password = password.ok_or_else(|| DomainError::invalid("password", "is required", Location::Body))?;
    if token_matches(&state, password.as_bytes())? {
        Ok(Json(wire::Done { success: true, message: "Authentication successful".into() }))
    } else {
        Err(ApiError::AdminLoginFailed)
    }
}

fn percent(part: i64, total: i64) -> i64 {
    if total == 0 { 0 } else { (part * 100 + total / 2) / total }
}

/// GET /api/admin/stats
#[utoipa::path(get, path = "/api/admin/stats", tag = "admin", params(("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "Clip statistics and storage in use", body = wire::AdminStats), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<wire::AdminStats>, ApiError> {
    require_bearer(&state, &headers)?;
    if state.admin_stats().get().is_none() {
        refresh_stats_once(&state).await?;
    }
    let (s, at) = state.admin_stats().get().unwrap_or_default();
    Ok(Json(wire::AdminStats {
        total_clips: s.total,
        active_clips: s.active,
        total_accesses: s.accesses,
        password_clips: s.protected,
        password_percentage: percent(s.protected, s.total),
        quick_share_clips: s.quick,
        quick_share_percentage: percent(s.quick, s.total),
        one_time_clips: s.once,
        normal_clips: s.normal,
        last_updated: at,
        storage: storage_json(&state),
    }))
}

/// Storage in use as the accounting job last computed it (from memory).
fn storage_json(state: &AppState) -> wire::StorageUse {
    let usage = &state.deps().usage;
    let by_kind: serde_json::Map<String, Value> =
        usage.rows().into_iter().map(|r| (r.kind, json!({ "bytes": r.bytes, "items": r.items }))).collect();
    wire::StorageUse {
        bytes: usage.total_bytes(),
        by_kind: Value::Object(by_kind),
        store: state.blobs().kind().to_string(),
        limit: usage.limit(),
        computed_at: usage.computed_at(),
    }
}

fn job_json(j: &crate::store::JobRecord) -> wire::Job {
    wire::Job {
        id: j.id,
        kind: j.kind.clone(),
        state: j.state.clone(),
        attempts: j.attempts,
        max_attempts: j.max_attempts,
        last_error: j.last_error.clone(),
        created_at: j.created_at,
        run_at: j.run_at,
        finished_at: j.finished_at,
        worker: j.worker.clone(),
    }
}

/// GET /api/admin/jobs — the queue: counts by kind and state, how long the oldest due job has
/// waited, recent failures and jobs waiting for a retry, each with its last error.
#[utoipa::path(get, path = "/api/admin/jobs", tag = "admin", params(("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "The background job queue", body = wire::JobQueue), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn jobs(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<wire::JobQueue>, ApiError> {
    require_bearer(&state, &headers)?;
    let store = state.store();
    let now = state.now_ms();
    let counts = store.job_counts().await.map_err(DomainError::from)?;
    let mut kinds: Vec<&str> = counts.iter().map(|c| c.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let states = ["queued", "running", "done", "failed"];
    let count = |kind: Option<&str>, st: &str| -> i64 {
        counts.iter().filter(|c| kind.is_none_or(|k| c.kind == k) && c.state == st).map(|c| c.count).sum()
    };
    let by_kind: Vec<Value> = kinds
        .iter()
        .map(|k| {
            let mut o = serde_json::Map::new();
            o.insert("kind".into(), json!(k));
            for st in states {
                o.insert(st.into(), json!(count(Some(k), st)));
            }
            Value::Object(o)
        })
        .collect();
    let totals: serde_json::Map<String, Value> =
        states.iter().map(|st| (st.to_string(), json!(count(None, st)))).collect();
    let oldest = store.oldest_runnable_job(now).await.map_err(DomainError::from)?;
    let failures = store.recent_failed_jobs(20).await.map_err(DomainError::from)?;
    let retrying = store.retrying_jobs(20).await.map_err(DomainError::from)?;
    Ok(Json(wire::JobQueue {
        success: true,
        counts: by_kind,
        totals: Value::Object(totals),
        oldest_runnable_age_ms: oldest.map(|t| (now - t).max(0)),
        recent_failures: failures.iter().map(job_json).collect(),
        retrying: retrying.iter().map(job_json).collect(),
        concurrency: state.config().jobs.concurrency,
    }))
}

fn job_id(raw: &str) -> Result<i64, ApiError> {
    match raw.parse() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(DomainError::invalid("id", "must be a job id (a positive integer)", Location::Params).into()),
    }
}

/// GET /api/admin/jobs/{id} — one job, as the list shows it.
#[utoipa::path(get, path = "/api/admin/jobs/{id}", tag = "admin",
    params(("id" = i64, Path, description = "The job's id", minimum = 1), ("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "One job", body = wire::OneJob), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn job(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<wire::OneJob>, ApiError> {
    require_bearer(&state, &headers)?;
    let id = job_id(&raw)?;
    match state.store().job(id).await.map_err(DomainError::from)? {
        Some(job) => Ok(Json(wire::OneJob { success: true, job: job_json(&job) })),
        None => Err(ApiError::JobNotFound),
    }
}

/// POST /api/admin/jobs/{id}/retry — a failed job queued again with fresh tries.
#[utoipa::path(post, path = "/api/admin/jobs/{id}/retry", tag = "admin",
    params(("id" = i64, Path, description = "The job's id", minimum = 1), ("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "Queued again with fresh tries", body = wire::OneJob),
        (status = 409, description = "Not failed, or another job does the same work", body = wire::ErrorBody), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn retry_job(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<wire::OneJob>, ApiError> {
    require_bearer(&state, &headers)?;
    let id = job_id(&raw)?;
    let store = state.store();
    match store.retry_job(id, state.now_ms()).await {
        Ok(Some(job)) => {
            state.deps().followups.wake();
            Ok(Json(wire::OneJob { success: true, job: job_json(&job) }))
        }
        Ok(None) => match store.job(id).await.map_err(DomainError::from)? {
            None => Err(ApiError::JobNotFound),
            Some(job) => Err(ApiError::JobNotFailed { state: job.state }),
        },
        Err(e) if e.is_unique_violation() => Err(ApiError::JobDuplicate),
        Err(e) => Err(DomainError::from(e).into()),
    }
}

/// GET /api/admin/clips — the newest 20, as a bare array.
#[utoipa::path(get, path = "/api/admin/clips", tag = "admin", params(("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "The newest 20 clips", body = Vec<wire::AdminClip>), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn clips(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Vec<wire::AdminClip>>, ApiError> {
    require_bearer(&state, &headers)?;
    let now = state.now_ms();
    let rows = state.store().recent_clips(20).await.map_err(DomainError::from)?;
    Ok(Json(
        rows.into_iter()
            .map(|(c, deleted_at)| wire::AdminClip {
                is_expired: c.expires_at <= now || c.consumed_at.is_some() || deleted_at.is_some(),
                clip_id: c.code,
                created_at: c.created_at,
                expiration_time: c.expires_at,
                access_count: c.download_count,
                has_password: c.access_code_hash.is_some(),
                one_time: c.one_time,
            })
            .collect(),
    ))
}

/// GET /api/admin/system
#[utoipa::path(get, path = "/api/admin/system", tag = "admin", params(("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "Version, store and sweep status", body = wire::AdminSystem), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn system(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<wire::AdminSystem>, ApiError> {
    require_bearer(&state, &headers)?;
    let connected = state.store().ping().await.is_ok();
    let last_sweep = state.deps().last_sweep_ms();
    Ok(Json(wire::AdminSystem {
        status: "OK".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        environment: "production".into(),
        database: if connected { "Connected" } else { "Disconnected" }.into(),
        store: state.store().kind().into(),
        last_cleanup: (last_sweep > 0).then_some(last_sweep),
        current_time: state.now_ms(),
        uptime: state.uptime().as_secs(),
    }))
}

/// GET /api/admin/performance — cache hit rates, latency per route, sweep figures; read from
/// the same process-wide metrics that /metrics exposes.
#[utoipa::path(get, path = "/api/admin/performance", tag = "admin", params(("Authorization" = String, Header, description = "Bearer <admin token>", pattern = "^Bearer .+$")),
    responses((status = 200, description = "Cache, per-route latency and sweep figures", body = wire::AdminPerformance), (status = 401, description = "Missing or wrong admin token", body = wire::ErrorBody), wire::CommonErrors))]
pub async fn performance(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<wire::AdminPerformance>, ApiError> {
    require_bearer(&state, &headers)?;
    let samples = super::metrics::samples();
    let sum = |name: &str, filter: &dyn Fn(&super::metrics::Sample) -> bool| -> f64 {
        samples.iter().filter(|s| s.name == name && filter(s)).map(|s| s.value).sum()
    };
    let lookups = |level: &str, result: &str| {
        sum("ferry_cache_lookups_total", &|s| s.label("level") == Some(level) && s.label("result") == Some(result))
    };
    let (l1_hit, l1_miss) = (lookups("l1", "hit"), lookups("l1", "miss"));
    let (l2_hit, l2_miss) = (lookups("l2", "hit"), lookups("l2", "miss"));
    let store_reads = lookups("store", "read");
    let rate = |hit: f64, total: f64| if total > 0.0 { hit / total } else { 0.0 };
    let mut routes: Vec<Value> = Vec::new();
    for s in samples.iter().filter(|s| s.name == "ferry_http_request_duration_seconds_count") {
        let Some(route) = s.label("route") else { continue };
        let quantile = |q: &str| {
            samples
                .iter()
                .find(|x| {
                    x.name == "ferry_http_request_duration_seconds"
                        && x.label("route") == Some(route)
                        && x.label("quantile") == Some(q)
                })
                .map(|x| x.value * 1000.0)
        };
        routes.push(json!({
            "route": route,
            "count": s.value as u64,
            "p50Ms": quantile("0.5"),
            "p99Ms": quantile("0.99"),
        }));
    }
    routes.sort_by(|a, b| b["count"].as_u64().cmp(&a["count"].as_u64()));
    Ok(Json(wire::AdminPerformance {
        cache: json!({
            "enabled": state.deps().cache.enabled(),
            "l1Entries": state.deps().cache.l1_entries(),
            "l1Bytes": state.deps().cache.l1_bytes(),
            "l1Hits": l1_hit as u64,
            "l1Misses": l1_miss as u64,
            "l1HitRate": rate(l1_hit, l1_hit + l1_miss),
            "l2Hits": l2_hit as u64,
            "l2Misses": l2_miss as u64,
            "storeReads": store_reads as u64,
            "hitRate": rate(l1_hit + l2_hit, l1_hit + l2_hit + store_reads),
            "redis": state.deps().cache.redis_state().map(|r| format!("{r:?}").to_lowercase()),
        }),
        routes,
        sweep: json!({
            "lastSweep": state.deps().last_sweep_ms(),
            "batches": sum("ferry_sweep_batches_total", &|_| true) as u64,
            "rows": sum("ferry_sweep_rows_total", &|_| true) as u64,
        }),
        in_flight: sum("ferry_http_requests_in_flight", &|_| true) as i64,
    }))
}
