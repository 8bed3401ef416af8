//! Health probes: `/health` (real checks of store and blob storage), `/api/health` (no
//! dependency checks), `/ping`, `/livez`, `/readyz`. Never rate limited, never cached.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::error::{ApiError, HEALTHY_STATUS};
use super::wire;
use crate::app::AppState;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Outcome of one dependency check.
struct Check {
    name: &'static str,
    ok: bool,
    /// Working but out of space: reads are still served, so the instance stays in service;
    /// uploads answer 507 until space is freed.
    full: bool,
    latency_ms: u128,
}

/// A check's failure, telling a full disk apart.
enum Failure {
    Full,
    Other(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Other(s)
    }
}

async fn timed<F>(name: &'static str, timeout: std::time::Duration, check: F) -> Check
where
    F: Future<Output = Result<(), Failure>>,
{
    let started = Instant::now();
    let (ok, full) = match tokio::time::timeout(timeout, check).await {
        Ok(Ok(())) => (true, false),
        Ok(Err(Failure::Full)) => {
            tracing::warn!(check = name, "health check: storage is full");
            (true, true)
        }
        Ok(Err(Failure::Other(cause))) => {
            tracing::warn!(check = name, %cause, "health check failed");
            (false, false)
        }
        Err(_) => {
            tracing::warn!(check = name, "health check timed out");
            (false, false)
        }
    };
    Check { name, ok, full, latency_ms: started.elapsed().as_millis() }
}

async fn run_checks(state: &AppState) -> Vec<Check> {
    let timeout = state.config().server.health_check_timeout;
    let (db, storage) = tokio::join!(
        timed("database", timeout, async { state.store().ping().await.map_err(|e| e.to_string().into()) }),
        timed("storage", timeout, async {
            state.blobs().check().await.map_err(|e| match e {
                crate::blob::BlobError::NoSpace { .. } => Failure::Full,
                other => Failure::Other(other.to_string()),
            })
        }),
    );
    vec![db, storage]
}

fn checks_json(checks: &[Check]) -> Value {
    let mut map = serde_json::Map::new();
    for c in checks {
        let status = match (c.ok, c.full) {
            (true, false) => "ok",
            (true, true) => "full",
            _ => "error",
        };
        map.insert(c.name.into(), json!({ "status": status, "latencyMs": c.latency_ms }));
    }
    Value::Object(map)
}

fn failing(checks: &[Check]) -> Vec<&'static str> {
    checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
}

/// GET /health — Qopy's shape plus the per-check detail.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "Every required dependency answers", body = wire::Health),
        (status = 503, description = "A required dependency is down (see failing)", body = wire::Health)))]
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let checks = run_checks(&state).await;
    let failing = failing(&checks);
    let db_ok = !failing.contains(&"database");
    let body = wire::Health {
        status: if failing.is_empty() { "OK" } else { "ERROR" }.into(),
        uptime: state.uptime().as_secs_f64(),
        timestamp: state.now_ms(),
        version: VERSION.into(),
        database: if db_ok { "connected" } else { "disconnected" }.into(),
        store: state.store().kind().into(),
        storage: state.blobs().kind().into(),
        checks: checks_json(&checks),
        // Redis is a helper: when it is down /health says so but stays 200.
        redis: state.deps().cache.redis_state().map(|redis| {
            match redis {
                crate::cache::RedisState::Connected => "connected",
                crate::cache::RedisState::Degraded => "degraded",
            }
            .into()
        }),
        // Rate limits fall back to per-instance counts while Redis is down: worth knowing, not
        // a reason to take the instance out of service.
        rate_limits: state.rate_limits().backend().as_str().into(),
        failing: (!failing.is_empty()).then(|| failing.iter().map(|f| f.to_string()).collect()),
    };
    if failing.is_empty() { Ok((HEALTHY_STATUS, Json(body))) } else { Err(unhealthy(&body)) }
}

/// The 503 of a failed probe, whose body is the probe's report.
fn unhealthy<T: serde::Serialize>(report: &T) -> ApiError {
    ApiError::Unhealthy(serde_json::to_value(report).unwrap_or(Value::Null))
}

/// GET /api/health — liveness in Qopy's shape, no dependency checks.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, description = "The process is up (no dependency checks)", body = wire::Liveness)))]
pub async fn api_health(State(state): State<AppState>) -> Json<wire::Liveness> {
    Json(wire::Liveness {
        status: "OK".into(),
        uptime: state.uptime().as_secs_f64(),
        timestamp: state.now_ms(),
        version: VERSION.into(),
    })
}

/// GET /ping
#[utoipa::path(get, path = "/ping", tag = "health", responses((status = 200, description = "Pong", body = wire::Pong)))]
pub async fn ping(State(state): State<AppState>) -> Json<wire::Pong> {
    Json(wire::Pong { pong: true, timestamp: state.now_ms() })
}

/// GET /livez — the process is up and serving.
#[utoipa::path(get, path = "/livez", tag = "health", responses((status = 200, description = "Serving", body = wire::Status)))]
pub async fn livez() -> Json<wire::Status> {
    Json(wire::Status { status: "OK".into() })
}

/// GET /readyz — ready for traffic: dependencies answer and shutdown has not begun.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready for traffic", body = wire::Readiness),
        (status = 503, description = "A dependency is down or slower than its probe deadline, or shutdown began", body = wire::Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<wire::Readiness>, ApiError> {
    if state.is_draining() {
        let report =
            wire::Readiness { status: "draining".into(), checks: None, failing: Some(vec!["shutdown".into()]) };
        return Err(unhealthy(&report));
    }
    let checks = run_checks(&state).await;
    let failing = failing(&checks);
    let report = wire::Readiness {
        status: if failing.is_empty() { "ready" } else { "not ready" }.into(),
        checks: Some(checks_json(&checks)),
        failing: (!failing.is_empty()).then(|| failing.iter().map(|f| f.to_string()).collect()),
    };
    if failing.is_empty() { Ok(Json(report)) } else { Err(unhealthy(&report)) }
}
