//! Ceilings for the bench scripts: the least a hyper 1 server can do for the same traffic as
//! ferry, so ferry can be compared against it on the same machine in the same run.
//!
//! Fixed-body mode (scripts/bench-lookup.sh): answer every request with one fixed JSON body of
//! `<body-bytes>` bytes.
//!
//!     cargo run --release --example bare_hyper -- <port> <body-bytes>
//!
//! Files mode (scripts/bench-upload.sh): ferry's three-step upload and its download, with no
//! hashing, no database and no checks beyond what keeps the bytes right.
//!
//!     cargo run --release --example bare_hyper -- <port> --files <dir> [--chunk-size <bytes>]
//!
//! - `GET /health` answers `{"status":"ok"}`.
//! - `POST /api/upload/initiate` reads `filesize` from the JSON body and answers
//!   `{"success":true,"uploadId":"<16 upper hex>","chunkSize":<n>,"totalChunks":<n>}`; the chunk
//!   size is `--chunk-size` (default 5 MiB, ferry's default), and `<dir>/<uploadId>/` is made.
//! - `POST /api/upload/chunk/<id>/<i>` streams the body, frame by frame as it arrives, to the new
//!   file `<dir>/<id>/<i>` (a blocking-pool thread writes and then fdatasyncs it) and answers
//!   `{"success":true}`.
//! - `POST /api/upload/complete/<id>` checks every chunk arrived, fsyncs `<dir>/<id>/` once and
//!   answers `{"success":true,"clipId":"<id>","size":<n>}` (no `sha256`: nothing is hashed).
//! - `POST /api/file/<id>` streams `<dir>/<id>/0..` in order, 256 KiB reads, with an exact
//!   `Content-Length`.
//!
//! Upload state lives in memory only. Binds 127.0.0.1 only.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{TryStreamExt, stream};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::io::ReaderStream;

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Read size of the download stream.
const READ_BUF: usize = 256 * 1024;
/// Largest JSON body read (initiate, complete, download).
const JSON_LIMIT: usize = 64 * 1024;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(8090);
    if args.get(1).map(String::as_str) == Some("--files") {
        let files = Arc::new(Files::from_args(&args[2..]));
        serve(port, &format!("serving uploads into {}", files.dir.display()), move |req| {
            let files = files.clone();
            async move { Ok::<_, Infallible>(files.handle(req).await) }
        })
        .await;
    } else {
        let size: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(120);
        // A JSON object padded to exactly `size` bytes, like ferry's info answer.
        let prefix = "{\"success\":true,\"pad\":\"";
        let pad = size.saturating_sub(prefix.len() + 2);
        let body = Bytes::from(format!("{prefix}{}\"}}", "x".repeat(pad)));
        let what = format!("with a {}-byte body", body.len());
        serve(port, &what, move |_req| {
            let body = body.clone();
            async move {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .expect("valid response"),
                )
            }
        })
        .await;
    }
}

/// Accept connections on 127.0.0.1:`port` forever, each served (HTTP/1 or 2) by `handler`.
async fn serve<F, Fut, B>(port: u16, what: &str, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("listening on 127.0.0.1:{port} {what}");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(handler);
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Files mode

struct Files {
    dir: PathBuf,
    chunk_size: u64,
    uploads: Mutex<HashMap<String, Upload>>,
    counter: AtomicU64,
}

struct Upload {
    /// Bytes received per chunk index; `None` until that chunk is written and synced.
    chunks: Vec<Option<u64>>,
    /// Set by complete: the total size, which the download needs.
    size: Option<u64>,
}

impl Files {
    fn from_args(args: &[String]) -> Files {
        let usage = "usage: bare_hyper <port> --files <dir> [--chunk-size <bytes>]";
        let dir = PathBuf::from(args.first().expect(usage));
        let mut chunk_size: u64 = 5 * 1024 * 1024;
        match args.get(1..) {
            Some([flag, n]) if flag == "--chunk-size" => {
                chunk_size = n.parse().ok().filter(|&n| n > 0).expect("--chunk-size must be a positive byte count");
            }
            Some([]) | None => {}
            _ => panic!("{usage}"),
        }
        std::fs::create_dir_all(&dir).expect("create the --files dir");
        Files { dir, chunk_size, uploads: Mutex::new(HashMap::new()), counter: AtomicU64::new(0) }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let res = match (req.method(), parts.as_slice()) {
            (&Method::GET, ["health"]) => Ok(json_response(StatusCode::OK, json!({"status": "ok"}))),
            (&Method::POST, ["api", "upload", "initiate"]) => self.initiate(req).await,
            (&Method::POST, ["api", "upload", "chunk", id, index]) => {
                let (id, index) = (id.to_string(), index.to_string());
                self.chunk(&id, &index, req).await
            }
            (&Method::POST, ["api", "upload", "complete", id]) => {
                let id = id.to_string();
                self.complete(&id, req).await
            }
            (&Method::POST, ["api", "file", id]) => {
                let id = id.to_string();
                self.download(&id, req).await
            }
            _ => Err((StatusCode::NOT_FOUND, "no such route".to_owned())),
        };
        res.unwrap_or_else(|(status, msg)| json_response(status, json!({"success": false, "error": msg})))
    }

    async fn initiate(&self, req: Request<Incoming>) -> Result<Response<Body>, (StatusCode, String)> {
        let body = read_json(req).await?;
        let filesize = body.get("filesize").and_then(Value::as_u64).ok_or_else(|| bad("`filesize` is required"))?;
        let total = filesize.div_ceil(self.chunk_size).max(1);
        let id = self.new_id();
        tokio::fs::create_dir(self.dir.join(&id)).await.map_err(internal)?;
        let upload = Upload { chunks: vec![None; total as usize], size: None };
        self.uploads.lock().unwrap().insert(id.clone(), upload);
        Ok(json_response(
            StatusCode::OK,
            json!({"success": true, "uploadId": id, "chunkSize": self.chunk_size, "totalChunks": total}),
        ))
    }

    async fn chunk(
        &self,
        id: &str,
        index: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let index: usize = index.parse().map_err(|_| bad("bad chunk index"))?;
        {
            let uploads = self.uploads.lock().unwrap();
            let up = uploads.get(id).ok_or_else(|| not_found("no such upload"))?;
            if index >= up.chunks.len() || up.size.is_some() {
                return Err(bad("chunk index out of range, or upload already complete"));
            }
        }
        let path = self.dir.join(id).join(index.to_string());
        // One blocking-pool thread owns the file: it writes each frame as the async side hands
        // it over (a queue of one, so at most a couple of frames are held), then fdatasyncs.
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut file = std::fs::File::create(&path)?;
            let mut n = 0u64;
            while let Some(bytes) = rx.blocking_recv() {
                file.write_all(&bytes)?;
                n += bytes.len() as u64;
            }
            file.sync_data()?;
            Ok(n)
        });
        let mut body = req.into_body();
        let mut read_err = None;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            break; // the writer failed; its error is reported below
                        }
                    }
                }
                Err(e) => {
                    read_err = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| internal(io::Error::other(e)))?.map_err(internal)?;
        if let Some(e) = read_err {
            return Err(bad(&format!("reading the body: {e}")));
        }
        let mut uploads = self.uploads.lock().unwrap();
        let up = uploads.get_mut(id).ok_or_else(|| not_found("no such upload"))?;
        up.chunks[index] = Some(written);
        Ok(json_response(StatusCode::OK, json!({"success": true})))
    }

    async fn complete(&self, id: &str, req: Request<Incoming>) -> Result<Response<Body>, (StatusCode, String)> {
        read_json(req).await?;
        let size = {
            let uploads = self.uploads.lock().unwrap();
            let up = uploads.get(id).ok_or_else(|| not_found("no such upload"))?;
            up.chunks.iter().try_fold(0u64, |sum, c| c.map(|n| sum + n)).ok_or_else(|| bad("chunks missing"))?
        };
        // The chunk files' data is synced; one fsync of the directory makes their names durable.
        let dir = self.dir.join(id);
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(|e| internal(io::Error::other(e)))?
            .map_err(internal)?;
        self.uploads.lock().unwrap().get_mut(id).ok_or_else(|| not_found("no such upload"))?.size = Some(size);
        Ok(json_response(StatusCode::OK, json!({"success": true, "clipId": id, "size": size})))
    }

    async fn download(&self, id: &str, req: Request<Incoming>) -> Result<Response<Body>, (StatusCode, String)> {
        read_json(req).await?;
        let (size, count) = {
            let uploads = self.uploads.lock().unwrap();
            let up = uploads.get(id).ok_or_else(|| not_found("no such clip"))?;
            (up.size.ok_or_else(|| not_found("upload not complete"))?, up.chunks.len())
        };
        let dir = self.dir.join(id);
        let paths: Vec<PathBuf> = (0..count).map(|i| dir.join(i.to_string())).collect();
        // Each chunk file is opened when the one before it is done, read in 256 KiB buffers.
        let frames = stream::iter(paths.into_iter().map(Ok::<_, io::Error>))
            .and_then(|p: PathBuf| async move { tokio::fs::File::open(p).await })
            .map_ok(|f| ReaderStream::with_capacity(f, READ_BUF))
            .try_flatten()
            .map_ok(Frame::data);
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/octet-stream")
            .header("content-length", size)
            .body(BodyExt::boxed_unsync(StreamBody::new(frames)))
            .expect("valid response"))
    }

    /// 16 upper-case hex digits, unique within this process (a counter mixed with the start time).
    fn new_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        let mut x = t ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // splitmix64 finaliser: a bijection, so distinct inputs stay distinct.
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        format!("{x:016X}")
    }
}

/// Read a small body (all of it, so the connection stays reusable) as JSON; empty means `{}`.
async fn read_json(req: Request<Incoming>) -> Result<Value, (StatusCode, String)> {
    let bytes = Limited::new(req.into_body(), JSON_LIMIT)
        .collect()
        .await
        .map_err(|e| bad(&format!("reading the body: {e}")))?
        .to_bytes();
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| bad(&format!("body is not JSON: {e}")))
}

fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())).map_err(|never| match never {}).boxed_unsync())
        .expect("valid response")
}

fn bad(msg: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, msg.to_owned())
}

fn not_found(msg: &str) -> (StatusCode, String) {
    (StatusCode::NOT_FOUND, msg.to_owned())
}

fn internal(e: io::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}
