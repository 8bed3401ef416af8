//! Uploading: the three steps (initiate, chunks in any order and in parallel, complete), status,
//! cancel, the one-request upload (`PUT /api/clips/:filename`, `POST /api/clips`) and delete
//! tokens, on every backend combination. Every round trip compares the bytes read back with
//! the bytes sent.
//! The helpers at the top are shared with `download.rs`.

use std::time::Duration;

use ferry::config::ByteSize;
use ferry::domain::clock::Clock;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Blob, TestApp};

/// The chunk size of the small-chunk tests.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Multipart boundary of the hand-built forms (never occurs in 64 KiB of random bytes).
const BOUNDARY: &str = "ferry-test-boundary-6c1f0e9a47d2b835";

/// Config: 64 KiB chunks, so multi-chunk files stay small and fast.
pub(crate) fn small_chunks(c: &mut ferry::Config) {
    c.limits.chunk_size = ByteSize(CHUNK as u64);
}

/// Lower-case hex SHA-256.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// Equal bytes, reported by length and digest rather than by dumping them.
#[track_caller]
pub(crate) fn assert_same_bytes(got: &[u8], want: &[u8]) {
    assert_eq!(got.len(), want.len(), "length of the bytes read back");
    assert!(got == want, "bytes differ: got sha256 {}, want {}", sha256_hex(got), sha256_hex(want));
}

pub(crate) fn is_clip_id(id: &str) -> bool {
    id.len() == 10 && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn is_upload_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// A one-time or used-up clip answers 404 or 410 once it is gone.
pub(crate) fn is_gone(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 404 | 410)
}

/// A response header as text, failing the test when it is absent.
#[track_caller]
pub(crate) fn header(res: &reqwest::Response, name: &str) -> String {
    let value = res.headers().get(name).unwrap_or_else(|| panic!("no {name} header"));
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

/// The JSON body of a response that must have `status` (the body is shown when it has not).
pub(crate) async fn json_with(res: reqwest::Response, status: u16) -> Value {
    let got = res.status();
    let text = res.text().await.expect("response body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"))
}

/// The text body of a response that must have `status`.
async fn text_with(res: reqwest::Response, status: u16) -> String {
    let got = res.status();
    let text = res.text().await.expect("response body");
    assert_eq!(got, status, "unexpected status; body: {text}");
    text
}

/// An error response: `status`, the `{error, message, code}` shape and the given `code`.
pub(crate) async fn error_with(res: reqwest::Response, status: u16, code: &str) -> Value {
    let body = json_with(res, status).await;
    assert_eq!(body["code"], code, "{body}");
    assert!(body["error"].is_string() && body["message"].is_string(), "{body}");
    body
}

/// A 400 validation error whose details name `field`.
async fn validation_error(res: reqwest::Response, field: &str) -> Value {
    let body = error_with(res, 400, "validation").await;
    let details = body["details"].as_array().unwrap_or_else(|| panic!("no details: {body}"));
    assert!(
        details.iter().any(|d| d["path"] == field && d["msg"].is_string() && d["location"].is_string()),
        "details do not name {field}: {body}"
    );
    body
}

/// One part of a hand-built `multipart/form-data` body.
pub(crate) struct Part<'a> {
    pub(crate) name: &'a str,
    pub(crate) filename: Option<&'a str>,
    pub(crate) data: &'a [u8],
}

pub(crate) fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        let name = part.name;
        let disposition = match part.filename {
            Some(filename) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        body.extend_from_slice(format!("--{BOUNDARY}\r\n{disposition}\r\n").as_bytes());
        body.extend_from_slice(part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub(crate) fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// An initiate body for a file clip of `size` bytes, plus the fields in `extra`.
pub(crate) fn file_initiate(filename: &str, size: usize, extra: Value) -> Value {
    let mut body = json!({
        "filename": filename,
        "filesize": size,
        "contentType": "file",
        "isTextContent": false,
    });
    if let (Some(fields), Value::Object(extra)) = (body.as_object_mut(), extra) {
        fields.extend(extra);
    }
    body
}

pub(crate) async fn initiate(app: &TestApp, body: Value) -> Value {
    let res = app.client.post(app.url("/api/upload/initiate")).json(&body).send().await.expect("initiate sent");
    let init = json_with(res, 200).await;
    assert_eq!(init["success"], true, "{init}");
    init
}

pub(crate) fn upload_id_of(init: &Value) -> String {
    let id = init["uploadId"].as_str().unwrap_or_else(|| panic!("no uploadId: {init}"));
    assert!(is_upload_id(id), "upload id {id:?} is not 16 upper-case hex characters");
    id.to_string()
}

fn chunk_url(app: &TestApp, upload_id: &str, index: usize) -> String {
    app.url(&format!("/api/upload/chunk/{upload_id}/{index}"))
}

/// POST one chunk, as a raw octet-stream body or (`as_multipart`) as the `chunk` field of a form.
async fn post_chunk(client: reqwest::Client, url: String, data: Vec<u8>, as_multipart: bool) -> reqwest::Response {
    let request = if as_multipart {
        let form = multipart(&[Part { name: "chunk", filename: Some("blob"), data: &data }]);
        client.post(url).header("content-type", multipart_type()).body(form)
    } else {
        client.post(url).header("content-type", "application/octet-stream").body(data)
    };
    request.send().await.expect("chunk sent")
}

/// POST one chunk as a raw body.
pub(crate) async fn send_chunk(app: &TestApp, upload_id: &str, index: usize, data: &[u8]) -> reqwest::Response {
    post_chunk(app.client.clone(), chunk_url(app, upload_id, index), data.to_vec(), false).await
}

/// Send every chunk of `data`, in order, as raw bodies; each must be accepted.
async fn send_all_chunks(app: &TestApp, upload_id: &str, data: &[u8]) {
    for (index, chunk) in data.chunks(CHUNK).enumerate() {
        json_with(send_chunk(app, upload_id, index, chunk).await, 200).await;
    }
}

async fn upload_status(app: &TestApp, upload_id: &str) -> reqwest::Response {
    app.get(&format!("/api/upload/{upload_id}/status")).await
}

async fn complete(app: &TestApp, upload_id: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/upload/complete/{upload_id}")))
        .json(&json!({}))
        .send()
        .await
        .expect("complete sent")
}

async fn complete_ok(app: &TestApp, upload_id: &str) -> Value {
    let done = json_with(complete(app, upload_id).await, 200).await;
    assert_eq!(done["success"], true, "{done}");
    done
}

fn clip_id_of(done: &Value) -> String {
    let id = done["clipId"].as_str().unwrap_or_else(|| panic!("no clipId: {done}"));
    assert!(is_clip_id(id), "clip id {id:?} is not 10 characters of A-Z0-9");
    id.to_string()
}

/// What the complete of an upload of `chunks` chunks and `size` bytes leaves in the blob store,
/// `clips_before` being the clip blobs there were before it. On the filesystem the chunks stay
/// where they landed and are the clip: one blob each, nothing else, and no second copy
/// anywhere. On S3 they are assembled into one clip object, which is the clip, and removed.
/// Either way no write is left half done.
pub(crate) async fn assert_completed_blobs(
    app: &TestApp,
    upload_id: &str,
    chunks: usize,
    size: usize,
    clips_before: &[String],
) {
    let clips = app.blob_keys("clips").await;
    let parts = app.chunk_blob_count(upload_id).await;
    match app.blob {
        Blob::Fs => {
            assert_eq!(parts, chunks, "one blob per chunk under chunks/{upload_id} after complete");
            assert_eq!(clips, clips_before, "complete wrote no assembled copy");
        }
        Blob::S3 => {
            let new: Vec<&String> = clips.iter().filter(|k| !clips_before.contains(k)).collect();
            assert_eq!(new.len(), 1, "complete assembled exactly one clip object: {new:?}");
            assert_eq!(clips.len(), clips_before.len() + 1, "no clip object went away: {clips:?}");
            assert_eq!(app.blob_size(new[0]).await, Some(size as u64), "the clip object {} holds the clip", new[0]);
            assert_eq!(parts, 0, "the chunk objects of {upload_id} are removed once assembled");
        }
    }
    assert_eq!(app.partial_blob_count().await, 0, "no write is left half done after complete");
}

/// The whole three-step upload of `bytes`: initiate with `initiate_body`, chunks (in order as raw
/// bodies, or `parallel`: all at once, last first, every other one as multipart), complete with
/// `complete_body`. Checks what every successful upload must answer; returns the clip id and
/// the complete response.
pub(crate) async fn upload_with(
    app: &TestApp,
    bytes: &[u8],
    initiate_body: Value,
    complete_body: Value,
    chunk_size: usize,
    parallel: bool,
) -> (String, Value) {
    let init = initiate(app, initiate_body).await;
    let upload_id = upload_id_of(&init);
    assert_eq!(init["chunkSize"], chunk_size, "{init}");
    let chunks: Vec<Vec<u8>> = bytes.chunks(chunk_size).map(<[u8]>::to_vec).collect();
    let total = chunks.len().max(1);
    assert_eq!(init["totalChunks"], total, "{init}");
    assert_eq!(init["uploadUrl"], format!("/api/upload/chunk/{upload_id}"));
    if parallel {
        let tasks: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .rev()
            .map(|(index, data)| {
                let (client, url) = (app.client.clone(), chunk_url(app, &upload_id, index));
                tokio::spawn(async move {
                    let res = post_chunk(client, url, data, index % 2 == 0).await;
                    (index, res.status(), res.text().await.unwrap_or_default())
                })
            })
            .collect();
        for task in futures_util::future::join_all(tasks).await {
            let (index, status, text) = task.expect("chunk task");
            assert_eq!(status, 200, "chunk {index}: {text}");
        }
    } else {
        for (index, data) in chunks.into_iter().enumerate() {
            let res = post_chunk(app.client.clone(), chunk_url(app, &upload_id, index), data, false).await;
            let body = json_with(res, 200).await;
            assert_eq!(body["success"], true, "{body}");
            assert_eq!(body["chunkNumber"], index, "{body}");
            assert_eq!(body["received"], true, "{body}");
            assert_eq!(body["uploadedChunks"], index + 1, "{body}");
            assert_eq!(body["totalChunks"], total, "{body}");
        }
    }
    let clips_before = app.blob_keys("clips").await;
    let res = app
        .client
        .post(app.url(&format!("/api/upload/complete/{upload_id}")))
        .json(&complete_body)
        .send()
        .await
        .expect("complete sent");
    let done = json_with(res, 200).await;
    assert_eq!(done["success"], true, "{done}");
    let clip_id = clip_id_of(&done);
    assert_eq!(done["size"], bytes.len(), "{done}");
    assert_eq!(done["sha256"], sha256_hex(bytes), "{done}");
    assert!(done["deleteToken"].as_str().is_some_and(|t| !t.is_empty()), "{done}");
    assert!(done["expiresAt"].is_i64(), "{done}");
    let total = bytes.len().div_ceil(chunk_size).max(1);
    assert_completed_blobs(app, &upload_id, total, bytes.len(), &clips_before).await;
    (clip_id, done)
}

/// Upload `bytes` as a file clip named `filename`; `chunk_size` is the configured chunk size.
pub(crate) async fn upload_file(
    app: &TestApp,
    bytes: &[u8],
    filename: &str,
    chunk_size: usize,
    parallel: bool,
) -> (String, Value) {
    let initiate_body = file_initiate(filename, bytes.len(), json!({}));
    let (clip_id, done) = upload_with(app, bytes, initiate_body, json!({}), chunk_size, parallel).await;
    assert_eq!(done["filename"], filename, "{done}");
    assert_eq!(done["isFile"], true, "{done}");
    assert_eq!(done["url"], app.url(&format!("/file/{clip_id}")), "{done}");
    (clip_id, done)
}

/// Upload `text` as a text clip the way Qopy's client does (needs `small_chunks`).
pub(crate) async fn upload_text(app: &TestApp, text: &str) -> (String, Value) {
    let bytes = text.as_bytes();
    let initiate_body = json!({
        "filename": "paste.txt",
        "filesize": bytes.len(),
        "contentType": "text",
        "isTextContent": true,
    });
    let complete_body = json!({ "isTextUpload": true, "contentType": "text" });
    let (clip_id, done) = upload_with(app, bytes, initiate_body, complete_body, CHUNK, false).await;
    assert_eq!(done["url"], app.url(&format!("/clip/{clip_id}")), "{done}");
    (clip_id, done)
}

/// `POST /api/file/:id` with `{}`: the content download.
pub(crate) async fn download(app: &TestApp, clip_id: &str) -> reqwest::Response {
    app.client.post(app.url(&format!("/api/file/{clip_id}"))).json(&json!({})).send().await.expect("download sent")
}

/// The downloaded bytes of a clip that must download with 200.
pub(crate) async fn download_ok(app: &TestApp, clip_id: &str) -> Vec<u8> {
    let res = download(app, clip_id).await;
    let status = res.status();
    let body = res.bytes().await.expect("download body");
    assert_eq!(status, 200, "download of {clip_id}: {}", String::from_utf8_lossy(&body));
    body.to_vec()
}

/// `PUT /api/clips/<name>` with a raw body, as `curl -T file http://host/api/clips/` sends it.
async fn put_clip(app: &TestApp, name: &str, data: &[u8], headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app.client.put(app.url(&format!("/api/clips/{name}"))).body(data.to_vec());
    for &(key, value) in headers {
        request = request.header(key, value);
    }
    request.send().await.expect("put sent")
}

/// The clip id in a one-line answer `<prefix><id><suffix>\n`.
#[track_caller]
fn id_in_line(line: &str, prefix: &str, suffix: &str) -> String {
    let id = line
        .strip_suffix('\n')
        .and_then(|l| l.strip_prefix(prefix))
        .and_then(|l| l.strip_suffix(suffix))
        .unwrap_or_else(|| panic!("{line:?} is not `{prefix}<id>{suffix}` and a newline"));
    assert!(is_clip_id(id), "{line:?}");
    id.to_string()
}

all_backends! {
    async fn a_chunk_replaced_after_later_ones_arrived_gives_the_hash_and_bytes_of_the_final_chunks(app, small_chunks) {
        let mut data = random_bytes(4 * CHUNK);
        let id = upload_id_of(&initiate(&app, file_initiate("again.bin", data.len(), json!({}))).await);
        send_all_chunks(&app, &id, &data).await;
        // The frontier may already have hashed chunk 1; its replacement must rewind it.
        let replacement = random_bytes(CHUNK);
        json_with(send_chunk(&app, &id, 1, &replacement).await, 200).await;
        data[CHUNK..2 * CHUNK].copy_from_slice(&replacement);
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["chunks"][1]["sha256"], sha256_hex(&replacement), "{status}");
        let done = complete_ok(&app, &id).await;
        assert_eq!(done["sha256"], sha256_hex(&data), "{done}");
        // The replaced attempt is removed: four chunk blobs, or on S3 one assembled object.
        assert_completed_blobs(&app, &id, 4, data.len(), &[]).await;
        assert_same_bytes(&download_ok(&app, &clip_id_of(&done)).await, &data);
    }

    async fn a_completed_clip_outlives_the_sweep_of_its_upload_session_and_the_reconcile(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.sweep.finished_retention = std::time::Duration::from_secs(60);
        c.sweep.orphan_grace = std::time::Duration::from_secs(60);
    }) {
        let data = random_bytes(3 * CHUNK + 1);
        let body = file_initiate("kept.bin", data.len(), json!({ "expiration": "24hr" }));
        let (clip, _) = upload_with(&app, &data, body, json!({}), CHUNK, false).await;
        app.clock.advance(std::time::Duration::from_secs(3600));
        let now = app.clock.now_ms();
        let settings = app.state.sweep_settings();
        let report = ferry::jobs::sweeper::sweep_once(app.state.deps(), &settings, now).await.unwrap();
        assert_eq!(report.finished_uploads, 1, "{report:?}");
        // An hour on, the chunk files are past the orphan grace: only the clip row keeps them.
        ferry::jobs::sweeper::reconcile_once(app.state.deps(), &settings, now).await.unwrap();
        assert_same_bytes(&download_ok(&app, &clip).await, &data);
    }

    async fn a_one_byte_file_round_trips(app, small_chunks) {
        let data = [0x2a_u8];
        let (id, done) = upload_file(&app, &data, "one.bin", CHUNK, false).await;
        assert_eq!(done["oneTime"], false);
        assert_eq!(done["quickShare"], false);
        // Default lifetime: 24 hours from completion, on the injected clock.
        assert_eq!(done["expiresAt"], app.clock.now_ms() + 86_400_000);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn a_file_of_exactly_one_chunk_is_one_chunk_and_round_trips(app, small_chunks) {
        let data = random_bytes(CHUNK);
        let (id, done) = upload_file(&app, &data, "exact.bin", CHUNK, false).await;
        assert_eq!(done["size"], CHUNK);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn one_byte_over_the_chunk_size_takes_two_chunks_and_round_trips(app, small_chunks) {
        let data = random_bytes(CHUNK + 1);
        let (id, _) = upload_file(&app, &data, "plus-one.bin", CHUNK, false).await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn ten_chunks_sent_out_of_order_and_in_parallel_assemble_in_order(
        app,
        |c: &mut ferry::Config| {
            small_chunks(c);
            c.upload.assembly_concurrency = 3;
        }
    ) {
        let data = random_bytes(9 * CHUNK + 1000);
        let (id, done) = upload_file(&app, &data, "ten.bin", CHUNK, true).await;
        assert_eq!(done["sha256"], sha256_hex(&data));
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn multipart_chunks_with_qopys_extra_fields_round_trip(app, small_chunks) {
        let data = random_bytes(2 * CHUNK + 500);
        let id = upload_id_of(&initiate(&app, file_initiate("form.bin", data.len(), json!({}))).await);
        for (index, chunk) in data.chunks(CHUNK).enumerate() {
            // Qopy's browser client sends the chunk number and upload id as form fields too.
            let number = index.to_string();
            let form = multipart(&[
                Part { name: "chunkNumber", filename: None, data: number.as_bytes() },
                Part { name: "uploadId", filename: None, data: id.as_bytes() },
                Part { name: "chunk", filename: Some("blob"), data: chunk },
            ]);
            let res = app
                .client
                .post(app.url(&format!("/api/upload/chunk/{id}/{index}")))
                .header("content-type", multipart_type())
                .body(form)
                .send()
                .await
                .unwrap();
            let body = json_with(res, 200).await;
            assert_eq!(body["chunkNumber"], index);
            assert_eq!(body["uploadedChunks"], index + 1);
        }
        let clip_id = clip_id_of(&complete_ok(&app, &id).await);
        assert_same_bytes(&download_ok(&app, &clip_id).await, &data);
    }

    async fn initiate_answers_an_upload_id_the_configured_chunk_size_and_the_chunk_url(app) {
        let now = app.clock.now_ms();
        let init = initiate(&app, file_initiate("big.iso", 12 * 1024 * 1024 + 1, json!({}))).await;
        let id = upload_id_of(&init);
        assert_eq!(init["chunkSize"], 5_242_880);
        assert_eq!(init["totalChunks"], 3);
        assert_eq!(init["uploadUrl"], format!("/api/upload/chunk/{id}"));
        assert!(init["expiresAt"].as_i64().is_some_and(|t| t > now), "{init}");
        let other = upload_id_of(&initiate(&app, file_initiate("big.iso", 1, json!({}))).await);
        assert_ne!(id, other);
    }

    async fn initiate_refuses_invalid_fields_and_names_them(app) {
        let cases = [
            (json!({ "filesize": 10 }), "filename"),
            (json!({ "filename": "", "filesize": 10 }), "filename"),
            (json!({ "filename": "x".repeat(256), "filesize": 10 }), "filename"),
            (json!({ "filename": "a/b.txt" }), "filename"),
            (json!({ "filename": "a\\b.txt" }), "filename"),
            (json!({ "filename": "a\nb.txt" }), "filename"),
            (json!({ "filename": "bell\u{7}.txt" }), "filename"),
            (json!({ "filename": "huge.bin", "contentType": "file", "filesize": 2_u64 << 30 }), "filesize"),
            (json!({ "filename": "a.txt", "expiration": "2hr" }), "expiration"),
            (json!({ "filename": "a.txt", "oneTime": "yes" }), "oneTime"),
            (json!({ "filename": "a.txt", "oneTime": 5 }), "oneTime"),
            (json!({ "filename": "a.txt", "contentType": "image" }), "contentType"),
            (json!({ "filename": "a.txt", "maxDownloads": 0 }), "maxDownloads"),
        ];
        for (body, field) in cases {
            let res = app.client.post(app.url("/api/upload/initiate")).json(&body).send().await.unwrap();
            validation_error(res, field).await;
        }
        // Malformed JSON is the client's mistake: 400, never 500.
        let res = app
            .client
            .post(app.url("/api/upload/initiate"))
            .header("content-type", "application/json")
            .body("{\"filename\":")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400);
        let body: Value = res.json().await.unwrap();
        assert!(body["code"].is_string() && body["error"].is_string(), "{body}");
        // 255 characters is still a valid name.
        initiate(&app, json!({ "filename": "x".repeat(255), "filesize": 10 })).await;
    }

    async fn boolean_strings_are_parsed_so_false_means_false(app, small_chunks) {
        for (given, expected) in [("false", false), ("true", true)] {
            let data = random_bytes(10);
            let body = file_initiate("flag.bin", data.len(), json!({ "oneTime": given }));
            let (id, done) = upload_with(&app, &data, body, json!({}), CHUNK, false).await;
            assert_eq!(done["oneTime"], expected, "oneTime {given:?}");
            let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
            assert_eq!(info["oneTime"], expected, "oneTime {given:?}");
        }
    }

    async fn a_chunk_number_outside_the_upload_is_a_validation_error(app, small_chunks) {
        let id = upload_id_of(&initiate(&app, file_initiate("two.bin", CHUNK + 1, json!({}))).await);
        for bad in ["2", "3", "99999999", "-1", "x"] {
            let res = app
                .client
                .post(app.url(&format!("/api/upload/chunk/{id}/{bad}")))
                .header("content-type", "application/octet-stream")
                .body(vec![1u8; 10])
                .send()
                .await
                .unwrap();
            error_with(res, 400, "validation").await;
        }
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["receivedChunks"], json!([]));
        assert_eq!(status["uploadedChunks"], 0);
    }

    async fn malformed_upload_ids_are_400_and_unknown_ones_404(app) {
        for bad in ["0123456789abcdef", "ABC", "0123456789ABCDEF0", "GHIJKLMNOPQRSTUV"] {
            error_with(send_chunk(&app, bad, 0, b"abc").await, 400, "validation").await;
            error_with(upload_status(&app, bad).await, 400, "validation").await;
            error_with(complete(&app, bad).await, 400, "validation").await;
            let res = app.client.delete(app.url(&format!("/api/upload/{bad}"))).send().await.unwrap();
            error_with(res, 400, "validation").await;
        }
        let unknown = "0123456789ABCDEF";
        error_with(send_chunk(&app, unknown, 0, b"abc").await, 404, "upload_not_found").await;
        for res in [
            upload_status(&app, unknown).await,
            complete(&app, unknown).await,
            app.client.delete(app.url(&format!("/api/upload/{unknown}"))).send().await.unwrap(),
        ] {
            let body = json_with(res, 404).await;
            assert!(body["code"].is_string() && body["error"].is_string(), "{body}");
        }
    }

    async fn a_chunk_over_the_chunk_size_plus_slack_is_refused_with_413(
        app,
        |c: &mut ferry::Config| c.limits.chunk_size = ByteSize(4096)
    ) {
        // Small chunks keep the refused bodies small, so the client has sent them whole by the
        // time the server answers.
        let chunk = 4096;
        let data = random_bytes(2 * chunk);
        let init = initiate(&app, file_initiate("big.bin", data.len(), json!({}))).await;
        assert_eq!(init["chunkSize"], chunk);
        let id = upload_id_of(&init);
        let res = send_chunk(&app, &id, 0, &random_bytes(chunk + 1025)).await;
        error_with(res, 413, "payload_too_large").await;
        let res = post_chunk(app.client.clone(), chunk_url(&app, &id, 1), random_bytes(2 * chunk), true).await;
        error_with(res, 413, "payload_too_large").await;
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["receivedChunks"], json!([]));
        // Up to 1 KiB over is slack for encryption overhead; the right bytes then replace it.
        json_with(send_chunk(&app, &id, 0, &random_bytes(chunk + 1024)).await, 200).await;
        for (index, part) in data.chunks(chunk).enumerate() {
            json_with(send_chunk(&app, &id, index, part).await, 200).await;
        }
        let clip_id = clip_id_of(&complete_ok(&app, &id).await);
        assert_same_bytes(&download_ok(&app, &clip_id).await, &data);
    }

    async fn a_chunk_with_a_wrong_checksum_is_refused_and_not_recorded(app, small_chunks) {
        let data = random_bytes(CHUNK + 100);
        let (first, second) = data.split_at(CHUNK);
        let id = upload_id_of(&initiate(&app, file_initiate("sum.bin", data.len(), json!({}))).await);
        let with_sum = |sum: String| {
            app.client
                .post(chunk_url(&app, &id, 0))
                .header("content-type", "application/octet-stream")
                .header("x-chunk-sha256", sum)
                .body(first.to_vec())
        };
        let res = with_sum(sha256_hex(b"something else")).send().await.unwrap();
        error_with(res, 400, "checksum_mismatch").await;
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["receivedChunks"], json!([]));
        assert_eq!(status["uploadedChunks"], 0);
        // The right digest is accepted.
        let res = with_sum(sha256_hex(first)).send().await.unwrap();
        assert_eq!(json_with(res, 200).await["uploadedChunks"], 1);
        json_with(send_chunk(&app, &id, 1, second).await, 200).await;
        let clip_id = clip_id_of(&complete_ok(&app, &id).await);
        assert_same_bytes(&download_ok(&app, &clip_id).await, &data);
    }

    async fn a_resent_chunk_replaces_the_earlier_bytes(app, small_chunks) {
        let data = random_bytes(CHUNK + 10);
        let id = upload_id_of(&initiate(&app, file_initiate("again.bin", data.len(), json!({}))).await);
        let stale = json_with(send_chunk(&app, &id, 0, &random_bytes(CHUNK)).await, 200).await;
        assert_eq!(stale["uploadedChunks"], 1);
        // The same chunk again, this time as multipart: accepted, still one chunk, last bytes win.
        let res = post_chunk(app.client.clone(), chunk_url(&app, &id, 0), data[..CHUNK].to_vec(), true).await;
        let again = json_with(res, 200).await;
        assert_eq!(again["uploadedChunks"], 1);
        assert_eq!(again["received"], true);
        let last = json_with(send_chunk(&app, &id, 1, &data[CHUNK..]).await, 200).await;
        assert_eq!(last["uploadedChunks"], 2);
        let done = complete_ok(&app, &id).await;
        assert_eq!(done["sha256"], sha256_hex(&data));
        assert_same_bytes(&download_ok(&app, &clip_id_of(&done)).await, &data);
    }

    async fn a_multipart_chunk_without_the_chunk_field_is_a_validation_error(app, small_chunks) {
        let id = upload_id_of(&initiate(&app, file_initiate("nofield.bin", 3, json!({}))).await);
        let form = multipart(&[
            Part { name: "chunkNumber", filename: None, data: b"0" },
            Part { name: "file", filename: Some("blob"), data: b"abc" },
        ]);
        let res = app
            .client
            .post(chunk_url(&app, &id, 0))
            .header("content-type", multipart_type())
            .body(form)
            .send()
            .await
            .unwrap();
        error_with(res, 400, "validation").await;
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["receivedChunks"], json!([]));
    }

    async fn status_lists_the_received_chunks_so_a_client_can_resume(app, small_chunks) {
        let data = random_bytes(3 * CHUNK - 10);
        let id = upload_id_of(&initiate(&app, file_initiate("resume.bin", data.len(), json!({}))).await);
        let fresh = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(fresh["success"], true);
        assert_eq!(fresh["uploadId"], id.as_str());
        assert_eq!(fresh["status"], "uploading");
        assert_eq!(fresh["uploadedChunks"], 0);
        assert_eq!(fresh["totalChunks"], 3);
        assert_eq!(fresh["receivedChunks"], json!([]));
        assert_eq!(fresh["progress"].as_f64(), Some(0.0));
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        json_with(send_chunk(&app, &id, 2, chunks[2]).await, 200).await;
        json_with(send_chunk(&app, &id, 0, chunks[0]).await, 200).await;
        let partial = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(partial["status"], "uploading");
        assert_eq!(partial["uploadedChunks"], 2);
        assert_eq!(partial["receivedChunks"], json!([0, 2]));
        let progress = partial["progress"].as_f64().expect("progress is a number");
        assert!(progress > 0.0 && progress < 100.0, "{partial}");
        json_with(send_chunk(&app, &id, 1, chunks[1]).await, 200).await;
        complete_ok(&app, &id).await;
        let done = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(done["status"], "complete");
    }

    async fn completing_with_a_missing_chunk_names_it_and_the_upload_stays_usable(app, small_chunks) {
        let data = random_bytes(3 * CHUNK);
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        let id = upload_id_of(&initiate(&app, file_initiate("gap.bin", data.len(), json!({}))).await);
        json_with(send_chunk(&app, &id, 0, chunks[0]).await, 200).await;
        json_with(send_chunk(&app, &id, 2, chunks[2]).await, 200).await;
        let body = error_with(complete(&app, &id).await, 400, "upload_incomplete").await;
        assert_eq!(body["error"], "Upload incomplete");
        assert_eq!(body["missingChunks"], json!([1]));
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["status"], "uploading");
        assert_eq!(status["receivedChunks"], json!([0, 2]));
        json_with(send_chunk(&app, &id, 1, chunks[1]).await, 200).await;
        // The complete body is optional.
        let res = app
            .client
            .post(app.url(&format!("/api/upload/complete/{id}")))
            .send()
            .await
            .unwrap();
        let done = json_with(res, 200).await;
        assert_eq!(done["sha256"], sha256_hex(&data));
        assert_same_bytes(&download_ok(&app, &clip_id_of(&done)).await, &data);
    }

    async fn concurrent_and_repeated_completes_all_return_the_same_clip(app, small_chunks) {
        let data = random_bytes(3 * CHUNK + 7);
        let id = upload_id_of(&initiate(&app, file_initiate("race.bin", data.len(), json!({}))).await);
        send_all_chunks(&app, &id, &data).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let client = app.client.clone();
                let url = app.url(&format!("/api/upload/complete/{id}"));
                tokio::spawn(async move {
                    let res = client.post(url).json(&json!({})).send().await.expect("complete sent");
                    json_with(res, 200).await
                })
            })
            .collect();
        let results: Vec<Value> = futures_util::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.expect("complete task"))
            .collect();
        let first = &results[0];
        let clip_id = clip_id_of(first);
        for done in &results {
            assert_eq!(done["clipId"], first["clipId"], "{done}");
            assert_eq!(done["deleteToken"], first["deleteToken"], "{done}");
            assert_eq!(done["sha256"], sha256_hex(&data), "{done}");
            assert_eq!(done["size"], data.len(), "{done}");
        }
        for _ in 0..2 {
            let again = complete_ok(&app, &id).await;
            assert_eq!(again["clipId"], first["clipId"]);
            assert_eq!(again["deleteToken"], first["deleteToken"]);
        }
        // One blob per chunk (on S3 one assembled object), however many completes.
        assert_completed_blobs(&app, &id, data.len().div_ceil(CHUNK), data.len(), &[]).await;
        let status = json_with(upload_status(&app, &id).await, 200).await;
        assert_eq!(status["status"], "complete");
        assert_same_bytes(&download_ok(&app, &clip_id).await, &data);
    }

    async fn a_declared_size_that_differs_from_the_bytes_sent_is_refused(app, small_chunks) {
        for sent in [90, 150] {
            let id = upload_id_of(&initiate(&app, file_initiate("size.bin", 100, json!({}))).await);
            json_with(send_chunk(&app, &id, 0, &random_bytes(sent)).await, 200).await;
            error_with(complete(&app, &id).await, 400, "size_mismatch").await;
        }
    }

    async fn a_chunk_after_completion_is_a_conflict(app, small_chunks) {
        let data = random_bytes(500);
        let id = upload_id_of(&initiate(&app, file_initiate("done.bin", data.len(), json!({}))).await);
        send_all_chunks(&app, &id, &data).await;
        let clip_id = clip_id_of(&complete_ok(&app, &id).await);
        let res = send_chunk(&app, &id, 0, &random_bytes(500)).await;
        error_with(res, 409, "upload_completed").await;
        assert_same_bytes(&download_ok(&app, &clip_id).await, &data);
    }

    async fn a_cancelled_upload_is_gone_with_its_chunks(app, small_chunks) {
        let data = random_bytes(3 * CHUNK);
        let id = upload_id_of(&initiate(&app, file_initiate("cancel.bin", data.len(), json!({}))).await);
        for (index, chunk) in data.chunks(CHUNK).take(2).enumerate() {
            json_with(send_chunk(&app, &id, index, chunk).await, 200).await;
        }
        assert_eq!(app.chunk_blob_count(&id).await, 2, "chunks are stored under chunks/{id}");
        let res = app.client.delete(app.url(&format!("/api/upload/{id}"))).send().await.unwrap();
        let body = json_with(res, 200).await;
        assert_eq!(body["success"], true);
        assert_eq!(body["message"], "Upload cancelled successfully");
        assert_eq!(upload_status(&app, &id).await.status(), 404);
        let res = send_chunk(&app, &id, 2, &data[2 * CHUNK..]).await;
        error_with(res, 404, "upload_not_found").await;
        assert_eq!(complete(&app, &id).await.status(), 404);
        assert_eq!(app.chunk_blob_count(&id).await, 0, "the chunks of a cancelled upload are removed");
    }

    async fn the_clip_lifetime_starts_at_complete_not_at_initiate(app, small_chunks) {
        let data = random_bytes(100);
        let body = file_initiate("later.bin", data.len(), json!({ "expiration": "1hr" }));
        let id = upload_id_of(&initiate(&app, body).await);
        json_with(send_chunk(&app, &id, 0, &data).await, 200).await;
        app.clock.advance(Duration::from_secs(45 * 60));
        let done = complete_ok(&app, &id).await;
        let expires = app.clock.now_ms() + 3_600_000;
        assert_eq!(done["expiresAt"], expires);
        let info = json_with(app.get(&format!("/api/clip/{}/info", clip_id_of(&done))).await, 200).await;
        assert_eq!(info["expiresAt"], expires);
    }

    async fn links_use_the_configured_public_url(
        app,
        |c: &mut ferry::Config| {
            small_chunks(c);
            c.public_url = Some("https://ferry.example".into());
        }
    ) {
        let data = random_bytes(300);
        let body = file_initiate("public.bin", data.len(), json!({}));
        let (id, done) = upload_with(&app, &data, body, json!({}), CHUNK, false).await;
        assert_eq!(done["url"], format!("https://ferry.example/file/{id}"));
        let line = text_with(put_clip(&app, "note.txt", b"hello", &[]).await, 200).await;
        id_in_line(&line, "https://ferry.example/raw/", "/note.txt");
    }

    async fn a_text_clip_gets_a_clip_url_and_reads_back_as_text(app, small_chunks) {
        let text = "hello from ferry\nzweite Zeile ✓ 東京\n";
        let (id, done) = upload_text(&app, text).await;
        assert_eq!(done["isFile"], false);
        let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_eq!(info["contentType"], "text");
        let meta = json_with(app.get(&format!("/api/clip/{id}")).await, 200).await;
        assert_eq!(meta["success"], true);
        assert_eq!(meta["contentType"], "text");
        assert_eq!(meta["isTextFile"], true);
        assert_eq!(meta["redirectTo"], format!("/api/file/{id}"));
        assert_eq!(meta["filesize"], text.len());
        let raw = app.get(&format!("/raw/{id}")).await;
        assert_eq!(raw.status(), 200);
        assert_eq!(raw.text().await.unwrap(), text);
        assert_same_bytes(&download_ok(&app, &id).await, text.as_bytes());
    }

    async fn a_curl_style_put_answers_one_line_with_a_raw_link_that_serves_the_bytes(app) {
        let data = random_bytes(200_000);
        let res = put_clip(&app, "hello.bin", &data, &[]).await;
        assert!(header(&res, "content-type").starts_with("text/plain"));
        let token = header(&res, "x-delete-token");
        assert!(!token.is_empty());
        let line = text_with(res, 200).await;
        let id = id_in_line(&line, &app.url("/raw/"), "/hello.bin");
        let url = line.trim_end();
        let res = app.client.get(url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
        let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_eq!(info["contentType"], "file");
        assert_eq!(info["oneTime"], false);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn a_put_filename_is_percent_encoded_in_the_printed_link(app) {
        let data = random_bytes(1000);
        let line = text_with(put_clip(&app, "two%20words.txt", &data, &[]).await, 200).await;
        let id = id_in_line(&line, &app.url("/raw/"), "/two%20words.txt");
        let info = json_with(app.get(&format!("/api/file/{id}/info")).await, 200).await;
        assert_eq!(info["filename"], "two words.txt");
        let res = app.client.get(line.trim_end()).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
    }

    async fn a_one_request_upload_answers_json_when_asked(app) {
        let data = random_bytes(5000);
        let res = put_clip(&app, "data.bin", &data, &[("accept", "application/json")]).await;
        let token_header = res.headers().get("x-delete-token").cloned();
        let done = json_with(res, 200).await;
        let id = clip_id_of(&done);
        assert_eq!(done["success"], true);
        assert_eq!(done["filename"], "data.bin");
        assert_eq!(done["size"], data.len());
        assert_eq!(done["sha256"], sha256_hex(&data));
        assert_eq!(done["oneTime"], false);
        assert_eq!(done["url"], app.url(&format!("/file/{id}")));
        let token = done["deleteToken"].as_str().expect("deleteToken");
        assert!(!token.is_empty());
        if let Some(value) = token_header {
            assert_eq!(value, token);
        }
        let raw_url = done["rawUrl"].as_str().expect("rawUrl");
        assert!(raw_url.starts_with(&app.url(&format!("/raw/{id}"))), "{done}");
        let res = app.client.get(raw_url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
    }

    async fn a_multipart_post_to_api_clips_takes_the_name_from_the_file_part(app) {
        let data = random_bytes(70_000);
        let form = multipart(&[Part { name: "file", filename: Some("photo.jpg"), data: &data }]);
        let res = app
            .client
            .post(app.url("/api/clips"))
            .header("content-type", multipart_type())
            .body(form.clone())
            .send()
            .await
            .unwrap();
        assert!(!header(&res, "x-delete-token").is_empty());
        let line = text_with(res, 200).await;
        let id = id_in_line(&line, &app.url("/raw/"), "/photo.jpg");
        let res = app.client.get(line.trim_end()).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        let res = app
            .client
            .post(app.url("/api/clips"))
            .header("content-type", multipart_type())
            .header("accept", "application/json")
            .body(form)
            .send()
            .await
            .unwrap();
        let done = json_with(res, 200).await;
        assert_eq!(done["filename"], "photo.jpg");
        assert_eq!(done["sha256"], sha256_hex(&data));
        assert_ne!(clip_id_of(&done), id);
    }

    async fn one_request_expiry_comes_from_the_query_or_a_header(app) {
        let now = app.clock.now_ms();
        let accept_json = ("accept", "application/json");
        let res = put_clip(&app, "q.txt?expire=5min", b"five", &[accept_json]).await;
        assert_eq!(json_with(res, 200).await["expiresAt"], now + 300_000);
        let res = put_clip(&app, "h.txt", b"fifteen", &[accept_json, ("expire", "15min")]).await;
        assert_eq!(json_with(res, 200).await["expiresAt"], now + 900_000);
        let res = put_clip(&app, "d.txt", b"a day", &[accept_json]).await;
        assert_eq!(json_with(res, 200).await["expiresAt"], now + 86_400_000);
    }

    async fn a_one_time_one_request_upload_prints_the_file_page_and_downloads_once(app) {
        let data = random_bytes(3000);
        let line = text_with(put_clip(&app, "secret.bin", &data, &[("one-time", "true")]).await, 200).await;
        let id = id_in_line(&line, &app.url("/file/"), "");
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        let again = download(&app, &id).await.status();
        assert!(is_gone(again), "second download of a one-time clip: {again}");
    }

    async fn a_max_downloads_header_allows_exactly_that_many_downloads(app) {
        let data = random_bytes(3000);
        let headers = [("accept", "application/json"), ("max-downloads", "2")];
        let id = clip_id_of(&json_with(put_clip(&app, "twice.bin", &data, &headers).await, 200).await);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        let third = download(&app, &id).await.status();
        assert!(is_gone(third), "third download of a two-download clip: {third}");
    }

    async fn a_one_request_upload_without_a_file_field_is_a_validation_error(app) {
        let form = multipart(&[Part { name: "upload", filename: Some("x.bin"), data: b"abc" }]);
        let res = app
            .client
            .post(app.url("/api/clips"))
            .header("content-type", multipart_type())
            .body(form)
            .send()
            .await
            .unwrap();
        error_with(res, 400, "validation").await;
    }

    async fn a_one_request_upload_over_the_maximum_size_is_refused_with_413(
        app,
        |c: &mut ferry::Config| c.limits.max_upload_size = ByteSize(16 * 1024)
    ) {
        let too_big = random_bytes(20 * 1024);
        let res = put_clip(&app, "big.bin", &too_big, &[]).await;
        error_with(res, 413, "payload_too_large").await;
        let form = multipart(&[Part { name: "file", filename: Some("big.bin"), data: &too_big }]);
        let res = app
            .client
            .post(app.url("/api/clips"))
            .header("content-type", multipart_type())
            .body(form)
            .send()
            .await
            .unwrap();
        error_with(res, 413, "payload_too_large").await;
        // Exactly the maximum is allowed.
        let data = random_bytes(16 * 1024);
        let done = json_with(put_clip(&app, "max.bin", &data, &[("accept", "application/json")]).await, 200).await;
        assert_same_bytes(&download_ok(&app, &clip_id_of(&done)).await, &data);
    }

    async fn deleting_with_the_right_token_removes_the_clip(app, small_chunks) {
        let data = random_bytes(1000);
        let (id, done) = upload_file(&app, &data, "delete-me.bin", CHUNK, false).await;
        let token = done["deleteToken"].as_str().unwrap();
        let res = app
            .client
            .delete(app.url(&format!("/api/clip/{id}")))
            .header("x-delete-token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        error_with(app.get(&format!("/api/clip/{id}/info")).await, 404, "clip_deleted").await;
        assert_eq!(download(&app, &id).await.status(), 404);
        assert_eq!(app.get(&format!("/raw/{id}")).await.status(), 404);
    }

    async fn deleting_with_a_wrong_token_is_forbidden_and_keeps_the_clip(app, small_chunks) {
        let data = random_bytes(1000);
        let (id, _) = upload_file(&app, &data, "keep-me.bin", CHUNK, false).await;
        let (_, other) = upload_file(&app, &random_bytes(10), "other.bin", CHUNK, false).await;
        let other_token = other["deleteToken"].as_str().unwrap();
        for token in ["wrong", other_token] {
            let res = app
                .client
                .delete(app.url(&format!("/api/clip/{id}")))
                .header("x-delete-token", token)
                .send()
                .await
                .unwrap();
            error_with(res, 403, "invalid_delete_token").await;
        }
        json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn deleting_without_a_token_is_unauthorized(app, small_chunks) {
        let data = random_bytes(1000);
        let (id, _) = upload_file(&app, &data, "no-token.bin", CHUNK, false).await;
        let res = app.client.delete(app.url(&format!("/api/clip/{id}"))).send().await.unwrap();
        error_with(res, 401, "delete_token_required").await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn the_delete_token_of_a_one_request_upload_deletes_it(app) {
        let res = put_clip(&app, "short-lived.txt", b"bye", &[]).await;
        let token = header(&res, "x-delete-token");
        let line = text_with(res, 200).await;
        let id = id_in_line(&line, &app.url("/raw/"), "/short-lived.txt");
        let res = app
            .client
            .delete(app.url(&format!("/api/clip/{id}")))
            .header("x-delete-token", token.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(app.client.get(line.trim_end()).send().await.unwrap().status(), 404);
    }
}
