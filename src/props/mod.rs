//! Property tests (proptest) of every parser that sees client bytes: Range and If-Range,
//! multipart forms, upload path parameters and chunk bodies, JSON fields, ids, the
//! Content-Disposition of downloads, X-Forwarded-For under trusted proxies, and configuration
//! values. This file owns what the areas share: one in-process server (the real router over
//! the embedded store in a scratch directory, called without a socket) and the upload steps
//! the areas use to make clips on it. Each area lives in a file of its own; proptest keeps the
//! cases it found failing under `proptest-regressions/props/`.

mod configuration;
mod disposition;
mod forwarded;
mod ids;
mod input;
mod multipart;
mod range;
mod upload;

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::{ByteSize, Switch};

/// The chunk size the test server asks for (the smallest the configuration allows), so chunk
/// limits are reached with small bodies.
pub(crate) const CHUNK: u64 = 1024;

/// What the server answered, body read to the end.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The real router over the embedded store, on a runtime of its own that test threads block on.
pub(crate) struct Server {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
}

/// The process-wide test server, built on first use.
pub(crate) fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the property tests");
        let mut config = crate::Config::defaults();
        config.bind = "127.0.0.1:0".parse().expect("an address");
        config.data_dir = scratch_dir();
        config.rate_limits = Switch::Off;
        config.limits.chunk_size = ByteSize(CHUNK);
        config.limits.max_upload_size = ByteSize(64 << 20);
        config.server.json_body_limit = ByteSize(16 << 10);
        config.jobs.concurrency = 0;
        let app = rt.block_on(crate::Application::build(config)).expect("the test server builds");
        let router = crate::http::router(app.state().clone());
        Server { rt, router }
    })
}

/// A data directory for this process under the system's temp dir, removed when the process
/// exits (a static is never dropped); directories of earlier runs whose process died without
/// exiting are removed here.
fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_at_exit() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let base = std::env::temp_dir().join("ferry-props");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for entry in entries.flatten() {
            let gone = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|pid| !PathBuf::from(format!("/proc/{pid}")).exists());
            if gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = DIR.get_or_init(|| base.join(std::process::id().to_string()));
    std::fs::create_dir_all(dir).expect("a scratch directory");
    // SAFETY: registers a plain function with no arguments, as atexit expects.
    unsafe { libc::atexit(remove_at_exit) };
    dir.clone()
}

impl Server {
    pub fn send(&self, req: Request<Body>) -> Reply {
        self.rt.block_on(async {
            let res = self.router.clone().oneshot(req).await.expect("the router is infallible");
            let (parts, body) = res.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => panic!("the {} response body failed: {e}", parts.status),
            };
            Reply { status: parts.status, headers: parts.headers, body }
        })
    }

    pub fn post_json(&self, uri: &str, body: &Value) -> Reply {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .expect("a request"),
        )
    }

    /// Initiate a file upload of `size` bytes in `chunks` chunks; its upload id.
    pub fn initiate(&self, size: u64, chunks: usize) -> String {
        let reply = self.post_json(
            "/api/upload/initiate",
            &json!({"filename": "props.bin", "filesize": size, "totalChunks": chunks, "contentType": "file"}),
        );
        assert_eq!(reply.status, StatusCode::OK, "initiate: {}", String::from_utf8_lossy(&reply.body));
        reply.json()["uploadId"].as_str().expect("an upload id").to_string()
    }

    /// Initiate a file upload of `chunks` chunks without declaring its size; its upload id.
    pub fn initiate_open(&self, chunks: usize) -> String {
        let reply = self.post_json(
            "/api/upload/initiate",
            &json!({"filename": "props.bin", "totalChunks": chunks, "contentType": "file"}),
        );
        assert_eq!(reply.status, StatusCode::OK, "initiate: {}", String::from_utf8_lossy(&reply.body));
        reply.json()["uploadId"].as_str().expect("an upload id").to_string()
    }

    pub fn send_chunk(&self, upload: &str, index: usize, bytes: &[u8]) -> Reply {
        self.send(
            Request::post(format!("/api/upload/chunk/{upload}/{index}"))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(Body::from(bytes.to_vec()))
                .expect("a request"),
        )
    }

    /// Upload `content` in the three steps, cut into pieces of the given lengths (their sum is
    /// the content's length); the clip's code.
    pub fn upload(&self, content: &[u8], cuts: &[usize]) -> String {
        assert_eq!(cuts.iter().sum::<usize>(), content.len());
        let upload = self.initiate(content.len() as u64, cuts.len());
        let mut at = 0;
        for (index, len) in cuts.iter().enumerate() {
            let reply = self.send_chunk(&upload, index, &content[at..at + len]);
            assert_eq!(reply.status, StatusCode::OK, "chunk {index}: {}", String::from_utf8_lossy(&reply.body));
            at += len;
        }
        let reply = self.post_json(&format!("/api/upload/complete/{upload}"), &json!({}));
        assert_eq!(reply.status, StatusCode::OK, "complete: {}", String::from_utf8_lossy(&reply.body));
        reply.json()["clipId"].as_str().expect("a clip id").to_string()
    }

    /// Store `content` with one request (a single blob rather than parts); the clip's code.
    pub fn put(&self, content: &[u8]) -> String {
        let reply = self.send(
            Request::put("/api/clips/props.bin")
                .header(header::ACCEPT, "application/json")
                .header(header::CONTENT_LENGTH, content.len())
                .body(Body::from(content.to_vec()))
                .expect("a request"),
        );
        assert_eq!(reply.status, StatusCode::OK, "put: {}", String::from_utf8_lossy(&reply.body));
        reply.json()["clipId"].as_str().expect("a clip id").to_string()
    }
}

/// One part of a multipart/form-data body.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// A multipart/form-data body of `parts` between `boundary` lines (RFC 7578).
pub(crate) fn form_body(boundary: &str, parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"", part.name).as_bytes(),
        );
        if let Some(f) = &part.filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        if let Some(t) = &part.content_type {
            body.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}
