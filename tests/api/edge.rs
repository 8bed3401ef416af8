//! The request edge, seen from outside one real `ferry` process (its metrics are its own, not
//! shared with the other tests in this process): every request is logged under its route
//! template with its request id and never with a clip code, an access code or a client
//! address; the hot path and the router are counted under the same route; a request whose
//! client goes away mid-body leaves the in-flight gauge.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{binary, poll_until, signal, spawn_binary, wait_exit};

/// The value of the first sample whose line starts with `prefix` in a Prometheus text page.
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines().find(|l| l.starts_with(prefix))?.rsplit_once(' ')?.1.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_logged_and_counted_by_route_template_and_in_flight_ones_leave_the_gauge() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", dir.path()).env("FERRY_BIND", "127.0.0.1:0").env("FERRY_RATE_LIMITS", "off");
    cmd.env("FERRY_LOG__LEVEL", "info").env("FERRY_SERVER__SHUTDOWN_GRACE", "2s");
    let mut proc = spawn_binary(cmd);
    let base = format!("http://{}", proc.addr);
    let client = reqwest::Client::new();

    let access = "correct-horse-battery-staple";
    let link = client
        .put(format!("{base}/api/clips/secret.txt"))
        .header("access-code", access)
        .body("edge test bytes")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = link.trim().trim_end_matches('/').rsplit('/').next().unwrap().to_string();
    assert_eq!(code.len(), 10, "{link}");

    // One lookup through the hot path, one through the router (percent-encoded first char).
    let hot = client
        .get(format!("{base}/api/clip/{code}/info"))
        .header("x-forwarded-for", "203.0.113.77")
        .send()
        .await
        .unwrap();
    assert_eq!(hot.status(), 200);
    let request_id = hot.headers()["x-request-id"].to_str().unwrap().to_string();
    let encoded = format!("%{:02X}{}", code.as_bytes()[0], &code[1..]);
    let routed = client.get(format!("{base}/api/clip/{encoded}/info")).send().await.unwrap();
    assert_eq!(routed.status(), 200);
    // A caller's own request id is kept.
    let own =
        client.get(format!("{base}/api/clip/{code}/info")).header("x-request-id", "trace-me-123").send().await.unwrap();
    assert_eq!(own.headers()["x-request-id"], "trace-me-123");

    let page = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let info_2xx = "ferry_http_requests_total{route=\"/api/clip/{id}/info\",method=\"GET\",status=\"2xx\"}";
    assert_eq!(sample(&page, info_2xx), Some(3.0), "hot and routed lookups share one series:\n{page}");
    assert_eq!(sample(&page, "ferry_http_requests_in_flight"), Some(1.0), "only the metrics request itself");
    let rss = sample(&page, "process_resident_memory_bytes").expect("process RSS exported");
    assert!(rss > 1e6 && rss < 1e9, "{rss}");
    assert!(sample(&page, "process_open_fds").is_some_and(|n| n >= 3.0), "{page}");

    // A chunk upload whose client stalls, then vanishes.
    let init: serde_json::Value = client
        .post(format!("{base}/api/upload/initiate"))
        .json(&serde_json::json!({ "filename": "x.bin", "totalChunks": 1, "contentType": "file" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = init["uploadId"].as_str().unwrap();
    let mut stalled = TcpStream::connect(proc.addr).await.unwrap();
    let head = format!(
        "POST /api/upload/chunk/{upload}/0 HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&[0u8; 1000]).await.unwrap();
    let in_flight = || async {
        let page = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        sample(&page, "ferry_http_requests_in_flight")
    };
    poll_until(200, Duration::from_millis(10), || async { in_flight().await == Some(2.0) }).await;
    assert_eq!(in_flight().await, Some(2.0), "the stalled chunk is in flight");
    drop(stalled);
    poll_until(200, Duration::from_millis(10), || async { in_flight().await == Some(1.0) }).await;
    assert_eq!(in_flight().await, Some(1.0), "a request whose client went away is no longer in flight");

    signal(&proc.child, "TERM");
    assert!(wait_exit(&mut proc.child, Duration::from_secs(10)).success());
    let log: Vec<String> = proc.log.try_iter().collect();
    let finished: Vec<&String> = log.iter().filter(|l| l.contains("finished processing request")).collect();
    assert!(
        finished.iter().any(|l| l.contains("route=\"/api/clip/{id}/info\"") && l.contains(&request_id)),
        "the lookup is logged under its template with its request id: {finished:#?}"
    );
    assert!(finished.iter().any(|l| l.contains("trace-me-123")), "{finished:#?}");
    for line in &log {
        for secret in [code.as_str(), access, "203.0.113.77", upload] {
            assert!(!line.contains(secret), "log line leaks {secret}: {line}");
        }
    }
}
