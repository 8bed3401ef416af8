//! Durability of the three-step upload against the real binary killed with SIGKILL: mid-chunk
//! (no torn chunk is recorded), after some chunks (status after a restart lists exactly the
//! acknowledged ones and the upload resumes), mid-complete (a repeated complete after the
//! restart yields one clip with the right bytes) and after complete (the clip downloads
//! intact). Each runs on the embedded store and on PostgreSQL; the data directory (and the
//! database) outlive the process, as on a real machine.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Proc, TestDb, binary, pg_server_url, poll_until, signal, spawn_binary, wait_exit};
use crate::upload::{random_bytes, sha256_hex};

const MIB: usize = 1024 * 1024;

/// A ferry process over one data directory (and database) that can be killed and restarted.
pub(crate) struct Node {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: Option<TestDb>,
    proc: Option<Proc>,
    pub(crate) http: reqwest::Client,
}

impl Node {
    pub(crate) async fn start(db: Option<TestDb>) -> Node {
        let mut node = Node {
            dir: tempfile::tempdir().unwrap(),
            db,
            proc: None,
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        node.restart();
        node
    }

    pub(crate) fn restart(&mut self) {
        assert!(self.proc.is_none(), "restart of a running node");
        let mut cmd = binary();
        cmd.env("FERRY_DATA_DIR", self.dir.path())
            .env("FERRY_BIND", "127.0.0.1:0")
            .env("FERRY_RATE_LIMITS", "off")
            .env("FERRY_LIMITS__CHUNK_SIZE", "1MiB")
            // A complete interrupted by the kill is taken over once 2 x this has passed.
            .env("FERRY_SERVER__REQUEST_TIMEOUT", "1s");
        if let Some(db) = &self.db {
            cmd.env("FERRY_DATABASE_URL", &db.url);
        }
        self.proc = Some(spawn_binary(cmd));
    }

    pub(crate) fn kill9(&mut self) {
        let mut proc = self.proc.take().expect("running");
        signal(&proc.child, "KILL");
        let status = wait_exit(&mut proc.child, Duration::from_secs(10));
        assert!(!status.success(), "SIGKILL ends the process abnormally");
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proc.as_ref().expect("running").addr)
    }

    fn temp_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("blobs/.tmp")
    }

    async fn initiate(&self, size: usize) -> String {
        let body = json!({ "filename": "crash.bin", "filesize": size, "contentType": "file", "isTextContent": false });
        let res = self.http.post(self.url("/api/upload/initiate")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["uploadId"].as_str().unwrap().to_string()
    }

    async fn chunk(&self, id: &str, index: usize, data: &[u8]) {
        let res = self
            .http
            .post(self.url(&format!("/api/upload/chunk/{id}/{index}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "chunk {index}: {}", res.text().await.unwrap_or_default());
    }

    async fn status(&self, id: &str) -> Value {
        let res = self.http.get(self.url(&format!("/api/upload/{id}/status"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// Complete, as a client does: a 408 means another (here: dead) process still holds the
    /// assembly, which is taken over once it is stale; ask again.
    async fn complete(&self, id: &str) -> Value {
        for _ in 0..10 {
            let res =
                self.http.post(self.url(&format!("/api/upload/complete/{id}"))).json(&json!({})).send().await.unwrap();
            match res.status().as_u16() {
                200 => return res.json().await.unwrap(),
                408 => continue,
                other => panic!("complete answered {other}: {}", res.text().await.unwrap_or_default()),
            }
        }
        panic!("complete never succeeded")
    }

    async fn download(&self, clip: &str) -> Vec<u8> {
        let res = self.http.post(self.url(&format!("/api/file/{clip}"))).json(&json!({})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap().to_vec()
    }
}

/// The embedded store, and PostgreSQL where the suite has one (a skip is reported).
async fn backends() -> Vec<Option<TestDb>> {
    let mut out = vec![None];
    if let Some(server) = pg_server_url() {
        out.push(Some(TestDb::create(&server).await));
    }
    out
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Index, size and SHA-256 of each chunk the status lists.
fn listed(status: &Value) -> Vec<(u64, u64, String)> {
    status["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["index"].as_u64().unwrap(), c["size"].as_u64().unwrap(), c["sha256"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_chunk_records_no_torn_chunk_and_the_upload_resumes() {
    for db in backends().await {
        let mut node = Node::start(db).await;
        let data = random_bytes(3 * MIB);
        let id = node.initiate(data.len()).await;
        node.chunk(&id, 0, &data[..MIB]).await;

        // Chunk 1 arrives slowly: half of it, then the process dies.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }));
        let req = node
            .http
            .post(node.url(&format!("/api/upload/chunk/{id}/1")))
            .header("content-type", "application/octet-stream")
            .header("content-length", MIB.to_string())
            .body(body)
            .send();
        let pending = tokio::spawn(req);
        tx.send(Ok(data[MIB..MIB + MIB / 2].to_vec())).await.unwrap();
        let temp = node.temp_dir();
        let torn_on_disk = poll_until(500, Duration::from_millis(10), || {
            let temp = temp.clone();
            async move {
                std::fs::read_dir(&temp)
                    .map(|d| d.flatten().any(|e| e.metadata().is_ok_and(|m| m.len() >= 256 * 1024)))
                    .unwrap_or(false)
            }
        })
        .await;
        assert!(torn_on_disk, "half of chunk 1 reached the disk before the kill");
        node.kill9();
        assert!(pending.await.unwrap().is_err(), "the interrupted chunk got no answer");
        drop(tx);

        node.restart();
        let status = node.status(&id).await;
        assert_eq!(listed(&status), vec![(0, MIB as u64, sha256_hex(&data[..MIB]))], "{status}");
        assert_eq!(files_in(&node.temp_dir()), 0, "the torn half is gone after the restart");
        assert_eq!(files_in(&node.dir.path().join(format!("blobs/chunks/{id}"))), 1, "only chunk 0 is stored");

        node.chunk(&id, 1, &data[MIB..2 * MIB]).await;
        node.chunk(&id, 2, &data[2 * MIB..]).await;
        let done = node.complete(&id).await;
        assert_eq!(done["sha256"], sha256_hex(&data), "{done}");
        assert!(node.download(done["clipId"].as_str().unwrap()).await == data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_the_status_lists_exactly_the_acknowledged_chunks_and_the_upload_completes() {
    for db in backends().await {
        let mut node = Node::start(db).await;
        let data = random_bytes(5 * MIB + 123);
        let id = node.initiate(data.len()).await;
        let chunks: Vec<&[u8]> = data.chunks(MIB).collect();
        // Out of order, as parallel senders deliver them.
        for index in [3, 0, 1] {
            node.chunk(&id, index, chunks[index]).await;
        }
        node.kill9();
        node.restart();
        let status = node.status(&id).await;
        let want: Vec<(u64, u64, String)> =
            [0, 1, 3].iter().map(|&i| (i as u64, chunks[i].len() as u64, sha256_hex(chunks[i]))).collect();
        assert_eq!(listed(&status), want, "{status}");
        for index in [5, 2, 4] {
            node.chunk(&id, index, chunks[index]).await;
        }
        let done = node.complete(&id).await;
        assert_eq!(done["sha256"], sha256_hex(&data), "{done}");
        assert_eq!(done["size"], data.len(), "{done}");
        // The restarted process's hash frontier picked up the chunks acknowledged before the
        // kill, so complete did not hash the whole file itself.
        let metrics = node.http.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let hashed: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("ferry_assembly_hashed_bytes_total "))
            .map(|v| v.trim().parse().unwrap())
            .expect("ferry_assembly_hashed_bytes_total is exported after a complete");
        assert!(hashed < data.len() as f64, "complete hashed {hashed} of {} bytes", data.len());
        assert!(node.download(done["clipId"].as_str().unwrap()).await == data);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_complete_leaves_one_clip_with_the_right_bytes_after_a_repeated_complete() {
    for db in backends().await {
        let mut node = Node::start(db).await;
        // The kill lands at different points of the complete: before it is read, while the
        // chunks are checked and hashed, or after the row committed. Every case must end the same.
        for delay_ms in [0u64, 3, 10, 30] {
            let data = random_bytes(24 * MIB + 7);
            let id = node.initiate(data.len()).await;
            let chunks: Vec<&[u8]> = data.chunks(MIB).collect();
            // Chunk 0 last: until it arrives the frontier can hash nothing, so complete has work.
            for index in (1..chunks.len()).chain([0]) {
                node.chunk(&id, index, chunks[index]).await;
            }
            let url = node.url(&format!("/api/upload/complete/{id}"));
            let first = tokio::spawn(node.http.post(url).json(&json!({})).send());
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            node.kill9();
            let first = first.await.unwrap().ok();
            node.restart();
            let again = node.complete(&id).await;
            assert_eq!(again["sha256"], sha256_hex(&data), "kill after {delay_ms} ms: {again}");
            let once_more = node.complete(&id).await;
            assert_eq!(once_more["clipId"], again["clipId"], "one clip, however many completes");
            if let Some(res) = first
                && res.status() == 200
            {
                let body: Value = res.json().await.unwrap();
                assert_eq!(
                    body["clipId"], again["clipId"],
                    "the complete answered before the kill named the same clip"
                );
            }
            assert!(node.download(again["clipId"].as_str().unwrap()).await == data, "kill after {delay_ms} ms");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_completed_just_before_a_kill_downloads_intact_after_the_restart() {
    for db in backends().await {
        let mut node = Node::start(db).await;
        let data = random_bytes(4 * MIB + 1);
        let id = node.initiate(data.len()).await;
        for (index, chunk) in data.chunks(MIB).enumerate() {
            node.chunk(&id, index, chunk).await;
        }
        let done = node.complete(&id).await;
        node.kill9();
        node.restart();
        let clip = done["clipId"].as_str().unwrap();
        assert!(node.download(clip).await == data);
        assert_eq!(node.status(&id).await["status"], "complete");
        let info = node.http.get(node.url(&format!("/api/clip/{clip}/info"))).send().await.unwrap();
        assert_eq!(info.status(), 200);
    }
}
