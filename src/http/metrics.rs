//! Observability: the process-wide Prometheus recorder, the per-request middleware (count and
//! latency per route template and status class, requests in flight), `GET /metrics`, and the
//! summary behind `/api/admin/performance`. Labels are route templates, never concrete paths.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the recorder once per process (several apps in one test process share it).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new().install_recorder().expect("the metrics recorder installs once");
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("ferry_http_requests_total", "HTTP requests by route, method and status class");
    describe_histogram!("ferry_http_request_duration_seconds", "HTTP request latency by route");
    describe_gauge!("ferry_http_requests_in_flight", "HTTP requests being handled");
    describe_counter!("ferry_cache_lookups_total", "Clip lookups by cache level and result");
    describe_histogram!("ferry_store_query_seconds", "Metadata store statement latency by backend");
    describe_counter!("ferry_upload_bytes_total", "Bytes received in upload chunks and one-request uploads");
    describe_counter!("ferry_upload_chunks_total", "Upload chunks received");
    describe_histogram!("ferry_assembly_seconds", "Time to assemble a chunked upload");
    describe_counter!("ferry_sweep_batches_total", "Sweep delete batches");
    describe_counter!("ferry_sweep_rows_total", "Rows removed by the sweep, by kind");
    describe_counter!("ferry_job_runs_total", "Background job runs by job and outcome");
}

/// Count and time every request under its route template.
pub async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let in_flight = metrics::gauge!("ferry_http_requests_in_flight");
    in_flight.increment(1.0);
    let response = next.run(req).await;
    in_flight.decrement(1.0);
    let class = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics::counter!("ferry_http_requests_total", "route" => route.clone(), "method" => method, "status" => class)
        .increment(1);
    metrics::histogram!("ferry_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// GET /metrics — Prometheus text format.
pub async fn render() -> Response {
    let mut res = handle().render().into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}

/// One parsed sample of the rendered metrics: name, labels, value.
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Parse the text exposition (enough of it for our own metrics: no escaped quotes in values).
pub fn samples() -> Vec<Sample> {
    let text = handle().render();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}')?;
                    let labels = inner
                        .split("\",")
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once("=\"")?;
                            Some((k.to_string(), v.trim_end_matches('"').to_string()))
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (head.to_string(), Vec::new()),
            };
            Some(Sample { name, labels, value })
        })
        .collect()
}
