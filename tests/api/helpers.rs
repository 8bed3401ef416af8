//! Test harness. `spawn_app(backend)` builds the real `Application` on 127.0.0.1:0 with a
//! fresh temp data dir and, for PostgreSQL, a fresh database cloned from a migrated template
//! (created once per run, keyed by the migrations' checksums). Without
//! `FERRY_TEST_DATABASE_URL` the PostgreSQL variants print SKIPPED and return; with `CI=true`
//! a missing URL fails them instead. Also spawns the real binary for CLI and signal tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferry::Application;
use ferry::config::{Config, Secret};
use ferry::domain::clock::ManualClock;
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Postgres,
}

/// Run the body once per backend combination (DESIGN rule 8): store embedded|postgres × cache
/// memory|redis, where "redis" is moka plus the shared Redis second level. Forms:
/// `async fn name(app) { .. }` and `async fn name(app, |c: &mut Config| { .. }) { .. }`; the
/// test's own configuration runs last, so a test may still turn the cache off or point it at
/// a Redis of its own.
macro_rules! all_backends {
    ($( $(#[$meta:meta])* async fn $name:ident($app:ident $(, $cfg:expr)?) $body:block )*) => {
        all_backends!(@module embedded, Embedded, false; $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
        all_backends!(@module postgres, Postgres, false; $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
        all_backends!(@module embedded_redis, Embedded, true; $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
        all_backends!(@module postgres_redis, Postgres, true; $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
    };
    (@module $module:ident, $backend:ident, $redis:expr; $( $(#[$meta:meta])* async fn $name:ident($app:ident $(, $cfg:expr)?) $body:block )*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut)]
                    let Some(mut $app) = $crate::helpers::spawn_app_on(
                        $crate::helpers::Backend::$backend,
                        $redis,
                        |_c: &mut ferry::Config| { $( ($cfg)(_c); )? },
                    ).await else { return };
                    $body
                }
            )*
        }
    };
}

/// A running server plus what a test needs to poke at it.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The running application's state, for calling job units (`sweep_once`) directly.
    pub state: ferry::AppState,
    pub config: Config,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub backend: Backend,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: Option<TestDb>,
    pub data_dir: tempfile::TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    /// Cancel the shutdown token; the handle resolves when `run` returns.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<anyhow::Result<()>> {
        self.shutdown.cancel();
        self.server.take().expect("server still running")
    }

    /// Cancel the shutdown token and wait for `run` to return.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.server.take() {
            Some(handle) => handle.await.expect("server task joined"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A second ferry process-alike sharing `app`'s database and data directory (another instance
/// behind the same load balancer), with its own listener.
pub async fn spawn_sibling(app: &TestApp) -> TestApp {
    let mut config = app.config.clone();
    config.bind = "127.0.0.1:0".parse().unwrap();
    let clock = app.clock.clone();
    let built = Application::build_with_clock(config.clone(), clock.clone()).await.expect("sibling builds");
    let addr = built.local_addr();
    let state = built.state().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(built.run(shutdown.clone()));
    TestApp {
        addr,
        state,
        config,
        client: app.client.clone(),
        clock,
        backend: app.backend,
        shutdown,
        server: Some(server),
        db: None,
        data_dir: tempfile::tempdir().expect("temp dir"),
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Build and start the real application; `None` only for a skipped PostgreSQL test.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    spawn_app_on(backend, false, configure).await
}

/// Spawn the app on `backend`, with the shared test Redis as second cache level when `redis`
/// (waiting until it is connected, so the test runs with both levels); `None` (skip) when a
/// backend is not configured outside CI.
pub async fn spawn_app_on(backend: Backend, redis: bool, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let redis_url = if redis { Some(redis_url()?) } else { None };
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.path().to_path_buf();
    config.server.shutdown_grace = Duration::from_secs(5);
    // Tests fire many requests from one address; the rate-limit tests turn limits back on.
    config.rate_limits = ferry::config::Switch::Off;
    let db = match backend {
        Backend::Embedded => None,
        Backend::Postgres => {
            let server = pg_server_url()?;
            let db = TestDb::create(&server).await;
            config.database_url = Some(Secret::new(db.url.clone()));
            Some(db)
        }
    };
    config.redis_url = redis_url.map(Secret::new);
    configure(&mut config);
    let clock = Arc::new(ManualClock::new(ferry::domain::clock::system_now_ms()));
    let app = Application::build_with_clock(config.clone(), clock.clone()).await.expect("application builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let app = TestApp { addr, state, config, client, clock, backend, shutdown, server: Some(server), db, data_dir };
    if redis && app.config.redis_url.is_some() && app.config.cache != ferry::config::CacheMode::None {
        assert!(redis_becomes(&app, "connected").await, "the test Redis connects");
    }
    Some(app)
}

/// Ask `check` up to `tries` times, `every` apart, until it answers true (what a test does
/// while something it cannot await happens elsewhere: a message delivered, a socket noticed).
pub async fn poll_until<F, Fut>(tries: u32, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// Poll /health (bounded, always 200) until it reports Redis as `want`.
pub async fn redis_becomes(app: &TestApp, want: &str) -> bool {
    poll_until(500, Duration::from_millis(10), || async {
        let res = app.get("/health").await;
        assert_eq!(res.status(), 200, "redis is never a required dependency");
        res.json::<serde_json::Value>().await.unwrap()["redis"] == want
    })
    .await
}

/// A backend's URL from `var`, or `None` (skip, with a note) when unset; with `CI=true` a
/// missing URL fails the test instead, so no backend's suite is silently skipped in CI.
fn backend_url(var: &str, backend: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} must be set when CI=true: the {backend} suite may not be skipped")
        }
        _ => {
            eprintln!("SKIPPED ({backend}): set {var} to run this test against {backend}");
            None
        }
    }
}

/// The PostgreSQL server for tests, or `None` (skip) when unset outside CI.
pub fn pg_server_url() -> Option<String> {
    backend_url("FERRY_TEST_DATABASE_URL", "PostgreSQL")
}

/// The shared Redis for tests, or `None` (skip) when unset outside CI.
pub fn redis_url() -> Option<String> {
    backend_url("FERRY_TEST_REDIS_URL", "Redis")
}

/// A redis-server of this test's own on a free port, which the test may stop and restart.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PrivateRedis {
    /// `None` (skip) when no redis-server binary is installed, outside CI.
    pub fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = PrivateRedis { port, child: None, dir: tempfile::tempdir().unwrap() };
        if !r.spawn() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("redis-server is required when CI=true");
            }
            eprintln!("SKIPPED (redis): no redis-server binary");
            return None;
        }
        Some(r)
    }

    fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("private redis-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kill it (a crash, as far as clients can tell).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `url` with its database name replaced by `db`.
pub fn url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{base}/{db}{query}")
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("connect to test PostgreSQL");
    tokio::spawn(conn);
    client
}

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// A database that exists for one test and is dropped with it.
pub struct TestDb {
    pub name: String,
    pub url: String,
    server: String,
}

impl TestDb {
    pub async fn create(server: &str) -> TestDb {
        let template = TEMPLATE.get_or_init(|| build_template(server.to_string())).await.clone();
        let name = format!("ferry_test_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
        let admin = pg_connect(server).await;
        let sql = format!("CREATE DATABASE {name} TEMPLATE {template}");
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                // Another session was still attached to the template; it goes away shortly.
                Err(e) if attempt < 50 && format!("{e:?}").contains("being accessed by other users") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database: {e:?}"),
            }
        }
        TestDb { url: url_with_db(server, &name), name, server: server.to_string() }
    }

    /// An empty database with no migrations applied (for migration tests).
    pub async fn create_empty(server: &str) -> TestDb {
        let name = format!("ferry_test_{}_{}", std::process::id(), NEXT_DB.fetch_add(1, Ordering::SeqCst));
        pg_connect(server).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create db");
        TestDb { url: url_with_db(server, &name), name, server: server.to_string() }
    }

    /// Drop the database now, disconnecting whoever uses it.
    pub async fn drop_now(&self) {
        pg_connect(&self.server)
            .await
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .await
            .expect("drop test database");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop runs inside the test's runtime; use a thread with its own to do async work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&server, NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

/// Create (once per migration set) a database with every migration applied, to clone from.
async fn build_template(server: String) -> String {
    let mut hasher = Sha256::new();
    for m in ferry::store::migrate::POSTGRES {
        hasher.update(m.checksum());
    }
    let name = format!("ferry_tpl_{}", &hex::encode(hasher.finalize())[..12]);
    let admin = pg_connect(&server).await;
    // One builder at a time, across test processes too.
    admin.execute("SELECT pg_advisory_lock(7373001)", &[]).await.unwrap();
    drop_stale_test_databases(&admin).await;
    let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap().is_some();
    if !exists {
        let building = format!("{name}_building");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)")).await.unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {building}")).await.unwrap();
        let mut config = Config::defaults();
        config.database_url = Some(Secret::new(url_with_db(&server, &building)));
        let store = ferry::store::Store::open(&config).await.expect("open template");
        store.migrate().await.expect("migrate template");
        store.close();
        drop(store);
        // Rename needs the database to be idle; closed pool connections leave asynchronously.
        admin
            .batch_execute(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
        let mut attempt = 0;
        loop {
            match admin.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}")).await {
                Ok(()) => break,
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("rename template: {e:?}"),
            }
        }
    }
    admin.execute("SELECT pg_advisory_unlock(7373001)", &[]).await.unwrap();
    name
}

/// Databases left by earlier runs that died before dropping them (their process is gone).
async fn drop_stale_test_databases(admin: &tokio_postgres::Client) {
    let rows = admin.query("SELECT datname FROM pg_database WHERE datname LIKE 'ferry_test_%'", &[]).await.unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid = name.trim_start_matches("ferry_test_").split('_').next().unwrap_or("");
        let alive = !pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

/// The real `ferry` binary, started with the given environment (and nothing inherited that
/// starts with FERRY_), with its stdout log followed until it says where it listens.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: std::sync::mpsc::Receiver<String>,
}

/// A ferry process a test started is never left running, even when the test fails.
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FERRY_") || key == "DATABASE_URL" || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("FERRY_LOG__FORMAT", "text");
    cmd
}

pub fn spawn_binary(mut cmd: Command) -> Proc {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn ferry");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("ferry did not report listening; stderr: {}", String::from_utf8_lossy(&out.stderr))
        };
        if let Some(addr) = line.split("listening addr=").nth(1) {
            let addr = addr.split_whitespace().next().unwrap().parse().expect("listen address");
            return Proc { child, addr, log: rx };
        }
    }
}

/// Send a signal by name to a child we started.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// Wait for a child's exit, failing the test if it takes longer than `limit`.
pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
