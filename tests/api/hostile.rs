//! Hostile input over HTTP, table-driven: malformed and oversized JSON, wrong types, loose
//! booleans, huge and negative numbers, bad and lower-case ids, path traversal in filenames and
//! ids, control characters and non-Latin filenames, missing and duplicate multipart fields,
//! truncated multipart bodies, wrong content types, absurd Range headers, oversized headers and
//! broken HTTP framing.
//!
//! Every request goes out as raw bytes on its own TCP connection, so nothing (URL
//! normalisation, header validation, framing) is tidied up on the way. For every case: no 5xx;
//! the status the contract fixes; the `{error, message, code}` JSON shape (never the `internal`
//! code on a client mistake). Requests refused by hyper before any route runs (broken framing,
//! oversized heads, a too-long target) are marked `Protocol`: their status is asserted and their
//! body may be empty (hyper answers them with none). After every case nothing may be left
//! behind: no temp blobs, chunk files or chunk rows, and no upload sessions, live clips or clip
//! blobs beyond what an accepted case (a valid non-Latin filename, say) creates; after each
//! group the attacked upload sessions still report no received chunks.
//!
//! Cases that exposed server bugs (now fixed) live in their own tests at the
//! end, with the same runner.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, pg_connect};
use crate::upload::{CHUNK, Part, file_initiate, initiate, json_with, multipart, multipart_type, upload_id_of};

// ---------------------------------------------------------------------------------------------
// Cases

/// What a case must answer.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// This status and this error `code`.
    Error(u16, &'static str),
    /// 400 `validation` whose details name this field.
    Invalid(&'static str),
    /// This status with the JSON error shape, whatever the code.
    Status(u16),
    /// Refused by hyper before routing: this status; the body may be empty.
    Protocol(u16),
    /// A well-formed request the server may honour: one of these statuses (no error shape).
    Accepted(&'static [u16]),
}

/// What an accepted case may legitimately leave behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leaves {
    Nothing,
    /// An upload session (an accepted initiate).
    Session,
    /// A live clip and its blob (an accepted one-request upload).
    Clip,
}

/// How the body is framed on the wire.
#[derive(Clone, Debug)]
enum Framing {
    /// `Content-Length` of the body (omitted on a bodiless GET).
    Length,
    /// `Transfer-Encoding: chunked`, the body in one chunk and the terminator.
    Chunked,
    /// `Content-Length: n` whatever the body is (to declare more than is sent).
    Declared(u64),
    /// The request bytes exactly as given.
    Raw(Vec<u8>),
}

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    framing: Framing,
    /// Close our write side after sending (a client that stops mid-body).
    half_close: bool,
}

fn req(method: &str, path: impl Into<String>) -> Req {
    Req {
        method: method.into(),
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
        framing: Framing::Length,
        half_close: false,
    }
}

fn get(path: impl Into<String>) -> Req {
    req("GET", path)
}

fn post(path: impl Into<String>) -> Req {
    req("POST", path)
}

fn put(path: impl Into<String>) -> Req {
    req("PUT", path)
}

fn delete(path: impl Into<String>) -> Req {
    req("DELETE", path)
}

/// A whole request given as bytes.
fn raw(bytes: impl Into<Vec<u8>>) -> Req {
    let bytes = bytes.into();
    let line = bytes.split(|b| *b == b'\r').next().unwrap_or(&[]);
    let mut words = line.splitn(3, |b| *b == b' ');
    let method = String::from_utf8_lossy(words.next().unwrap_or(b"?")).into_owned();
    let path = String::from_utf8_lossy(words.next().unwrap_or(b"?")).into_owned();
    Req { method, path, headers: Vec::new(), body: Vec::new(), framing: Framing::Raw(bytes), half_close: false }
}

impl Req {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Req {
        self.headers.push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    fn body(mut self, body: impl AsRef<[u8]>) -> Req {
        self.body = body.as_ref().to_vec();
        self
    }

    /// A body sent as `application/json` (whatever it holds).
    fn json(self, body: impl AsRef<[u8]>) -> Req {
        self.header("Content-Type", "application/json").body(body)
    }

    fn octets(self, body: impl AsRef<[u8]>) -> Req {
        self.header("Content-Type", "application/octet-stream").body(body)
    }

    /// A `multipart/form-data` body with the given boundary parameter.
    fn form(self, boundary: &str, body: impl AsRef<[u8]>) -> Req {
        self.header("Content-Type", format!("multipart/form-data; boundary={boundary}")).body(body)
    }

    fn chunked(mut self) -> Req {
        self.framing = Framing::Chunked;
        self
    }

    fn declare_length(mut self, n: u64) -> Req {
        self.framing = Framing::Declared(n);
        self
    }

    fn half_close(mut self) -> Req {
        self.half_close = true;
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn to_bytes(&self) -> Vec<u8> {
        if let Framing::Raw(bytes) = &self.framing {
            return bytes.clone();
        }
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path).into_bytes();
        if !self.has_header("host") {
            out.extend_from_slice(b"Host: localhost\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        match &self.framing {
            Framing::Length if !self.body.is_empty() || self.method != "GET" => {
                out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
            }
            Framing::Declared(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
            Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
            _ => {}
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        match &self.framing {
            Framing::Chunked => {
                if !self.body.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
                    out.extend_from_slice(&self.body);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            _ => out.extend_from_slice(&self.body),
        }
        out
    }
}

struct Case {
    name: String,
    req: Req,
    want: Want,
    leaves: Leaves,
}

fn case(name: impl Into<String>, req: Req, want: Want) -> Case {
    Case { name: name.into(), req, want, leaves: Leaves::Nothing }
}

/// An accepted case that leaves `leaves` behind.
fn accepted(name: impl Into<String>, req: Req, statuses: &'static [u16], leaves: Leaves) -> Case {
    Case { name: name.into(), req, want: Want::Accepted(statuses), leaves }
}

use Want::{Error, Invalid, Protocol, Status};

// ---------------------------------------------------------------------------------------------
// The raw HTTP/1.1 exchange

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        if text.len() > 400 {
            format!("{}… ({} bytes)", prefix(&text, 400), self.body.len())
        } else {
            text.into_owned()
        }
    }
}

/// Send `req` on a fresh connection (writing and reading at once, so an early answer is seen)
/// and read the answer until the server closes.
async fn exchange(app: &TestApp, req: &Req) -> Result<Reply, String> {
    let stream = TcpStream::connect(app.addr).await.map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let bytes = req.to_bytes();
    let half_close = req.half_close;
    let writer = tokio::spawn(async move {
        for piece in bytes.chunks(64 * 1024) {
            if wr.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        if half_close {
            let _ = wr.shutdown().await;
        }
        // Keep the write half open until the reader is done (dropping it would half-close).
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                // A reset after the answer arrived still leaves the answer readable.
                Err(e) => break Err(e),
            }
        }
    })
    .await;
    writer.abort();
    if read.is_err() && out.is_empty() {
        return Err("no answer within 30 s".into());
    }
    if let Ok(Err(e)) = &read
        && out.is_empty()
    {
        return Err(format!("connection failed before any answer: {e}"));
    }
    parse_reply(&out)
}

fn parse_reply(bytes: &[u8]) -> Result<Reply, String> {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("incomplete answer: {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)])));
    };
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    let rest = &bytes[end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            body.extend_from_slice(&rest[..size.min(rest.len())]);
            break;
        }
        body.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
    body
}

/// What is wrong with `reply` for `want`, if anything.
fn judge(want: Want, reply: &Reply) -> Option<String> {
    if reply.status >= 500 {
        return Some("a client mistake answered 5xx".into());
    }
    let shape = |expected_status: u16| -> Result<Value, String> {
        if reply.status != expected_status {
            return Err(format!("want status {expected_status}"));
        }
        let ct = reply.header("content-type").unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(format!("error body is not JSON (content-type {ct:?})"));
        }
        let body: Value = serde_json::from_slice(&reply.body).map_err(|e| format!("error body does not parse: {e}"))?;
        for key in ["error", "message", "code"] {
            if !body[key].is_string() {
                return Err(format!("error body has no string {key:?}"));
            }
        }
        if body["code"] == "internal" {
            return Err("a client mistake is reported as an internal error".into());
        }
        if reply.status == 416 && !reply.header("content-range").is_some_and(|v| v.starts_with("bytes */")) {
            return Err("416 without Content-Range: bytes */<size>".into());
        }
        Ok(body)
    };
    let result = match want {
        Want::Error(status, code) => {
            shape(status).and_then(|b| if b["code"] == code { Ok(()) } else { Err(format!("want code {code:?}")) })
        }
        Want::Invalid(field) => shape(400).and_then(|b| {
            let named = b["code"] == "validation"
                && b["details"].as_array().is_some_and(|d| {
                    d.iter().any(|d| d["path"] == field && d["msg"].is_string() && d["location"].is_string())
                });
            if named { Ok(()) } else { Err(format!("want a validation error naming {field:?}")) }
        }),
        Want::Status(status) => shape(status).map(|_| ()),
        Want::Protocol(status) => {
            if reply.status != status {
                Err(format!("want status {status}"))
            } else if !reply.body.is_empty() {
                // If there is a body at all it must be the JSON shape.
                shape(status).map(|_| ())
            } else {
                Ok(())
            }
        }
        Want::Accepted(statuses) => {
            if statuses.contains(&reply.status) {
                Ok(())
            } else {
                Err(format!("want one of {statuses:?}"))
            }
        }
    };
    result.err()
}

/// Run every case; returns one line per failure (all cases run even when some fail). After
/// each case the residue must be what it was plus what that case may leave.
async fn run_cases(app: &TestApp, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut expected = residue(app).await;
    for case in cases {
        assert!(names.insert(case.name.clone()), "duplicate case name {:?}", case.name);
        let target = format!("{} {}", case.req.method, shorten(&case.req.path));
        match exchange(app, &case.req).await {
            Ok(reply) => {
                if let Some(why) = judge(case.want, &reply) {
                    failures.push(format!(
                        "[{}] {target}: {why}; got {} {}",
                        case.name,
                        reply.status,
                        reply.body_text()
                    ));
                }
            }
            Err(e) => failures.push(format!("[{}] {target}: {e}", case.name)),
        }
        match case.leaves {
            Leaves::Nothing => {}
            Leaves::Session => expected.sessions += 1,
            Leaves::Clip => {
                expected.live_clips += 1;
                expected.clip_files += 1;
            }
        }
        let now = settled(app, expected).await;
        if now != expected {
            failures.push(format!("[{}] {target}: left state behind: {}", case.name, expected.diff(&now)));
            expected = now;
        }
    }
    failures
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn shorten(s: &str) -> String {
    if s.len() > 120 { format!("{}…({} chars)", prefix(s, 120), s.len()) } else { s.to_string() }
}

// ---------------------------------------------------------------------------------------------
// What is left behind

/// Everything a refused request could leave: partial writes (temp files, or on S3 open
/// multipart uploads), chunk blobs and rows, clip blobs, upload sessions and live clips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Residue {
    temp_files: usize,
    chunk_files: usize,
    clip_files: usize,
    sessions: i64,
    chunk_rows: i64,
    live_clips: i64,
}

const COUNTS: [&str; 3] = [
    "SELECT count(*) FROM upload_sessions",
    "SELECT count(*) FROM upload_chunks",
    "SELECT count(*) FROM clips WHERE deleted_at IS NULL AND consumed_at IS NULL",
];

async fn db_counts(app: &TestApp) -> [i64; 3] {
    match app.backend {
        Backend::Embedded => {
            let path = app.data_dir.path().join("ferry.db");
            tokio::task::spawn_blocking(move || {
                let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .expect("open the embedded database read-only");
                COUNTS.map(|sql| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).expect(sql))
            })
            .await
            .unwrap()
        }
        Backend::Postgres => {
            let client = pg_connect(&app.db.as_ref().expect("test database").url).await;
            let mut out = [0; 3];
            for (slot, sql) in out.iter_mut().zip(COUNTS) {
                *slot = client.query_one(sql, &[]).await.expect(sql).get(0);
            }
            out
        }
    }
}

async fn residue(app: &TestApp) -> Residue {
    let [sessions, chunk_rows, live_clips] = db_counts(app).await;
    Residue {
        temp_files: app.partial_blob_count().await,
        chunk_files: app.all_chunk_blob_count().await,
        clip_files: app.clip_blob_count().await,
        sessions,
        chunk_rows,
        live_clips,
    }
}

impl Residue {
    fn diff(&self, now: &Residue) -> String {
        let pairs = [
            ("partial writes", self.temp_files as i64, now.temp_files as i64),
            ("chunk blobs", self.chunk_files as i64, now.chunk_files as i64),
            ("clip blobs", self.clip_files as i64, now.clip_files as i64),
            ("upload sessions", self.sessions, now.sessions),
            ("chunk rows", self.chunk_rows, now.chunk_rows),
            ("live clips", self.live_clips, now.live_clips),
        ];
        pairs
            .iter()
            .filter(|(_, want, got)| want != got)
            .map(|(what, want, got)| format!("{what} {got} (want {want})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The residue once it equals `want` (a dropped writer removes its temp file a moment after the
/// answer), or as it is after a second of waiting.
async fn settled(app: &TestApp, want: Residue) -> Residue {
    let mut now = residue(app).await;
    for _ in 0..20 {
        if now == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        now = residue(app).await;
    }
    now
}

/// After a group: temp files drain (a dropped writer removes its file), then the residue must
/// equal `before` plus what the accepted cases were allowed to create.
async fn assert_nothing_left(app: &TestApp, before: Residue, cases: &[Case], attacked: &[&str]) {
    let sessions = cases.iter().filter(|c| c.leaves == Leaves::Session).count() as i64;
    let clips = cases.iter().filter(|c| c.leaves == Leaves::Clip).count();
    let want = Residue {
        sessions: before.sessions + sessions,
        live_clips: before.live_clips + clips as i64,
        clip_files: before.clip_files + clips,
        ..before
    };
    let now = settled(app, want).await;
    assert!(now == want, "the hostile requests left state behind: {}", want.diff(&now));
    for upload in attacked {
        let status: Value = app.get(&format!("/api/upload/{upload}/status")).await.json().await.unwrap();
        assert_eq!(status["status"], "uploading", "{status}");
        assert_eq!(status["receivedChunks"], json!([]), "upload {upload} recorded a chunk: {status}");
        assert_eq!(status["uploadedChunks"], 0, "{status}");
        assert_eq!(app.chunk_blob_count(upload).await, 0, "chunk blobs of {upload} remain");
    }
}

/// Run a group: snapshot, cases, failures reported together, then the residue check.
async fn run_group(app: &TestApp, cases: Vec<Case>, attacked: &[&str]) {
    let before = residue(app).await;
    assert_eq!(before.temp_files, 0, "partial writes before the group");
    let failures = run_cases(app, &cases).await;
    // The server is still up and answering after all of it.
    let ping = app.get("/ping").await;
    assert_eq!(ping.status(), 200, "server still answers after the group");
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_nothing_left(app, before, &cases, attacked).await;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Small chunks (64 KiB) and a small maximum upload (1 MiB), so oversize cases stay cheap.
fn small_limits(c: &mut ferry::Config) {
    c.limits.chunk_size = ferry::config::ByteSize(CHUNK as u64);
    c.limits.max_upload_size = ferry::config::ByteSize(1 << 20);
    c.limits.max_text_size = ferry::config::ByteSize(1 << 20);
}

/// An upload session for a file of two chunks.
async fn make_session(app: &TestApp) -> String {
    let body = file_initiate("target.bin", CHUNK + 10, json!({}));
    upload_id_of(&initiate(app, body).await)
}

/// A public clip made with `PUT /api/clips/<name>`: (clip id, delete token).
async fn make_clip(app: &TestApp, name: &str, bytes: &[u8]) -> (String, String) {
    let res = app
        .client
        .put(app.url(&format!("/api/clips/{name}")))
        .header("accept", "application/json")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    let done = json_with(res, 200).await;
    (done["clipId"].as_str().unwrap().to_string(), done["deleteToken"].as_str().unwrap().to_string())
}

const BOUNDARY: &str = "hostile-boundary-0f3a9c";

/// One form part: `name`, optional filename, bytes.
fn part(name: &str, filename: Option<&str>, data: &[u8]) -> Vec<u8> {
    let mut out = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
    if let Some(f) = filename {
        out.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
    }
    out.extend_from_slice(b"\r\nContent-Type: application/octet-stream\r\n\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn end() -> Vec<u8> {
    format!("--{BOUNDARY}--\r\n").into_bytes()
}

fn form_of<P: AsRef<[u8]>>(parts: &[P]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.iter().flat_map(|p| p.as_ref().iter().copied()).collect();
    out.extend(end());
    out
}

fn pad_json(total: usize) -> Vec<u8> {
    let head = br#"{"filename":"a.txt","pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.extend(std::iter::repeat_n(b'x', total - head.len() - tail.len()));
    body.extend_from_slice(tail);
    assert_eq!(body.len(), total);
    body
}

/// `{"k0":0,"k1":0,…}` with `n` keys.
fn many_keys(n: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(|i| format!(r#""k{i}":0"#)).collect();
    format!("{{{}}}", keys.join(",")).into_bytes()
}

/// Upload sessions with every chunk received whose completion must still be refused.
struct Finishing {
    /// Initiated with `hasPassword`.
    protected: String,
    /// A quick share.
    quick: String,
    /// Declared 10 bytes, sent 5.
    short: String,
}

impl Finishing {
    async fn new(app: &TestApp) -> Finishing {
        Finishing {
            protected: one_chunk_session(app, json!({ "hasPassword": true })).await,
            quick: one_chunk_session(app, json!({ "quickShare": true })).await,
            short: one_chunk_session(app, json!({ "filesize": 10 })).await,
        }
    }

    /// Each is still uploading with its one chunk, and no clip came of it.
    async fn assert_untouched(&self, app: &TestApp) {
        for id in [&self.protected, &self.quick, &self.short] {
            let status: Value = app.get(&format!("/api/upload/{id}/status")).await.json().await.unwrap();
            assert_eq!(status["status"], "uploading", "{status}");
            assert_eq!(status["receivedChunks"], json!([0]), "{status}");
        }
    }
}

/// A one-chunk file upload (5 bytes sent) initiated with `extra`.
async fn one_chunk_session(app: &TestApp, extra: Value) -> String {
    let id = upload_id_of(&initiate(app, file_initiate("f.bin", 5, extra)).await);
    json_with(crate::upload::send_chunk(app, &id, 0, b"hello").await, 200).await;
    id
}

const MIB: usize = 1 << 20;
const INIT: &str = "/api/upload/initiate";

// ---------------------------------------------------------------------------------------------
// Groups

/// Bodies of the JSON routes: malformed, non-object, oversized, wrong types, loose booleans,
/// huge and negative numbers, bad filenames (and the non-Latin ones that are fine).
fn json_cases(upload: &str, clip: &str, finishing: &Finishing) -> Vec<Case> {
    let init = |name: &str, body: &str, want: Want| case(name, post(INIT).json(body), want);
    let initb = |name: &str, body: Vec<u8>, want: Want| case(name, post(INIT).json(body), want);
    // `{"filename":"a.txt","<key>":<value>}`
    let with = |key: &str, value: &str| format!(r#"{{"filename":"a.txt","{key}":{value}}}"#);
    let bad = |key: &'static str, value: &str| {
        case(format!("{key} = {value}"), post(INIT).json(with(key, value)), Invalid(key))
    };
    let filename = |label: &str, json_value: &str| {
        case(
            format!("filename {label}"),
            post(INIT).json(format!(r#"{{"filename":{json_value}}}"#)),
            Invalid("filename"),
        )
    };
    let fine_name = |label: &str, name: &str| {
        accepted(
            format!("filename {label} accepted"),
            post(INIT).json(json!({ "filename": name }).to_string()),
            &[200],
            Leaves::Session,
        )
    };
    let complete = format!("/api/upload/complete/{upload}");
    let mut nested = "[".repeat(100_000);
    nested.push_str(&"]".repeat(100_000));
    let deep_object = format!("{}1{}", r#"{"a":"#.repeat(300), "}".repeat(300));
    let long256 = "x".repeat(256);
    let east256 = "東".repeat(256);
    let east255 = "東".repeat(255);
    vec![
        // Malformed JSON.
        init("unterminated object", "{", Error(400, "invalid_json")),
        init("trailing comma", r#"{"filename":"a.txt",}"#, Error(400, "invalid_json")),
        init("single quotes", "{'filename':'a.txt'}", Error(400, "invalid_json")),
        init("trailing garbage", r#"{"filename":"a.txt"} trailing"#, Error(400, "invalid_json")),
        initb("invalid UTF-8", b"{\"filename\":\"\xff\xfe.txt\"}".to_vec(), Error(400, "invalid_json")),
        initb("byte order mark", b"\xef\xbb\xbf{\"filename\":\"a.txt\"}".to_vec(), Error(400, "invalid_json")),
        init("bad escape", r#"{"filename":"a\u00"}"#, Error(400, "invalid_json")),
        init("lone surrogate", r#"{"filename":"\ud800.txt"}"#, Error(400, "invalid_json")),
        initb("raw NUL in a string", b"{\"filename\":\"a\x00.txt\"}".to_vec(), Error(400, "invalid_json")),
        init("NaN", r#"{"filename":"a.txt","filesize":NaN}"#, Error(400, "invalid_json")),
        init("number overflowing f64", r#"{"filename":"a.txt","filesize":1e400}"#, Error(400, "invalid_json")),
        init("100000-deep array", &nested, Error(400, "invalid_json")),
        init("300-deep object", &deep_object, Error(400, "invalid_json")),
        init("form-encoded body", "filename=a.txt&filesize=3", Error(400, "invalid_json")),
        case(
            "XML with an XML content type",
            post(INIT).header("Content-Type", "application/xml").body("<filename>a.txt</filename>"),
            Error(400, "invalid_json"),
        ),
        // Valid JSON that is not an object.
        init("array", "[]", Error(400, "invalid_json")),
        init("string", r#""x""#, Error(400, "invalid_json")),
        init("number", "5", Error(400, "invalid_json")),
        init("null", "null", Error(400, "invalid_json")),
        init("boolean", "true", Error(400, "invalid_json")),
        // Empty and missing.
        case("empty body", post(INIT), Invalid("filename")),
        init("whitespace body", " \r\n\t ", Invalid("filename")),
        init("empty object", "{}", Invalid("filename")),
        initb("60000 unknown keys", many_keys(60_000), Invalid("filename")),
        case(
            "900 KB filename",
            post(INIT).json(json!({ "filename": "n".repeat(900_000) }).to_string()),
            Invalid("filename"),
        ),
        init("duplicate key, last one bad", r#"{"filename":"a.txt","filename":"../x"}"#, Invalid("filename")),
        // Oversized (json_body_limit = 1 MiB).
        initb("1 MiB + 1 body", pad_json(MIB + 1), Error(413, "payload_too_large")),
        case("1 MiB + 1 chunked body", post(INIT).json(pad_json(MIB + 1)).chunked(), Error(413, "payload_too_large")),
        case(
            "64 MiB declared, headers only",
            post(INIT).header("Content-Type", "application/json").declare_length(64 << 20),
            Error(413, "payload_too_large"),
        ),
        case(
            "1 MiB + 1 body to complete",
            post(complete.clone()).json(pad_json(MIB + 1)),
            Error(413, "payload_too_large"),
        ),
        case(
            "1 MiB + 1 body to download",
            post(format!("/api/file/{clip}")).json(pad_json(MIB + 1)),
            Error(413, "payload_too_large"),
        ),
        // Wrong types.
        filename("number", "123"),
        filename("array", r#"["a.txt"]"#),
        filename("object", r#"{"name":"a.txt"}"#),
        filename("boolean", "true"),
        filename("null", "null"),
        bad("filesize", r#""abc""#),
        bad("filesize", "-1"),
        bad("filesize", "1.5"),
        bad("filesize", "1e3"),
        bad("filesize", "18446744073709551616"),
        bad("filesize", "9223372036854775807"),
        bad("filesize", r#""-5""#),
        bad("filesize", r#""""#),
        bad("filesize", r#""123456789012345678901""#),
        bad("filesize", r#"" 12""#),
        bad("filesize", "[1]"),
        bad("totalChunks", "0"),
        bad("totalChunks", "-1"),
        bad("totalChunks", "1000001"),
        bad("totalChunks", "4294967296"),
        bad("totalChunks", r#""lots""#),
        // 1 MiB of text is at most 1 MiB + 66 bytes as a V3 blob: at 64 KiB chunks, 17 chunks,
        // or up to 33 of at least half a chunk.
        bad("totalChunks", "34"),
        case(
            "filesize 1 MiB in one 64 KiB chunk",
            post(INIT).json(r#"{"filename":"a.bin","contentType":"file","filesize":1048576,"totalChunks":1}"#),
            Invalid("totalChunks"),
        ),
        case(
            // 1 MiB of plaintext as V4 at the smallest record size: 1 MiB + 28 + 16 · 256 bytes.
            "filesize over the maximum",
            post(INIT).json(r#"{"filename":"a.bin","contentType":"file","filesize":1052701}"#),
            Invalid("filesize"),
        ),
        bad("maxDownloads", "0"),
        bad("maxDownloads", "10001"),
        bad("maxDownloads", "-1"),
        bad("maxDownloads", "2.5"),
        bad("maxDownloads", r#""ten""#),
        bad("maxDownloads", "18446744073709551615"),
        bad("maxDownloads", "1e20"),
        // Loose booleans.
        bad("oneTime", r#""yes""#),
        bad("oneTime", r#""1""#),
        bad("oneTime", "1"),
        bad("oneTime", "0"),
        bad("oneTime", r#""""#),
        bad("oneTime", "{}"),
        bad("hasPassword", r#""TRUE""#),
        bad("quickShare", r#""True""#),
        bad("quickShare", r#""false ""#),
        bad("isTextContent", "[]"),
        // Other fields.
        bad("expiration", r#""2hr""#),
        bad("expiration", "300"),
        bad("expiration", r#""24HR""#),
        bad("contentType", r#""image""#),
        bad("contentType", "1"),
        bad("mimeType", r#""notamime""#),
        bad("mimeType", r#""text/plain\r\nX-Injected: 1""#),
        bad("mimeType", &format!(r#""text/{}""#, "x".repeat(96))),
        case(
            "quickShare with hasPassword",
            post(INIT).json(r#"{"filename":"a.txt","quickShare":true,"hasPassword":true}"#),
            Invalid("hasPassword"),
        ),
        // Filenames: traversal, separators, control characters, length.
        filename("empty", r#""""#),
        filename("blank", r#""   ""#),
        filename("dot", r#"".""#),
        filename("dot-dot", r#""..""#),
        filename("traversal", r#""../../etc/passwd""#),
        filename("backslash traversal", r#""..\\..\\windows\\win.ini""#),
        filename("absolute", r#""/etc/passwd""#),
        filename("escaped NUL", r#""a\u0000b.txt""#),
        filename("newline", r#""line\nbreak.txt""#),
        filename("tab", r#""tab\t.txt""#),
        filename("ANSI escape", r#""\u001b[31mred.txt""#),
        filename("DEL", r#""del\u007f.txt""#),
        filename("C1 control NEL", r#""nel\u0085.txt""#),
        filename("256 ASCII chars", &format!(r#""{long256}""#)),
        filename("256 CJK chars", &format!(r#""{east256}""#)),
        // Non-Latin filenames are fine.
        fine_name("CJK", "東京.txt"),
        fine_name("accented", "résumé.pdf"),
        fine_name("Arabic", "ملف.txt"),
        fine_name("emoji", "😀.png"),
        fine_name("255 CJK chars", &east255),
        // The loose forms the contract does accept.
        accepted(
            "oneTime \"false\" and filesize \"1024\"",
            post(INIT).json(r#"{"filename":"a.txt","oneTime":"false","filesize":"1024"}"#),
            &[200],
            Leaves::Session,
        ),
        // complete: its body is checked before anything is assembled.
        case("complete: malformed", post(complete.clone()).json(r#"{"accessCodeHash":"#), Error(400, "invalid_json")),
        case("complete: array", post(complete.clone()).json("[]"), Error(400, "invalid_json")),
        case(
            "complete: requiresAccessCode \"yes\"",
            post(complete.clone()).json(r#"{"requiresAccessCode":"yes"}"#),
            Invalid("requiresAccessCode"),
        ),
        case(
            "complete: requiresAccessCode without a code",
            post(complete.clone()).json(r#"{"requiresAccessCode":true}"#),
            Invalid("accessCodeHash"),
        ),
        case(
            "complete: 257-char access code",
            post(complete.clone()).json(json!({ "accessCodeHash": "a".repeat(257) }).to_string()),
            Invalid("accessCodeHash"),
        ),
        case(
            "complete: numeric access code",
            post(complete.clone()).json(r#"{"accessCodeHash":123}"#),
            Invalid("accessCodeHash"),
        ),
        case(
            "complete: numeric legacy password",
            post(complete.clone()).json(r#"{"password":[1]}"#),
            Invalid("password"),
        ),
        case(
            "complete: contentType video",
            post(complete.clone()).json(r#"{"contentType":"video"}"#),
            Invalid("contentType"),
        ),
        case(
            "complete: isTextUpload \"1\"",
            post(complete.clone()).json(r#"{"isTextUpload":"1"}"#),
            Invalid("isTextUpload"),
        ),
        case("complete: no chunks yet", post(complete.clone()).json("{}"), Error(400, "upload_incomplete")),
        // complete: refused once assembly has begun (the claim must be undone, nothing kept).
        case(
            "complete: password upload without a code",
            post(format!("/api/upload/complete/{}", finishing.protected)).json("{}"),
            Invalid("accessCodeHash"),
        ),
        case(
            "complete: quick share with a code",
            post(format!("/api/upload/complete/{}", finishing.quick)).json(r#"{"accessCodeHash":"secret"}"#),
            Invalid("accessCodeHash"),
        ),
        case(
            "complete: chunks short of the declared filesize",
            post(format!("/api/upload/complete/{}", finishing.short)).json("{}"),
            Error(400, "size_mismatch"),
        ),
        // Access-code bodies of the read routes.
        case(
            "download: numeric accessCode",
            post(format!("/api/file/{clip}")).json(r#"{"accessCode":5}"#),
            Invalid("accessCode"),
        ),
        case(
            "download: empty accessCode",
            post(format!("/api/file/{clip}")).json(r#"{"accessCode":""}"#),
            Invalid("accessCode"),
        ),
        case(
            "download: malformed",
            post(format!("/api/file/{clip}")).json(r#"{"accessCode""#),
            Error(400, "invalid_json"),
        ),
        case("read: array body", post(format!("/api/clip/{clip}")).json("[1,2]"), Error(400, "invalid_json")),
        case(
            "read: 300-char accessCode",
            post(format!("/api/clip/{clip}")).json(json!({ "accessCode": "c".repeat(300) }).to_string()),
            Invalid("accessCode"),
        ),
    ]
}

/// Ids and paths: malformed and lower-case ids, traversal and encoded separators in ids and
/// filenames, chunk numbers, routing, and the option headers of the one-request upload.
fn id_cases(upload: &str, clip: &str) -> Vec<Case> {
    let info = |label: &str, id: &str, want: Want| {
        case(format!("clip info id {label}"), get(format!("/api/clip/{id}/info")), want)
    };
    let status = |label: &str, id: &str, want: Want| {
        case(format!("upload status id {label}"), get(format!("/api/upload/{id}/status")), want)
    };
    let chunk = |label: &str, n: &str, want: Want| {
        case(format!("chunk number {label}"), post(format!("/api/upload/chunk/{upload}/{n}")).octets(b"data"), want)
    };
    let put_name = |label: &str, encoded: &str, want: Want| {
        case(format!("PUT filename {label}"), put(format!("/api/clips/{encoded}")).body(b"hello"), want)
    };
    let put_opt = |label: &str, r: Req, want: Want| case(format!("PUT option {label}"), r.body(b"hello"), want);
    let clip_id = Invalid("clipId");
    let upload_id = Invalid("uploadId");
    vec![
        // Clip ids.
        info("lower-case", "abcdefghij", clip_id),
        info("mixed case", "ABCDEfghij", clip_id),
        info("9 chars", "ABCDEFGHI", clip_id),
        info("11 chars", "ABCDEFGHIJK", clip_id),
        info("7 chars", "ABCDEFG", clip_id),
        info("5 chars", "ABCDE", clip_id),
        info("with a dash", "ABCDE-GHIJ", clip_id),
        info("encoded slash", "ABCDE%2FGHIJ", clip_id),
        info("encoded traversal", "..%2F..%2F..%2Fetc%2Fpasswd", clip_id),
        info("encoded dot-dot", "%2E%2E", clip_id),
        info("literal dot-dot", "..", clip_id),
        info("encoded NUL", "ABCDEFGHI%00", clip_id),
        info("encoded A-umlaut", "%C3%84BCDEFGHI", clip_id),
        info("fullwidth letters", "%EF%BC%A1%EF%BC%A2%EF%BC%A3%EF%BC%A4%EF%BC%A5", clip_id),
        info("trailing encoded space", "ABCDEFGHIJ%20", clip_id),
        info("10000 chars", &"A".repeat(10_000), clip_id),
        info("unknown", "ZZZZZZZZZZ", Error(404, "clip_not_found")),
        info("unknown quick share", "ZZZZZZ", Error(404, "clip_not_found")),
        case("read lower-case id", get("/api/clip/abcdefghij"), clip_id),
        case("read-with-code lower-case id", post("/api/clip/abcdefghij").json("{}"), clip_id),
        case("delete lower-case id", delete("/api/clip/abcdefghij"), clip_id),
        case(
            "delete unknown id",
            delete("/api/clip/ZZZZZZZZZZ").header("X-Delete-Token", "00"),
            Error(404, "clip_not_found"),
        ),
        case("delete without token", delete(format!("/api/clip/{clip}")), Error(401, "delete_token_required")),
        case(
            "delete with a wrong token",
            delete(format!("/api/clip/{clip}")).header("X-Delete-Token", "0".repeat(64)),
            Error(403, "invalid_delete_token"),
        ),
        case(
            "delete with a non-ASCII token",
            delete(format!("/api/clip/{clip}")).header("X-Delete-Token", b"\xff\xfe\xfd"),
            Error(401, "delete_token_required"),
        ),
        case("file info lower-case id", get("/api/file/abcdefghij/info"), clip_id),
        case("file info unknown", get("/api/file/ZZZZZZZZZZ/info"), Error(404, "clip_not_found")),
        case("GET file traversal id", get("/api/file/..%2F..%2Fetc%2Fpasswd"), clip_id),
        case("download lower-case id", post("/api/file/abcdefghij").json("{}"), clip_id),
        case("download unknown", post("/api/file/ZZZZZZZZZZ").json("{}"), Error(404, "clip_not_found")),
        case("raw lower-case id", get("/raw/abcdefghij"), clip_id),
        case("raw unknown", get("/raw/ZZZZZZZZZZ"), Error(404, "clip_not_found")),
        case("raw traversal id", get("/raw/..%2F..%2Fetc%2Fpasswd/x"), clip_id),
        accepted(
            "raw with a traversal name segment (cosmetic) serves the clip",
            get(format!("/raw/{clip}/..%2F..%2Fetc%2Fpasswd")),
            &[200],
            Leaves::Nothing,
        ),
        // Upload ids.
        status("lower-case", "0123456789abcdef", upload_id),
        status("non-hex", "0123456789ABCDEG", upload_id),
        status("15 chars", "0123456789ABCDE", upload_id),
        status("17 chars", "0123456789ABCDEF0", upload_id),
        status("encoded traversal", "..%2F..%2Fchunks", upload_id),
        status("unknown", "FFFFFFFFFFFFFFFF", Error(404, "upload_not_found")),
        case("cancel lower-case id", delete("/api/upload/0123456789abcdef"), upload_id),
        case("cancel unknown", delete("/api/upload/FFFFFFFFFFFFFFFF"), Error(404, "upload_not_found")),
        case("complete traversal id", post("/api/upload/complete/..%2F..%2Fetc").json("{}"), upload_id),
        case(
            "complete unknown",
            post("/api/upload/complete/FFFFFFFFFFFFFFFF").json("{}"),
            Error(404, "upload_not_found"),
        ),
        case(
            "chunk to a lower-case id",
            post(format!("/api/upload/chunk/{}/0", upload.to_ascii_lowercase())).octets(b"data"),
            upload_id,
        ),
        case(
            "chunk to an unknown id",
            post("/api/upload/chunk/FFFFFFFFFFFFFFFF/0").octets(b"data"),
            Error(404, "upload_not_found"),
        ),
        case("chunk to a traversal id", post("/api/upload/chunk/..%2F..%2Fclips%2FAB/0").octets(b"data"), upload_id),
        // Chunk numbers.
        chunk("-1", "-1", Invalid("chunkNumber")),
        chunk("+1", "+1", Invalid("chunkNumber")),
        chunk("1.5", "1.5", Invalid("chunkNumber")),
        chunk("99999999", "99999999", Invalid("chunkNumber")),
        chunk("4294967296", "4294967296", Invalid("chunkNumber")),
        chunk("0x1", "0x1", Invalid("chunkNumber")),
        chunk("encoded space", "%201", Invalid("chunkNumber")),
        chunk("traversal", "..%2F0", Invalid("chunkNumber")),
        chunk("= totalChunks", "2", Invalid("chunkNumber")),
        // Routing.
        case("unknown API route", get("/api/nonexistent"), Error(404, "not_found")),
        case("empty clip id segment", get("/api/clip//info"), clip_id),
        case("unknown method on a clip", req("PATCH", "/api/clip/ZZZZZZZZZZ"), Error(405, "method_not_allowed")),
        case("extension method", req("BREW", "/api/clips"), Error(405, "method_not_allowed")),
        case("GET on initiate", get(INIT), Error(405, "method_not_allowed")),
        case("TRACE on info", req("TRACE", "/api/clip/ZZZZZZZZZZ/info"), Error(405, "method_not_allowed")),
        // Filenames in the one-request upload path.
        put_name("encoded traversal", "..%2F..%2Fetc%2Fpasswd", Invalid("filename")),
        put_name("encoded backslash traversal", "..%5C..%5Cwin.ini", Invalid("filename")),
        put_name("encoded dot-dot", "%2E%2E", Invalid("filename")),
        put_name("encoded NUL", "a%00b.txt", Invalid("filename")),
        put_name("encoded newline", "a%0Ab.txt", Invalid("filename")),
        put_name("encoded ESC", "a%1B.txt", Invalid("filename")),
        put_name("encoded blank", "%20%20", Invalid("filename")),
        put_name("256 chars", &"n".repeat(256), Invalid("filename")),
        case("PUT without a filename", put("/api/clips/").body(b"hello"), Invalid("filename")),
        case(
            "PUT literal traversal (no route)",
            put("/api/clips/../../etc/passwd").body(b"hello"),
            Error(404, "not_found"),
        ),
        accepted("PUT filename CJK", put("/api/clips/%E6%9D%B1%E4%BA%AC.txt").body(b"hello"), &[200], Leaves::Clip),
        accepted("PUT filename accented", put("/api/clips/r%C3%A9sum%C3%A9.pdf").body(b"hello"), &[200], Leaves::Clip),
        // Options of the one-request upload.
        put_opt("One-Time: yes", put("/api/clips/o.txt").header("One-Time", "yes"), Invalid("one-time")),
        put_opt("Max-Downloads: 0", put("/api/clips/o.txt").header("Max-Downloads", "0"), Invalid("max-downloads")),
        put_opt("Max-Downloads: -1", put("/api/clips/o.txt").header("Max-Downloads", "-1"), Invalid("max-downloads")),
        put_opt(
            "Max-Downloads: huge",
            put("/api/clips/o.txt").header("Max-Downloads", "99999999999999999999999"),
            Invalid("max-downloads"),
        ),
        put_opt("Expire: forever", put("/api/clips/o.txt").header("Expire", "forever"), Invalid("expire")),
        put_opt("Expire: non-ASCII", put("/api/clips/o.txt").header("Expire", b"24hr\xff"), Invalid("expire")),
        put_opt(
            "Access-Code: 257 chars",
            put("/api/clips/o.txt").header("Access-Code", "k".repeat(257)),
            Invalid("access-code"),
        ),
        put_opt("?expire=1y", put("/api/clips/o.txt?expire=1y"), Invalid("expire")),
        put_opt("?maxDownloads=1e3", put("/api/clips/o.txt?maxDownloads=1e3"), Invalid("maxDownloads")),
    ]
}

/// Multipart and content types on the chunk route and `POST /api/clips`.
fn multipart_cases(upload: &str, done_upload: &str) -> Vec<Case> {
    let chunk_url = format!("/api/upload/chunk/{upload}/0");
    let chunk = |label: &str, r: Req, want: Want| case(format!("chunk {label}"), r, want);
    let to_chunk = || post(chunk_url.clone());
    let clips = |label: &str, r: Req, want: Want| case(format!("POST /api/clips {label}"), r, want);
    let to_clips = || post("/api/clips");
    let data = vec![7u8; 100];
    let chunk_part = part("chunk", Some("blob"), &data);
    let file_part = part("file", Some("f.bin"), &data);
    let over = vec![1u8; CHUNK + 1024 + 1];
    let wrong_sha = "0".repeat(64);
    vec![
        // Wrong content types on the chunk route.
        chunk(
            "text/plain",
            to_chunk().header("Content-Type", "text/plain").body(&data),
            Error(415, "unsupported_media_type"),
        ),
        chunk("application/json", to_chunk().json(r#"{"chunk":"AAAA"}"#), Error(415, "unsupported_media_type")),
        chunk(
            "form-urlencoded",
            to_chunk().header("Content-Type", "application/x-www-form-urlencoded").body("chunk=AAAA"),
            Error(415, "unsupported_media_type"),
        ),
        chunk(
            "multipart/mixed",
            to_chunk()
                .header("Content-Type", format!("multipart/mixed; boundary={BOUNDARY}"))
                .body(form_of(&[&chunk_part])),
            Error(415, "unsupported_media_type"),
        ),
        chunk(
            "image/png",
            to_chunk().header("Content-Type", "image/png").body(&data),
            Error(415, "unsupported_media_type"),
        ),
        chunk(
            "10 KB content type",
            to_chunk().header("Content-Type", "x/".to_string() + &"y".repeat(10_000)).body(&data),
            Error(415, "unsupported_media_type"),
        ),
        // Broken forms on the chunk route.
        chunk(
            "multipart without a boundary",
            to_chunk().header("Content-Type", "multipart/form-data").body(form_of(&[&chunk_part])),
            Error(400, "bad_body"),
        ),
        chunk(
            "multipart with an empty boundary",
            to_chunk().header("Content-Type", "multipart/form-data; boundary=").body(form_of(&[&chunk_part])),
            Error(400, "bad_body"),
        ),
        chunk(
            "multipart with another boundary in the body",
            to_chunk().form("not-the-boundary", form_of(&[&chunk_part])),
            Status(400),
        ),
        chunk(
            "form without a chunk field",
            to_chunk().form(BOUNDARY, form_of(&[part("other", None, b"x")])),
            Invalid("chunk"),
        ),
        chunk("empty form", to_chunk().form(BOUNDARY, end()), Invalid("chunk")),
        chunk(
            "form with the chunk field twice",
            to_chunk().form(BOUNDARY, form_of(&[chunk_part.clone(), chunk_part.clone()])),
            Invalid("chunk"),
        ),
        chunk(
            "form truncated inside the chunk field",
            to_chunk().form(BOUNDARY, [&chunk_part[..chunk_part.len() - 50]].concat()),
            Error(400, "bad_body"),
        ),
        chunk(
            "form truncated inside part headers",
            to_chunk().form(BOUNDARY, format!("--{BOUNDARY}\r\nContent-Disposition: form-da")),
            Error(400, "bad_body"),
        ),
        chunk(
            "form without the closing delimiter",
            to_chunk().form(BOUNDARY, chunk_part.clone()),
            Error(400, "bad_body"),
        ),
        chunk("form of plain text", to_chunk().form(BOUNDARY, "hello, not a form"), Status(400)),
        chunk(
            "upper-case multipart type, truncated",
            to_chunk()
                .header("Content-Type", format!("MULTIPART/FORM-DATA; boundary={BOUNDARY}"))
                .body(&chunk_part[..chunk_part.len() - 10]),
            Error(400, "bad_body"),
        ),
        // Oversized and corrupt chunks.
        chunk("raw body over the chunk limit", to_chunk().octets(&over), Error(413, "payload_too_large")),
        chunk(
            "chunked raw body over the chunk limit",
            to_chunk().octets(&over).chunked(),
            Error(413, "payload_too_large"),
        ),
        chunk(
            "form field over the chunk limit",
            to_chunk().form(BOUNDARY, form_of(&[part("chunk", Some("blob"), &over)])),
            Error(413, "payload_too_large"),
        ),
        chunk(
            "X-Chunk-Sha256 mismatch",
            to_chunk().octets(&data).header("X-Chunk-Sha256", &wrong_sha),
            Error(400, "checksum_mismatch"),
        ),
        chunk(
            "X-Chunk-Sha256 not hex",
            to_chunk().octets(&data).header("X-Chunk-Sha256", "not-hex"),
            Error(400, "checksum_mismatch"),
        ),
        chunk(
            "form with X-Chunk-Sha256 mismatch",
            to_chunk().form(BOUNDARY, form_of(&[&chunk_part])).header("X-Chunk-Sha256", &wrong_sha),
            Error(400, "checksum_mismatch"),
        ),
        // A completed upload takes no more changes.
        case(
            "chunk to a completed upload",
            post(format!("/api/upload/chunk/{done_upload}/0")).octets(&data),
            Error(409, "upload_completed"),
        ),
        case("cancel a completed upload", delete(format!("/api/upload/{done_upload}")), Error(409, "upload_completed")),
        // POST /api/clips: content types.
        clips("without a content type", to_clips().body(&data), Error(415, "unsupported_media_type")),
        clips("octet-stream", to_clips().octets(&data), Error(415, "unsupported_media_type")),
        clips("JSON", to_clips().json(r#"{"file":"aGVsbG8="}"#), Error(415, "unsupported_media_type")),
        clips(
            "text/plain",
            to_clips().header("Content-Type", "text/plain").body("hello"),
            Error(415, "unsupported_media_type"),
        ),
        clips(
            "multipart without a boundary",
            to_clips().header("Content-Type", "multipart/form-data").body(form_of(&[&file_part])),
            Error(400, "bad_body"),
        ),
        // POST /api/clips: missing, duplicate and hostile fields.
        clips(
            "without a file field",
            to_clips().form(BOUNDARY, form_of(&[part("chunk", Some("x"), b"x")])),
            Invalid("file"),
        ),
        clips("empty form", to_clips().form(BOUNDARY, end()), Invalid("file")),
        clips(
            "with the file field twice",
            to_clips().form(BOUNDARY, form_of(&[file_part.clone(), file_part.clone()])),
            Invalid("file"),
        ),
        clips(
            "file named with traversal",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some("../../etc/passwd"), &data)])),
            Invalid("file"),
        ),
        clips(
            "file named with backslashes",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some("..\\\\..\\\\boot.ini"), &data)])),
            Invalid("file"),
        ),
        clips(
            "file named with a control character",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some("bell\x07.txt"), &data)])),
            Status(400),
        ),
        clips(
            "file with an empty name",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some(""), &data)])),
            Invalid("file"),
        ),
        clips(
            "file named with 300 chars",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some(&"f".repeat(300)), &data)])),
            Invalid("file"),
        ),
        clips(
            "truncated inside the file field",
            to_clips().form(BOUNDARY, [&file_part[..file_part.len() - 50]].concat()),
            Error(400, "bad_body"),
        ),
        clips(
            "whole file field, then a truncated second file field",
            to_clips().form(BOUNDARY, [file_part.clone(), file_part[..file_part.len() - 50].to_vec()].concat()),
            Status(400),
        ),
        clips(
            "bad One-Time header",
            to_clips().form(BOUNDARY, form_of(&[&file_part])).header("One-Time", "maybe"),
            Invalid("one-time"),
        ),
        clips(
            "file over the maximum upload size",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some("big.bin"), &vec![0u8; MIB + 1])])),
            Error(413, "payload_too_large"),
        ),
        case(
            "PUT body over the maximum upload size",
            put("/api/clips/big.bin").octets(vec![0u8; MIB + 1]),
            Error(413, "payload_too_large"),
        ),
        case(
            "PUT declaring more than the maximum, headers only",
            put("/api/clips/big.bin").header("Content-Type", "application/octet-stream").declare_length(MIB as u64 + 1),
            Error(413, "payload_too_large"),
        ),
        case(
            "PUT chunked body over the maximum upload size",
            put("/api/clips/big.bin").octets(vec![0u8; MIB + 1]).chunked(),
            Error(413, "payload_too_large"),
        ),
        accepted(
            "POST /api/clips file named in CJK",
            to_clips().form(BOUNDARY, form_of(&[part("file", Some("東京.txt"), &data)])),
            &[200],
            Leaves::Clip,
        ),
    ]
}

/// Absurd Range headers on a real clip (and an empty one), and oversized headers.
fn range_and_header_cases(clip: &str, empty: &str) -> Vec<Case> {
    let raw_range = |label: &str, value: &[u8], want: Want| {
        case(format!("raw Range {label}"), get(format!("/raw/{clip}")).header("Range", value), want)
    };
    let ignored = |label: &str, value: &[u8]| raw_range(label, value, Want::Accepted(&[200]));
    let unsatisfiable = Error(416, "range_not_satisfiable");
    let many_ranges: String = (0..1000).map(|i| format!("{i}-{i}")).collect::<Vec<_>>().join(",");
    let missing = "/api/clip/ZZZZZZZZZZ/info";
    let headers = |n: usize| (0..n).fold(get(missing), |r, i| r.header(&format!("X-Filler-{i}"), "v"));
    vec![
        // Unsatisfiable: 416 with JSON and Content-Range.
        raw_range("past the end", b"bytes=100-", unsatisfiable),
        raw_range("far past the end", b"bytes=1000-2000", unsatisfiable),
        raw_range("start = size", b"bytes=100-100", unsatisfiable),
        raw_range("empty suffix", b"bytes=-0", unsatisfiable),
        raw_range("19-digit start", b"bytes=9999999999999999999-", unsatisfiable),
        case(
            "download Range past the end",
            post(format!("/api/file/{clip}")).json("{}").header("Range", "bytes=100-"),
            unsatisfiable,
        ),
        case(
            "download Range empty suffix",
            post(format!("/api/file/{clip}")).json("{}").header("Range", "bytes=-0"),
            unsatisfiable,
        ),
        case("empty clip Range 0-", get(format!("/raw/{empty}")).header("Range", "bytes=0-"), unsatisfiable),
        case("empty clip Range -1", get(format!("/raw/{empty}")).header("Range", "bytes=-1"), unsatisfiable),
        case("empty clip Range 0-0", get(format!("/raw/{empty}")).header("Range", "bytes=0-0"), unsatisfiable),
        // Well-formed ranges the server may ignore: the whole body.
        ignored("multiple ranges", b"bytes=0-1,4-5"),
        ignored("other unit", b"items=0-9"),
        ignored("reversed", b"bytes=9-1"),
        ignored("letters", b"bytes=a-b"),
        ignored("bare dash", b"bytes=-"),
        ignored("no spec", b"bytes="),
        ignored("20-digit start", b"bytes=18446744073709551616-"),
        ignored("23-digit end", b"bytes=0-99999999999999999999999"),
        ignored("1000 ranges", many_ranges.as_bytes()),
        ignored("8000-digit start", format!("bytes={}-", "9".repeat(8000)).as_bytes()),
        ignored("non-ASCII", b"bytes=0-\xff\xfe"),
        ignored("spaces around =", b"bytes = 0-1"),
        case(
            "unsatisfiable Range with a stale If-Range",
            get(format!("/raw/{clip}")).header("Range", "bytes=100-").header("If-Range", "\"stale\""),
            Want::Accepted(&[200]),
        ),
        raw_range("19-digit end", b"bytes=0-9999999999999999999", Want::Accepted(&[206])),
        raw_range("huge suffix", b"bytes=-99999999999", Want::Accepted(&[206])),
        raw_range("one byte", b"bytes=0-0", Want::Accepted(&[206])),
        case(
            "Range on an unknown clip",
            get("/raw/ZZZZZZZZZZ").header("Range", "bytes=100-"),
            Error(404, "clip_not_found"),
        ),
        case("Range on a malformed id", get("/raw/zzzzzzzzzz").header("Range", "bytes=100-"), Invalid("clipId")),
        // Oversized headers.
        case("one 64 KiB header", get(missing).header("X-Big", "a".repeat(64 * 1024)), Error(404, "clip_not_found")),
        case("90 headers", headers(90), Error(404, "clip_not_found")),
        case("200 headers", headers(200), Protocol(431)),
        case("one 1 MiB header", get(missing).header("X-Huge", "a".repeat(MIB)), Protocol(431)),
        case("60 KB query string", get(format!("{missing}?{}", "q=1&".repeat(15_000))), Error(404, "clip_not_found")),
        case("10 KB Host header", get(missing).header("Host", "h".repeat(10_000)), Error(404, "clip_not_found")),
        case(
            "64 KiB X-Forwarded-For",
            get(missing).header("X-Forwarded-For", "1.2.3.4, ".repeat(6500)),
            Error(404, "clip_not_found"),
        ),
        case(
            "64 KiB Accept on a PUT option error",
            put("/api/clips/o.txt").header("Accept", "a".repeat(64 * 1024)).header("Expire", "never").body("x"),
            Invalid("expire"),
        ),
    ]
}

/// Broken HTTP framing and clients that stop mid-body.
fn framing_cases(upload: &str) -> Vec<Case> {
    let chunk_url = format!("/api/upload/chunk/{upload}/0");
    let head = |method: &str, path: &str, extra: &str| {
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n")
    };
    vec![
        // A client that declares more than it sends, then stops (half-close).
        case(
            "chunk body cut short",
            post(chunk_url.clone()).octets(vec![9u8; 1000]).declare_length(2000).half_close(),
            Error(400, "bad_body"),
        ),
        case(
            "chunked chunk body cut short",
            raw(format!(
                "{}7d0\r\n{}",
                head("POST", &chunk_url, "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"),
                "z".repeat(1000)
            ))
            .half_close(),
            Error(400, "bad_body"),
        ),
        case(
            "form chunk cut short",
            post(chunk_url.clone())
                .form(BOUNDARY, part("chunk", Some("blob"), &[3u8; 1000]))
                .declare_length(5000)
                .half_close(),
            Error(400, "bad_body"),
        ),
        case(
            "initiate body cut short",
            post(INIT).json(r#"{"filename":"#).declare_length(100).half_close(),
            Status(400),
        ),
        case(
            "PUT body cut short",
            put("/api/clips/cut.bin").octets(vec![5u8; 100]).declare_length(5000).half_close(),
            Error(400, "bad_body"),
        ),
        case(
            "POST /api/clips form cut short",
            post("/api/clips")
                .form(BOUNDARY, part("file", Some("cut.bin"), &[4u8; 1000]))
                .declare_length(5000)
                .half_close(),
            Error(400, "bad_body"),
        ),
        case(
            "PUT chunked body without its last chunk",
            raw(format!("{}5\r\nhello\r\n", head("PUT", "/api/clips/cut.bin", "Transfer-Encoding: chunked\r\n")))
                .half_close(),
            Error(400, "bad_body"),
        ),
        case(
            "bad chunk size in a chunk body",
            raw(format!(
                "{}zz\r\nhello\r\n0\r\n\r\n",
                head("POST", &chunk_url, "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n")
            )),
            Error(400, "bad_body"),
        ),
        case(
            "chunked and Content-Length together",
            raw(format!(
                "{}5\r\n[1,2\r\n0\r\n\r\n",
                head(
                    "POST",
                    INIT,
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
                )
            )),
            Status(400),
        ),
        case(
            "Expect: 100-continue with an oversized declared PUT",
            put("/api/clips/big.bin").header("Expect", "100-continue").declare_length(64 << 20),
            Error(413, "payload_too_large"),
        ),
        // Framing hyper refuses before any route runs.
        case("non-numeric Content-Length", raw(head("POST", INIT, "Content-Length: abc\r\n")), Protocol(400)),
        case("negative Content-Length", raw(head("POST", INIT, "Content-Length: -1\r\n")), Protocol(400)),
        case(
            "conflicting Content-Lengths",
            raw(format!("{}{{}}", head("POST", INIT, "Content-Length: 2\r\nContent-Length: 20\r\n"))),
            Protocol(400),
        ),
        case(
            "Transfer-Encoding gzip only",
            raw(format!("{}{{}}", head("POST", INIT, "Transfer-Encoding: gzip\r\n"))),
            Protocol(400),
        ),
        case("garbage request line", raw("GARBAGE\r\n\r\n"), Protocol(400)),
        case(
            "NUL in the request target",
            raw(b"GET /api/clip/ABCDE\x00GHIJ/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec()),
            Protocol(400),
        ),
        // hyper lets raw UTF-8 through to the router.
        case("raw UTF-8 in the request target", raw(head("GET", "/api/clip/東京東京東/info", "")), Invalid("clipId")),
        case(
            "space in a header name",
            raw(head("GET", "/api/clip/ZZZZZZZZZZ/info", "Bad Header: x\r\n")),
            Protocol(400),
        ),
        case(
            "70 KB request target",
            raw(head("GET", &format!("/api/clip/{}/info", "A".repeat(70_000)), "")),
            Protocol(414),
        ),
    ]
}

/// Percent-encoded bytes that are not UTF-8 in a path parameter: axum's `Path` rejection (a bare
/// 400) reaches `json_error_bodies`, which maps any unexpected status to `ApiError::Internal`.
fn invalid_utf8_path_cases(upload: &str) -> Vec<Case> {
    let bad = "%FF%FE%FD%FC%FB%FA%F9%F8%F7%F6";
    vec![
        case("clip info", get(format!("/api/clip/{bad}/info")), Status(400)),
        case("clip read", get(format!("/api/clip/{bad}")), Status(400)),
        case("file info", get(format!("/api/file/{bad}/info")), Status(400)),
        case("download", post(format!("/api/file/{bad}")).json("{}"), Status(400)),
        case("raw", get(format!("/raw/{bad}")), Status(400)),
        case("upload status", get(format!("/api/upload/{bad}/status")), Status(400)),
        case("complete", post(format!("/api/upload/complete/{bad}")).json("{}"), Status(400)),
        case("chunk number", post(format!("/api/upload/chunk/{upload}/%FF")).octets(b"x"), Status(400)),
        case("PUT filename", put("/api/clips/%FF%FE.txt").body(b"hello"), Status(400)),
    ]
}

/// `POST /api/clips` whose form breaks after a whole `file` field: the clip is committed while
/// the field is read, then `next_field` fails and the handler returns 400 without undoing it.
fn broken_form_tail_cases() -> Vec<Case> {
    let file_part = part("file", Some("f.bin"), &[7u8; 100]);
    let truncated_part = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\npart");
    vec![
        case(
            "whole file field, then a truncated part",
            post("/api/clips").form(BOUNDARY, [file_part.clone(), truncated_part.into_bytes()].concat()),
            Error(400, "bad_body"),
        ),
        case(
            "whole file field, then a bare delimiter",
            post("/api/clips").form(BOUNDARY, [file_part, format!("--{BOUNDARY}").into_bytes()].concat()),
            Error(400, "bad_body"),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Tests

all_backends! {
    async fn hostile_json_bodies_answer_4xx_json_and_leave_nothing(app, small_limits) {
        let upload = make_session(&app).await;
        let (clip, _) = make_clip(&app, "fixture.bin", &[1u8; 100]).await;
        let finishing = Finishing::new(&app).await;
        let cases = json_cases(&upload, &clip, &finishing);
        run_group(&app, cases, &[&upload]).await;
        finishing.assert_untouched(&app).await;
    }

    async fn hostile_ids_and_paths_answer_4xx_json_and_leave_nothing(app, small_limits) {
        let upload = make_session(&app).await;
        let (clip, _) = make_clip(&app, "fixture.bin", &[1u8; 100]).await;
        let cases = id_cases(&upload, &clip);
        run_group(&app, cases, &[&upload]).await;
        // The clip the delete cases attacked is still there.
        assert_eq!(app.get(&format!("/api/clip/{clip}/info")).await.status(), 200);
    }

    async fn hostile_multipart_and_content_types_answer_4xx_json_and_leave_nothing(app, small_limits) {
        let upload = make_session(&app).await;
        // A completed upload, for the replay cases.
        let done = upload_id_of(&initiate(&app, file_initiate("done.bin", 5, json!({}))).await);
        json_with(crate::upload::send_chunk(&app, &done, 0, b"hello").await, 200).await;
        let res = app
            .client
            .post(app.url(&format!("/api/upload/complete/{done}")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        json_with(res, 200).await;
        let cases = multipart_cases(&upload, &done);
        run_group(&app, cases, &[&upload]).await;
        // The forms the cases broke are the ones the server takes when whole.
        let form = multipart(&[Part { name: "chunk", filename: Some("blob"), data: b"ok" }]);
        let res = app
            .client
            .post(app.url(&format!("/api/upload/chunk/{upload}/0")))
            .header("content-type", multipart_type())
            .body(form)
            .send()
            .await
            .unwrap();
        json_with(res, 200).await;
    }

    async fn hostile_ranges_and_headers_answer_4xx_json_and_never_5xx(app, small_limits) {
        let (clip, _) = make_clip(&app, "range.bin", &[2u8; 100]).await;
        let (empty, _) = make_clip(&app, "empty.bin", b"").await;
        let cases = range_and_header_cases(&clip, &empty);
        run_group(&app, cases, &[]).await;
    }

    async fn hostile_framing_answers_4xx_and_leaves_nothing(app, small_limits) {
        let upload = make_session(&app).await;
        let cases = framing_cases(&upload);
        run_group(&app, cases, &[&upload]).await;
    }

    async fn invalid_utf8_in_path_parameters_is_a_client_error_not_internal(app, small_limits) {
        let upload = make_session(&app).await;
        run_group(&app, invalid_utf8_path_cases(&upload), &[&upload]).await;
    }


    async fn a_form_that_breaks_after_the_file_field_leaves_no_clip(app, small_limits) {
        run_group(&app, broken_form_tail_cases(), &[]).await;
    }
}
