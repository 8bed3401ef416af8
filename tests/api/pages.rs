//! The browser UI as the server delivers it: the app shell on `/`, `/clip/{id}`, `/file/{id}`
//! with the page security policy, the embedded assets with their types, strong ETags, 304s,
//! caching and precompressed forms, the service worker at the root scope; and what the UI's
//! clients tell the server at complete (FORMAT.md's `format`, `meta` and the V4 header),
//! handed back by info without spending anything. On every backend combination.

use std::io::Read as _;

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::upload::{error_with, file_initiate, header, initiate, json_with, send_chunk, upload_id_of};

/// `src`/`href` paths the shell links, e.g. `/assets/<v>/js/main.js`.
fn linked_assets(shell: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = shell;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            let end = rest.find('"').expect("closing quote");
            if rest.starts_with("/assets/") {
                out.push(rest[..end].to_string());
            }
            rest = &rest[end..];
        }
    }
    out
}

async fn get_with(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request sent")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("valid gzip");
    out
}

/// The vector "hello" of FORMAT.md: a whole V4 stream and its metadata.
fn v4_vector() -> (Vec<u8>, String) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-vectors.json"))
        .expect("format vectors");
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let hello = vectors["v4"].as_array().unwrap().iter().find(|v| v["name"] == "hello").unwrap();
    (hex::decode(hello["stream"].as_str().unwrap()).unwrap(), hello["meta_b64url"].as_str().unwrap().to_string())
}

/// Initiate and send `stream` as one chunk; returns the upload id.
async fn one_chunk_upload(app: &TestApp, stream: &[u8], extra: Value) -> String {
    let id = upload_id_of(&initiate(app, file_initiate("file", stream.len(), extra)).await);
    json_with(send_chunk(app, &id, 0, stream).await, 200).await;
    id
}

async fn complete_with(app: &TestApp, upload_id: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(&format!("/api/upload/complete/{upload_id}"))).json(&body).send().await.unwrap()
}

fn b64url(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

all_backends! {
    async fn the_shell_answers_every_page_route_with_the_page_policy_and_no_content_hint(app) {
        for path in ["/", "/clip/ABCDEFGHJK", "/file/ABCDEFGHJK", "/clip/AB12CD"] {
            let res = app.get(path).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(header(&res, "content-type"), "text/html; charset=utf-8");
            let csp = header(&res, "content-security-policy");
            for needed in ["default-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "object-src 'none'"] {
                assert!(csp.contains(needed), "{path}: {csp}");
            }
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval") && !csp.contains("http"), "{csp}");
            assert_eq!(header(&res, "referrer-policy"), "no-referrer");
            assert!(header(&res, "x-robots-tag").contains("noindex"));
            assert_eq!(header(&res, "cache-control"), "no-cache");
            let etag = header(&res, "etag");
            assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong ETag: {etag}");
            let html = res.text().await.unwrap();
            assert!(html.contains("<title>ferry</title>"), "the title names no clip");
            assert!(!html.contains("og:") && !html.contains("twitter:"), "no preview tags");
            assert!(!html.contains("<script>") && !html.contains(" style=\""), "no inline script or style");
        }
    }

    async fn every_linked_asset_has_its_type_a_strong_etag_a_304_and_immutable_caching(app) {
        let shell = app.get("/").await.text().await.unwrap();
        let assets = linked_assets(&shell);
        assert!(assets.iter().any(|a| a.ends_with("/js/main.js")), "{assets:?}");
        assert!(assets.iter().any(|a| a.ends_with("/css/app.css")), "{assets:?}");
        for path in &assets {
            let res = app.get(path).await;
            assert_eq!(res.status(), 200, "{path}");
            let want = if path.ends_with(".js") {
                "text/javascript; charset=utf-8"
            } else if path.ends_with(".css") {
                "text/css; charset=utf-8"
            } else if path.ends_with(".png") {
                "image/png"
            } else if path.ends_with(".webmanifest") {
                "application/manifest+json"
            } else {
                "image/svg+xml"
            };
            assert_eq!(header(&res, "content-type"), want, "{path}");
            assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable", "{path}");
            let etag = header(&res, "etag");
            assert!(!etag.starts_with("W/"), "{etag}");
            let again = get_with(&app, path, &[("if-none-match", &etag)]).await;
            assert_eq!(again.status(), 304, "{path}");
            assert_eq!(header(&again, "etag"), etag);
            assert!(again.bytes().await.unwrap().is_empty());
            let changed = get_with(&app, path, &[("if-none-match", "\"something-else\"")]).await;
            assert_eq!(changed.status(), 200);
        }
    }

    async fn assets_come_precompressed_with_an_etag_of_their_own_per_coding(app) {
        let shell = app.get("/").await.text().await.unwrap();
        let main = linked_assets(&shell).into_iter().find(|a| a.ends_with("/js/main.js")).unwrap();
        let plain = get_with(&app, &main, &[]).await;
        assert!(plain.headers().get("content-encoding").is_none());
        assert_eq!(header(&plain, "vary"), "accept-encoding");
        let plain_tag = header(&plain, "etag");
        let plain_bytes = plain.bytes().await.unwrap();

        let gz = get_with(&app, &main, &[("accept-encoding", "gzip")]).await;
        assert_eq!(header(&gz, "content-encoding"), "gzip");
        let gz_tag = header(&gz, "etag");
        let gz_bytes = gz.bytes().await.unwrap();
        assert!(gz_bytes.len() < plain_bytes.len());
        assert_eq!(gunzip(&gz_bytes), plain_bytes.to_vec(), "the gzip form is the same file");

        let br = get_with(&app, &main, &[("accept-encoding", "gzip, deflate, br, zstd")]).await;
        assert_eq!(header(&br, "content-encoding"), "br");
        let br_tag = header(&br, "etag");
        assert!(br.bytes().await.unwrap().len() < plain_bytes.len());
        assert!(plain_tag != gz_tag && gz_tag != br_tag && plain_tag != br_tag, "{plain_tag} {gz_tag} {br_tag}");

        // A client that takes only zstd gets the identity bytes and tag, never a re-encoding.
        let zstd = get_with(&app, &main, &[("accept-encoding", "zstd")]).await;
        assert!(zstd.headers().get("content-encoding").is_none());
        assert_eq!(header(&zstd, "etag"), plain_tag);
        // A gzip client revalidating its copy gets a 304.
        let cached = get_with(&app, &main, &[("accept-encoding", "gzip"), ("if-none-match", &gz_tag)]).await;
        assert_eq!(cached.status(), 304);
    }

    async fn the_service_worker_is_served_at_the_root_under_the_page_policy(app) {
        let res = app.get("/sw.js").await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-type"), "text/javascript; charset=utf-8");
        assert_eq!(header(&res, "cache-control"), "no-cache");
        // A worker runs under its script's policy: it must be allowed to fetch and import.
        assert!(header(&res, "content-security-policy").contains("default-src 'self'"));
        let body = res.text().await.unwrap();
        assert!(body.contains("/assets/") && !body.contains("{{ASSETS}}"));
        let robots = app.get("/robots.txt").await;
        assert_eq!(robots.status(), 200);
        assert!(robots.text().await.unwrap().contains("Disallow: /"));
    }

    async fn unknown_assets_are_json_404s_and_stale_versions_revalidate(app) {
        let shell = app.get("/").await.text().await.unwrap();
        let main = linked_assets(&shell).into_iter().find(|a| a.ends_with("/js/main.js")).unwrap();
        let file = main.splitn(4, '/').nth(3).unwrap();
        let stale = app.get(&format!("/assets/0123456789ab/{file}")).await;
        assert_eq!(stale.status(), 200);
        assert_eq!(header(&stale, "cache-control"), "no-cache");
        for path in ["/assets/x/js/nope.js", "/assets/x/index.html", "/assets/x/sw.js", "/assets/x/../Cargo.toml", "/static/js/main.js"] {
            let res = app.get(path).await;
            assert_eq!(res.status(), 404, "{path}");
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["code"], "not_found", "{path}: {body}");
        }
    }

    async fn pages_and_assets_are_never_rate_limited(app, |c: &mut ferry::Config| {
        c.rate.reads_per_minute = 2;
    }) {
        let shell = app.get("/").await.text().await.unwrap();
        let asset = linked_assets(&shell).remove(0);
        for _ in 0..12 {
            assert_eq!(app.get("/").await.status(), 200);
            assert_eq!(app.get("/file/ABCDEFGHJK").await.status(), 200);
            assert_eq!(app.get(&asset).await.status(), 200);
        }
    }

    async fn a_v4_clip_keeps_its_format_metadata_and_header_and_info_hands_them_back(app) {
        let (stream, meta) = v4_vector();
        let id = one_chunk_upload(&app, &stream, json!({ "mimeType": "application/octet-stream" })).await;
        let done = json_with(complete_with(&app, &id, json!({ "format": 4, "meta": meta, "contentType": "file" })).await, 200).await;
        let clip = done["clipId"].as_str().unwrap();
        for _ in 0..2 {
            // Twice: the second answer comes from the lookup cache.
            let info = json_with(app.get(&format!("/api/clip/{clip}/info")).await, 200).await;
            assert_eq!(info["format"], 4, "{info}");
            assert_eq!(info["meta"], meta.as_str());
            assert_eq!(info["header"], b64url(&stream[..28]));
            assert!(info.get("downloadsLeft").is_none());
        }
        // Nothing was spent: the bytes are still whole.
        let res = app.client.post(app.url(&format!("/api/file/{clip}"))).json(&json!({})).send().await.unwrap();
        assert_eq!(res.bytes().await.unwrap().to_vec(), stream);
    }

    async fn a_qopy_clip_reports_format_3_and_nothing_more(app) {
        let id = one_chunk_upload(&app, b"opaque V3 bytes", json!({})).await;
        let done = json_with(complete_with(&app, &id, json!({})).await, 200).await;
        let info = json_with(app.get(&format!("/api/clip/{}/info", done["clipId"].as_str().unwrap())).await, 200).await;
        assert_eq!(info["format"], 3, "{info}");
        assert!(info.get("meta").is_none() && info.get("header").is_none(), "{info}");
        let id = one_chunk_upload(&app, b"opaque V3 bytes", json!({})).await;
        let done = json_with(complete_with(&app, &id, json!({ "format": "3" })).await, 200).await;
        let info = json_with(app.get(&format!("/api/clip/{}/info", done["clipId"].as_str().unwrap())).await, 200).await;
        assert_eq!(info["format"], 3, "{info}");
    }

    async fn a_bad_format_or_metadata_is_a_400_and_the_upload_can_still_complete(app) {
        let (stream, meta) = v4_vector();
        let not_v4 = {
            let mut s = stream.clone();
            s[0] = 3;
            s
        };
        let id = one_chunk_upload(&app, &not_v4, json!({})).await;
        let cases = [
            (json!({ "format": 4, "meta": meta }), "format"),
            (json!({ "format": 5 }), "format"),
            (json!({ "format": "four" }), "format"),
            (json!({ "meta": meta }), "meta"),
            (json!({ "format": 3, "meta": meta }), "meta"),
            (json!({ "format": 4, "meta": "not base64!" }), "meta"),
            (json!({ "format": 4, "meta": b64url(&[3u8; 40]) }), "meta"),
            // One byte over the largest metadata (a ZIP's list of entries: 64 KiB of padded JSON).
            (json!({ "format": 4, "meta": b64url(&[4u8; 1 + 12 + 65536 + 16 + 1]) }), "meta"),
            (json!({ "format": 4, "meta": 7 }), "meta"),
        ];
        for (body, field) in cases {
            let err = error_with(complete_with(&app, &id, body.clone()).await, 400, "validation").await;
            assert_eq!(err["details"][0]["path"], field, "{body}: {err}");
        }
        let status = json_with(app.get(&format!("/api/upload/{id}/status")).await, 200).await;
        assert_eq!(status["status"], "uploading", "{status}");
        json_with(complete_with(&app, &id, json!({ "format": 3 })).await, 200).await;
    }

    async fn status_lists_each_received_chunk_with_its_size_and_sha256(app, crate::upload::small_chunks) {
        let data = crate::upload::random_bytes(crate::upload::CHUNK * 2 + 100);
        let id = upload_id_of(&initiate(&app, file_initiate("x.bin", data.len(), json!({}))).await);
        let parts: Vec<&[u8]> = data.chunks(crate::upload::CHUNK).collect();
        json_with(send_chunk(&app, &id, 2, parts[2]).await, 200).await;
        json_with(send_chunk(&app, &id, 0, parts[0]).await, 200).await;
        let status = json_with(app.get(&format!("/api/upload/{id}/status")).await, 200).await;
        assert_eq!(status["receivedChunks"], json!([0, 2]));
        assert_eq!(
            status["chunks"],
            json!([
                { "index": 0, "size": parts[0].len(), "sha256": crate::upload::sha256_hex(parts[0]) },
                { "index": 2, "size": parts[2].len(), "sha256": crate::upload::sha256_hex(parts[2]) },
            ])
        );
    }

    async fn info_counts_down_the_downloads_a_limited_clip_has_left(app) {
        let id = one_chunk_upload(&app, b"limited", json!({ "maxDownloads": 2 })).await;
        let done = json_with(complete_with(&app, &id, json!({})).await, 200).await;
        let clip = done["clipId"].as_str().unwrap().to_string();
        let info = |app: &TestApp| {
            let url = app.url(&format!("/api/clip/{clip}/info"));
            let client = app.client.clone();
            async move { client.get(url).send().await.unwrap() }
        };
        assert_eq!(json_with(info(&app).await, 200).await["downloadsLeft"], 2);
        assert_eq!(json_with(info(&app).await, 200).await["downloadsLeft"], 2, "reading info spends nothing");
        let download = || app.client.post(app.url(&format!("/api/file/{clip}"))).json(&json!({})).send();
        assert_eq!(download().await.unwrap().bytes().await.unwrap().as_ref(), b"limited");
        assert_eq!(json_with(info(&app).await, 200).await["downloadsLeft"], 1, "the cache learnt of the download");
        assert_eq!(download().await.unwrap().status(), 200);
        assert_eq!(info(&app).await.status(), 404);
    }
}
