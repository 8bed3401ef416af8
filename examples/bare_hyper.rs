//! The baseline for scripts/bench-lookup.sh: the least a hyper 1 server can do per request —
//! answer every request with one fixed JSON body — so ferry's cached lookup can be compared
//! against it on the same machine in the same run.
//!
//!     cargo run --release --example bare_hyper -- <port> <body-bytes>

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8090);
    let size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(120);
    // A JSON object padded to exactly `size` bytes, like ferry's info answer.
    let prefix = "{\"success\":true,\"pad\":\"";
    let pad = size.saturating_sub(prefix.len() + 2);
    let body = Bytes::from(format!("{prefix}{}\"}}", "x".repeat(pad)));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("listening on 127.0.0.1:{port} with a {}-byte body", body.len());
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .expect("valid response"),
                    )
                }
            });
            let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
