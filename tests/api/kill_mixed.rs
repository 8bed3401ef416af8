//! A crash campaign under mixed traffic: the real binary killed with SIGKILL while every kind of
//! request is in flight at once. This file owns its traffic generators and its checks. The traffic:
//! three-step uploads (3–5 MiB in 1 MiB chunks sent out of order two at a time, raw with their
//! SHA-256 or as Qopy's multipart form, then complete), one-request uploads (`PUT
//! /api/clips/<name>` and multipart `POST /api/clips`), info lookups and downloads (`POST
//! /api/file`, `GET /raw`) of clips already made, and one-time clips each claimed by four
//! downloaders at once; every third upload of either kind is one-time, and every other one-time
//! clip is left unclaimed; and one upload paused by its client halfway through a chunk, so the kill
//! always finds acknowledged chunks and a torn one. After a restart on the same data directory (and
//! database) it checks that every chunk answered 200 before the kill is listed by its upload's
//! status with its size and SHA-256, and that those uploads resume (the missing chunks, complete)
//! into the right bytes; that every clip whose creation was answered 200 downloads intact, one-time
//! clips not yet claimed included; that no one-time clip answers 200 twice, counting both sides of
//! the kill; and that after `ferry sweep --reconcile` (no orphan or retired grace) no live row
//! points at missing bytes (every one is on disk and downloads with its SHA-256) and no file under
//! `blobs/clips` or `blobs/chunks` outlives its row (nor any partial write under `blobs/.tmp`).
//! Once on the embedded store, once on PostgreSQL.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::seq::SliceRandom;
use reqwest::RequestBuilder;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::crash::Node;
use crate::helpers::{TestDb, binary, pg_connect, poll_until};
use crate::upload::{Part, multipart, multipart_type, random_bytes, sha256_hex};

const MIB: usize = 1024 * 1024;
/// Downloaders racing for each one-time clip.
const RACERS: usize = 4;
/// How long the traffic runs at least before the kill.
const TRAFFIC: Duration = Duration::from_secs(2);

mod embedded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kill_under_mixed_traffic_loses_no_acknowledged_byte_serves_no_one_time_clip_twice_and_leaves_no_orphan()
    {
        super::campaign(None).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kill_under_mixed_traffic_loses_no_acknowledged_byte_serves_no_one_time_clip_twice_and_leaves_no_orphan()
    {
        let Some(server) = crate::helpers::pg_server_url() else { return };
        super::campaign(Some(crate::helpers::TestDb::create(&server).await)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

/// What came back for one request.
#[derive(Debug)]
enum Answer {
    /// A status and the whole body.
    Whole(u16, Vec<u8>),
    /// A status, then the body was cut.
    Cut(u16),
    /// No status at all.
    Lost,
}

async fn answer(req: RequestBuilder) -> Answer {
    match req.send().await {
        Err(_) => Answer::Lost,
        Ok(res) => {
            let status = res.status().as_u16();
            match res.bytes().await {
                Ok(body) => Answer::Whole(status, body.to_vec()),
                Err(_) => Answer::Cut(status),
            }
        }
    }
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or(Value::Null)
}

/// The requests of the campaign against one running process.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn at(node: &Node) -> Api {
        Api { http: node.http.clone(), base: node.url("") }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn initiate(&self, name: &str, len: usize, one_time: bool) -> RequestBuilder {
        let body = json!({
            "filename": name, "filesize": len, "contentType": "file", "isTextContent": false, "oneTime": one_time,
        });
        self.http.post(self.url("/api/upload/initiate")).json(&body)
    }

    /// Chunk `index`: even ones as a raw body with their SHA-256, odd ones as Qopy's form.
    fn chunk(&self, id: &str, index: usize, piece: &[u8]) -> RequestBuilder {
        let req = self.http.post(self.url(&format!("/api/upload/chunk/{id}/{index}")));
        if index % 2 == 0 {
            req.header("content-type", "application/octet-stream")
                .header("x-chunk-sha256", sha256_hex(piece))
                .body(piece.to_vec())
        } else {
            let form = multipart(&[Part { name: "chunk", filename: Some("blob"), data: piece }]);
            req.header("content-type", multipart_type()).body(form)
        }
    }

    fn complete(&self, id: &str) -> RequestBuilder {
        self.http.post(self.url(&format!("/api/upload/complete/{id}"))).json(&json!({}))
    }

    fn status(&self, id: &str) -> RequestBuilder {
        self.http.get(self.url(&format!("/api/upload/{id}/status")))
    }

    /// A one-request upload, `PUT /api/clips/<name>` or multipart `POST /api/clips`, answered
    /// in JSON.
    fn one_request(&self, name: &str, data: &[u8], one_time: bool, put: bool) -> RequestBuilder {
        let req = if put {
            let req = self.http.put(self.url(&format!("/api/clips/{name}"))).body(data.to_vec());
            if one_time { req.header("one-time", "true") } else { req }
        } else {
            let query = if one_time { "?oneTime=true" } else { "" };
            let form = multipart(&[Part { name: "file", filename: Some(name), data }]);
            self.http.post(self.url(&format!("/api/clips{query}"))).header("content-type", multipart_type()).body(form)
        };
        req.header("accept", "application/json")
    }

    fn info(&self, code: &str) -> RequestBuilder {
        self.http.get(self.url(&format!("/api/clip/{code}/info")))
    }

    /// The download that spends one-time clips.
    fn download(&self, code: &str) -> RequestBuilder {
        self.http.post(self.url(&format!("/api/file/{code}"))).json(&json!({}))
    }

    fn raw(&self, code: &str) -> RequestBuilder {
        self.http.get(self.url(&format!("/raw/{code}")))
    }

    /// The whole answer to a request after the restart, asked again on 408: a handler past the
    /// node's 1 s deadline on a loaded machine, or a complete whose assembly the dead process
    /// still claims until the claim is stale.
    async fn settled(&self, make: impl Fn(&Api) -> RequestBuilder, what: &str) -> (u16, Vec<u8>) {
        for _ in 0..20 {
            match answer(make(self)).await {
                Answer::Whole(408, _) => continue,
                Answer::Whole(status, body) => return (status, body),
                other => panic!("{what}: {other:?} from the restarted process"),
            }
        }
        panic!("{what}: still 408 after 20 tries")
    }
}

// ---------------------------------------------------------------------------------------------
// The traffic and what it was told

/// A clip whose creation was answered 200, and the bytes it must serve.
struct Clip {
    data: Arc<Vec<u8>>,
    one_time: bool,
}

/// A three-step upload whose initiate was answered.
struct Upload {
    data: Arc<Vec<u8>>,
    one_time: bool,
    /// Chunks answered 200.
    acked: BTreeSet<usize>,
    /// The clip its complete answered 200 with.
    clip: Option<String>,
}

/// The downloads of one one-time clip before the kill.
#[derive(Default, Clone, Copy, Debug)]
struct Claims {
    /// Sent, whatever became of them.
    sent: usize,
    /// Answered 200, whole or cut.
    ok: usize,
    /// Answered 200 with the whole, right body.
    whole: usize,
}

#[derive(Default)]
struct Ledger {
    clips: BTreeMap<String, Clip>,
    uploads: BTreeMap<String, Upload>,
    claims: BTreeMap<String, Claims>,
    /// One-time clips for the claimer; every other one made is left unclaimed.
    to_claim: VecDeque<String>,
    one_time_made: usize,
    /// Progress of the traffic.
    chunked_done: usize,
    one_request_done: usize,
    infos: usize,
    downloads: usize,
    /// Answers no server should give.
    wrong: Vec<String>,
}

#[derive(Clone, Copy)]
enum Kind {
    Chunk = 0,
    OneRequest = 1,
    Download = 2,
    Claim = 3,
}

struct Traffic {
    api: Api,
    ledger: Mutex<Ledger>,
    /// Cancelled just before the SIGKILL: from then on a lost answer is expected.
    kill: CancellationToken,
    /// The paused upload has sent half of its chunk 1 and holds the rest back.
    paused: AtomicBool,
    /// Requests of each `Kind` sent and not yet answered in full.
    in_flight: [AtomicUsize; 4],
}

/// One request of a kind in flight, while alive.
struct Flight<'a>(&'a AtomicUsize);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Traffic {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn killed(&self) -> bool {
        self.kill.is_cancelled()
    }

    fn flight(&self, kind: Kind) -> Flight<'_> {
        let counter = &self.in_flight[kind as usize];
        counter.fetch_add(1, Ordering::SeqCst);
        Flight(counter)
    }

    /// Note an answer the traffic did not expect. Every status but 408 (a handler past the 1 s
    /// deadline, which clients ask again) counts; a cut or lost answer counts only before the kill.
    fn unexpected(&self, what: &str, got: &Answer) {
        let note = match got {
            Answer::Whole(408, _) => None,
            Answer::Whole(status, body) => {
                Some(format!("{what}: {status} {}", String::from_utf8_lossy(&body[..body.len().min(300)])))
            }
            Answer::Cut(status) if !self.killed() => Some(format!("{what}: {status}, then the body was cut")),
            Answer::Lost if !self.killed() => Some(format!("{what}: no answer")),
            _ => None,
        };
        if let Some(note) = note {
            self.ledger().wrong.push(note);
        }
    }

    /// Record a clip whose creation was answered 200; a one-time clip goes to the claimer's
    /// queue when `enqueue` and it is an odd one out of those made.
    fn add_clip(&self, code: String, data: Arc<Vec<u8>>, one_time: bool, enqueue: bool) {
        let mut l = self.ledger();
        if one_time {
            l.claims.insert(code.clone(), Claims::default());
            l.one_time_made += 1;
            if enqueue && l.one_time_made % 2 == 1 {
                l.to_claim.push_back(code.clone());
            }
        }
        l.clips.insert(code, Clip { data, one_time });
    }

    /// Traffic for `TRAFFIC` at least, the paused upload waiting mid-chunk, every kind of
    /// request in flight at this instant, and some of each kind done.
    fn ready_to_kill(&self, since: Instant) -> bool {
        if since.elapsed() < TRAFFIC || !self.paused.load(Ordering::SeqCst) {
            return false;
        }
        let busy = self.in_flight.iter().all(|c| c.load(Ordering::SeqCst) > 0);
        let l = self.ledger();
        let claimed = l.claims.values().filter(|c| c.whole > 0).count();
        busy && l.chunked_done >= 3 && l.one_request_done >= 8 && l.downloads >= 16 && claimed >= 4
    }

    fn progress(&self) -> String {
        let l = self.ledger();
        let flights: Vec<usize> = self.in_flight.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        format!(
            "{} chunked and {} one-request clips made, {} infos, {} downloads, {} one-time clips claimed, {} \
             uploads open; in flight (chunk, one-request, download, claim): {flights:?}",
            l.chunked_done,
            l.one_request_done,
            l.infos,
            l.downloads,
            l.claims.values().filter(|c| c.ok > 0).count(),
            l.uploads.values().filter(|u| u.clip.is_none()).count(),
        )
    }
}

/// One three-step upload of `len` bytes, start to clip; false when it did not get there (the
/// kill, or a wrong answer, noted).
async fn chunked_upload(t: &Traffic, name: &str, len: usize, one_time: bool) -> bool {
    let data = Arc::new(random_bytes(len));
    let id = loop {
        match answer(t.api.initiate(name, len, one_time)).await {
            Answer::Whole(200, body) => break json_of(&body)["uploadId"].as_str().unwrap_or_default().to_string(),
            Answer::Whole(408, _) if !t.killed() => continue,
            other => {
                t.unexpected(&format!("initiate {name}"), &other);
                return false;
            }
        }
    };
    let upload = Upload { data: data.clone(), one_time, acked: BTreeSet::new(), clip: None };
    t.ledger().uploads.insert(id.clone(), upload);
    let mut order: Vec<usize> = (0..len.div_ceil(MIB)).collect();
    order.shuffle(&mut rand::rng());
    // Two chunks in flight at a time, as parallel senders deliver them.
    let sent: Vec<bool> = futures_util::stream::iter(order)
        .map(|index| {
            let (id, data) = (&id, &data);
            async move {
                let piece = &data[index * MIB..((index + 1) * MIB).min(data.len())];
                let _flight = t.flight(Kind::Chunk);
                loop {
                    match answer(t.api.chunk(id, index, piece)).await {
                        Answer::Whole(200, _) => {
                            t.ledger().uploads.get_mut(id).expect("recorded").acked.insert(index);
                            return true;
                        }
                        Answer::Whole(408, _) if !t.killed() => continue,
                        other => {
                            t.unexpected(&format!("chunk {index} of {id}"), &other);
                            return false;
                        }
                    }
                }
            }
        })
        .buffer_unordered(2)
        .collect()
        .await;
    if !sent.iter().all(|&ok| ok) {
        return false;
    }
    loop {
        match answer(t.api.complete(&id)).await {
            Answer::Whole(200, body) => {
                let body = json_of(&body);
                if body["sha256"] != sha256_hex(&data) {
                    t.unexpected(&format!("complete of {id}"), &Answer::Whole(200, body.to_string().into_bytes()));
                    return false;
                }
                let code = body["clipId"].as_str().unwrap_or_default().to_string();
                t.ledger().uploads.get_mut(&id).expect("recorded").clip = Some(code.clone());
                t.add_clip(code, data, one_time, true);
                t.ledger().chunked_done += 1;
                return true;
            }
            // Cut short by the deadline: the assembly goes on, and asking again answers it.
            Answer::Whole(408, _) if !t.killed() => continue,
            other => {
                t.unexpected(&format!("complete of {id}"), &other);
                return false;
            }
        }
    }
}

/// One one-request upload of `len` bytes; its clip's code when answered 200.
async fn one_request_upload(
    t: &Traffic,
    name: &str,
    len: usize,
    one_time: bool,
    put: bool,
    enqueue: bool,
) -> Option<String> {
    let data = Arc::new(random_bytes(len));
    let _flight = t.flight(Kind::OneRequest);
    loop {
        match answer(t.api.one_request(name, &data, one_time, put)).await {
            Answer::Whole(200, body) => {
                let body = json_of(&body);
                let code = body["clipId"].as_str().unwrap_or_default().to_string();
                if body["sha256"] != sha256_hex(&data) || code.is_empty() {
                    t.unexpected(&format!("upload of {name}"), &Answer::Whole(200, body.to_string().into_bytes()));
                    return None;
                }
                t.add_clip(code.clone(), data, one_time, enqueue);
                t.ledger().one_request_done += 1;
                return Some(code);
            }
            Answer::Whole(408, _) if !t.killed() => continue,
            other => {
                t.unexpected(&format!("upload of {name}"), &other);
                return None;
            }
        }
    }
}

/// A three-step upload paused by its client: chunks 2 and 0 of four answered 200, then half of
/// chunk 1 sent and the rest held back until the kill, so the kill always finds an upload with
/// acknowledged chunks, and one chunk torn mid-body.
async fn paused_upload(t: Arc<Traffic>) {
    let data = Arc::new(random_bytes(3 * MIB + 5));
    let id = match answer(t.api.initiate("paused.bin", data.len(), false)).await {
        Answer::Whole(200, body) => json_of(&body)["uploadId"].as_str().unwrap_or_default().to_string(),
        other => return t.unexpected("initiate of the paused upload", &other),
    };
    let upload = Upload { data: data.clone(), one_time: false, acked: BTreeSet::new(), clip: None };
    t.ledger().uploads.insert(id.clone(), upload);
    for index in [2, 0] {
        match answer(t.api.chunk(&id, index, &data[index * MIB..(index + 1) * MIB])).await {
            Answer::Whole(200, _) => t.ledger().uploads.get_mut(&id).expect("recorded").acked.insert(index),
            other => return t.unexpected(&format!("chunk {index} of the paused upload"), &other),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let req = t
        .api
        .http
        .post(t.api.url(&format!("/api/upload/chunk/{id}/1")))
        .header("content-type", "application/octet-stream")
        .header("content-length", MIB.to_string())
        .body(body);
    let pending = tokio::spawn(answer(req));
    if tx.send(Ok(data[MIB..MIB + MIB / 2].to_vec())).await.is_err() {
        return t.unexpected("half of chunk 1 of the paused upload", &Answer::Lost);
    }
    t.paused.store(true, Ordering::SeqCst);
    t.kill.cancelled().await;
    let got = pending.await.expect("the paused chunk's request does not panic");
    drop(tx);
    if !matches!(got, Answer::Lost) {
        t.unexpected("the paused chunk, cut by the kill", &got);
    }
}

/// Three-step uploads one after another until the kill; every third one-time.
async fn chunked_uploads(t: Arc<Traffic>, worker: usize) {
    for n in 1.. {
        let len = 3 * MIB + rand::random_range(1..2 * MIB);
        if t.killed() || !chunked_upload(&t, &format!("chunked-{worker}-{n}.bin"), len, n % 3 == 0).await {
            return;
        }
    }
}

/// One-request uploads, PUT and POST in turn, until the kill; every third one-time.
async fn one_request_uploads(t: Arc<Traffic>, worker: usize) {
    for n in 1.. {
        let len = rand::random_range(64 * 1024..3 * MIB / 2);
        let name = format!("one-{worker}-{n}.bin");
        if t.killed() || one_request_upload(&t, &name, len, n % 3 == 0, n % 2 == 0, true).await.is_none() {
            return;
        }
    }
}

/// Info lookups of any clip made, and downloads (`POST /api/file` and `GET /raw` in turn) of
/// the clips that are not one-time, until the kill.
async fn readers(t: Arc<Traffic>, worker: usize) {
    for n in 0usize.. {
        if t.killed() {
            return;
        }
        let (code, data, one_time) = {
            let l = t.ledger();
            let (code, clip) = l.clips.iter().nth(rand::random_range(0..l.clips.len())).expect("seeded clips");
            (code.clone(), clip.data.clone(), clip.one_time)
        };
        match answer(t.api.info(&code)).await {
            Answer::Whole(200, body) => {
                let body = json_of(&body);
                if body["clipId"] != code.as_str() || body["oneTime"] != one_time {
                    t.unexpected(&format!("info of {code}"), &Answer::Whole(200, body.to_string().into_bytes()));
                    return;
                }
                t.ledger().infos += 1;
            }
            // A one-time clip may have been claimed meanwhile.
            Answer::Whole(404 | 410, _) if one_time => {}
            Answer::Whole(408, _) => {}
            other => return t.unexpected(&format!("info of {code}"), &other),
        }
        if one_time {
            continue;
        }
        let _flight = t.flight(Kind::Download);
        let req = if (n + worker) % 2 == 0 { t.api.download(&code) } else { t.api.raw(&code) };
        match answer(req).await {
            Answer::Whole(200, body) if body == *data => t.ledger().downloads += 1,
            Answer::Whole(200, body) => {
                let note = format!("download of {code}: {} bytes, not the {} uploaded", body.len(), data.len());
                t.ledger().wrong.push(note);
                return;
            }
            Answer::Whole(408, _) => {}
            other => return t.unexpected(&format!("download of {code}"), &other),
        }
    }
}

/// One claim on one-time clip `code`, counted.
async fn claim(t: &Traffic, code: &str, data: &[u8]) {
    t.ledger().claims.get_mut(code).expect("recorded").sent += 1;
    let _flight = t.flight(Kind::Claim);
    let got = answer(t.api.download(code)).await;
    let mut l = t.ledger();
    let claims = l.claims.get_mut(code).expect("recorded");
    match got {
        Answer::Whole(200, body) => {
            claims.ok += 1;
            if body == data {
                claims.whole += 1;
            } else {
                let note = format!("one-time clip {code} served {} bytes, not the {} uploaded", body.len(), data.len());
                l.wrong.push(note);
            }
        }
        // Cut by the kill: it may have been served in part, and counts as served.
        Answer::Cut(200) => claims.ok += 1,
        // Another racer won; or the deadline passed (the clip may be spent unserved: at most once).
        Answer::Whole(404 | 408 | 410, _) | Answer::Cut(404 | 408 | 410) => {}
        other => {
            drop(l);
            t.unexpected(&format!("claim of {code}"), &other);
        }
    }
}

/// Race `RACERS` downloaders for each queued one-time clip (or, with none queued, for one it
/// makes itself), until the kill.
async fn claimer(t: Arc<Traffic>) {
    for n in 1.. {
        if t.killed() {
            return;
        }
        let queued = t.ledger().to_claim.pop_front();
        let code = match queued {
            Some(code) => code,
            None => {
                let len = rand::random_range(256 * 1024..MIB);
                match one_request_upload(&t, &format!("claim-{n}.bin"), len, true, true, false).await {
                    Some(code) => code,
                    None => return,
                }
            }
        };
        let data = t.ledger().clips[&code].data.clone();
        futures_util::future::join_all((0..RACERS).map(|_| claim(&t, &code, &data))).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The store and the blob directory, read directly

/// A live clip's row: where its bytes are and their SHA-256.
struct Row {
    code: String,
    /// Every blob the row names: its single blob, or each of its parts.
    keys: Vec<String>,
    sha256: String,
}

const LIVE_CLIPS: &str =
    "SELECT code, blob_key, COALESCE(parts, ''), sha256 FROM clips WHERE consumed_at IS NULL AND deleted_at IS NULL";
const OPEN_UPLOADS: &str = "SELECT id FROM upload_sessions WHERE status <> 'complete'";

/// The live clips, and the upload sessions not completed.
async fn store_view(node: &Node) -> (Vec<Row>, BTreeSet<String>) {
    let (clips, open): (Vec<[String; 4]>, Vec<String>) = match &node.db {
        None => {
            let path = node.dir.path().join("ferry.db");
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .expect("open the embedded database read-only");
                let mut stmt = conn.prepare(LIVE_CLIPS).unwrap();
                let clips = stmt
                    .query_map([], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let mut stmt = conn.prepare(OPEN_UPLOADS).unwrap();
                let open = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
                (clips, open)
            })
            .await
            .unwrap()
        }
        Some(db) => {
            let client = pg_connect(&db.url).await;
            let clips = client.query(LIVE_CLIPS, &[]).await.unwrap();
            let open = client.query(OPEN_UPLOADS, &[]).await.unwrap();
            (
                clips.iter().map(|r| [r.get(0), r.get(1), r.get(2), r.get(3)]).collect(),
                open.iter().map(|r| r.get(0)).collect(),
            )
        }
    };
    let rows = clips
        .into_iter()
        .map(|[code, blob_key, parts, sha256]| {
            let keys = if parts.is_empty() {
                vec![blob_key]
            } else {
                parts.split(',').map(|p| format!("{blob_key}/{}", p.split(':').next().unwrap_or(p))).collect()
            };
            Row { code, keys, sha256 }
        })
        .collect();
    (rows, open.into_iter().collect())
}

/// Every file under `root/dir`, as a path relative to `root`.
fn files_under(root: &Path, dir: &str) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).expect("under the root").to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &root.join(dir), &mut out);
    out.sort();
    out
}

/// `ferry sweep --reconcile` against the node's data directory and database while it runs, with
/// no grace for orphans or retired clips (nothing is being written or downloaded meanwhile);
/// its JSON report.
async fn sweep(node: &Node) -> Value {
    let mut cmd = binary();
    cmd.args(["sweep", "--reconcile"])
        .env("FERRY_DATA_DIR", node.dir.path())
        .env("FERRY_LIMITS__CHUNK_SIZE", "1MiB")
        .env("FERRY_SWEEP__ORPHAN_GRACE", "0s")
        .env("FERRY_SWEEP__RETIRED_GRACE", "0s");
    if let Some(db) = &node.db {
        cmd.env("FERRY_DATABASE_URL", &db.url);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run ferry sweep")).await.unwrap();
    assert!(out.status.success(), "ferry sweep failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("ferry sweep printed no JSON ({e}): {stdout}"))
}

// ---------------------------------------------------------------------------------------------
// The campaign

async fn campaign(db: Option<TestDb>) {
    let started = Instant::now();
    let mut node = Node::start(db).await;
    let t = Arc::new(Traffic {
        api: Api::at(&node),
        ledger: Mutex::default(),
        kill: CancellationToken::new(),
        paused: AtomicBool::new(false),
        in_flight: Default::default(),
    });

    // Clips to read and to claim from the first request on: public and one-time, from both
    // kinds of upload.
    for i in 0..8 {
        let len = rand::random_range(128 * 1024..MIB);
        let made = one_request_upload(&t, &format!("seed-{i}.bin"), len, i % 2 == 1, i % 4 < 2, true).await;
        assert!(made.is_some(), "seed {i}: {:?}", t.ledger().wrong);
    }
    for i in 0..2 {
        assert!(
            chunked_upload(&t, &format!("seed-chunked-{i}.bin"), 2 * MIB + 17, i == 1).await,
            "{:?}",
            t.ledger().wrong
        );
    }
    {
        let mut l = t.ledger();
        (l.chunked_done, l.one_request_done) = (0, 0);
    }

    // The traffic, until every kind of request is in flight at once.
    let traffic_started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..2 {
        tasks.push(tokio::spawn(chunked_uploads(t.clone(), worker)));
        tasks.push(tokio::spawn(one_request_uploads(t.clone(), worker)));
        tasks.push(tokio::spawn(readers(t.clone(), worker)));
    }
    tasks.push(tokio::spawn(claimer(t.clone())));
    tasks.push(tokio::spawn(paused_upload(t.clone())));
    let ready = poll_until(12_000, Duration::from_millis(2), || {
        let t = t.clone();
        async move { t.ready_to_kill(traffic_started) || !t.ledger().wrong.is_empty() }
    })
    .await;
    assert!(t.ledger().wrong.is_empty(), "wrong answers under traffic: {:#?}", t.ledger().wrong);
    assert!(ready, "the traffic never had every kind of request in flight at once: {}", t.progress());
    let at_kill = t.progress();
    t.kill.cancel();
    node.kill9();
    let traffic_secs = traffic_started.elapsed().as_secs_f64();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("a traffic generator ends once the process is gone")
            .expect("a traffic generator does not panic");
    }
    let ledger = std::mem::take(&mut *t.ledger());
    assert!(ledger.wrong.is_empty(), "wrong answers under traffic: {:#?}", ledger.wrong);
    let Ledger { mut clips, uploads, mut claims, .. } = ledger;

    node.restart();
    let api = Api::at(&node);

    // Every acknowledged chunk is listed, with its size and SHA-256; the interrupted uploads
    // resume from what is listed and complete into the bytes sent.
    let (mut interrupted, mut acked_before_kill, mut resent) = (0, 0, 0);
    for (id, upload) in uploads.iter().filter(|(_, u)| u.clip.is_none()) {
        interrupted += 1;
        acked_before_kill += upload.acked.len();
        let pieces: Vec<&[u8]> = upload.data.chunks(MIB).collect();
        let (status, body) = api.settled(|a| a.status(id), &format!("status of {id}")).await;
        assert_eq!(status, 200, "status of {id}: {}", String::from_utf8_lossy(&body));
        let status = json_of(&body);
        let listed: BTreeMap<usize, (u64, String)> = status["chunks"]
            .as_array()
            .unwrap_or_else(|| panic!("status of {id} lists no chunks: {status}"))
            .iter()
            .map(|c| {
                let index = c["index"].as_u64().expect("an index") as usize;
                (index, (c["size"].as_u64().expect("a size"), c["sha256"].as_str().unwrap_or("none").to_string()))
            })
            .collect();
        for &index in &upload.acked {
            assert!(
                listed.contains_key(&index),
                "upload {id}: chunk {index} was answered 200 before the kill but is not listed: {status}"
            );
        }
        for (&index, listed) in &listed {
            let piece = pieces.get(index).unwrap_or_else(|| panic!("upload {id}: chunk {index} listed past the end"));
            assert_eq!(
                *listed,
                (piece.len() as u64, sha256_hex(piece)),
                "upload {id}: chunk {index} is listed with what was sent"
            );
        }
        if status["status"] == "uploading" {
            for (index, piece) in pieces.iter().enumerate().filter(|(i, _)| !listed.contains_key(i)) {
                let (code, body) = api.settled(|a| a.chunk(id, index, piece), &format!("chunk {index} of {id}")).await;
                assert_eq!(code, 200, "resending chunk {index} of {id}: {}", String::from_utf8_lossy(&body));
                resent += 1;
            }
        }
        let (code, body) = api.settled(|a| a.complete(id), &format!("complete of {id}")).await;
        let done = json_of(&body);
        assert_eq!(code, 200, "complete of {id} after the restart: {done}");
        assert_eq!(done["sha256"], sha256_hex(&upload.data), "upload {id} resumed into other bytes: {done}");
        let clip = done["clipId"].as_str().expect("a clip id").to_string();
        if upload.one_time {
            claims.entry(clip.clone()).or_default();
        }
        clips.insert(clip, Clip { data: upload.data.clone(), one_time: upload.one_time });
    }
    assert!(acked_before_kill >= 2, "the paused upload's acknowledged chunks were checked");

    // Every acknowledged clip that is not one-time downloads intact.
    for (code, clip) in clips.iter().filter(|(_, c)| !c.one_time) {
        let (status, body) = api.settled(|a| a.download(code), &format!("download of {code}")).await;
        assert_eq!(status, 200, "clip {code}, acknowledged before the kill: {}", String::from_utf8_lossy(&body));
        assert_eq!(sha256_hex(&body), sha256_hex(&clip.data), "clip {code} downloads intact after the restart");
    }

    // One-time clips: raced again; at most one 200 in all, and exactly one for those nobody
    // asked for before the kill.
    let (mut served_before, mut served_after) = (0, 0);
    for (code, clip) in clips.iter().filter(|(_, c)| c.one_time) {
        let before = claims.get(code).copied().unwrap_or_default();
        let answers = futures_util::future::join_all((0..RACERS).map(|_| answer(api.download(code)))).await;
        let (mut ok, mut timed_out) = (0, false);
        for got in answers {
            match got {
                Answer::Whole(200, body) => {
                    assert!(body == *clip.data, "one-time clip {code} served other bytes after the restart");
                    ok += 1;
                }
                Answer::Whole(404 | 410, _) => {}
                Answer::Whole(408, _) => timed_out = true,
                other => panic!("claim of {code} after the restart: {other:?}"),
            }
        }
        assert!(
            before.ok + ok <= 1,
            "one-time clip {code} answered 200 {} times before the kill and {ok} after",
            before.ok
        );
        if before.sent == 0 && !timed_out {
            assert_eq!(ok, 1, "one-time clip {code}, never asked for before the kill, is served once after it");
        }
        served_before += before.ok;
        served_after += ok;
    }

    // The sweep, then: no live row without its bytes, no bytes without their live row.
    let report = sweep(&node).await;
    let (live, open) = store_view(&node).await;
    let blobs = node.dir.path().join("blobs");
    let owned: BTreeSet<&str> = live.iter().flat_map(|r| r.keys.iter().map(String::as_str)).collect();
    let missing: Vec<&&str> = owned.iter().filter(|k| !blobs.join(k).is_file()).collect();
    assert!(missing.is_empty(), "live rows point at missing bytes after the sweep: {missing:?}");
    let stray: Vec<String> = files_under(&blobs, "clips")
        .into_iter()
        .chain(files_under(&blobs, "chunks"))
        .filter(|k| !owned.contains(k.as_str()) && !open.iter().any(|u| k.starts_with(&format!("chunks/{u}/"))))
        .collect();
    assert!(stray.is_empty(), "bytes outlive their row after the sweep ({report}): {stray:?}");
    let partial = files_under(&blobs, ".tmp");
    assert!(partial.is_empty(), "writes cut by the kill are gone after the restart: {partial:?}");
    let live_codes: BTreeSet<&str> = live.iter().map(|r| r.code.as_str()).collect();
    for code in clips.iter().filter(|(_, c)| !c.one_time).map(|(code, _)| code) {
        assert!(live_codes.contains(code.as_str()), "clip {code} is live after the sweep");
    }
    // Every live row downloads with its SHA-256, also those whose creation was never answered.
    let unknown = live.iter().filter(|r| !clips.contains_key(&r.code)).count();
    for row in &live {
        let (status, body) = api.settled(|a| a.download(&row.code), &format!("download of {}", row.code)).await;
        assert_eq!(status, 200, "live clip {} after the sweep: {}", row.code, String::from_utf8_lossy(&body));
        assert_eq!(sha256_hex(&body), row.sha256, "live clip {} serves the bytes its row names", row.code);
        if let Some(clip) = clips.get(&row.code) {
            assert_eq!(row.sha256, sha256_hex(&clip.data), "clip {}'s row names the bytes uploaded", row.code);
        }
    }

    eprintln!(
        "kill_mixed ({}): {traffic_secs:.1} s of traffic, killed with {at_kill}; {interrupted} interrupted \
         uploads ({acked_before_kill} chunks acknowledged, {resent} sent again); {} clips acknowledged; one-time \
         200s: {served_before} before, {served_after} after the kill; {} live rows ({unknown} never \
         acknowledged); sweep {report}; {:.1} s in all",
        if node.db.is_some() { "PostgreSQL" } else { "embedded" },
        clips.len(),
        live.len(),
        started.elapsed().as_secs_f64(),
    );
}
