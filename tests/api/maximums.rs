//! The advertised maximums (`maxUploadSize`, `maxTextSize` of `GET /api/config`) count the
//! plaintext a browser encrypts: a V4 file clip (complete with `format: 4`) is accepted up to
//! exactly that many plaintext bytes whatever its record size, a V3 text clip up to the longest
//! blob a text of the maximum makes; initiate allows that much ciphertext before the format is
//! known; plain uploads (no format, one-request uploads) are held to the maximum in stored
//! bytes. Refusals are 4xx JSON. On every backend combination.
//!
//! The V4 streams and V3 blobs here have the real layout (header, records, tags, padding) with
//! random bytes where the ciphertext goes: the server never decrypts, and the layout is checked
//! against the format vectors' real streams, two of which are also uploaded at their limit.

use ferry::config::ByteSize;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::upload::{error_with, json_with, random_bytes, send_chunk, upload_id_of};

const MIB: u64 = 1 << 20;
/// Chunks of 256 KiB hold three records of the 64 KiB writers use.
const CHUNK: u64 = 256 * 1024;

fn one_mib_limits(c: &mut ferry::Config) {
    c.limits.chunk_size = ByteSize(CHUNK);
    c.limits.max_upload_size = ByteSize(MIB);
    c.limits.max_text_size = ByteSize(MIB);
}

/// A V4 stream of `plain` plaintext bytes in records of 2^`log2`: the 28-byte header, then
/// each record's bytes and its 16-byte tag (random here, as ciphertext looks).
fn v4_stream(plain: u64, log2: u8) -> Vec<u8> {
    let rs = 1u64 << log2;
    let records = plain.div_ceil(rs).max(1);
    let mut stream = vec![4, 0, log2, 0];
    stream.extend(random_bytes(16 + 7));
    stream.push(0);
    stream.extend(random_bytes((plain + 16 * records) as usize));
    stream
}

/// A V3 blob around a payload of `payload` bytes: version, salt, IV, ciphertext, tag.
fn v3_blob(payload: usize) -> Vec<u8> {
    let mut blob = vec![3];
    blob.extend(random_bytes(32 + 12 + payload + 16));
    blob
}

/// The payload the browser encrypts for a text of `n` UTF-8 bytes: padded to 10 244 bytes when
/// under 10 240, else the text, with the 5-byte trailer when its last bytes would be misread.
fn text_payload(n: usize, trailer: bool) -> usize {
    if n < 10_240 { 10_244 } else { n + if trailer { 5 } else { 0 } }
}

fn vectors() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-vectors.json"))
        .expect("format vectors");
    serde_json::from_str(&text).unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

/// `bytes` cut as the browser cuts a stream: whole records of `record` bytes per chunk, the
/// header riding in chunk 0.
fn chunks_of(bytes: &[u8], record: usize) -> Vec<Vec<u8>> {
    let per_chunk = (CHUNK as usize / record).max(1) * record;
    let head = 28.min(bytes.len());
    let mut chunks: Vec<Vec<u8>> = bytes[head..].chunks(per_chunk).map(<[u8]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    chunks[0].splice(0..0, bytes[..head].iter().copied());
    chunks
}

/// The browser's initiate for `len` bytes in `chunks` chunks (`filesize` left out unless
/// `declare`).
async fn initiate_for(app: &TestApp, len: usize, chunks: usize, kind: &str, declare: bool) -> reqwest::Response {
    let mut init = json!({
        "filename": if kind == "file" { "file" } else { "text" },
        "totalChunks": chunks,
        "mimeType": "application/octet-stream",
        "contentType": kind,
        "isTextContent": kind == "text",
    });
    if declare {
        init["filesize"] = json!(len);
    }
    app.client.post(app.url("/api/upload/initiate")).json(&init).send().await.unwrap()
}

async fn send_all(app: &TestApp, upload: &str, chunks: &[Vec<u8>]) {
    for (i, chunk) in chunks.iter().enumerate() {
        json_with(send_chunk(app, upload, i, chunk).await, 200).await;
    }
}

/// Initiate as the browser does (its length, its chunk count) and send `bytes`; the upload id.
async fn send_stream(app: &TestApp, bytes: &[u8], kind: &str, record: usize) -> String {
    let chunks = chunks_of(bytes, record);
    let upload = upload_id_of(&json_with(initiate_for(app, bytes.len(), chunks.len(), kind, true).await, 200).await);
    send_all(app, &upload, &chunks).await;
    upload
}

/// `bytes` are refused, completed with `body`: at initiate (400 on `filesize`) when their
/// length is past what any plaintext of the maximum can become; then, sent without declaring
/// it (or when it was within that), at complete with 413.
async fn refused_upload(app: &TestApp, bytes: &[u8], kind: &str, record: usize, body: Value, max: u64, what: &str) {
    let chunks = chunks_of(bytes, record);
    let mut res = initiate_for(app, bytes.len(), chunks.len(), kind, true).await;
    if res.status() == 400 {
        let refusal = error_with(res, 400, "validation").await;
        assert_eq!(refusal["details"][0]["path"], "filesize", "{what}: {refusal}");
        res = initiate_for(app, bytes.len(), chunks.len(), kind, false).await;
    }
    let upload = upload_id_of(&json_with(res, 200).await);
    send_all(app, &upload, &chunks).await;
    refused(complete(app, &upload, body).await, max, what).await;
}

async fn complete(app: &TestApp, upload: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(&format!("/api/upload/complete/{upload}"))).json(&body).send().await.unwrap()
}

fn v4_complete() -> Value {
    json!({ "format": 4, "meta": b64url(&[4u8; 285]), "contentType": "file" })
}

fn v3_text_complete() -> Value {
    json!({ "format": 3, "contentType": "text", "isTextUpload": true })
}

/// Upload a V4 file of `plain` bytes at record size 2^`log2`: the complete's answer.
async fn v4_upload(app: &TestApp, plain: u64, log2: u8) -> reqwest::Response {
    let stream = v4_stream(plain, log2);
    let upload = send_stream(app, &stream, "file", (1usize << log2) + 16).await;
    complete(app, &upload, v4_complete()).await
}

/// Upload `blob` as a text clip (the browser's one request per chunk), completed with `body`.
async fn text_upload(app: &TestApp, blob: &[u8], body: Value) -> reqwest::Response {
    let upload = send_stream(app, blob, "text", 1).await;
    complete(app, &upload, body).await
}

/// A complete that stores `len` bytes: 200 with that size.
async fn accepted(res: reqwest::Response, len: usize, what: &str) {
    let done = json_with(res, 200).await;
    assert_eq!(done["size"], len, "{what}: {done}");
}

async fn refused(res: reqwest::Response, max: u64, what: &str) {
    let body = error_with(res, 413, "payload_too_large").await;
    assert!(body["message"].as_str().unwrap().contains(&max.to_string()), "{what}: {body}");
}

async fn initiate_status(app: &TestApp, kind: &str, filesize: u64) -> u16 {
    let body = json!({ "filename": "f", "filesize": filesize, "contentType": kind });
    let res = app.client.post(app.url("/api/upload/initiate")).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    if status != 200 {
        let body = error_with(res, 400, "validation").await;
        assert_eq!(body["details"][0]["path"], "filesize", "{body}");
    }
    status
}

all_backends! {
    async fn a_v4_file_of_exactly_the_maximum_plaintext_is_accepted_and_one_byte_more_refused(app, one_mib_limits) {
        let config = json_with(app.get("/api/config").await, 200).await;
        assert_eq!(config["maxUploadSize"], MIB, "{config}");
        // 64 KiB records, as writers make them, and 4 KiB records, the longest stream.
        for log2 in [16u8, 12] {
            for plain in [MIB - 1, MIB] {
                let len = v4_stream(plain, log2).len();
                accepted(v4_upload(&app, plain, log2).await, len, &format!("{plain} bytes at 2^{log2}")).await;
            }
            let over = v4_stream(MIB + 1, log2);
            let what = format!("max + 1 at 2^{log2}");
            refused_upload(&app, &over, "file", (1 << log2) + 16, v4_complete(), MIB, &what).await;
        }
    }

    async fn the_real_v4_vectors_are_measured_by_their_plaintext(app, |c: &mut ferry::Config| {
        one_mib_limits(c);
        c.limits.max_upload_size = ByteSize(4196);
    }) {
        let vectors = vectors();
        for v in vectors["v4"].as_array().unwrap() {
            let stream = hex::decode(v["stream"].as_str().unwrap()).unwrap();
            let plain = v["plaintext"].as_str().unwrap().len() as u64 / 2;
            assert_eq!(v4_stream(plain, stream[2]).len(), stream.len(), "the builder's layout is {}'s", v["name"]);
            let body = json!({ "format": 4, "meta": v["meta_b64url"], "contentType": "file" });
            let name = v["name"].as_str().unwrap();
            if plain <= 4196 {
                let upload = send_stream(&app, &stream, "file", stream.len()).await;
                accepted(complete(&app, &upload, body).await, stream.len(), name).await;
            } else {
                refused_upload(&app, &stream, "file", stream.len(), body, 4196, name).await;
            }
        }
        // "two-records-rs4k" is exactly 4196 bytes of plaintext in 4 KiB records: 4 244 bytes
        // stored, over the maximum as bytes, at it as plaintext (accepted above).
        let two = vectors["v4"].as_array().unwrap().iter().find(|v| v["name"] == "two-records-rs4k").unwrap();
        assert_eq!(two["plaintext"].as_str().unwrap().len() / 2, 4196);
        // The same bytes without `format` are a plain upload, held to 4196 stored bytes.
        let stream = hex::decode(two["stream"].as_str().unwrap()).unwrap();
        let upload = send_stream(&app, &stream, "file", stream.len()).await;
        refused(complete(&app, &upload, json!({})).await, 4196, "plain").await;
    }

    async fn a_v4_length_that_no_stream_can_have_is_a_validation_error(app, one_mib_limits) {
        let mut stream = v4_stream(4096, 12);
        stream.extend(random_bytes(5));
        let upload = send_stream(&app, &stream, "file", stream.len()).await;
        let body = error_with(complete(&app, &upload, v4_complete()).await, 400, "validation").await;
        assert_eq!(body["details"][0]["path"], "format", "{body}");
    }

    async fn initiate_allows_the_longest_ciphertext_of_the_maximum_and_no_more(app, |c: &mut ferry::Config| {
        one_mib_limits(c);
        c.limits.max_text_size = ByteSize(4096);
    }) {
        // A file: 1 MiB in 4 KiB records is 256 records, each with a 16-byte tag.
        let file = MIB + 28 + 16 * 256;
        assert_eq!(initiate_status(&app, "file", file).await, 200);
        assert_eq!(initiate_status(&app, "file", file + 1).await, 400);
        // A text of at most 4 KiB is padded: 61 + 10 244 bytes.
        assert_eq!(initiate_status(&app, "text", 10_305).await, 200);
        assert_eq!(initiate_status(&app, "text", 10_306).await, 400);
        // And the chunk count such a file may take at half-full chunks.
        let chunks = file.div_ceil(CHUNK / 2);
        let body = |n: u64| json!({ "filename": "f", "filesize": file, "totalChunks": n, "contentType": "file" });
        let res = app.client.post(app.url("/api/upload/initiate")).json(&body(chunks)).send().await.unwrap();
        json_with(res, 200).await;
        let res = app.client.post(app.url("/api/upload/initiate")).json(&body(chunks + 1)).send().await.unwrap();
        error_with(res, 400, "validation").await;
    }

    async fn v3_texts_under_a_small_maximum_are_padded_blobs_and_longer_blobs_are_refused(app, |c: &mut ferry::Config| {
        one_mib_limits(c);
        c.limits.max_text_size = ByteSize(4096);
    }) {
        let max = 4096;
        // Texts of max - 1 and max bytes (and max + 1: padding hides a text's length from the
        // server, so the browser's own check is what stops it) make the same 10 305 bytes.
        for n in [max - 1, max, max + 1] {
            let blob = v3_blob(text_payload(n, false));
            assert_eq!(blob.len(), 10_305);
            accepted(text_upload(&app, &blob, v3_text_complete()).await, blob.len(), &format!("text of {n}")).await;
        }
        // No text of at most the maximum makes a longer blob.
        refused_upload(&app, &v3_blob(10_245), "text", 1, v3_text_complete(), max as u64, "10 306 bytes").await;
    }

    async fn v3_texts_over_the_padding_are_measured_with_their_trailer(app, |c: &mut ferry::Config| {
        one_mib_limits(c);
        c.limits.max_text_size = ByteSize(12_000);
    }) {
        let max = 12_000;
        let config = json_with(app.get("/api/config").await, 200).await;
        assert_eq!(config["maxTextSize"], max, "{config}");
        for n in [max - 1, max] {
            for trailer in [false, true] {
                let blob = v3_blob(text_payload(n, trailer));
                accepted(text_upload(&app, &blob, v3_text_complete()).await, blob.len(), &format!("{n}, {trailer}")).await;
            }
        }
        // A text one byte over, with the trailer, is one byte past the longest blob allowed.
        let blob = v3_blob(text_payload(max + 1, true));
        assert_eq!(blob.len(), 61 + max + 1 + 5);
        refused_upload(&app, &blob, "text", 1, v3_text_complete(), max as u64, "max + 1 with trailer").await;
        // Without `format` a text is a plain upload, held to the maximum in stored bytes.
        accepted(text_upload(&app, &random_bytes(max), json!({ "contentType": "text" })).await, max, "plain max").await;
        let plain = random_bytes(max + 1);
        refused_upload(&app, &plain, "text", 1, json!({ "contentType": "text" }), max as u64, "plain max + 1").await;
    }

    async fn a_one_request_upload_is_held_to_the_maximum_in_bytes(app, one_mib_limits) {
        for (len, status) in [(MIB as usize, 200), (MIB as usize + 1, 413)] {
            let res = app.client.put(app.url("/api/clips/plain.bin")).body(random_bytes(len)).send().await.unwrap();
            assert_eq!(res.status(), status, "{len} bytes");
            if status == 413 {
                error_with(res, 413, "payload_too_large").await;
            }
        }
    }
}
