//! Log output of the real binary at the default `info` level: every request's line and the
//! last line ("shutdown complete") reach stdout even though a background thread writes them,
//! `/metrics` counts the lines dropped, and a log reader that stops reading costs log lines,
//! never answers: requests keep being served and the server still stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::helpers::{Proc, binary, signal, spawn_binary, wait_exit};

/// Requests sent at once.
const PARALLEL: usize = 16;

/// The server at its default log level, with rate limits off: a burst from one address is the
/// point here, not something to refuse.
fn server_command(dir: &std::path::Path) -> std::process::Command {
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", dir).env("FERRY_BIND", "127.0.0.1:0").env("FERRY_RATE_LIMITS", "off");
    cmd
}

/// Store a small clip; its info route is the cached lookup every shared link starts with.
async fn info_url(client: &reqwest::Client, addr: SocketAddr) -> String {
    let link = client
        .put(format!("http://{addr}/api/clips/note.txt"))
        .body("hello")
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    // The link is `<base>/raw/<id>/note.txt`.
    let id = link.trim().rsplit('/').nth(1).unwrap().to_owned();
    format!("http://{addr}/api/clip/{id}/info")
}

/// GET `url` `count` times, `PARALLEL` at a time, each with its own `x-request-id`
/// (`{tag}-{n}`); every answer must be 200 within `limit`. Returns the slowest answer's time.
async fn burst(client: &reqwest::Client, url: &str, tag: &str, count: usize, limit: Duration) -> Duration {
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..PARALLEL {
        let (client, url, tag) = (client.clone(), url.to_owned(), tag.to_owned());
        workers.spawn(async move {
            let mut slowest = Duration::ZERO;
            for n in (w..count).step_by(PARALLEL) {
                let started = Instant::now();
                let res =
                    tokio::time::timeout(limit, client.get(&url).header("x-request-id", format!("{tag}-{n}")).send())
                        .await
                        .unwrap_or_else(|_| panic!("request {tag}-{n} got no answer within {limit:?}"))
                        .unwrap();
                assert_eq!(res.status(), 200, "request {tag}-{n}");
                res.bytes().await.unwrap();
                slowest = slowest.max(started.elapsed());
            }
            slowest
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(w) = workers.join_next().await {
        slowest = slowest.max(w.unwrap());
    }
    slowest
}

/// `ferry_log_lines_dropped_total` as `/metrics` shows it.
async fn dropped_lines(client: &reqwest::Client, addr: SocketAddr) -> u64 {
    let text = client.get(format!("http://{addr}/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("ferry_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no ferry_log_lines_dropped_total in /metrics:\n{text}"));
    line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64
}

#[test]
fn every_request_line_and_the_last_line_reach_stdout_when_the_server_stops() {
    const REQUESTS: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let mut proc = spawn_binary(server_command(dir.path()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let dropped = rt.block_on(async {
        let url = info_url(&client, proc.addr).await;
        burst(&client, &url, "burst", REQUESTS, Duration::from_secs(10)).await;
        dropped_lines(&client, proc.addr).await
    });
    assert_eq!(dropped, 0, "the test reads every line as it comes");

    signal(&proc.child, "TERM");
    assert!(wait_exit(&mut proc.child, Duration::from_secs(10)).success());
    // The reader thread ends at end of file, once the process and its writer are gone.
    let mut log = Vec::new();
    loop {
        match proc.log.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => log.push(line),
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("stdout still open 10 s after exit"),
        }
    }
    let ids: std::collections::HashSet<&str> = log
        .iter()
        .filter(|l| l.contains("finished processing request"))
        .filter_map(|l| l.split("request_id=").nth(1)?.split(['}', ' ']).next())
        .map(|id| id.trim_matches('"'))
        .collect();
    let missing: Vec<String> =
        (0..REQUESTS).map(|n| format!("burst-{n}")).filter(|id| !ids.contains(id.as_str())).collect();
    assert!(
        missing.is_empty(),
        "{} of {REQUESTS} request lines missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let last = log.last().map(String::as_str).unwrap_or_default();
    assert!(last.contains("shutdown complete"), "the last line is {last:?}");
}

#[test]
fn a_log_reader_that_stops_reading_costs_log_lines_not_answers() {
    // Lines pile up in the pipe (64 KiB), the writer's buffer (64 KiB) and the queue (16,384
    // lines) before any is dropped: bursts go on until one is, within a bound.
    const BATCH: usize = 2_000;
    const MAX_REQUESTS: usize = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = server_command(dir.path());
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn ferry");
    // Read up to the line naming the address, then never again (the pipe stays open).
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "ferry exited before listening");
        if let Some(rest) = line.split("listening addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().expect("listen address");
        }
    };
    let (_unused, log) = std::sync::mpsc::channel();
    let mut proc = Proc { child, addr, log };

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let (sent, slowest, dropped) = rt.block_on(async {
        let url = info_url(&client, addr).await;
        let (mut sent, mut slowest) = (0, Duration::ZERO);
        loop {
            // Were the request thread to wait for the sink, no answer would come at all.
            slowest = slowest.max(burst(&client, &url, &format!("b{sent}"), BATCH, Duration::from_secs(5)).await);
            sent += BATCH;
            let dropped = dropped_lines(&client, addr).await;
            if dropped > 0 || sent >= MAX_REQUESTS {
                return (sent, slowest, dropped);
            }
        }
    });
    assert!(dropped > 0, "no line dropped after {sent} requests with nobody reading");
    eprintln!("{sent} requests answered, slowest {slowest:?}; {dropped} log lines dropped");

    // Stopping must not wait for the stuck reader either (the log's flush is bounded).
    signal(&proc.child, "TERM");
    assert!(wait_exit(&mut proc.child, Duration::from_secs(15)).success());
    drop(stdout);
}
