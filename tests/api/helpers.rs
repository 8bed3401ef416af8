//! Test harness. `spawn_app(backend)` builds the real `Application` on 127.0.0.1:0 with a
//! fresh temp data dir and, for PostgreSQL, a fresh database cloned from a migrated template
//! (created once per run, keyed by the migrations' checksums); with S3 blobs, a key prefix of
//! its own in the shared test bucket. Each backend comes from its `FERRY_TEST_*` variable or,
//! when that is unset, from the usual local server (PostgreSQL on 127.0.0.1:5432, Redis on
//! 127.0.0.1:6379, S3 on 127.0.0.1:8333), probed once per process. A backend found nowhere
//! skips its variants, and the run's last lines on stderr count them (DESIGN rule 14); with
//! `CI=true` it fails them instead. A variable that is set but names nothing reachable fails
//! the test: it was asked for. Also spawns the real binary for CLI and signal tests.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::Duration;

use ferry::Application;
use ferry::config::{BlobBackend, Config, Secret};
use ferry::domain::clock::ManualClock;
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Postgres,
}

/// Where a test app keeps its blobs: `data_dir/blobs`, or its own prefix in the test bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blob {
    Fs,
    S3,
}

/// Run the body once per backend combination (DESIGN rule 8): store embedded|postgres × cache
/// memory|redis with filesystem blobs, where "redis" is moka plus the shared Redis second
/// level, and S3 blobs under both ends of that range (`embedded_s3`: embedded store and memory
/// cache; `postgres_redis_s3`: PostgreSQL and Redis), which between them take every store and
/// cache path once with S3. Forms: `async fn name(app) { .. }` and
/// `async fn name(app, |c: &mut Config| { .. }) { .. }`; the test's own configuration runs
/// last, so a test may still turn the cache off or point it at a Redis of its own. Tests about
/// the filesystem itself (a blob directory removed, a full disk, temp files) go last, in a
/// `fs_only { .. }` block: they run in the four filesystem variants only.
macro_rules! all_backends {
    (
        $( $(#[$meta:meta])* async fn $name:ident($app:ident $(, $cfg:expr)?) $body:block )*
        $( fs_only { $( $(#[$fmeta:meta])* async fn $fname:ident($fapp:ident $(, $fcfg:expr)?) $fbody:block )* } )?
    ) => {
        all_backends!(@module embedded, Embedded, false, Fs;
            $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*
            $( $( $(#[$fmeta])* async fn $fname($fapp $(, $fcfg)?) $fbody )* )?);
        all_backends!(@module postgres, Postgres, false, Fs;
            $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*
            $( $( $(#[$fmeta])* async fn $fname($fapp $(, $fcfg)?) $fbody )* )?);
        all_backends!(@module embedded_redis, Embedded, true, Fs;
            $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*
            $( $( $(#[$fmeta])* async fn $fname($fapp $(, $fcfg)?) $fbody )* )?);
        all_backends!(@module postgres_redis, Postgres, true, Fs;
            $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*
            $( $( $(#[$fmeta])* async fn $fname($fapp $(, $fcfg)?) $fbody )* )?);
        all_backends!(@module embedded_s3, Embedded, false, S3;
            $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
        all_backends!(@module postgres_redis_s3, Postgres, true, S3;
            $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
    };
    (@module $module:ident, $backend:ident, $redis:expr, $blob:ident; $( $(#[$meta:meta])* async fn $name:ident($app:ident $(, $cfg:expr)?) $body:block )*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    #[allow(unused_mut)]
                    let Some(mut $app) = $crate::helpers::spawn_app_full(
                        $crate::helpers::Backend::$backend,
                        $redis,
                        $crate::helpers::Blob::$blob,
                        |_c: &mut ferry::Config| { $( ($cfg)(_c); )? },
                    ).await else { return };
                    $body
                }
            )*
        }
    };
}

/// `all_backends!` for a file whose tests are all about the filesystem blob store: the four
/// filesystem variants only. (In a file that also has `all_backends!`, use its `fs_only` block:
/// both would define the same modules.)
#[allow(unused_macros)]
macro_rules! fs_backends {
    ($($tests:tt)*) => {
        all_backends! { fs_only { $($tests)* } }
    };
}

/// Run the body on each store (embedded, PostgreSQL) with the in-process cache and filesystem
/// blobs: for tests of the store's own semantics (the job queue), which neither the cache nor
/// the blob store touches. Same forms as `all_backends!`.
#[allow(unused_macros)]
macro_rules! both_stores {
    ($( $(#[$meta:meta])* async fn $name:ident($app:ident $(, $cfg:expr)?) $body:block )*) => {
        all_backends!(@module embedded, Embedded, false, Fs; $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
        all_backends!(@module postgres, Postgres, false, Fs; $( $(#[$meta])* async fn $name($app $(, $cfg)?) $body )*);
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
    pub blob: Blob,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: Option<TestDb>,
    pub data_dir: tempfile::TempDir,
    /// This app made its S3 prefix (a sibling shares it) and empties it when dropped.
    owns_prefix: bool,
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

    /// The blob keys under `prefix` ("" for all; e.g. "clips", "chunks/<upload>"), sorted,
    /// relative to the store's root. On the filesystem this is every file under
    /// `blobs/<prefix>` whatever its name (a file written under a name that is no valid key
    /// would be invisible to the store's own listing), temp files aside; on S3 the store's
    /// listing of the app's prefix.
    pub async fn blob_keys(&self, prefix: &str) -> Vec<String> {
        match self.blob {
            Blob::Fs => {
                let root = self.config.data_dir.join("blobs");
                let mut keys = Vec::new();
                walk_files(&root, &root.join(prefix), &mut keys);
                keys.retain(|k| !k.starts_with(".tmp/"));
                keys.sort();
                keys
            }
            Blob::S3 => {
                let keys = self
                    .state
                    .blobs()
                    .list(prefix)
                    .await
                    .unwrap_or_else(|e| panic!("list blobs under {prefix:?}: {e}"));
                keys.iter().map(|k| k.as_str().to_string()).collect()
            }
        }
    }

    /// Start a three-step upload; its id.
    pub async fn initiate(&self, body: serde_json::Value) -> String {
        let res = self.client.post(self.url("/api/upload/initiate")).json(&body).send().await.expect("initiate sent");
        assert_eq!(res.status(), 200, "initiate {body}");
        res.json::<serde_json::Value>().await.unwrap()["uploadId"].as_str().expect("an upload id").to_string()
    }

    /// Send one chunk as a raw body.
    pub async fn send_chunk(&self, upload: &str, index: u32, bytes: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/upload/chunk/{upload}/{index}")))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("chunk sent")
    }

    /// How many blobs an upload's chunks are (`chunks/<upload>/<index>.<attempt>`).
    pub async fn chunk_blob_count(&self, upload: &str) -> usize {
        self.blob_keys(&format!("chunks/{upload}")).await.len()
    }

    /// How many blobs lie under `chunks/`, of every upload.
    pub async fn all_chunk_blob_count(&self) -> usize {
        self.blob_keys("chunks").await.len()
    }

    /// How many blobs lie under `clips/` (one-request clips; on S3 also assembled ones).
    pub async fn clip_blob_count(&self) -> usize {
        self.blob_keys("clips").await.len()
    }

    /// Writes begun and not finished: files in the filesystem store's temp directory, or
    /// open multipart uploads under the app's S3 prefix.
    pub async fn partial_blob_count(&self) -> usize {
        match self.blob {
            Blob::Fs => std::fs::read_dir(self.config.data_dir.join("blobs/.tmp")).map(|d| d.count()).unwrap_or(0),
            Blob::S3 => self.state.blobs().open_multiparts().await.expect("list open multipart uploads").len(),
        }
    }

    /// Store `bytes` under `key` directly, as something other than a request would have.
    pub async fn put_blob(&self, key: &str, bytes: &[u8]) {
        let key = ferry::blob::BlobKey::parse(key).expect("a valid blob key");
        let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(bytes))]);
        self.state.blobs().put_stream(&key, body).await.unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// The size of the blob under exactly `key`, if there is one.
    pub async fn blob_size(&self, key: &str) -> Option<u64> {
        let key = ferry::blob::BlobKey::parse(key).expect("a valid blob key");
        self.state.blobs().size(&key).await.unwrap_or_else(|e| panic!("size of {key}: {e}"))
    }

    /// Empty this app's S3 prefix, bounded, so the shared bucket does not collect every run's
    /// objects. Skipped while a test is failing (its objects may help) and outside a
    /// multi-threaded runtime (nothing to block on there).
    fn clear_prefix(&self) {
        if self.blob != Blob::S3 || !self.owns_prefix || std::thread::panicking() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let blobs = self.state.blobs().clone();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    if let Ok(open) = blobs.open_multiparts().await {
                        for m in open {
                            let _ = blobs.abort_multipart(&m.key, &m.upload_id).await;
                        }
                    }
                    if let Ok(keys) = blobs.list("").await {
                        let _ = blobs.delete_many(keys).await;
                    }
                })
                .await;
            })
        });
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.clear_prefix();
    }
}

/// Every file under `dir`, as a path relative to `root`, into `out`.
fn walk_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).path();
        if path.is_dir() {
            walk_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).expect("under the blob root").to_string_lossy().into_owned());
        }
    }
}

/// A second ferry process-alike sharing `app`'s database and blob store (another instance
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
        blob: app.blob,
        shutdown,
        server: Some(server),
        db: None,
        data_dir: tempfile::tempdir().expect("temp dir"),
        owns_prefix: false,
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Build and start the real application; `None` only for a skipped PostgreSQL test.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    spawn_app_on(backend, false, configure).await
}

/// Spawn the app on `backend` with filesystem blobs, with the shared test Redis as second
/// cache level when `redis`; see `spawn_app_full`.
pub async fn spawn_app_on(backend: Backend, redis: bool, configure: impl FnOnce(&mut Config)) -> Option<TestApp> {
    spawn_app_full(backend, redis, Blob::Fs, configure).await
}

/// Spawn the app on `backend` and `blob`, with the shared test Redis as second cache level
/// when `redis` (waiting until it is connected, so the test runs with both levels); `None`
/// (skip) when a backend is found nowhere outside CI.
pub async fn spawn_app_full(
    backend: Backend,
    redis: bool,
    blob: Blob,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    // Every backend the variant needs is looked up, so each missing one is counted.
    let wanted_redis = redis.then(redis_url);
    let wanted_pg = (backend == Backend::Postgres).then(pg_server_url);
    let wanted_s3 = (blob == Blob::S3).then(test_s3);
    let redis_url = match wanted_redis {
        Some(found) => Some(found?),
        None => None,
    };
    let pg = match wanted_pg {
        Some(found) => Some(found?),
        None => None,
    };
    let s3 = match wanted_s3 {
        Some(found) => Some(found?),
        None => None,
    };
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    config.bind = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.path().to_path_buf();
    config.server.shutdown_grace = Duration::from_secs(5);
    // Tests fire many requests from one address; the rate-limit tests turn limits back on.
    config.rate_limits = ferry::config::Switch::Off;
    let db = match pg {
        None => None,
        Some(server) => {
            let db = TestDb::create(&server).await;
            config.database_url = Some(Secret::new(db.url.clone()));
            Some(db)
        }
    };
    if let Some(s3) = s3 {
        config.blob = BlobBackend::S3;
        config.s3 = s3.config(format!("t-{:016x}/", rand::random::<u64>()));
        ensure_test_bucket(&config.s3).await;
    }
    config.redis_url = redis_url.map(Secret::new);
    configure(&mut config);
    let clock = Arc::new(ManualClock::new(ferry::domain::clock::system_now_ms()));
    let app = Application::build_with_clock(config.clone(), clock.clone()).await.expect("application builds");
    let addr = app.local_addr();
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let app = TestApp {
        addr,
        state,
        config,
        client,
        clock,
        backend,
        blob,
        shutdown,
        server: Some(server),
        db,
        data_dir,
        owns_prefix: true,
    };
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

// ---------------------------------------------------------------------------------------------
// Finding the backends, and counting the skipped ones

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A server the suite needs, found through `var` or at its usual local address.
struct Service {
    name: &'static str,
    var: &'static str,
    default_url: &'static str,
    /// Answers whether `url` is there to be used, or a short reason why not.
    probe: fn(&str) -> Result<(), String>,
    found: OnceLock<Found>,
}

enum Found {
    Url(String),
    /// Nothing at the usual address (or `<var>=skip`): the variants are skipped outside CI.
    Absent(String),
    /// The variable is set and names nothing usable: every variant fails.
    Broken(String),
}

static POSTGRES: Service = Service {
    name: "PostgreSQL",
    var: "FERRY_TEST_DATABASE_URL",
    default_url: "postgres://postgres@127.0.0.1:5432/postgres",
    probe: probe_postgres,
    found: OnceLock::new(),
};

static REDIS: Service = Service {
    name: "Redis",
    var: "FERRY_TEST_REDIS_URL",
    default_url: "redis://127.0.0.1:6379/",
    probe: probe_redis,
    found: OnceLock::new(),
};

static S3: Service = Service {
    name: "S3",
    var: "FERRY_TEST_S3_ENDPOINT",
    default_url: "http://127.0.0.1:8333",
    probe: probe_tcp,
    found: OnceLock::new(),
};

impl Service {
    /// The URL to use, probed once per process; `None` (skip, counted) when the service is
    /// found nowhere outside CI. Panics when the variable names nothing usable, or under
    /// `CI=true` when the service is missing.
    fn url(&'static self) -> Option<String> {
        let found = self.found.get_or_init(|| match std::env::var(self.var) {
            Ok(v) if v.trim() == "skip" => Found::Absent(format!("{}=skip", self.var)),
            Ok(v) if !v.trim().is_empty() => match (self.probe)(v.trim()) {
                Ok(()) => Found::Url(v.trim().to_string()),
                Err(why) => Found::Broken(format!("{} is set, but {why}", self.var)),
            },
            _ => match (self.probe)(self.default_url) {
                Ok(()) => Found::Url(self.default_url.to_string()),
                Err(why) => Found::Absent(format!("{why}; set {}", self.var)),
            },
        });
        match found {
            Found::Url(url) => Some(url.clone()),
            Found::Broken(why) => panic!("{why}"),
            Found::Absent(why) if ci() => panic!("the {} suite may not be skipped when CI=true: {why}", self.name),
            Found::Absent(why) => {
                note_skip(self.name, why);
                None
            }
        }
    }
}

/// Host and port of `url` (scheme://[user[:pass]@]host[:port]/...), with `default_port`.
fn host_port(url: &str, default_port: u16) -> Result<(String, u16), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("it is not a URL ({e})"))?;
    let host = parsed.host_str().ok_or("it names no host")?.trim_matches(['[', ']']).to_string();
    Ok((host, parsed.port().unwrap_or(default_port)))
}

/// A TCP connection to `host:port` within a second.
fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let none = || format!("no server at {host}:{port}");
    let addrs = (host, port).to_socket_addrs().map_err(|_| none())?;
    for addr in addrs {
        if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            return Ok(stream);
        }
    }
    Err(none())
}

fn probe_tcp(url: &str) -> Result<(), String> {
    let (host, port) = host_port(url, if url.starts_with("https:") { 443 } else { 80 })?;
    tcp_connect(&host, port).map(drop)
}

fn probe_redis(url: &str) -> Result<(), String> {
    let (host, port) = host_port(url, 6379)?;
    let mut stream = tcp_connect(&host, port)?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut answer = [0u8; 64];
    let n = stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .and_then(|()| stream.read(&mut answer))
        .map_err(|e| format!("{host}:{port} did not answer PING ({e})"))?;
    let answer = String::from_utf8_lossy(&answer[..n]);
    if answer.starts_with("+PONG") {
        Ok(())
    } else {
        Err(format!("{host}:{port} answered PING with {:?}", answer.trim_end()))
    }
}

/// A login within two seconds, on a runtime of its own (the probe runs once, from whichever
/// test or thread asks first).
fn probe_postgres(url: &str) -> Result<(), String> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| format!("it is not a PostgreSQL URL ({e})"))?;
    let at = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(host)), port) => format!("{host}:{}", port.copied().unwrap_or(5432)),
        _ => "its host".to_string(),
    };
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(2), tokio_postgres::connect(&url, NoTls)).await {
                Ok(Ok((client, conn))) => {
                    tokio::spawn(conn);
                    client.simple_query("SELECT 1").await.map(drop).map_err(|e| format!("{at} fails a query ({e})"))
                }
                Ok(Err(e)) if e.as_db_error().is_some() => Err(format!("{at} refuses the login ({e})")),
                Ok(Err(_)) => Err(format!("no server at {at}")),
                Err(_) => Err(format!("no answer from {at} within 2 s")),
            }
        })
    })
    .join()
    .expect("PostgreSQL probe thread")
}

/// Skipped variants by (backend, reason), reported when the process exits.
static SKIPS: Mutex<BTreeMap<(&'static str, String), usize>> = Mutex::new(BTreeMap::new());
static REPORT_AT_EXIT: Once = Once::new();

/// Count one skipped variant of `backend`, and say so in the test's own (captured) output.
pub fn note_skip(backend: &'static str, reason: &str) {
    eprintln!("SKIPPED ({backend}): {reason}");
    *SKIPS.lock().unwrap_or_else(|p| p.into_inner()).entry((backend, reason.to_string())).or_default() += 1;
    // libtest captures print!/eprint! of tests and prints its summary last; a handler that runs
    // at exit and writes to the stderr handle directly comes after the summary, uncaptured.
    REPORT_AT_EXIT.call_once(|| {
        // SAFETY: `report_skips` is a plain extern "C" fn that neither unwinds nor needs
        // anything that exit has already torn down (stderr is unbuffered).
        unsafe {
            libc::atexit(report_skips);
        }
    });
}

extern "C" fn report_skips() {
    let skips = match SKIPS.lock() {
        Ok(skips) => skips,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut text = String::new();
    for ((backend, reason), n) in skips.iter() {
        let what = if *n == 1 { "test variant" } else { "test variants" };
        text.push_str(&format!("SKIPPED: {n} {backend} {what} ({reason})\n"));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The PostgreSQL server for tests, or `None` (skip) when found nowhere outside CI.
pub fn pg_server_url() -> Option<String> {
    POSTGRES.url()
}

/// The shared Redis for tests, or `None` (skip) when found nowhere outside CI.
pub fn redis_url() -> Option<String> {
    REDIS.url()
}

/// The shared S3 store of the tests: endpoint, bucket (`FERRY_TEST_S3_BUCKET`, else ferry-test)
/// and credentials (`FERRY_TEST_S3_ACCESS_KEY_ID`/`_SECRET_ACCESS_KEY`, else the `AWS_*` pair,
/// else ferry-test/ferry-test-secret, what scripts/seaweedfs.sh starts with).
#[derive(Clone, Debug)]
pub struct TestS3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl TestS3 {
    /// The `s3` section for one test app, its keys under `prefix`.
    pub fn config(&self, prefix: String) -> ferry::config::S3Config {
        let mut s3 = Config::defaults().s3;
        s3.endpoint = Some(self.endpoint.clone());
        s3.bucket = Some(self.bucket.clone());
        s3.prefix = prefix;
        s3.access_key_id = Some(Secret::new(self.access_key_id.clone()));
        s3.secret_access_key = Some(Secret::new(self.secret_access_key.clone()));
        s3.allow_http = self.endpoint.starts_with("http://");
        if let Some(region) = env_nonempty("FERRY_TEST_S3_REGION") {
            s3.region = region;
        }
        s3
    }
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// The test S3 store, or `None` (skip) when found nowhere outside CI.
pub fn test_s3() -> Option<TestS3> {
    let endpoint = S3.url()?;
    let pair = |id: &str, secret: &str| Some((env_nonempty(id)?, env_nonempty(secret)?));
    let (access_key_id, secret_access_key) = pair("FERRY_TEST_S3_ACCESS_KEY_ID", "FERRY_TEST_S3_SECRET_ACCESS_KEY")
        .or_else(|| pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
        .unwrap_or_else(|| ("ferry-test".into(), "ferry-test-secret".into()));
    let bucket = env_nonempty("FERRY_TEST_S3_BUCKET").unwrap_or_else(|| "ferry-test".into());
    Some(TestS3 { endpoint, bucket, access_key_id, secret_access_key })
}

static BUCKET: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Create the test bucket once per process (the server itself never creates buckets).
pub async fn ensure_test_bucket(s3: &ferry::config::S3Config) {
    BUCKET
        .get_or_init(|| async {
            ferry::blob::s3::create_bucket_if_missing(s3)
                .await
                .unwrap_or_else(|e| panic!("create the test bucket {:?} at {:?}: {e}", s3.bucket, s3.endpoint))
        })
        .await;
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
            if ci() {
                panic!("redis-server is required when CI=true");
            }
            note_skip("private Redis", "no redis-server binary; install redis-server");
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

    /// SIGSTOP: connections stay open and nothing answers (a hung server).
    pub fn freeze(&self) {
        signal(self.child.as_ref().expect("running"), "STOP");
    }

    pub fn thaw(&self) {
        signal(self.child.as_ref().expect("running"), "CONT");
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
