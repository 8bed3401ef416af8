//! Dependency outages against the real binary, caused for real: a PostgreSQL cluster of the
//! test's own (initdb on a free port, so the shared server is never touched) stopped, started
//! again and frozen with SIGSTOP under load; a table lock held on the shared server; SQLite's
//! write lock held by another process; a private Redis frozen with SIGSTOP. In every case store
//! requests answer `503 database_unavailable` with `Retry-After` within `store.query_timeout`
//! (never a 500, never a hang), `/health` and `/readyz` report it, the pool recovers by itself
//! once the database is back, and every write that was acknowledged is there afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::helpers::{PrivateRedis, Proc, TestDb, binary, ci, note_skip, pg_server_url, poll_until, spawn_binary};

const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// What a request may take while the database is down: the query timeout plus scheduling slack
/// on a loaded two-core machine.
const BOUND: Duration = Duration::from_millis(2500);

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// A PostgreSQL cluster of the test's own

struct PrivatePg {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    /// Run the cluster's programs as this (uid, gid): root may not run PostgreSQL.
    run_as: Option<(u32, u32)>,
}

/// The uid and gid of the `postgres` account.
fn postgres_account() -> (u32, u32) {
    let name = std::ffi::CString::new("postgres").unwrap();
    // SAFETY: getpwnam returns a pointer into static storage, read at once; no other thread of
    // this test process calls it concurrently for a different name in a way that matters here.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!pw.is_null(), "no postgres account to run the private cluster as");
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

impl PrivatePg {
    /// `None` (skip) outside CI when PostgreSQL's server programs are not installed.
    fn start() -> Option<PrivatePg> {
        let (Some(initdb), Some(_)) = (pg_bin("initdb"), pg_bin("postgres")) else {
            assert!(!ci(), "PostgreSQL's server programs (initdb, postgres) are required when CI=true");
            note_skip("private PostgreSQL", "no /usr/lib/postgresql/*/bin/initdb; install postgresql");
            return None;
        };
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(postgres_account);
        let dir = tempfile::tempdir().unwrap();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the private cluster's directory");
        }
        let data = dir.path().join("data");
        let out = Self::command(&run_as, &initdb)
            .current_dir(dir.path())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut pg = PrivatePg { dir, port, server: None, run_as };
        pg.launch();
        Some(pg)
    }

    /// The program itself (no su-like wrapper, whose job control would stop along with a
    /// frozen server), under the cluster's account.
    fn command(run_as: &Option<(u32, u32)>, program: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(program);
        if let Some((uid, gid)) = *run_as {
            c.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Start the server and wait until it accepts connections.
    fn launch(&mut self) {
        let postgres = pg_bin("postgres").unwrap();
        let child = Self::command(&self.run_as, &postgres)
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the private PostgreSQL");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = Command::new(pg_bin("pg_isready").unwrap())
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the private PostgreSQL did not start");
    }

    fn postmaster(&self) -> u32 {
        self.server.as_ref().expect("running").id()
    }

    /// The postmaster and every backend it started.
    fn processes(&self) -> Vec<u32> {
        let main = self.postmaster();
        let out = Command::new("pgrep").args(["-P", &main.to_string()]).output().unwrap();
        let mut all: Vec<u32> =
            String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        all.push(main);
        all
    }

    fn signal_all(&self, sig: &str) {
        for pid in self.processes() {
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
        }
    }

    /// A fast shutdown (clients disconnected, no new connections), waited for.
    fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.server.is_some() {
            // A frozen cluster must be thawed to shut down.
            self.signal_all("CONT");
            self.stop();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load, and what it saw

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    status: u16,
    took: Duration,
    code: Option<String>,
    retry_after: Option<String>,
    what: &'static str,
}

#[derive(Default)]
struct Record {
    seen: Vec<Seen>,
    /// Clips whose creation was acknowledged: code -> sha256.
    acknowledged: Vec<(String, String)>,
}

fn url(proc: &Proc, path: &str) -> String {
    format!("http://{}{path}", proc.addr)
}

async fn observe(http: &reqwest::Client, req: reqwest::RequestBuilder, what: &'static str) -> (Seen, Option<Value>) {
    let started = Instant::now();
    let res = req.send().await;
    let took = started.elapsed();
    let _ = http;
    match res {
        Ok(res) => {
            let status = res.status().as_u16();
            let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_string());
            let body: Option<Value> = res.json().await.ok();
            let code = body.as_ref().and_then(|b| b["code"].as_str().map(str::to_string));
            (Seen { at: started, status, took, code, retry_after, what }, body)
        }
        // A transport error (a hang cut by the client's own timeout, a reset) is a failure too.
        Err(e) => (
            Seen { at: started, status: 0, took, code: Some(format!("transport: {e}")), retry_after: None, what },
            None,
        ),
    }
}

/// Clients making clips, looking them up and downloading them until `stop`.
fn load(
    proc: &Proc,
    workers: usize,
    stop: tokio_util::sync::CancellationToken,
) -> (Arc<Mutex<Record>>, Vec<tokio::task::JoinHandle<()>>) {
    let record = Arc::new(Mutex::new(Record::default()));
    let base = url(proc, "");
    let mut handles = Vec::new();
    for w in 0..workers {
        let (record, base, stop) = (record.clone(), base.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            // The client's own timeout would turn a server hang into a transport error.
            let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
            let mut i = 0u64;
            while !stop.is_cancelled() {
                i += 1;
                let bytes = format!("worker {w} clip {i} {}", rand_suffix()).into_bytes();
                let req = http
                    .put(format!("{base}/api/clips/w{w}-{i}.txt"))
                    .header("accept", "application/json")
                    .body(bytes.clone());
                let (seen, body) = observe(&http, req, "create").await;
                let mut made = None;
                if seen.status == 200 {
                    let code = body.unwrap()["clipId"].as_str().expect("clipId").to_string();
                    record.lock().unwrap().acknowledged.push((code.clone(), sha256_hex(&bytes)));
                    made = Some(code);
                }
                record.lock().unwrap().seen.push(seen);
                let known = made.or_else(|| record.lock().unwrap().acknowledged.last().map(|(c, _)| c.clone()));
                if let Some(code) = known {
                    let (seen, _) = observe(&http, http.get(format!("{base}/api/clip/{code}/info")), "info").await;
                    record.lock().unwrap().seen.push(seen);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    (record, handles)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// Everything in `seen` from `since` on is a 200, or a 503 `database_unavailable` with
/// Retry-After that came within the bound; returns the failures' count.
fn judge_outage(seen: &[Seen], since: Instant, phase: &str) -> usize {
    let mut errors = 0;
    for s in seen.iter().filter(|s| s.at >= since) {
        if s.status == 200 {
            continue;
        }
        errors += 1;
        assert_eq!(s.status, 503, "{phase}, {}: {s:?}", s.what);
        assert_eq!(s.code.as_deref(), Some("database_unavailable"), "{phase}: {s:?}");
        assert!(s.retry_after.as_deref().is_some_and(|v| v.parse::<u32>().is_ok_and(|n| n > 0)), "{phase}: {s:?}");
        assert!(s.took <= BOUND, "{phase}: answered after {:?}: {s:?}", s.took);
    }
    errors
}

async fn status_and_body(http: &reqwest::Client, url: String) -> (u16, Value, Duration) {
    let started = Instant::now();
    let res = http.get(url).send().await.expect("health answers");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null), started.elapsed())
}

/// Wait until a store-backed request succeeds again; how long that took.
async fn recovery(http: &reqwest::Client, proc: &Proc) -> Duration {
    let started = Instant::now();
    let ok = poll_until(400, Duration::from_millis(25), || async {
        http.put(url(proc, "/api/clips/probe.txt")).body("probe").send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(ok, "the store did not recover within 10 s");
    started.elapsed()
}

/// The real binary on `data`, with `env` over the defaults every test here wants.
fn ferry_with(data: &Path, env: &[(&str, String)]) -> Proc {
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", data).env("FERRY_BIND", "127.0.0.1:0").env("FERRY_RATE_LIMITS", "off");
    for (key, value) in env {
        cmd.env(key, value);
    }
    spawn_binary(cmd)
}

fn ferry_on(database_url: &str, data: &Path) -> Proc {
    ferry_with(
        data,
        &[
            ("FERRY_CACHE", "none".into()),
            ("FERRY_DATABASE_URL", database_url.into()),
            ("FERRY_STORE__QUERY_TIMEOUT", format!("{}ms", QUERY_TIMEOUT.as_millis())),
            ("FERRY_STORE__ACQUIRE_TIMEOUT", "1s".into()),
            ("FERRY_STORE__CONNECT_TIMEOUT", "1s".into()),
            ("FERRY_SERVER__HEALTH_CHECK_TIMEOUT", "500ms".into()),
        ],
    )
}

/// A small clip made while everything is up; its code.
async fn a_clip(http: &reqwest::Client, proc: &Proc) -> String {
    let res =
        http.put(url(proc, "/api/clips/a.txt")).header("accept", "application/json").body("a").send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["clipId"].as_str().unwrap().to_string()
}

async fn every_acknowledged_clip_downloads(http: &reqwest::Client, proc: &Proc, record: &Record) {
    assert!(!record.acknowledged.is_empty());
    for (code, sha) in &record.acknowledged {
        let res = http.get(url(proc, &format!("/raw/{code}"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "acknowledged clip {code}");
        assert_eq!(&sha256_hex(&res.bytes().await.unwrap()), sha, "acknowledged clip {code} intact");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_restarted_and_frozen_under_load_answers_503_and_recovers_by_itself() {
    let Some(mut pg) = PrivatePg::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let proc = ferry_on(&pg.url(), data.path());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (record, workers) = load(&proc, 4, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 1. Stopped: refused connections.
    let down = Instant::now();
    pg.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body, took) = status_and_body(&http, url(&proc, "/health")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], "disconnected", "{body}");
    assert!(took <= BOUND, "/health took {took:?}");
    let (status, body, took) = status_and_body(&http, url(&proc, "/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(took <= BOUND, "/readyz took {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = Instant::now();
    pg.launch();
    let recovered_stop = recovery(&http, &proc).await;

    // 2. Frozen: every process of the cluster stopped; connections hang instead of failing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen = Instant::now();
    pg.signal_all("STOP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body, took) = status_and_body(&http, url(&proc, "/readyz")).await;
    assert_eq!(status, 503, "a frozen database makes /readyz fail: {body}");
    assert!(took <= BOUND, "/readyz took {took:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let thawed = Instant::now();
    pg.signal_all("CONT");
    let recovered_freeze = recovery(&http, &proc).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }

    let record = std::mem::take(&mut *record.lock().unwrap());
    let stop_errors = judge_outage(&record.seen, down, "stopped");
    let freeze_errors = judge_outage(&record.seen, frozen, "frozen");
    let window = |from: Instant, to: Instant| {
        let errs: Vec<&Seen> = record.seen.iter().filter(|s| s.at >= from && s.at < to && s.status != 200).collect();
        match (errs.first(), errs.last()) {
            (Some(a), Some(b)) => (b.at + b.took).duration_since(a.at),
            _ => Duration::ZERO,
        }
    };
    eprintln!(
        "postgres outage: {} requests; stopped 3 s: {stop_errors} errors (all 503), window {:?}, recovered {recovered_stop:?} after restart; \
         frozen 3 s: {freeze_errors} errors (all 503), window {:?}, recovered {recovered_freeze:?} after SIGCONT; slowest answer {:?}",
        record.seen.len(),
        window(down, restarted + recovered_stop),
        window(frozen, thawed + recovered_freeze),
        record.seen.iter().map(|s| s.took).max().unwrap(),
    );
    assert!(stop_errors > 0 && freeze_errors > 0, "the outages were seen by the clients");
    assert!(recovered_stop < Duration::from_secs(5) && recovered_freeze < Duration::from_secs(5));
    every_acknowledged_clip_downloads(&http, &proc, &record).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lock_held_on_postgres_fails_requests_within_the_query_timeout_and_fails_readyz() {
    let Some(server) = pg_server_url() else { return };
    let db = TestDb::create(&server).await;
    let data = tempfile::tempdir().unwrap();
    let proc = ferry_on(&db.url, data.path());
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let code = a_clip(&http, &proc).await;

    // Another session takes the clips table for 4 s.
    let locker = crate::helpers::pg_connect(&db.url).await;
    locker.batch_execute("BEGIN; LOCK TABLE clips IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let locked = Instant::now();
    let (s1, _) = observe(&http, http.get(url(&proc, &format!("/api/clip/{code}/info"))), "info").await;
    let (s2, _) = observe(&http, http.put(url(&proc, "/api/clips/b.txt")).body("b"), "create").await;
    let (status, body, took) = status_and_body(&http, url(&proc, "/readyz")).await;
    for s in [&s1, &s2] {
        assert_eq!((s.status, s.code.as_deref()), (503, Some("database_unavailable")), "{s:?}");
        assert!(s.retry_after.is_some() && s.took <= BOUND, "{s:?}");
    }
    assert_eq!(status, 503, "/readyz while the table is locked: {body}");
    assert!(took <= BOUND);
    assert!(locked.elapsed() < Duration::from_secs(4), "checked while the lock was held");
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(locked.elapsed())).await;
    locker.batch_execute("COMMIT").await.unwrap();
    let back = recovery(&http, &proc).await;
    eprintln!(
        "table lock: info {:?}, create {:?}, /readyz {took:?}; recovered {back:?} after the lock went",
        s1.took, s2.took
    );
    let res = http.get(url(&proc, &format!("/api/clip/{code}/info"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlites_write_lock_held_elsewhere_fails_writes_with_503_and_reads_go_on() {
    let data = tempfile::tempdir().unwrap();
    let proc = ferry_with(
        data.path(),
        &[
            ("FERRY_CACHE", "none".into()),
            ("FERRY_STORE__SQLITE_BUSY_TIMEOUT", "500ms".into()),
            ("FERRY_STORE__QUERY_TIMEOUT", "1s".into()),
        ],
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let code = a_clip(&http, &proc).await;

    let db = rusqlite::Connection::open(data.path().join("ferry.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (write, _) = observe(&http, http.put(url(&proc, "/api/clips/b.txt")).body("b"), "create").await;
    assert_eq!((write.status, write.code.as_deref()), (503, Some("database_unavailable")), "{write:?}");
    assert!(write.retry_after.is_some() && write.took <= BOUND, "{write:?}");
    let (read, _) = observe(&http, http.get(url(&proc, &format!("/api/clip/{code}/info"))), "info").await;
    assert_eq!(read.status, 200, "reads are not blocked by a writer (WAL): {read:?}");
    db.execute_batch("ROLLBACK").unwrap();
    let back = recovery(&http, &proc).await;
    eprintln!("sqlite write lock: create answered 503 after {:?}; recovered {back:?}", write.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_slows_neither_lookups_nor_rate_limits_beyond_their_timeouts() {
    let Some(redis) = PrivateRedis::start() else { return };
    let data = tempfile::tempdir().unwrap();
    let proc = ferry_with(
        data.path(),
        &[
            ("FERRY_RATE_LIMITS", "on".into()),
            ("FERRY_REDIS_URL", redis.url()),
            ("FERRY_RATE__BACKEND", "redis".into()),
            ("FERRY_RATE__READS_PER_MINUTE", "100000".into()),
            ("FERRY_LOOKUP_CACHE__TTL", "100ms".into()),
        ],
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let code = a_clip(&http, &proc).await;
    let shared = poll_until(200, Duration::from_millis(25), || async {
        let (_, body, _) = status_and_body(&http, url(&proc, "/health")).await;
        body["rateLimits"] == "redis"
    })
    .await;
    assert!(shared, "rate limits shared through Redis");

    redis.freeze();
    let mut took = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let t = Instant::now();
        let res = http.get(url(&proc, &format!("/api/clip/{code}/info"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        took.push(t.elapsed());
    }
    took.sort();
    let (p99, max) = (took[took.len() * 99 / 100], *took.last().unwrap());
    let (status, body, _) = status_and_body(&http, url(&proc, "/health")).await;
    assert_eq!(status, 200, "Redis is never a required dependency: {body}");
    assert_eq!(body["rateLimits"], "memory (redis unavailable)", "{body}");
    redis.thaw();
    eprintln!("redis frozen: {} lookups, p99 {p99:?}, max {max:?}", took.len());
    // A failed call rests Redis for a second: one lookup-cache deadline (100 ms) and one
    // limiter deadline (50 ms) a second at most, plus slack.
    assert!(max < Duration::from_millis(400), "max {max:?}");
    assert!(p99 < Duration::from_millis(50), "p99 {p99:?}");
    // The limiter learns that Redis is back from the next limited request.
    let back = poll_until(200, Duration::from_millis(50), || async {
        http.get(url(&proc, &format!("/api/clip/{code}/info"))).send().await.unwrap();
        let (_, body, _) = status_and_body(&http, url(&proc, "/health")).await;
        body["rateLimits"] == "redis"
    })
    .await;
    assert!(back, "shared again once Redis answers");
}
