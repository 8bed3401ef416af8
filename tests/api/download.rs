//! Reading clips: the info and metadata routes, the POST download with its headers, Range and
//! If-Range, one-time and max-download clips, `/raw`, and expiry, on every backend
//! combination. Every download compares the bytes with those uploaded.

use serde_json::json;

use crate::helpers::TestApp;
use crate::upload::{
    CHUNK, assert_same_bytes, download, download_ok, error_with, file_initiate, header, is_gone, json_with,
    random_bytes, sha256_hex, small_chunks, upload_file, upload_text, upload_with,
};

/// `POST /api/file/:id` with a `Range` header (and `If-Range` when given).
async fn ranged_download(app: &TestApp, clip_id: &str, range: &str, if_range: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url(&format!("/api/file/{clip_id}"))).json(&json!({})).header("range", range);
    if let Some(tag) = if_range {
        request = request.header("if-range", tag);
    }
    request.send().await.expect("ranged download sent")
}

/// A file clip with the given initiate fields.
async fn upload_file_with(app: &TestApp, bytes: &[u8], filename: &str, extra: serde_json::Value) -> String {
    let body = file_initiate(filename, bytes.len(), extra);
    upload_with(app, bytes, body, json!({}), CHUNK, false).await.0
}

all_backends! {
    async fn ranges_that_start_end_and_span_chunk_boundaries_read_exactly_those_bytes(app, small_chunks) {
        // Five chunks, the last short: the clip's content is its chunk blobs read in order.
        let data = random_bytes(4 * CHUNK + 777);
        let (id, _) = upload_file(&app, &data, "parts.bin", CHUNK, true).await;
        let c = CHUNK;
        let n = data.len();
        for (start, end) in [
            (0, c - 1),         // ends at the first boundary
            (c, 2 * c - 1),     // exactly the second chunk
            (c - 1, c),         // the last byte of one chunk and the first of the next
            (c - 10, 3 * c + 9),// spans three boundaries
            (2 * c, n - 1),     // from a boundary to the end
            (4 * c, n - 1),     // only the short last chunk
            (n - 1, n - 1),     // the very last byte
            (0, n - 1),         // everything
        ] {
            let range = format!("bytes={start}-{end}");
            let res = ranged_download(&app, &id, &range, None).await;
            assert_eq!(res.status(), 206, "{range}");
            assert_eq!(header(&res, "content-range"), format!("bytes {start}-{end}/{n}"), "{range}");
            assert_eq!(header(&res, "content-length"), (end - start + 1).to_string(), "{range}");
            assert_same_bytes(&res.bytes().await.unwrap(), &data[start..=end]);
        }
        for (range, from) in [(format!("bytes=-{}", c + 5), n - c - 5), ("bytes=-1".to_string(), n - 1), (format!("bytes={}-", 3 * c), 3 * c)] {
            let res = ranged_download(&app, &id, &range, None).await;
            assert_eq!(res.status(), 206, "{range}");
            assert_same_bytes(&res.bytes().await.unwrap(), &data[from..]);
        }
        let res = ranged_download(&app, &id, &format!("bytes={n}-"), None).await;
        assert_eq!(res.status(), 416);
        assert_eq!(header(&res, "content-range"), format!("bytes */{n}"));
        let raw = app.client.get(app.url(&format!("/raw/{id}"))).header("range", format!("bytes={}-{}", c - 3, c + 2)).send().await.unwrap();
        assert_eq!(raw.status(), 206);
        assert_same_bytes(&raw.bytes().await.unwrap(), &data[c - 3..c + 3]);
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn clip_info_describes_a_file_clip_without_its_content(app, small_chunks) {
        let data = random_bytes(5000);
        let (id, done) = upload_file(&app, &data, "info.bin", CHUNK, false).await;
        let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_eq!(info["success"], true);
        assert_eq!(info["clipId"], id.as_str());
        assert_eq!(info["contentType"], "file");
        assert_eq!(info["expiresAt"], done["expiresAt"]);
        assert_eq!(info["oneTime"], false);
        assert_eq!(info["hasPassword"], false);
    }

    async fn info_answers_alike_through_the_hot_path_and_through_the_router(app, small_chunks) {
        let initiate = file_initiate("same.bin", 100, json!({ "hasPassword": true }));
        let complete = json!({ "accessCodeHash": "open-sesame-42-open-sesame-42" });
        let (id, _) = upload_with(&app, &random_bytes(100), initiate, complete, CHUNK, false).await;
        // A percent-encoded first character is left to the router, which decodes it to the
        // same id; a plain id takes the hot path.
        let encoded = |id: &str| format!("%{:02X}{}", id.as_bytes()[0], &id[1..]);
        let comparable = |res: &reqwest::Response| {
            let mut names: Vec<String> = res
                .headers()
                .keys()
                .map(|k| k.as_str().to_string())
                .filter(|k| k != "date" && k != "x-request-id")
                .collect();
            names.sort();
            let fixed: Vec<String> = names.iter().map(|n| format!("{n}: {:?}", res.headers()[n.as_str()])).collect();
            (res.status(), fixed)
        };
        for (plain, status) in [(id.clone(), 200), ("ZZZZZZZZZZ".to_string(), 404), ("abc".to_string(), 400)] {
            let hot = app.get(&format!("/api/clip/{plain}/info")).await;
            let routed = app.get(&format!("/api/clip/{}/info", encoded(&plain))).await;
            assert_eq!(hot.status(), status, "{plain}");
            assert_eq!(comparable(&hot), comparable(&routed), "{plain}");
            assert!(hot.headers().contains_key("x-request-id"));
            let (hot, routed) = (hot.text().await.unwrap(), routed.text().await.unwrap());
            assert_eq!(hot, routed, "{plain}");
        }
        let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_eq!(info["hasPassword"], true, "{info}");
        // HEAD goes to the router and answers like GET, without a body.
        let head = app.client.head(app.url(&format!("/api/clip/{id}/info"))).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.text().await.unwrap(), "");
    }

    async fn clip_metadata_of_a_file_points_at_the_download_route(app, small_chunks) {
        let data = random_bytes(CHUNK + 3);
        let id = upload_file_with(&app, &data, "report.pdf", json!({ "mimeType": "application/pdf" })).await;
        let meta = json_with(app.get(&format!("/api/clip/{id}")).await, 200).await;
        assert_eq!(meta["success"], true);
        assert_eq!(meta["contentType"], "file");
        assert_eq!(meta["redirectTo"], format!("/api/file/{id}"));
        assert_eq!(meta["filename"], "report.pdf");
        assert_eq!(meta["filesize"], data.len());
        assert_eq!(meta["mimeType"], "application/pdf");
        assert!(meta["expiresAt"].is_i64(), "{meta}");
        assert_eq!(meta["oneTime"], false);
    }

    async fn unknown_clip_ids_are_404_and_malformed_ones_400(app) {
        let unknown = "ZZZZZZZZZZ";
        for path in [format!("/api/clip/{unknown}/info"), format!("/api/clip/{unknown}")] {
            let body = error_with(app.get(&path).await, 404, "clip_not_found").await;
            assert_eq!(body["error"], "Clip not found");
        }
        error_with(app.get(&format!("/api/file/{unknown}/info")).await, 404, "clip_not_found").await;
        assert_eq!(download(&app, unknown).await.status(), 404);
        assert_eq!(app.get(&format!("/raw/{unknown}")).await.status(), 404);
        for bad in ["abc", "abcdefghij", "ABCDEFGHIJK"] {
            error_with(app.get(&format!("/api/clip/{bad}/info")).await, 400, "validation").await;
            error_with(app.get(&format!("/api/clip/{bad}")).await, 400, "validation").await;
            error_with(download(&app, bad).await, 400, "validation").await;
        }
    }

    async fn file_info_describes_a_file_and_is_404_for_a_text_clip(app, small_chunks) {
        let data = random_bytes(2048);
        let id = upload_file_with(&app, &data, "photo.png", json!({ "mimeType": "image/png" })).await;
        let info = json_with(app.get(&format!("/api/file/{id}/info")).await, 200).await;
        assert_eq!(info["success"], true);
        assert_eq!(info["clipId"], id.as_str());
        assert_eq!(info["filename"], "photo.png");
        assert_eq!(info["filesize"], data.len());
        assert_eq!(info["mimeType"], "image/png");
        assert!(info["expiresAt"].is_i64(), "{info}");
        assert_eq!(info["oneTime"], false);
        assert_eq!(info["hasPassword"], false);
        let (text_id, _) = upload_text(&app, "just words").await;
        error_with(app.get(&format!("/api/file/{text_id}/info")).await, 404, "clip_not_found").await;
    }

    async fn a_download_streams_the_exact_bytes_with_the_contract_headers(app, small_chunks) {
        let data = random_bytes(2 * CHUNK + 333);
        let id = upload_file_with(&app, &data, "report.pdf", json!({ "mimeType": "application/pdf" })).await;
        let res = download(&app, &id).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-length"), data.len().to_string());
        assert_eq!(header(&res, "content-type"), "application/pdf");
        let disposition = header(&res, "content-disposition");
        assert!(disposition.starts_with("attachment"), "{disposition}");
        assert!(disposition.contains("report.pdf"), "{disposition}");
        assert!(header(&res, "cache-control").contains("no-store"));
        assert_eq!(header(&res, "x-content-type-options"), "nosniff");
        assert_eq!(header(&res, "etag"), format!("\"{}\"", sha256_hex(&data)));
        assert_eq!(header(&res, "accept-ranges"), "bytes");
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
        // Downloading does not use up an ordinary clip.
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn a_download_without_a_stored_mime_type_is_octet_stream(app, small_chunks) {
        let data = random_bytes(777);
        let (id, _) = upload_file(&app, &data, "mystery", CHUNK, false).await;
        let res = download(&app, &id).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "content-type"), "application/octet-stream");
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
    }

    async fn a_non_ascii_filename_gets_an_rfc_6266_filename_star(app, small_chunks) {
        let name = "résumé 東京.pdf";
        let data = random_bytes(CHUNK + 17);
        let (id, _) = upload_file(&app, &data, name, CHUNK, true).await;
        let res = download(&app, &id).await;
        assert_eq!(res.status(), 200);
        let disposition = header(&res, "content-disposition");
        assert!(disposition.starts_with("attachment"), "{disposition}");
        let wanted = "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%9D%B1%E4%BA%AC.pdf";
        assert!(
            disposition.to_ascii_lowercase().contains(&wanted.to_ascii_lowercase()),
            "{disposition} lacks {wanted}"
        );
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
        let info = json_with(app.get(&format!("/api/file/{id}/info")).await, 200).await;
        assert_eq!(info["filename"], name);
        let meta = json_with(app.get(&format!("/api/clip/{id}")).await, 200).await;
        assert_eq!(meta["filename"], name);
    }

    async fn range_requests_get_206_with_exactly_the_requested_slice(app, small_chunks) {
        let data = random_bytes(150_000);
        let size = data.len();
        let (id, _) = upload_file(&app, &data, "ranged.bin", CHUNK, false).await;
        let cases = [
            ("bytes=0-9".to_string(), 0, 9),
            // Across the boundary between the first two chunks.
            ("bytes=65000-66999".to_string(), 65_000, 66_999),
            ("bytes=-5".to_string(), size - 5, size - 1),
            ("bytes=100-".to_string(), 100, size - 1),
            (format!("bytes={}-", size - 1), size - 1, size - 1),
        ];
        for (range, first, last) in cases {
            let res = ranged_download(&app, &id, &range, None).await;
            assert_eq!(res.status(), 206, "{range}");
            assert_eq!(header(&res, "content-range"), format!("bytes {first}-{last}/{size}"), "{range}");
            assert_eq!(header(&res, "content-length"), (last - first + 1).to_string(), "{range}");
            assert_same_bytes(&res.bytes().await.unwrap(), &data[first..=last]);
        }
    }

    async fn a_range_starting_at_or_beyond_the_end_is_416_with_the_size(app, small_chunks) {
        let data = random_bytes(CHUNK + 1);
        let size = data.len();
        let (id, _) = upload_file(&app, &data, "short.bin", CHUNK, false).await;
        for range in [format!("bytes={size}-"), format!("bytes={}-{}", size + 10, size + 20)] {
            let res = ranged_download(&app, &id, &range, None).await;
            assert_eq!(res.status(), 416, "{range}");
            assert_eq!(header(&res, "content-range"), format!("bytes */{size}"), "{range}");
        }
        // The clip is unharmed.
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn if_range_honours_only_the_current_etag(app, small_chunks) {
        let data = random_bytes(3000);
        let (id, _) = upload_file(&app, &data, "cond.bin", CHUNK, false).await;
        let etag = format!("\"{}\"", sha256_hex(&data));
        let res = ranged_download(&app, &id, "bytes=0-9", Some(etag.as_str())).await;
        assert_eq!(res.status(), 206);
        assert_same_bytes(&res.bytes().await.unwrap(), &data[..10]);
        let stale = format!("\"{}\"", sha256_hex(b"an older version"));
        let res = ranged_download(&app, &id, "bytes=0-9", Some(stale.as_str())).await;
        assert_eq!(res.status(), 200);
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
    }

    async fn several_ranges_answer_206_or_the_whole_file(app, small_chunks) {
        let data = random_bytes(1000);
        let (id, _) = upload_file(&app, &data, "multi.bin", CHUNK, false).await;
        let res = ranged_download(&app, &id, "bytes=0-1,4-5", None).await;
        let status = res.status();
        assert!(status == 200 || status == 206, "{status}");
        let body = res.bytes().await.unwrap();
        if status == 200 {
            assert_same_bytes(&body, &data);
        }
    }

    async fn get_on_the_download_route_is_410_and_consumes_nothing(app, small_chunks) {
        let data = random_bytes(100);
        let id = upload_file_with(&app, &data, "once.bin", json!({ "oneTime": true })).await;
        error_with(app.get(&format!("/api/file/{id}")).await, 410, "use_post").await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn a_one_time_clip_downloads_once_and_reading_its_metadata_does_not_consume_it(app, small_chunks) {
        let data = random_bytes(CHUNK + 10);
        let body = file_initiate("once.bin", data.len(), json!({ "oneTime": true }));
        let (id, done) = upload_with(&app, &data, body, json!({}), CHUNK, false).await;
        assert_eq!(done["oneTime"], true);
        for _ in 0..3 {
            let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
            assert_eq!(info["oneTime"], true);
            let meta = json_with(app.get(&format!("/api/clip/{id}")).await, 200).await;
            assert_eq!(meta["oneTime"], true);
            json_with(app.get(&format!("/api/file/{id}/info")).await, 200).await;
        }
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        let again = download(&app, &id).await.status();
        assert!(is_gone(again), "second download of a one-time clip: {again}");
        error_with(app.get(&format!("/api/clip/{id}/info")).await, 404, "clip_consumed").await;
    }

    async fn concurrent_downloads_of_a_one_time_clip_succeed_exactly_once(app, small_chunks) {
        let data = random_bytes(2 * CHUNK);
        let id = upload_file_with(&app, &data, "race.bin", json!({ "oneTime": true })).await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let client = app.client.clone();
                let url = app.url(&format!("/api/file/{id}"));
                tokio::spawn(async move {
                    let res = client.post(url).json(&json!({})).send().await.expect("download sent");
                    let status = res.status();
                    (status, res.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
                })
            })
            .collect();
        let mut winners = 0;
        for task in futures_util::future::join_all(tasks).await {
            let (status, body) = task.expect("download task");
            if status == 200 {
                winners += 1;
                assert_same_bytes(&body, &data);
            } else {
                assert!(is_gone(status), "a losing download answered {status}");
            }
        }
        assert_eq!(winners, 1, "exactly one download of a one-time clip succeeds");
    }

    async fn max_downloads_allows_exactly_that_many(app, small_chunks) {
        let data = random_bytes(4000);
        let id = upload_file_with(&app, &data, "twice.bin", json!({ "maxDownloads": 2 })).await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        let third = download(&app, &id).await.status();
        assert!(is_gone(third), "third download of a two-download clip: {third}");
    }

    async fn raw_serves_an_unprotected_clip_with_ranges_and_an_etag(app, small_chunks) {
        let data = random_bytes(100_000);
        let size = data.len();
        let (id, _) = upload_file(&app, &data, "raw.bin", CHUNK, false).await;
        let etag = format!("\"{}\"", sha256_hex(&data));
        for path in [format!("/raw/{id}"), format!("/raw/{id}/any-name.txt")] {
            let res = app.get(&path).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(header(&res, "etag"), etag);
            assert_eq!(header(&res, "content-length"), size.to_string());
            assert_same_bytes(&res.bytes().await.unwrap(), &data);
        }
        let res = app.client.get(app.url(&format!("/raw/{id}"))).header("range", "bytes=10-19").send().await.unwrap();
        assert_eq!(res.status(), 206);
        assert_eq!(header(&res, "content-range"), format!("bytes 10-19/{size}"));
        assert_same_bytes(&res.bytes().await.unwrap(), &data[10..20]);
        let res = app.client.get(app.url(&format!("/raw/{id}"))).header("range", "bytes=-3").send().await.unwrap();
        assert_eq!(res.status(), 206);
        assert_same_bytes(&res.bytes().await.unwrap(), &data[size - 3..]);
    }

    async fn raw_answers_304_to_a_matching_if_none_match(app, small_chunks) {
        let data = random_bytes(5000);
        let (id, _) = upload_file(&app, &data, "cached.bin", CHUNK, false).await;
        let etag = format!("\"{}\"", sha256_hex(&data));
        let url = app.url(&format!("/raw/{id}"));
        let res = app.client.get(url.as_str()).header("if-none-match", etag.as_str()).send().await.unwrap();
        assert_eq!(res.status(), 304);
        assert!(res.bytes().await.unwrap().is_empty());
        let res = app.client.get(url.as_str()).header("if-none-match", "\"other\"").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_same_bytes(&res.bytes().await.unwrap(), &data);
    }

    async fn raw_refuses_a_one_time_clip_without_consuming_it(app, small_chunks) {
        let data = random_bytes(500);
        let id = upload_file_with(&app, &data, "once.bin", json!({ "oneTime": true })).await;
        for path in [format!("/raw/{id}"), format!("/raw/{id}/once.bin")] {
            error_with(app.get(&path).await, 403, "raw_not_allowed").await;
        }
        assert_same_bytes(&download_ok(&app, &id).await, &data);
    }

    async fn a_clip_disappears_the_instant_it_expires(app, small_chunks) {
        let data = random_bytes(300);
        let id = upload_file_with(&app, &data, "brief.bin", json!({ "expiration": "5min" })).await;
        let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        let expires = info["expiresAt"].as_i64().expect("expiresAt");
        app.clock.set(expires - 1);
        json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_same_bytes(&download_ok(&app, &id).await, &data);
        app.clock.set(expires);
        error_with(app.get(&format!("/api/clip/{id}/info")).await, 404, "clip_expired").await;
        error_with(app.get(&format!("/api/clip/{id}")).await, 404, "clip_expired").await;
        let status = download(&app, &id).await.status();
        assert!(is_gone(status), "download of an expired clip: {status}");
        assert_eq!(app.get(&format!("/raw/{id}")).await.status(), 404);
    }
}
