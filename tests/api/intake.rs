//! Streaming intake at the socket level: a client that vanishes mid-chunk leaves nothing
//! recorded, a declared-oversized chunk is refused before its body is read, a stalled request
//! is answered 408 at its deadline (the longer upload deadline on streaming routes), and
//! shutdown lets an upload that is mid-body finish.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Blob, TestApp};

async fn initiate(app: &TestApp, total_chunks: u32) -> String {
    let res = app
        .client
        .post(app.url("/api/upload/initiate"))
        .json(&json!({ "filename": "x.bin", "totalChunks": total_chunks, "contentType": "file" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["uploadId"].as_str().unwrap().to_string()
}

fn chunk_head(upload: &str, index: u32, length: u64) -> String {
    format!(
        "POST /api/upload/chunk/{upload}/{index} HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out)).await.expect("response in time").ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Temp files in the filesystem store's temp directory (fs variants only).
fn temp_files(app: &TestApp) -> usize {
    assert_eq!(app.blob, Blob::Fs, "temp files are the filesystem store's");
    std::fs::read_dir(app.data_dir.path().join("blobs/.tmp")).map(|d| d.count()).unwrap_or(0)
}

all_backends! {
    async fn a_client_that_disconnects_mid_chunk_leaves_no_chunk_recorded(app) {
        let upload = initiate(&app, 1).await;
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(chunk_head(&upload, 0, 200_000).as_bytes()).await.unwrap();
        s.write_all(&vec![7u8; 100_000]).await.unwrap();
        s.flush().await.unwrap();
        drop(s);
        // The server notices the broken body, drops the partial write (a temp file, or on S3 an
        // open multipart upload) and records nothing.
        let mut status = Value::Null;
        for _ in 0..100 {
            status = app.get(&format!("/api/upload/{upload}/status")).await.json().await.unwrap();
            if app.partial_blob_count().await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(status["receivedChunks"], json!([]));
        assert_eq!(status["uploadedChunks"], 0);
        assert_eq!(app.partial_blob_count().await, 0, "no partial write remains");
        assert_eq!(app.chunk_blob_count(&upload).await, 0, "no chunk blob of {upload} is stored");
    }

    async fn a_chunk_declared_too_large_is_refused_before_its_body_is_sent(
        app,
        |c: &mut ferry::Config| c.limits.chunk_size = ferry::config::ByteSize(64 * 1024)
    ) {
        let upload = initiate(&app, 1).await;
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        // Headers only: the answer must come without the 10 MB body.
        s.write_all(chunk_head(&upload, 0, 10_000_000).as_bytes()).await.unwrap();
        let response = read_response(&mut s).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        assert!(response.contains("\"code\":\"payload_too_large\""), "{response}");
    }

    async fn a_json_request_that_stalls_past_the_request_deadline_is_answered_408(
        app,
        |c: &mut ferry::Config| c.server.request_timeout = Duration::from_secs(1)
    ) {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        let head = "POST /api/upload/initiate HTTP/1.1\r\nHost: localhost\r\n\
                    Content-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"filename\":";
        s.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let response = read_response(&mut s).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("\"code\":\"timeout\""), "{response}");
        assert!(response.to_ascii_lowercase().contains("x-request-id:"), "{response}");
        assert!(started.elapsed() >= Duration::from_millis(900), "answered at the deadline, not before");
    }

    async fn a_streaming_upload_gets_the_longer_upload_deadline(
        app,
        |c: &mut ferry::Config| {
            c.server.request_timeout = Duration::from_secs(1);
            c.server.upload_timeout = Duration::from_secs(3);
        }
    ) {
        let upload = initiate(&app, 1).await;
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(chunk_head(&upload, 0, 1000).as_bytes()).await.unwrap();
        s.write_all(&[1u8; 10]).await.unwrap();
        let started = std::time::Instant::now();
        let response = read_response(&mut s).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(started.elapsed() >= Duration::from_millis(2500), "the chunk route waited for the upload deadline");
        let status = app.get(&format!("/api/upload/{upload}/status")).await.json::<Value>().await.unwrap();
        assert_eq!(status["receivedChunks"], json!([]), "a timed-out chunk is not recorded");
    }

    fs_only {
        // The temp file is how the test sees the handler streaming; an S3 writer holds a small
        // chunk in memory, with nothing to see until it is done.
        async fn shutdown_lets_an_upload_in_mid_body_finish(app) {
            let upload = initiate(&app, 1).await;
            let mut s = TcpStream::connect(app.addr).await.unwrap();
            s.write_all(chunk_head(&upload, 0, 100_000).as_bytes()).await.unwrap();
            s.write_all(&vec![1u8; 50_000]).await.unwrap();
            s.flush().await.unwrap();
            // In flight means the handler is streaming: its temp file exists.
            for _ in 0..200 {
                if temp_files(&app) == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(temp_files(&app), 1, "the chunk is being received");
            let draining = app.begin_shutdown();
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!draining.is_finished(), "shutdown waits for the request in flight");
            s.write_all(&vec![1u8; 50_000]).await.unwrap();
            let response = read_response(&mut s).await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            assert!(response.contains("\"received\":true"), "{response}");
            tokio::time::timeout(Duration::from_secs(5), draining).await.expect("drained").unwrap().unwrap();
        }
    }
}
