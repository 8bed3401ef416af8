//! What only the S3 blob backend does, against a real SeaweedFS and the real binary: the
//! bucket check at startup; server-side assembly by each of its three methods (CopyObject,
//! UploadPartCopy, the streamed fallback for parts under 5 MiB); a kill mid-complete after
//! which the sweep leaves the bucket holding exactly the live clips; the reconcile aborting
//! open multipart uploads no row owns; an outage of the store (fast 503s, lookups still
//! answered, recovery without a restart of ferry); and two instances with separate data
//! directories sharing only PostgreSQL, Redis and the bucket.

use std::process::Command;
use std::time::{Duration, Instant};

use ferry::blob::BlobStore;
use ferry::config::S3Config;
use serde_json::{Value, json};

use crate::helpers::{Blob, Proc, TestDb, TestS3, binary, pg_server_url, redis_url, spawn_binary, test_s3, wait_exit};
use crate::upload::{random_bytes, sha256_hex};

const MIB: usize = 1024 * 1024;

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// The bucket as the sweep sees it: every object and open multipart upload under `prefix`.
async fn bucket_view(s3: &S3Config) -> (Vec<String>, usize) {
    let store = BlobStore::S3(ferry::blob::s3::S3BlobStore::open(s3, 0).await.expect("open the test bucket"));
    let keys = store.list("").await.unwrap().iter().map(|k| k.as_str().to_string()).collect();
    (keys, store.open_multiparts().await.unwrap().len())
}

/// A ferry process on S3 (embedded store unless `db`), restartable over the same data dir.
struct Node {
    dir: tempfile::TempDir,
    s3: S3Config,
    db: Option<String>,
    redis: Option<String>,
    extra: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Node {
    fn new(s3: S3Config, db: Option<String>, redis: Option<String>, extra: &[(&str, &str)]) -> Node {
        let extra = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut node = Node { dir: tempfile::tempdir().unwrap(), s3, db, redis, extra, proc: None };
        node.proc = Some(spawn_binary(node.command(&[])));
        node
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = binary();
        cmd.args(args)
            .env("FERRY_DATA_DIR", self.dir.path())
            .env("FERRY_BIND", "127.0.0.1:0")
            .env("FERRY_RATE_LIMITS", "off")
            .env("FERRY_BLOB", "s3")
            .env("FERRY_S3__ENDPOINT", self.s3.endpoint.as_deref().unwrap())
            .env("FERRY_S3__BUCKET", self.s3.bucket.as_deref().unwrap())
            .env("FERRY_S3__PREFIX", &self.s3.prefix)
            .env("FERRY_S3__ALLOW_HTTP", "true")
            .env("FERRY_S3__ACCESS_KEY_ID", self.s3.access_key_id.as_ref().unwrap().expose())
            .env("FERRY_S3__SECRET_ACCESS_KEY", self.s3.secret_access_key.as_ref().unwrap().expose());
        if let Some(db) = &self.db {
            cmd.env("FERRY_DATABASE_URL", db);
        }
        if let Some(redis) = &self.redis {
            cmd.env("FERRY_REDIS_URL", redis);
        }
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        cmd
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proc.as_ref().expect("running").addr)
    }

    fn kill9(&mut self) {
        let mut proc = self.proc.take().expect("running");
        let _ = proc.child.kill();
        wait_exit(&mut proc.child, Duration::from_secs(10));
    }

    fn restart(&mut self) {
        self.proc = Some(spawn_binary(self.command(&[])));
    }

    /// `ferry sweep --reconcile` as a one-shot command over the same store and bucket.
    fn sweep(&self) -> String {
        let out = self.command(&["sweep", "--reconcile"]).output().unwrap();
        assert!(out.status.success(), "sweep failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Initiate and send every chunk of `data`; the upload id.
async fn send_chunks(http: &reqwest::Client, base: &str, data: &[u8], chunk: usize, extra: Value) -> String {
    let mut body =
        json!({ "filename": "s3.bin", "filesize": data.len(), "contentType": "file", "isTextContent": false });
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let res = http.post(format!("{base}/api/upload/initiate")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let init: Value = res.json().await.unwrap();
    assert_eq!(init["chunkSize"], chunk, "the server's chunk size is the one configured");
    let id = init["uploadId"].as_str().unwrap().to_string();
    for (i, piece) in data.chunks(chunk).enumerate() {
        // A chunk cut by the upload deadline (1 s in some tests, on a loaded machine) is sent
        // again, as clients do.
        for attempt in 1.. {
            let res = http
                .post(format!("{base}/api/upload/chunk/{id}/{i}"))
                .header("content-type", "application/octet-stream")
                .body(piece.to_vec())
                .send()
                .await
                .unwrap();
            let status = res.status();
            if status == 408 && attempt < 5 {
                continue;
            }
            assert_eq!(status, 200, "chunk {i}: {}", res.text().await.unwrap_or_default());
            break;
        }
    }
    id
}

async fn complete(http: &reqwest::Client, base: &str, id: &str) -> Value {
    for _ in 0..40 {
        let res = http.post(format!("{base}/api/upload/complete/{id}")).json(&json!({})).send().await.unwrap();
        match res.status().as_u16() {
            200 => return res.json().await.unwrap(),
            // A dead process still holds the assembly until it is stale: ask again.
            408 => tokio::time::sleep(Duration::from_millis(250)).await,
            other => panic!("complete answered {other}: {}", res.text().await.unwrap_or_default()),
        }
    }
    panic!("complete never succeeded")
}

/// A one-request upload, answered in JSON.
async fn put_clip(http: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::Response {
    http.put(url).header("accept", "application/json").body(body).send().await.unwrap()
}

async fn download(http: &reqwest::Client, base: &str, clip: &str) -> reqwest::Response {
    http.post(format!("{base}/api/file/{clip}")).json(&json!({})).send().await.unwrap()
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The shared test store, its bucket created when missing (the binaries these tests start
/// never create buckets), or `None` to skip.
async fn s3_or_skip() -> Option<TestS3> {
    let s3 = test_s3()?;
    crate::helpers::ensure_test_bucket(&s3.config(String::new())).await;
    Some(s3)
}

fn fresh_prefix(s3: &TestS3) -> S3Config {
    s3.config(format!("t-{:016x}/", rand::random::<u64>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_fails_fast_with_one_line_naming_endpoint_and_bucket_never_the_secret() {
    let Some(s3) = s3_or_skip().await else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (endpoint, bucket) in [
        (format!("http://127.0.0.1:{closed}"), "ferry-test".to_string()),
        (s3.endpoint.clone(), "ferry-no-such-bucket".into()),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let out = binary()
            .env("FERRY_DATA_DIR", dir.path())
            .env("FERRY_BIND", "127.0.0.1:0")
            .env("FERRY_BLOB", "s3")
            .env("FERRY_S3__ENDPOINT", &endpoint)
            .env("FERRY_S3__BUCKET", &bucket)
            .env("FERRY_S3__ALLOW_HTTP", "true")
            .env("FERRY_S3__ACCESS_KEY_ID", &s3.access_key_id)
            .env("FERRY_S3__SECRET_ACCESS_KEY", &s3.secret_access_key)
            .env("FERRY_S3__STARTUP_TIMEOUT", "5s")
            .output()
            .unwrap();
        let took = started.elapsed();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success(), "{endpoint} {bucket}: startup must fail");
        assert!(took < Duration::from_secs(15), "{endpoint}: failed only after {took:?}");
        let line = all.lines().rfind(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("{all}"));
        assert!(line.contains(&endpoint) && line.contains(&bucket), "one line names endpoint and bucket: {line}");
        assert!(!all.contains(&s3.secret_access_key), "the secret is never printed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_aws_variables_supply_credentials_and_region() {
    let Some(s3) = s3_or_skip().await else { return };
    let cfg = fresh_prefix(&s3);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = binary();
    cmd.env("FERRY_DATA_DIR", dir.path())
        .env("FERRY_BIND", "127.0.0.1:0")
        .env("FERRY_BLOB", "s3")
        .env("FERRY_S3__BUCKET", cfg.bucket.as_deref().unwrap())
        .env("FERRY_S3__PREFIX", &cfg.prefix)
        .env("FERRY_S3__ALLOW_HTTP", "true")
        .env("AWS_ENDPOINT_URL", cfg.endpoint.as_deref().unwrap())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", &s3.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s3.secret_access_key);
    let proc = spawn_binary(cmd);
    let http = http();
    let base = format!("http://{}", proc.addr);
    let health: Value = http.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["storage"], "s3");
    assert_eq!(health["checks"]["storage"]["status"], "ok", "{health}");
    let res = http.put(format!("{base}/api/clips/a.txt")).body("hello").send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_assembly_method_gives_one_object_with_the_right_bytes_and_leaves_no_chunks() {
    let Some(s3) = s3_or_skip().await else { return };
    let cfg = fresh_prefix(&s3);
    let node = Node::new(cfg.clone(), None, None, &[("FERRY_LIMITS__CHUNK_SIZE", "5MiB")]);
    let small = Node::new(cfg.clone(), None, None, &[("FERRY_LIMITS__CHUNK_SIZE", "1MiB")]);
    let http = http();
    // (node, chunk size, file size, the method S3 assembly must use)
    let cases = [
        (&node, 5 * MIB, 12 * MIB + 7, "upload_part_copy"),
        (&node, 5 * MIB, 3 * MIB, "copy_object"),
        (&small, MIB, 3 * MIB + 100, "streamed"),
    ];
    let mut live = Vec::new();
    for (n, chunk, size, method) in cases {
        let data = random_bytes(size);
        let base = n.url("");
        let before = http.get(n.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let id = send_chunks(&http, &base, &data, chunk, json!({})).await;
        let done = complete(&http, &base, &id).await;
        assert_eq!(done["sha256"], sha256_hex(&data), "{method}: sha256 is the whole file's SHA-256");
        let after = http.get(n.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let label = format!("ferry_s3_assemblies_total{{method=\"{method}\"}}");
        assert_eq!(metric(&after, &label) - metric(&before, &label), 1.0, "{method} was the method used");
        let clip = done["clipId"].as_str().unwrap().to_string();
        let res = download(&http, &base, &clip).await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-length"], size.to_string().as_str());
        assert_eq!(res.headers()["etag"].to_str().unwrap().trim_matches('"'), sha256_hex(&data));
        assert!(res.bytes().await.unwrap() == data, "{method}: the bytes come back unchanged");
        // A range across the first chunk boundary, from ferry's metadata.
        let (from, to) = (chunk.min(size) - 3, (chunk + 2).min(size - 1));
        let res = http
            .post(n.url(&format!("/api/file/{clip}")))
            .header("range", format!("bytes={from}-{to}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206);
        assert!(res.bytes().await.unwrap() == data[from..=to]);
        live.push(clip);
    }
    let (keys, open) = bucket_view(&cfg).await;
    assert_eq!(open, 0, "no multipart upload is left open");
    assert!(keys.iter().all(|k| k.starts_with("clips/")), "no chunk object is left: {keys:?}");
    assert_eq!(keys.len(), 3, "one object per clip: {keys:?}");
}

/// Send 16 MiB + 11 random bytes in 5 MiB chunks through `node` and start their complete
/// without waiting for it: the bytes, the upload id and the complete's answer to come.
async fn upload_and_start_complete(
    http: &reqwest::Client,
    node: &Node,
) -> (Vec<u8>, String, tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>) {
    let data = random_bytes(16 * MIB + 11);
    let id = send_chunks(http, &node.url(""), &data, 5 * MIB, json!({})).await;
    let url = node.url(&format!("/api/upload/complete/{id}"));
    let http = http.clone();
    let pending = tokio::spawn(async move { http.post(url).json(&json!({})).send().await });
    (data, id, pending)
}

/// Complete upload `id` again (after a kill and a restart): its clip, whose hash must be that
/// of `data`.
async fn complete_again(http: &reqwest::Client, node: &Node, id: &str, data: &[u8]) -> String {
    let done = complete(http, &node.url(""), id).await;
    assert_eq!(done["sha256"], sha256_hex(data), "upload {id}");
    done["clipId"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_complete_then_the_sweep_leaves_exactly_the_live_clips() {
    let Some(s3) = s3_or_skip().await else { return };
    let cfg = fresh_prefix(&s3);
    let extra = [
        ("FERRY_LIMITS__CHUNK_SIZE", "5MiB"),
        // A complete interrupted by the kill is taken over once 2 x this has passed, and its
        // recorded multipart upload is stale once 2 x the longer of the two has.
        ("FERRY_SERVER__REQUEST_TIMEOUT", "1s"),
        ("FERRY_SERVER__UPLOAD_TIMEOUT", "1s"),
        ("FERRY_SWEEP__ORPHAN_GRACE", "0s"),
    ];
    let mut node = Node::new(cfg.clone(), None, None, &extra);
    let http = http();
    let mut clips = Vec::new();
    let mut interrupted = 0;
    for delay_ms in [0u64, 15, 40, 90] {
        let (data, id, pending) = upload_and_start_complete(&http, &node).await;
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        node.kill9();
        if !matches!(pending.await, Ok(Ok(ref res)) if res.status() == 200) {
            interrupted += 1;
        }
        node.restart();
        let clip = complete_again(&http, &node, &id, &data).await;
        let res = download(&http, &node.url(""), &clip).await;
        assert_eq!(res.status(), 200);
        assert!(res.bytes().await.unwrap() == data, "delay {delay_ms} ms: one clip with the right bytes");
        clips.push(clip);
    }
    assert!(interrupted > 0, "at least one kill landed before complete answered");
    // And one kill that certainly lands mid-assembly: while the final object's multipart upload
    // is open (tried again should the assembly finish between the look and the kill).
    let mut left_open = false;
    let watch = BlobStore::S3(ferry::blob::s3::S3BlobStore::open(&cfg, 0).await.unwrap());
    for _ in 0..5 {
        let (data, id, pending) = upload_and_start_complete(&http, &node).await;
        while watch.open_multiparts().await.unwrap().is_empty() && !pending.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        node.kill9();
        let _ = pending.await;
        left_open = bucket_view(&cfg).await.1 > 0;
        node.restart();
        clips.push(complete_again(&http, &node, &id, &data).await);
        if left_open {
            break;
        }
    }
    assert!(left_open, "a kill landed while a multipart upload was open");
    // The sweep treats a recorded multipart upload as running for 2 x upload_timeout.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    node.sweep();
    let (keys, open) = bucket_view(&cfg).await;
    assert_eq!(open, 0, "no multipart upload survives the sweep");
    assert_eq!(keys.len(), clips.len(), "exactly one object per live clip: {keys:?}");
    assert!(keys.iter().all(|k| k.starts_with("clips/")), "{keys:?}");
    for clip in &clips {
        let res = http.get(node.url(&format!("/api/file/{clip}/info"))).send().await.unwrap();
        assert_eq!(res.status(), 200, "every live clip is still there");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_multipart_uploads_are_recorded_and_reclaimed_by_the_sweep_and_the_reconcile() {
    let Some(mut app) =
        crate::helpers::spawn_app_full(crate::helpers::Backend::Embedded, false, Blob::S3, |_| {}).await
    else {
        return;
    };
    let big = || bytes::Bytes::from(random_bytes(9 * MIB));
    // A streamed write that died mid-way: a multipart upload with a part and no object,
    // recorded in the store before its first part.
    let key = ferry::blob::BlobKey::parse("clips/AB/ABABABABABABABAB").unwrap();
    let mut writer = app.state.blobs().writer(&key).await.unwrap();
    writer.write(big()).await.unwrap();
    std::mem::forget(writer);
    // One opened by a process that crashed before recording it (a store with no journal).
    let unrecorded = BlobStore::S3(ferry::blob::s3::S3BlobStore::open(&app.config.s3, 0).await.unwrap());
    let key = ferry::blob::BlobKey::parse("clips/EF/EFEFEFEFEFEFEFEF").unwrap();
    let mut writer = unrecorded.writer(&key).await.unwrap();
    writer.write(big()).await.unwrap();
    std::mem::forget(writer);
    app.put_blob("clips/CD/CDCDCDCDCDCDCDCD", b"orphan").await;
    // A health probe's object left by a process that died between its write and its delete.
    app.put_blob("health/0123456789abcdef", b"ok").await;
    let data = random_bytes(2 * MIB);
    let res = put_clip(&app.client, &app.url("/api/clips/live.bin"), data.clone()).await;
    assert_eq!(res.status(), 200);
    let deps = app.state.deps();
    let far = ferry::domain::clock::system_now_ms() + deps.limits.stale_multipart_ms + 60_000;
    assert_eq!(deps.store.stale_multiparts(far, 10).await.unwrap().len(), 1, "the dead write's upload is recorded");
    assert_eq!(app.state.blobs().open_multiparts().await.unwrap().len(), 2);

    // The reconcile, with no grace: the unrecorded upload and the orphan object go; the
    // recorded upload may still belong to a running write and stays.
    let mut settings = app.state.sweep_settings();
    settings.orphan_grace_ms = 0;
    let now = ferry::domain::clock::system_now_ms() + 1000;
    let removed = ferry::jobs::sweeper::reconcile_once(deps, &settings, now).await.unwrap();
    assert_eq!(removed, 3, "the unrecorded upload, the orphan object and the probe's object");
    assert_eq!(app.state.blobs().open_multiparts().await.unwrap().len(), 1, "the recorded one stays while it may run");
    // Once past the stale bound, the sweep aborts the recorded one and forgets it.
    let report = ferry::jobs::sweeper::sweep_once(deps, &settings, far).await.unwrap();
    assert_eq!(report.multiparts_aborted, 1);
    assert_eq!(app.state.blobs().open_multiparts().await.unwrap().len(), 0, "no multipart upload is left open");
    assert!(deps.store.stale_multiparts(far, 10).await.unwrap().is_empty(), "and none is recorded");
    let keys = app.blob_keys("").await;
    assert_eq!(keys.len(), 1, "only the live clip's object is left: {keys:?}");
    let clip = res.json::<Value>().await.unwrap()["clipId"].as_str().unwrap().to_string();
    let res = app.client.post(app.url(&format!("/api/file/{clip}"))).json(&json!({})).send().await.unwrap();
    assert!(res.bytes().await.unwrap() == data, "the live clip still downloads");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_write_budget_bounds_memory_and_a_full_one_fails_fast() {
    let Some(app) = crate::helpers::spawn_app_full(crate::helpers::Backend::Embedded, false, Blob::S3, |c| {
        c.limits.chunk_size = ferry::config::ByteSize(MIB as u64);
        c.s3.part_size = ferry::config::ByteSize(5 * MIB as u64);
        c.s3.write_buffer = ferry::config::ByteSize(20 * MIB as u64);
    })
    .await
    else {
        return;
    };
    let blobs = app.state.blobs();
    let mut writers = Vec::new();
    for i in 0..5 {
        let key = ferry::blob::BlobKey::parse(&format!("clips/AA/AAAAAAAAAAAAAA{i:02}")).unwrap();
        let mut w = blobs.writer(&key).await.unwrap();
        w.write(bytes::Bytes::from(vec![i as u8; 4 * MIB])).await.expect("room in the budget");
        writers.push(w);
    }
    let key = ferry::blob::BlobKey::parse("clips/BB/BBBBBBBBBBBBBBBB").unwrap();
    let mut late = blobs.writer(&key).await.unwrap();
    let started = Instant::now();
    let refused = late.write(bytes::Bytes::from(vec![9u8; 4 * MIB])).await;
    assert!(matches!(refused, Err(ferry::blob::BlobError::Unavailable { .. })), "a full budget refuses");
    assert!(started.elapsed() < Duration::from_secs(15), "within a bound: {:?}", started.elapsed());
    // A write that finishes gives its room back.
    writers.pop().unwrap().commit(ferry::blob::Durability::Fsync).await.unwrap();
    let mut next = blobs.writer(&key).await.unwrap();
    let started = Instant::now();
    next.write(bytes::Bytes::from(vec![9u8; 4 * MIB])).await.expect("room again");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A SeaweedFS of this test's own (scripts/seaweedfs.sh), which it may stop and start again
/// on the same ports and data.
struct PrivateSeaweed {
    dir: tempfile::TempDir,
    endpoint: String,
}

impl PrivateSeaweed {
    fn script(action: &str, dir: &std::path::Path) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/seaweedfs.sh");
        let out = Command::new("bash").arg(script).arg(action).arg(dir).output().unwrap();
        assert!(out.status.success(), "seaweedfs.sh {action}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start() -> PrivateSeaweed {
        let dir = tempfile::tempdir().unwrap();
        let exports = Self::script("start", dir.path());
        let endpoint = exports
            .lines()
            .find_map(|l| l.strip_prefix("export FERRY_TEST_S3_ENDPOINT="))
            .expect("the script prints the endpoint")
            .trim_matches('\'')
            .to_string();
        PrivateSeaweed { dir, endpoint }
    }

    fn stop(&self) {
        Self::script("stop", self.dir.path());
    }

    fn restart(&self) {
        Self::script("restart", self.dir.path());
    }

    /// Send the process a signal (`STOP` freezes it: connections are still accepted by the
    /// kernel and bytes buffered, but nothing is answered; `CONT` thaws it).
    fn signal(&self, sig: &str) {
        let pid = std::fs::read_to_string(self.dir.path().join("weed.pid")).unwrap();
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(pid.trim()).status().unwrap().success();
        assert!(ok, "kill -{sig} {pid}");
    }
}

impl Drop for PrivateSeaweed {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/seaweedfs.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(self.dir.path()).output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fails_uploads_and_downloads_within_its_timeouts() {
    let Some(s3) = s3_or_skip().await else { return };
    let weed = PrivateSeaweed::start();
    let shared = TestS3 { endpoint: weed.endpoint.clone(), bucket: "ferry-test".into(), ..s3 };
    let timeouts = [("FERRY_S3__READ_TIMEOUT", "1s"), ("FERRY_S3__REQUEST_TIMEOUT", "2s")];
    let node = Node::new(fresh_prefix(&shared), None, None, &timeouts);
    let http = http();
    let stored = random_bytes(MIB);
    let res = put_clip(&http, &node.url("/api/clips/stored.bin"), stored.clone()).await;
    assert_eq!(res.status(), 200);
    let clip = res.json::<Value>().await.unwrap()["clipId"].as_str().unwrap().to_string();

    // Frozen, not stopped: the store's port still takes connections and buffers bytes.
    weed.signal("STOP");
    struct Thaw<'a>(&'a PrivateSeaweed);
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            self.0.signal("CONT");
        }
    }
    let thaw = Thaw(&weed);
    // More than the socket buffers take: the streamed PUT stops being read.
    let started = Instant::now();
    let res = http.put(node.url("/api/clips/stalled.bin")).body(vec![5u8; 64 * MIB]).send().await;
    let took = started.elapsed();
    if let Ok(res) = res {
        assert_eq!(res.status(), 503, "an upload into a stalled store is a 503");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "storage_unavailable");
    } // (or the connection was closed while the rest of the body was still being sent)
    assert!(took < Duration::from_secs(10), "the upload failed within its timeouts: {took:?}");
    let started = Instant::now();
    let res = download(&http, &node.url(""), &clip).await;
    assert_eq!(res.status(), 503, "a download from a stalled store is a 503");
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "storage_unavailable");
    assert!(started.elapsed() < Duration::from_secs(10), "and within its timeouts: {:?}", started.elapsed());
    let res = http.get(node.url(&format!("/api/file/{clip}/info"))).send().await.unwrap();
    assert_eq!(res.status(), 200, "a lookup needs no bytes");

    drop(thaw);
    let back = crate::helpers::poll_until(60, Duration::from_millis(500), || async {
        download(&http, &node.url(""), &clip).await.status() == 200
    })
    .await;
    assert!(back, "downloads work again once the store is thawed");
    let res = download(&http, &node.url(""), &clip).await;
    assert!(res.bytes().await.unwrap() == stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_the_store_fails_fast_keeps_lookups_and_recovers_without_a_restart() {
    let Some(s3) = s3_or_skip().await else { return };
    let weed = PrivateSeaweed::start();
    let shared = TestS3 { endpoint: weed.endpoint.clone(), bucket: "ferry-test".into(), ..s3 };
    let node = Node::new(fresh_prefix(&shared), None, None, &[("FERRY_LIMITS__CHUNK_SIZE", "1MiB")]);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let data = random_bytes(3 * MIB);
    let id = send_chunks(&http, &node.url(""), &data, MIB, json!({})).await;
    let clip = complete(&http, &node.url(""), &id).await["clipId"].as_str().unwrap().to_string();

    // Load while the store goes away: downloads and uploads in a loop.
    let stop_load = tokio_util::sync::CancellationToken::new();
    let mut load = Vec::new();
    for _ in 0..3 {
        let (http, base, clip, stop) = (http.clone(), node.url(""), clip.clone(), stop_load.clone());
        load.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.is_cancelled() {
                let started = Instant::now();
                let res = http.post(format!("{base}/api/file/{clip}")).json(&json!({})).send().await;
                if let Ok(res) = res {
                    let _ = res.bytes().await;
                }
                let res = http.put(format!("{base}/api/clips/load.bin")).body(vec![7u8; 64 * 1024]).send().await;
                if let Ok(res) = res {
                    let _ = res.bytes().await;
                }
                worst = worst.max(started.elapsed());
            }
            worst
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    weed.stop();

    for _ in 0..3 {
        let started = Instant::now();
        let res = download(&http, &node.url(""), &clip).await;
        assert_eq!(res.status(), 503, "a download without the store is a 503");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "storage_unavailable");
        assert!(started.elapsed() < Duration::from_secs(5), "and fast: {:?}", started.elapsed());
        let started = Instant::now();
        let res = http.put(node.url("/api/clips/during.bin")).body(vec![1u8; 4096]).send().await.unwrap();
        assert_eq!(res.status(), 503, "an upload without the store is a 503");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "storage_unavailable");
        assert!(started.elapsed() < Duration::from_secs(5), "and fast: {:?}", started.elapsed());
    }
    let res = http.get(node.url(&format!("/api/file/{clip}/info"))).send().await.unwrap();
    assert_eq!(res.status(), 200, "a lookup needs no bytes and keeps working");
    let health: Value = http.get(node.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_ne!(health["checks"]["storage"]["status"], "ok", "/health reports the storage failing: {health}");
    stop_load.cancel();
    for task in load {
        let worst = task.await.unwrap();
        assert!(worst < Duration::from_secs(10), "no request under load hung: worst {worst:?}");
    }

    weed.restart();
    let back = crate::helpers::poll_until(120, Duration::from_millis(500), || async {
        download(&http, &node.url(""), &clip).await.status() == 200
    })
    .await;
    assert!(back, "downloads recover once the store is back, with no restart of ferry");
    let res = download(&http, &node.url(""), &clip).await;
    assert!(res.bytes().await.unwrap() == data, "the clip survived the outage");
    let res = http.put(node.url("/api/clips/after.bin")).body(vec![2u8; 4096]).send().await.unwrap();
    assert_eq!(res.status(), 200, "uploads recover too");
    let health: Value = http.get(node.url("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["checks"]["storage"]["status"], "ok", "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_nothing_but_postgresql_redis_and_the_bucket() {
    let (Some(s3), Some(pg), Some(redis)) = (s3_or_skip().await, pg_server_url(), redis_url()) else { return };
    let cfg = fresh_prefix(&s3);
    let db = TestDb::create(&pg).await;
    let a = Node::new(cfg.clone(), Some(db.url.clone()), Some(redis.clone()), &[]);
    let b = Node::new(cfg.clone(), Some(db.url.clone()), Some(redis.clone()), &[]);
    assert_ne!(a.dir.path(), b.dir.path(), "separate data directories");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).pool_max_idle_per_host(64).build().unwrap();

    // Uploaded through A (chunked, and in one request), downloaded through B.
    let data = random_bytes(12 * MIB + 5);
    let id = send_chunks(&http, &a.url(""), &data, 5 * MIB, json!({})).await;
    let clip = complete(&http, &a.url(""), &id).await["clipId"].as_str().unwrap().to_string();
    let res = download(&http, &b.url(""), &clip).await;
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.unwrap() == data, "a clip uploaded through A downloads through B");
    let small = random_bytes(100_000);
    let res = put_clip(&http, &a.url("/api/clips/one.bin"), small.clone()).await;
    let one = res.json::<Value>().await.unwrap()["clipId"].as_str().unwrap().to_string();
    assert!(download(&http, &b.url(""), &one).await.bytes().await.unwrap() == small);

    // Races over both instances.
    // How many answered 200; each of those must carry the whole file.
    async fn race(http: &reqwest::Client, bases: [String; 2], clip: &str, n: usize, expected: &[u8]) -> usize {
        let tasks = (0..n).map(|i| {
            let (http, url) = (http.clone(), format!("{}/api/file/{clip}", bases[i % 2]));
            async move {
                let res = http.post(url).json(&json!({})).send().await.unwrap();
                let status = res.status().as_u16();
                (status, res.bytes().await.unwrap())
            }
        });
        let results: Vec<(u16, bytes::Bytes)> = futures_util::stream::iter(tasks).buffer_unordered(64).collect().await;
        let served: Vec<&bytes::Bytes> = results.iter().filter(|(s, _)| *s == 200).map(|(_, b)| b).collect();
        assert!(served.iter().all(|b| b[..] == *expected), "every 200 carries the whole file");
        assert!(results.iter().all(|(s, _)| matches!(s, 200 | 404 | 410)), "only 200, 404 or 410");
        served.len()
    }
    use futures_util::StreamExt;
    let bases = [a.url(""), b.url("")];
    let once = random_bytes(200_000);
    let id = send_chunks(&http, &a.url(""), &once, 5 * MIB, json!({ "oneTime": true })).await;
    let one_time = complete(&http, &a.url(""), &id).await["clipId"].as_str().unwrap().to_string();
    assert_eq!(race(&http, bases.clone(), &one_time, 1000, &once).await, 1, "a one-time clip is served exactly once");
    let id = send_chunks(&http, &b.url(""), &once, 5 * MIB, json!({ "maxDownloads": 5 })).await;
    let limited = complete(&http, &b.url(""), &id).await["clipId"].as_str().unwrap().to_string();
    assert_eq!(race(&http, bases.clone(), &limited, 200, &once).await, 5, "a limit of 5 gives exactly five");

    // Deleting through B is a 404 on A at once (A had it cached).
    let res = put_clip(&http, &a.url("/api/clips/gone.bin"), vec![3u8; 1000]).await;
    let made: Value = res.json().await.unwrap();
    let (gone, token) =
        (made["clipId"].as_str().unwrap().to_string(), made["deleteToken"].as_str().unwrap().to_string());
    assert_eq!(http.get(a.url(&format!("/api/file/{gone}/info"))).send().await.unwrap().status(), 200);
    let res = http.delete(b.url(&format!("/api/clip/{gone}"))).header("x-delete-token", token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(http.get(a.url(&format!("/api/file/{gone}/info"))).send().await.unwrap().status(), 404);
    assert_eq!(download(&http, &a.url(""), &gone).await.status(), 404);
    drop((a, b));
    db.drop_now().await;
}
