//! Health probes: `/health` (real checks of store and blob storage), `/api/health` (no
//! dependency checks), `/ping`, `/livez`, `/readyz`. Never rate limited, never cached.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::error::{ApiError, HEALTHY_STATUS};
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
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let checks = run_checks(&state).await;
    let failing = failing(&checks);
    let db_ok = !failing.contains(&"database");
    let mut body = json!({
        "status": if failing.is_empty() { "OK" } else { "ERROR" },
        "uptime": state.uptime().as_secs_f64(),
        "timestamp": state.now_ms(),
        "version": VERSION,
        "database": if db_ok { "connected" } else { "disconnected" },
        "store": state.store().kind(),
        "storage": state.blobs().kind(),
        "checks": checks_json(&checks),
    });
    // Redis is a helper: when it is down /health says so but stays 200.
    if let Some(redis) = state.deps().cache.redis_state() {
        body["redis"] = json!(match redis {
            crate::cache::RedisState::Connected => "connected",
            crate::cache::RedisState::Degraded => "degraded",
        });
    }
    // Rate limits fall back to per-instance counts while Redis is down: worth knowing, not
    // a reason to take the instance out of service.
    body["rateLimits"] = json!(state.rate_limits().backend().as_str());
    if failing.is_empty() {
        Ok((HEALTHY_STATUS, Json(body)))
    } else {
        body["failing"] = json!(failing);
        Err(ApiError::Unhealthy(body))
    }
}

/// GET /api/health — liveness in Qopy's shape, no dependency checks.
pub async fn api_health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "OK",
        "uptime": state.uptime().as_secs_f64(),
        "timestamp": state.now_ms(),
        "version": VERSION,
    }))
}

/// GET /ping
pub async fn ping(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "pong": true, "timestamp": state.now_ms() }))
}

/// GET /livez — the process is up and serving.
pub async fn livez() -> Json<Value> {
    Json(json!({ "status": "OK" }))
}

/// GET /readyz — ready for traffic: dependencies answer and shutdown has not begun.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::Unhealthy(json!({ "status": "draining", "failing": ["shutdown"] })));
    }
    let checks = run_checks(&state).await;
    let failing = failing(&checks);
    if failing.is_empty() {
        Ok(Json(json!({ "status": "ready", "checks": checks_json(&checks) })))
    } else {
        Err(ApiError::Unhealthy(json!({
            "status": "not ready", "failing": failing, "checks": checks_json(&checks)
        })))
    }
}
