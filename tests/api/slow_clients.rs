//! Slow, idle and too many clients against the real binary: a thousand connections that send
//! nothing, trickle a header line at a time, or sit idle after one request are all closed within
//! the configured timeouts while normal clients' pings and cached lookups stay fast; a chunk
//! body that stops arriving is answered 408 `body_timeout` long before the upload deadline; a
//! kept-alive connection outlives the header timeout; a client that stops reading a download is
//! cut off; at the connection limit the longest-idle connection makes room (under a low
//! descriptor limit too), and when every connection is busy a new one is closed at once; a
//! connection budget the descriptor limit cannot hold stops the server at startup.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Proc, binary, spawn_binary};

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A ferry process on its own data directory with short connection timeouts.
struct Server {
    _dir: tempfile::TempDir,
    proc: Proc,
    http: reqwest::Client,
}

impl Server {
    fn start(extra: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = binary();
        cmd.env("FERRY_DATA_DIR", dir.path())
            .env("FERRY_BIND", "127.0.0.1:0")
            .env("FERRY_RATE_LIMITS", "off")
            .env("FERRY_SERVER__HEADER_READ_TIMEOUT", format!("{}ms", HEADER_TIMEOUT.as_millis()))
            .env("FERRY_SERVER__IDLE_TIMEOUT", format!("{}ms", IDLE_TIMEOUT.as_millis()))
            .env("FERRY_SERVER__BODY_IDLE_TIMEOUT", format!("{}ms", BODY_IDLE_TIMEOUT.as_millis()));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        if let Some(n) = nofile {
            limit_descriptors(&mut cmd, n);
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        Server { _dir: dir, proc: spawn_binary(cmd), http }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proc.addr)
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.proc.addr).await.expect("connect")
    }

    /// A plaintext clip; its code.
    async fn clip(&self, name: &str, bytes: Vec<u8>) -> String {
        let res = self
            .http
            .put(self.url(&format!("/api/clips/{name}")))
            .header("accept", "application/json")
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["clipId"].as_str().or(body["code"].as_str()).expect("clip code").to_string()
    }

    /// `ferry_connections_closed_total` for `reason`.
    async fn closed_count(&self, reason: &str) -> u64 {
        let text = self.http.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let needle = format!("ferry_connections_closed_total{{reason=\"{reason}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&needle)).map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    }
}

/// Start the child with at most `n` open descriptors (soft and hard).
fn limit_descriptors(cmd: &mut Command, n: u64) {
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit { rlim_cur: n as libc::rlim_t, rlim_max: n as libc::rlim_t };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Whether the server closes `s` within `wait` (what it sent before is read and dropped).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Send one keep-alive GET and read its whole (small, Content-Length) answer; its status.
async fn get_on(s: &mut TcpStream, path: &str) -> u16 {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("answer").unwrap();
        assert!(n > 0, "closed before answering");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + len {
                return head[9..12].parse().unwrap();
            }
        }
    }
}

/// The 99th percentile of `samples`.
fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[((samples.len() * 99).div_ceil(100)).saturating_sub(1)]
}

#[tokio::test]
async fn a_thousand_idle_and_trickling_connections_are_closed_in_time_while_normal_clients_stay_fast() {
    let server = Server::start(&[("FERRY_LIMITS__CHUNK_SIZE", "1MiB")], None);
    let code = server.clip("hello.txt", b"hello".to_vec()).await;
    let res = server
        .http
        .post(server.url("/api/upload/initiate"))
        .json(&serde_json::json!({
            "filename": "stall.bin", "filesize": 1 << 20, "contentType": "file", "isTextContent": false
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let upload = res.json::<Value>().await.unwrap()["uploadId"].as_str().unwrap().to_string();

    // 400 that send nothing, 300 that trickle header lines, 300 idle after one request.
    let mut silent = Vec::new();
    for _ in 0..400 {
        silent.push(server.connect().await);
    }
    let silent_opened = Instant::now();
    let mut trickling = Vec::new();
    for _ in 0..300 {
        let mut s = server.connect().await;
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        trickling.push(tokio::spawn(async move {
            // One more header line every 300 ms, for as long as the server listens.
            let started = Instant::now();
            let mut i = 0u32;
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                i += 1;
                if s.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
                    return started.elapsed();
                }
                if started.elapsed() > Duration::from_secs(30) {
                    return started.elapsed();
                }
                // A closed socket shows as a failed write only after the reset arrives.
                let mut probe = [0u8; 64];
                if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await {
                    return started.elapsed();
                }
            }
        }));
    }
    let mut kept_alive = Vec::new();
    for _ in 0..300 {
        let mut s = server.connect().await;
        assert_eq!(get_on(&mut s, "/ping").await, 200);
        kept_alive.push(s);
    }
    // The last of them became idle here; the first ones earlier.
    let kept_idle = Instant::now();
    // A chunk that declares 1 MiB, sends 100 KiB and stops.
    let mut stalled = server.connect().await;
    stalled
        .write_all(
            format!(
                "POST /api/upload/chunk/{upload}/0 HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                1 << 20
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stalled.write_all(&vec![7u8; 100 * 1024]).await.unwrap();
    let stalled_at = Instant::now();
    let stalled_answer = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(20), stalled.read_to_end(&mut got)).await;
        (stalled_at.elapsed(), String::from_utf8_lossy(&got).to_string())
    });

    // Meanwhile a normal client pings and looks up a (cached) clip.
    let mut pings = Vec::new();
    let mut lookups = Vec::new();
    let normal_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < normal_until {
        let t = Instant::now();
        assert_eq!(server.http.get(server.url("/ping")).send().await.unwrap().status(), 200);
        pings.push(t.elapsed());
        let t = Instant::now();
        let res = server.http.get(server.url(&format!("/api/clip/{code}/info"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap();
        lookups.push(t.elapsed());
    }
    let (ping_p99, lookup_p99) = (p99(&mut pings), p99(&mut lookups));
    eprintln!(
        "during the attack: {} pings p99 {ping_p99:?}, {} cached lookups p99 {lookup_p99:?}",
        pings.len(),
        lookups.len()
    );
    assert!(ping_p99 < Duration::from_millis(50), "ping p99 {ping_p99:?}");
    assert!(lookup_p99 < Duration::from_millis(50), "lookup p99 {lookup_p99:?}");

    // The stalled body is answered 408 once it has been silent for the body idle timeout.
    let (took, answer) = stalled_answer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:.200}");
    assert!(answer.contains("\"code\":\"body_timeout\""), "{answer:.400}");
    assert!(took >= BODY_IDLE_TIMEOUT && took < BODY_IDLE_TIMEOUT + Duration::from_secs(3), "408 after {took:?}");
    let status: Value = server
        .http
        .get(server.url(&format!("/api/upload/{upload}/status")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["uploadedChunks"], 0, "nothing of the stalled chunk kept: {status}");

    // Every attacking connection is gone within its timeout (plus a margin for a loaded machine).
    let margin = Duration::from_secs(3);
    // Each group is timed from when its last connection opened (or went idle).
    let deadline = |from: Instant, t: Duration| (from + t + margin).saturating_duration_since(Instant::now());
    let silent_closed = futures_util::future::join_all(
        silent.iter_mut().map(|s| closed_within(s, deadline(silent_opened, HEADER_TIMEOUT))),
    )
    .await;
    assert_eq!(silent_closed.iter().filter(|c| **c).count(), 400, "silent connections closed");
    let kept_closed = futures_util::future::join_all(
        kept_alive.iter_mut().map(|s| closed_within(s, deadline(kept_idle, IDLE_TIMEOUT))),
    )
    .await;
    assert_eq!(kept_closed.iter().filter(|c| **c).count(), 300, "idle keep-alive connections closed");
    for t in trickling {
        let lived = t.await.unwrap();
        assert!(lived < HEADER_TIMEOUT + margin, "a trickling connection lived {lived:?}");
    }
    assert!(server.closed_count("header_timeout").await >= 700);
    assert!(server.closed_count("idle").await >= 300);
    // And the server still serves.
    assert_eq!(server.http.get(server.url("/ping")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_kept_alive_connection_outlives_the_header_timeout_until_the_idle_timeout() {
    let server = Server::start(&[], None);
    let mut s = server.connect().await;
    assert_eq!(get_on(&mut s, "/ping").await, 200);
    // Longer than the header timeout, shorter than the idle timeout: still open.
    tokio::time::sleep(HEADER_TIMEOUT + Duration::from_millis(1500)).await;
    assert_eq!(get_on(&mut s, "/ping").await, 200, "a kept-alive connection is not cut by the header timer");
    let started = Instant::now();
    assert!(closed_within(&mut s, IDLE_TIMEOUT + Duration::from_secs(3)).await);
    let lived = started.elapsed();
    assert!(lived >= IDLE_TIMEOUT - Duration::from_millis(200), "closed after {lived:?}, before the idle timeout");
}

#[tokio::test]
async fn a_client_that_stops_reading_a_download_is_cut_off() {
    let server = Server::start(&[], None);
    let code = server.clip("big.bin", vec![42u8; 48 << 20]).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.proc.addr).await.unwrap();
    s.write_all(format!("GET /raw/{code} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).await.unwrap();
    // Read nothing: the server's writes block, and after the body idle timeout it gives up.
    let cut = async {
        loop {
            if server.closed_count("write_stall").await >= 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(BODY_IDLE_TIMEOUT + Duration::from_secs(6), cut)
        .await
        .expect("the stalled download was cut off");
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn at_the_connection_limit_idle_connections_make_room_even_under_a_low_descriptor_limit() {
    // 512 descriptors: room for 256 connections; the server keeps 100.
    let server = Server::start(
        &[("FERRY_SERVER__MAX_CONNECTIONS", "100"), ("FERRY_SERVER__HEADER_READ_TIMEOUT", "60s")],
        Some(512),
    );
    let mut attack = Vec::new();
    for _ in 0..1000 {
        attack.push(server.connect().await);
    }
    // Every attacker beyond the limit made room by closing the longest-idle connection, and
    // nothing failed for want of descriptors.
    let caught_up = crate::helpers::poll_until(100, Duration::from_millis(100), || async {
        server.closed_count("evicted").await >= 900
    })
    .await;
    assert!(caught_up, "idle connections were closed to make room");
    // New clients, each on a fresh connection, are served at once.
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(5)).build().unwrap();
    let mut took = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let res = fresh.get(server.url("/ping")).send().await.expect("a normal client is served during the attack");
        assert_eq!(res.status(), 200);
        took.push(t.elapsed());
    }
    let p99 = p99(&mut took);
    eprintln!("under 512 descriptors with 1000 idle connections: 50 fresh pings, p99 {p99:?}");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    let log: Vec<String> = server.proc.log.try_iter().collect();
    assert!(!log.iter().any(|l| l.contains("accept failed")), "ran out of descriptors: {log:?}");
    // The oldest attackers were the ones closed.
    let mut first = attack.remove(0);
    assert!(closed_within(&mut first, Duration::from_secs(2)).await);
    drop(attack);
}

#[tokio::test]
async fn when_every_connection_is_busy_a_new_one_is_closed_at_once() {
    let server = Server::start(
        &[
            ("FERRY_SERVER__MAX_CONNECTIONS", "4"),
            ("FERRY_SERVER__BODY_IDLE_TIMEOUT", "30s"),
            ("FERRY_LIMITS__CHUNK_SIZE", "1MiB"),
        ],
        None,
    );
    // Four uploads in flight, each sending its body slowly.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut s = server.connect().await;
        s.write_all(b"PUT /api/clips/slow.bin HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\nabc")
            .await
            .unwrap();
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = server.connect().await;
    let started = Instant::now();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await, "the fifth connection is refused");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Once an upload gives up, there is room again.
    drop(busy.pop());
    let ok = crate::helpers::poll_until(50, Duration::from_millis(100), || async {
        reqwest::get(server.url("/ping")).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok, "served again once a connection freed up");
    assert!(server.closed_count("refused").await >= 1);
}

#[test]
fn a_connection_budget_the_descriptor_limit_cannot_hold_stops_the_server_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", dir.path()).env("FERRY_BIND", "127.0.0.1:0").env("FERRY_SERVER__MAX_CONNECTIONS", "5000");
    limit_descriptors(&mut cmd, 1024);
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "started anyway");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("server.max_connections = 5000") && text.contains("at most 768"), "{text}");
}

#[tokio::test]
async fn http2_is_served_and_an_oversized_header_list_is_refused() {
    let server = Server::start(&[("FERRY_SERVER__HTTP2_MAX_HEADER_LIST_SIZE", "1KiB")], None);
    let h2 = reqwest::Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(10)).build().unwrap();
    let res = h2.get(server.url("/ping")).send().await.expect("an HTTP/2 request");
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    // 4 KiB of headers against a 1 KiB list: refused (431, or the stream reset), never served.
    let refused = h2.get(server.url("/ping")).header("x-padding", "a".repeat(4096)).send().await;
    match refused {
        Ok(res) => assert_eq!(res.status(), 431, "an oversized header list"),
        Err(e) => assert!(!e.is_timeout(), "refused, not left hanging: {e}"),
    }
    // The connection (or a new one) still serves.
    assert_eq!(h2.get(server.url("/ping")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_trickling_body_is_cut_off_at_the_minimum_rate_and_a_slow_honest_one_is_not() {
    // 500 B/s over each 2 s of waiting (the body idle timeout here).
    let server = Server::start(&[("FERRY_SERVER__BODY_MIN_RATE", "500B")], None);
    let send = |rate_bytes: usize, every: Duration, total: usize| {
        let addr = server.proc.addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!("PUT /api/clips/t.bin HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n");
            s.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut sent = 0;
            while sent < total {
                let n = rate_bytes.min(total - sent);
                if s.write_all(&vec![b'x'; n]).await.is_err() {
                    break;
                }
                sent += n;
                tokio::time::sleep(every).await;
                // Stop trickling once the server has answered.
                let mut probe = [0u8; 1];
                if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), s.peek(&mut probe)).await {
                    break;
                }
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
            (started.elapsed(), String::from_utf8_lossy(&answer).to_string())
        }
    };
    // 10 bytes every 200 ms: 50 B/s, never silent for the idle timeout, far under the minimum.
    let (took, answer) = send(10, Duration::from_millis(200), 100_000).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:.300}");
    assert!(answer.contains("\"code\":\"body_timeout\"") && answer.contains("too slowly"), "{answer:.400}");
    assert!(took < BODY_IDLE_TIMEOUT + Duration::from_secs(4), "cut off after {took:?}");
    // 2 KiB every 200 ms (10 KiB/s) for 4 s: slow, but honest.
    let (_, answer) = send(2048, Duration::from_millis(200), 40 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.300}");
}
