//! Clip rules under time, concurrency and hostile origins: exact expiry with an injected clock
//! and the sweep that follows, quick share, access codes stored only as argon2id, one-time and
//! download-limited claims under contention (also across two instances on one PostgreSQL),
//! security headers and CORS.

use std::time::Duration;

use ferry::domain::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Backend, Blob, TestApp, spawn_app_with, spawn_sibling};
use crate::upload::{
    CHUNK, assert_same_bytes, download, download_ok, error_with, file_initiate, initiate, is_gone, json_with,
    random_bytes, send_chunk, small_chunks, upload_id_of, upload_with,
};

async fn clip_blobs(app: &TestApp) -> usize {
    // A one-request clip is one blob under clips/; a chunked one is its chunks under chunks/
    // (on S3 one object under clips/, assembled from them).
    app.clip_blob_count().await + app.all_chunk_blob_count().await
}

async fn sweep(app: &TestApp) -> ferry::jobs::sweeper::SweepReport {
    let now = app.clock.now_ms();
    ferry::jobs::sweeper::sweep_once(app.state.deps(), &app.state.sweep_settings(), now).await.expect("sweep")
}

async fn file_clip(app: &TestApp, bytes: &[u8], extra: Value) -> (String, Value) {
    upload_with(app, bytes, file_initiate("f.bin", bytes.len(), extra), json!({}), CHUNK, false).await
}

async fn download_with_code(app: &TestApp, id: &str, code: &str) -> reqwest::Response {
    app.client.post(app.url(&format!("/api/file/{id}"))).json(&json!({ "accessCode": code })).send().await.unwrap()
}

all_backends! {
    async fn a_clip_vanishes_from_every_route_the_instant_it_expires_and_one_sweep_removes_its_blob(app, small_chunks) {
        let data = random_bytes(1000);
        let (id, done) = file_clip(&app, &data, json!({ "expiration": "5min" })).await;
        let expires_at = done["expiresAt"].as_i64().unwrap();
        assert_eq!(expires_at, app.clock.now_ms() + 5 * 60 * 1000, "lifetime starts at completion");
        app.clock.set(expires_at - 1);
        json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        app.clock.set(expires_at);
        for path in [format!("/api/clip/{id}/info"), format!("/api/clip/{id}"), format!("/api/file/{id}/info"), format!("/raw/{id}")] {
            error_with(app.get(&path).await, 404, "clip_expired").await;
        }
        error_with(download(&app, &id).await, 404, "clip_expired").await;
        assert_eq!(clip_blobs(&app).await, 1, "the blob waits for the sweep");
        let report = sweep(&app).await;
        assert_eq!(report.expired_clips, 1, "{report:?}");
        assert_eq!(clip_blobs(&app).await, 0, "one sweep removes the blob");
        assert_eq!(sweep(&app).await, Default::default(), "nothing left for a second pass");
    }

    async fn a_requested_lifetime_is_capped_at_the_configured_maximum(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.limits.max_expiry = "1hr".into();
    }) {
        let (_, done) = file_clip(&app, b"x", json!({ "expiration": "24hr" })).await;
        assert_eq!(done["expiresAt"].as_i64().unwrap(), app.clock.now_ms() + 3_600_000);
    }

    async fn a_quick_share_lives_five_minutes_whatever_it_asks_and_takes_no_access_code(app, small_chunks) {
        let init = initiate(&app, file_initiate("q.bin", 5, json!({ "quickShare": true, "expiration": "24hr" }))).await;
        let upload = upload_id_of(&init);
        assert_eq!(send_chunk(&app, &upload, 0, b"quick").await.status(), 200);
        let res = app.client.post(app.url(&format!("/api/upload/complete/{upload}"))).json(&json!({})).send().await.unwrap();
        let done = json_with(res, 200).await;
        let id = done["clipId"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 6, "quick shares get 6-character codes");
        assert!(id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        assert_same_bytes(&download(&app, &id).await.bytes().await.unwrap(), b"quick");
        assert_eq!(done["quickShare"], true);
        assert_eq!(done["expiresAt"].as_i64().unwrap(), app.clock.now_ms() + 5 * 60 * 1000);
        let res = app
            .client
            .post(app.url("/api/upload/initiate"))
            .json(&json!({ "filename": "q", "quickShare": true, "hasPassword": true }))
            .send()
            .await
            .unwrap();
        error_with(res, 400, "validation").await;
    }

    async fn the_sweep_removes_consumed_deleted_and_abandoned_uploads_with_their_bytes(app, small_chunks) {
        let (once, _) = file_clip(&app, b"one", json!({ "oneTime": true })).await;
        assert_eq!(download(&app, &once).await.status(), 200);
        // A spent one-time clip's bytes go in the background once its download ends; wait for
        // that, so the next completes see only their own objects come and go.
        let spent = crate::helpers::poll_until(200, Duration::from_millis(25), || async { app.blob_keys("").await.is_empty() }).await;
        assert!(spent, "a spent one-time clip's bytes are removed");
        let (gone, done) = file_clip(&app, b"two", json!({})).await;
        let token = done["deleteToken"].as_str().unwrap();
        let res = app.client.delete(app.url(&format!("/api/clip/{gone}"))).header("x-delete-token", token).send().await.unwrap();
        assert_eq!(res.status(), 204);
        let (kept, _) = file_clip(&app, b"three", json!({})).await;
        // An upload that never completes.
        let init = json_with(
            app.client.post(app.url("/api/upload/initiate")).json(&json!({ "filename": "a", "totalChunks": 2 })).send().await.unwrap(),
            200,
        )
        .await;
        let upload = init["uploadId"].as_str().unwrap().to_string();
        let res = app
            .client
            .post(app.url(&format!("/api/upload/chunk/{upload}/0")))
            .header("content-type", "application/octet-stream")
            .body(vec![1u8; 100])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(app.chunk_blob_count(&upload).await, 1, "the chunk is stored");

        // Right away nothing is due: retired rows keep a grace, the upload is recent.
        let report = sweep(&app).await;
        assert_eq!((report.retired_clips, report.abandoned_uploads), (0, 0), "{report:?}");
        app.clock.advance(Duration::from_secs(25 * 3600));
        let report = sweep(&app).await;
        // The consumed and deleted clips' rows go; the third clip has expired by now too.
        assert_eq!(report.retired_clips, 2, "{report:?}");
        assert_eq!(report.expired_clips, 1, "{report:?}");
        assert_eq!(report.abandoned_uploads, 1, "{report:?}");
        assert_eq!(app.chunk_blob_count(&upload).await, 0, "abandoned chunks are removed");
        if app.blob == Blob::Fs {
            assert!(!app.data_dir.path().join(format!("blobs/chunks/{upload}")).exists(), "with their directory");
        }
        assert_eq!(clip_blobs(&app).await, 0);
        error_with(app.get(&format!("/api/upload/{upload}/status")).await, 404, "upload_not_found").await;
        error_with(app.get(&format!("/api/clip/{kept}/info")).await, 404, "clip_expired").await;
    }

    async fn an_upload_that_keeps_receiving_chunks_is_not_swept_as_abandoned(app, small_chunks) {
        let data = random_bytes(2 * CHUNK);
        let id = upload_id_of(&initiate(&app, file_initiate("slow.bin", data.len(), json!({}))).await);
        app.clock.advance(Duration::from_secs(23 * 3600));
        json_with(send_chunk(&app, &id, 0, &data[..CHUNK]).await, 200).await;
        // 25 h after initiate but 2 h after its last chunk: still in progress.
        app.clock.advance(Duration::from_secs(2 * 3600));
        let report = sweep(&app).await;
        assert_eq!(report.abandoned_uploads, 0, "{report:?}");
        json_with(send_chunk(&app, &id, 1, &data[CHUNK..]).await, 200).await;
        let res = app.client.post(app.url(&format!("/api/upload/complete/{id}"))).json(&json!({})).send().await.unwrap();
        let done = json_with(res, 200).await;
        assert_same_bytes(&download_ok(&app, done["clipId"].as_str().unwrap()).await, &data);
        // Idle for a day after that chunk, a new upload is abandoned.
        let idle = upload_id_of(&initiate(&app, file_initiate("idle.bin", 10, json!({}))).await);
        app.clock.advance(Duration::from_secs(25 * 3600));
        assert_eq!(sweep(&app).await.abandoned_uploads, 1);
        error_with(app.get(&format!("/api/upload/{idle}/status")).await, 404, "upload_not_found").await;
    }

    async fn reconcile_removes_blobs_that_no_row_owns_but_spares_young_ones(app, small_chunks) {
        let (id, _) = file_clip(&app, b"owned", json!({})).await;
        let owned = random_bytes(3 * CHUNK);
        let (chunked, _) = file_clip(&app, &owned, json!({})).await;
        let stray = "clips/AB/ABABABABABABABAB";
        app.put_blob(stray, b"nobody's").await;
        // Chunks of an upload whose session row is gone (a crash between row and files).
        let orphan = "0123456789ABCDEF";
        for leaf in ["0.00000000000000aa", "1.00000000000000bb"] {
            app.put_blob(&format!("chunks/{orphan}/{leaf}"), b"orphan chunk").await;
        }
        let settings = app.state.sweep_settings();
        let now = ferry::domain::clock::system_now_ms();
        let removed = ferry::jobs::sweeper::reconcile_once(app.state.deps(), &settings, now).await.unwrap();
        assert_eq!(removed, 0, "a blob younger than the grace is left alone");
        let later = now + settings.orphan_grace_ms + 1000;
        let removed = ferry::jobs::sweeper::reconcile_once(app.state.deps(), &settings, later).await.unwrap();
        assert_eq!(removed, 3, "the stray clip blob and both orphan chunks");
        assert_eq!(app.blob_size(stray).await, None, "the stray clip blob is gone");
        assert_eq!(app.chunk_blob_count(orphan).await, 0, "the orphan chunks are gone");
        if app.blob == Blob::Fs {
            assert!(!app.data_dir.path().join(format!("blobs/chunks/{orphan}")).exists(), "with their directory");
        }
        assert_eq!(download(&app, &id).await.status(), 200, "owned blobs stay");
        assert_same_bytes(&download_ok(&app, &chunked).await, &owned);
    }

    async fn two_hundred_parallel_downloads_of_a_one_time_clip_yield_exactly_one_success(app, small_chunks) {
        let data = random_bytes(20_000);
        let (id, _) = file_clip(&app, &data, json!({ "oneTime": true })).await;
        let outcomes = race_downloads(&[&app], &id, 200).await;
        assert_eq!(outcomes.iter().filter(|(s, _)| *s == 200).count(), 1, "{outcomes:?}");
        for (status, body) in &outcomes {
            if *status == 200 {
                assert_same_bytes(body, &data);
            } else {
                assert!(is_gone(reqwest::StatusCode::from_u16(*status).unwrap()), "loser got {status}");
            }
        }
    }

    async fn a_download_limit_of_five_admits_exactly_five_of_sixty_racing_downloads(app, small_chunks) {
        let (id, _) = file_clip(&app, b"limited", json!({ "maxDownloads": 5 })).await;
        let outcomes = race_downloads(&[&app], &id, 60).await;
        assert_eq!(outcomes.iter().filter(|(s, _)| *s == 200).count(), 5);
    }

    async fn the_last_downloads_blob_is_removed_even_when_the_client_walks_away(app, small_chunks) {
        let data = random_bytes(3 * 1024 * 1024);
        let (id, _) = file_clip(&app, &data, json!({ "oneTime": true })).await;
        match app.blob {
            Blob::Fs => assert!(clip_blobs(&app).await > 1, "a multi-chunk clip is several part blobs"),
            Blob::S3 => assert_eq!(clip_blobs(&app).await, 1, "a multi-chunk clip is one assembled object"),
        }
        let mut res = download(&app, &id).await;
        assert_eq!(res.status(), 200);
        let first = res.chunk().await.unwrap().expect("some bytes");
        assert!(!first.is_empty());
        drop(res);
        for _ in 0..200 {
            if clip_blobs(&app).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(clip_blobs(&app).await, 0, "the consumed clip's bytes are gone");
        assert!(is_gone(download(&app, &id).await.status()));
    }

    async fn an_access_code_is_checked_and_never_stored_in_plain(app, small_chunks) {
        let code = "pbkdf2-hex-or-any-string-e3b0c44298fc1c149afbf4c8996fb924";
        let data = random_bytes(500);
        let (id, _) = upload_with(
            &app,
            &data,
            file_initiate("secret.bin", 500, json!({ "hasPassword": true })),
            json!({ "accessCodeHash": code }),
            CHUNK,
            false,
        )
        .await;
        let info = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await;
        assert_eq!(info["hasPassword"], true);
        let res = app.get(&format!("/api/clip/{id}")).await;
        assert_eq!(error_with(res, 401, "access_code_required").await["requiresAccessCode"], true);
        let wrong = app.client.post(app.url(&format!("/api/clip/{id}"))).json(&json!({ "accessCode": "nope" })).send().await.unwrap();
        error_with(wrong, 401, "access_code_invalid").await;
        let right = app.client.post(app.url(&format!("/api/clip/{id}"))).json(&json!({ "accessCode": code })).send().await.unwrap();
        assert_eq!(json_with(right, 200).await["filename"], "secret.bin");
        error_with(download_with_code(&app, &id, "nope").await, 401, "access_code_invalid").await;
        error_with(download(&app, &id).await, 401, "access_code_required").await;
        let ok = download_with_code(&app, &id, code).await;
        assert_eq!(ok.status(), 200);
        assert_same_bytes(&ok.bytes().await.unwrap(), &data);
        error_with(app.get(&format!("/raw/{id}")).await, 403, "raw_not_allowed").await;
        if app.backend == Backend::Embedded {
            let mut stored = std::fs::read(app.data_dir.path().join("ferry.db")).unwrap();
            stored.extend(std::fs::read(app.data_dir.path().join("ferry.db-wal")).unwrap_or_default());
            let needle = code.as_bytes();
            assert!(!stored.windows(needle.len()).any(|w| w == needle), "the code is stored in plain");
            assert!(stored.windows(10).any(|w| w == b"$argon2id$"), "an argon2id hash is stored");
        }
    }

    async fn every_response_carries_the_security_headers(app, small_chunks) {
        let (id, _) = file_clip(&app, b"h", json!({})).await;
        for res in [app.get("/health").await, app.get("/nope").await, app.get(&format!("/api/clip/{id}/info")).await] {
            let h = res.headers();
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
            assert!(!csp.contains("http"), "no third-party origins: {csp}");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["x-frame-options"], "DENY");
        }
        let dl = download(&app, &id).await;
        assert!(dl.headers()["content-security-policy"].to_str().unwrap().contains("sandbox"));
        assert_eq!(dl.headers()["referrer-policy"], "no-referrer");
    }

    async fn configured_origins_get_cors_and_any_other_origin_gets_none(app, |c: &mut ferry::Config| {
        c.cors_origins = ferry::config::CommaList(vec!["https://app.example.org".into()]);
    }) {
        let allowed = app.client.get(app.url("/api/health")).header("origin", "https://app.example.org").send().await.unwrap();
        assert_eq!(allowed.status(), 200);
        assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.org");
        let other = app.client.get(app.url("/api/health")).header("origin", "https://evil.example").send().await.unwrap();
        assert_eq!(other.status(), 200);
        assert!(other.headers().get("access-control-allow-origin").is_none());
        let preflight = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/api/upload/initiate"))
            .header("origin", "https://app.example.org")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success());
        assert!(preflight.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
        let evil = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/api/upload/initiate"))
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert!(evil.status().as_u16() < 500);
        assert!(evil.headers().get("access-control-allow-origin").is_none());
    }

    async fn without_configured_origins_no_response_carries_cors_headers(app) {
        let res = app.client.get(app.url("/api/health")).header("origin", "https://evil.example").send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("access-control-allow-origin").is_none());
    }

    async fn the_client_config_serves_the_pbkdf2_salt_and_this_servers_limits(app, |c: &mut ferry::Config| {
        c.access.pbkdf2_salt = "salt-of-this-server".into();
        c.limits.chunk_size = ferry::config::ByteSize(1 << 20);
        c.limits.max_upload_size = ferry::config::ByteSize(50 << 20);
        c.limits.max_text_size = ferry::config::ByteSize(2 << 20);
        c.limits.max_expiry = "6hr".into();
    }) {
        let body = json_with(app.get("/api/config").await, 200).await;
        assert_eq!(
            body,
            json!({
                "pbkdf2Salt": "salt-of-this-server",
                "chunkSize": 1 << 20,
                "maxUploadSize": 50 << 20,
                "maxTextSize": 2 << 20,
                // Only lifetimes the server grants are offered.
                "expiryOptions": ["5min", "15min", "30min", "1hr", "6hr"],
                "defaultExpiry": "6hr",
            })
        );
    }
}

/// `n` concurrent downloads spread over the given instances; (status, body) of each.
async fn race_downloads(apps: &[&TestApp], id: &str, n: usize) -> Vec<(u16, Vec<u8>)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let app = apps[i % apps.len()];
            let (client, url, barrier) = (app.client.clone(), app.url(&format!("/api/file/{id}")), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let res = client.post(url).json(&json!({})).send().await.expect("download sent");
                let status = res.status().as_u16();
                (status, res.bytes().await.map(|b| b.to_vec()).unwrap_or_default())
            })
        })
        .collect();
    futures_util::future::join_all(tasks).await.into_iter().map(|t| t.expect("download task")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_hand_out_a_one_time_clip_exactly_once() {
    let Some(a) = spawn_app_with(Backend::Postgres, small_chunks).await else {
        return;
    };
    let b = spawn_sibling(&a).await;
    for round in 0..3 {
        let data = random_bytes(5000 + round);
        let (id, _) = file_clip(&a, &data, json!({ "oneTime": true })).await;
        json_with(b.get(&format!("/api/clip/{id}/info")).await, 200).await;
        let outcomes = race_downloads(&[&a, &b], &id, 100).await;
        assert_eq!(outcomes.iter().filter(|(s, _)| *s == 200).count(), 1, "round {round}: {outcomes:?}");
        let (limited, _) = file_clip(&b, b"twice", json!({ "maxDownloads": 3 })).await;
        let outcomes = race_downloads(&[&a, &b], &limited, 40).await;
        assert_eq!(outcomes.iter().filter(|(s, _)| *s == 200).count(), 3, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sweeping_one_postgres_never_take_the_same_rows() {
    let Some(a) = spawn_app_with(Backend::Postgres, small_chunks).await else {
        return;
    };
    let b = spawn_sibling(&a).await;
    let client = crate::helpers::pg_connect(&a.db.as_ref().unwrap().url).await;
    let now = a.clock.now_ms();
    client
        .batch_execute(&format!(
            "INSERT INTO clips (code, kind, blob_key, size, sha256, created_at, expires_at, delete_token_hash)
             SELECT lpad(g::text, 10, '0'), 'file', 'clips/00/' || lpad(g::text, 16, '0'), 1, repeat('0', 64),
                    {now} - 2000, {now} - 1000, 'x' FROM generate_series(1, 20000) AS g"
        ))
        .await
        .unwrap();
    let mut settings = a.state.sweep_settings();
    settings.batch_size = 200;
    let (ra, rb) = tokio::join!(
        ferry::jobs::sweeper::sweep_once(a.state.deps(), &settings, now),
        ferry::jobs::sweeper::sweep_once(b.state.deps(), &settings, now),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.expired_clips + rb.expired_clips, 20000, "{ra:?} {rb:?}");
    let left: i64 = client.query_one("SELECT count(*) FROM clips", &[]).await.unwrap().get(0);
    assert_eq!(left, 0);
}
