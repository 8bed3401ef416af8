//! The lookup cache, compression and metrics over HTTP: lookups served from memory and
//! invalidated at once on change, negative caching, `cache = none`, two instances sharing
//! PostgreSQL and Redis (invalidation over pub/sub), Redis dying and coming back mid-test,
//! compression only where it belongs, Prometheus metrics and the admin performance view.

use std::time::Duration;

use ferry::config::{CacheMode, Secret};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PrivateRedis, TestApp, poll_until, redis_becomes, redis_url, spawn_app_with, spawn_sibling,
};
use crate::upload::{CHUNK, download, error_with, file_initiate, is_gone, json_with, small_chunks, upload_with};

async fn clip(app: &TestApp, extra: Value) -> String {
    upload_with(app, b"cached bytes", file_initiate("c.txt", 12, extra), json!({}), CHUNK, false).await.0
}

/// Delete the row behind the server's back (no invalidation).
async fn delete_row_directly(app: &TestApp, code: &str) {
    match app.backend {
        Backend::Postgres => {
            let client = crate::helpers::pg_connect(&app.db.as_ref().unwrap().url).await;
            client.execute("DELETE FROM clips WHERE code = $1", &[&code]).await.unwrap();
        }
        Backend::Embedded => {
            let conn = rusqlite::Connection::open(app.data_dir.path().join("ferry.db")).unwrap();
            conn.execute("DELETE FROM clips WHERE code = ?1", [code]).unwrap();
        }
    }
}

async fn info_status(app: &TestApp, code: &str) -> u16 {
    app.get(&format!("/api/clip/{code}/info")).await.status().as_u16()
}

/// Poll (bounded) until `code`'s info answers `want`.
async fn eventually(app: &TestApp, code: &str, want: u16) -> bool {
    poll_until(200, Duration::from_millis(10), || async { info_status(app, code).await == want }).await
}

all_backends! {
    async fn a_looked_up_clip_is_answered_from_memory_and_dropped_at_once_when_it_changes(app, small_chunks) {
        let a = clip(&app, json!({})).await;
        assert_eq!(info_status(&app, &a).await, 200);
        delete_row_directly(&app, &a).await;
        assert_eq!(info_status(&app, &a).await, 200, "served from the cache without the row");

        let (b, done) = upload_with(&app, b"x", file_initiate("x", 1, json!({})), json!({}), CHUNK, false).await;
        assert_eq!(info_status(&app, &b).await, 200);
        let token = done["deleteToken"].as_str().unwrap();
        let res = app.client.delete(app.url(&format!("/api/clip/{b}"))).header("x-delete-token", token).send().await.unwrap();
        assert_eq!(res.status(), 204);
        assert_eq!(info_status(&app, &b).await, 404, "a delete invalidates at once");

        let once = clip(&app, json!({ "oneTime": true })).await;
        assert_eq!(info_status(&app, &once).await, 200);
        assert_eq!(download(&app, &once).await.status(), 200);
        assert_eq!(info_status(&app, &once).await, 404, "consuming invalidates at once");
    }

    async fn unknown_codes_are_remembered_for_the_negative_ttl(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.lookup_cache.negative_ttl = Duration::from_secs(3600);
    }) {
        let code = clip(&app, json!({})).await;
        // Make the row unknown to the cache, then look up a code that the store will gain.
        delete_row_directly(&app, &code).await;
        let missing = "QQQQQQQQQQ";
        assert_eq!(info_status(&app, missing).await, 404);
        match app.backend {
            Backend::Postgres => {
                let client = crate::helpers::pg_connect(&app.db.as_ref().unwrap().url).await;
                client
                    .execute(
                        "INSERT INTO clips (code, kind, blob_key, size, sha256, created_at, expires_at, delete_token_hash)
                         VALUES ($1, 'file', 'clips/00/X', 1, repeat('0', 64), 0, 9999999999999, 'x')",
                        &[&missing],
                    )
                    .await
                    .unwrap();
            }
            Backend::Embedded => {
                let conn = rusqlite::Connection::open(app.data_dir.path().join("ferry.db")).unwrap();
                conn.execute(
                    "INSERT INTO clips (code, kind, blob_key, size, sha256, created_at, expires_at, delete_token_hash)
                     VALUES (?1, 'file', 'clips/00/X', 1, printf('%064d', 0), 0, 9999999999999, 'x')",
                    [missing],
                )
                .unwrap();
            }
        }
        assert_eq!(info_status(&app, missing).await, 404, "the miss is remembered; the store is not asked");
    }

    async fn with_the_cache_off_every_lookup_reads_the_store(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.cache = CacheMode::None;
    }) {
        let a = clip(&app, json!({})).await;
        assert_eq!(info_status(&app, &a).await, 200);
        delete_row_directly(&app, &a).await;
        assert_eq!(info_status(&app, &a).await, 404);
    }

    async fn compression_applies_to_text_responses_and_never_to_stored_bytes(app, small_chunks) {
        let text = "compressible ".repeat(400);
        let (id, _) = upload_with(
            &app,
            text.as_bytes(),
            file_initiate("t.txt", text.len(), json!({ "mimeType": "text/plain" })),
            json!({}),
            CHUNK,
            false,
        )
        .await;
        let metrics = app.client.get(app.url("/metrics")).header("accept-encoding", "gzip").send().await.unwrap();
        assert_eq!(metrics.headers()["content-encoding"], "gzip");
        for encoding in ["gzip", "br", "zstd"] {
            let res = app
                .client
                .post(app.url(&format!("/api/file/{id}")))
                .header("accept-encoding", encoding)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert!(res.headers().get("content-encoding").is_none(), "downloads are sent as stored");
            assert_eq!(res.bytes().await.unwrap().len(), text.len());
        }
        let ranged = app.client.get(app.url(&format!("/raw/{id}"))).header("accept-encoding", "gzip").header("range", "bytes=0-99").send().await.unwrap();
        assert_eq!(ranged.status(), 206);
        assert!(ranged.headers().get("content-encoding").is_none());
        let br = app.client.get(app.url("/metrics")).header("accept-encoding", "br").send().await.unwrap();
        assert_eq!(br.headers()["content-encoding"], "br");
    }

    async fn a_client_refusing_every_coding_still_gets_its_one_time_download_once(app, small_chunks) {
        let data = b"spend me once".repeat(100);
        let (id, _) = upload_with(
            &app,
            &data,
            file_initiate("once.bin", data.len(), json!({ "oneTime": true })),
            json!({}),
            CHUNK,
            false,
        )
        .await;
        let refuse = |id: &str| {
            app.client
                .post(app.url(&format!("/api/file/{id}")))
                .header("accept-encoding", "identity;q=0")
                .json(&json!({}))
                .send()
        };
        let res = refuse(&id).await.unwrap();
        assert_eq!(res.status(), 200, "served without a coding, never a 406 after spending the clip");
        assert!(res.headers().get("content-encoding").is_none());
        assert_eq!(res.bytes().await.unwrap().to_vec(), data);
        assert!(is_gone(refuse(&id).await.unwrap().status()), "spent exactly once");
        // Same for JSON: answered plainly, not 406.
        let metrics = app.client.get(app.url("/metrics")).header("accept-encoding", "*;q=0").send().await.unwrap();
        assert_eq!(metrics.status(), 200);
        assert!(metrics.headers().get("content-encoding").is_none());
    }

    async fn compressible_answers_say_they_vary_by_accept_encoding_to_every_client(app) {
        for _ in 0..3 {
            assert_eq!(app.get("/health").await.status(), 200);
        }
        for accept in [None, Some("gzip"), Some("identity")] {
            let mut req = app.client.get(app.url("/metrics"));
            if let Some(a) = accept {
                req = req.header("accept-encoding", a);
            }
            let res = req.send().await.unwrap();
            let vary: Vec<_> = res.headers().get_all("vary").iter().map(|v| v.to_str().unwrap().to_string()).collect();
            assert_eq!(vary, ["accept-encoding"], "{accept:?}");
            if accept != Some("gzip") {
                assert!(res.text().await.unwrap().len() > 512, "a page big enough to compress");
            }
        }
        // Small answers are never compressed and do not vary.
        let small = app.get("/ping").await;
        assert!(small.headers().get("vary").is_none());
    }

    async fn metrics_name_routes_by_template_and_count_cache_store_and_uploads(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.admin_token = Some(Secret::new("admin-token-for-tests-0123456789"));
    }) {
        let code = clip(&app, json!({})).await;
        for _ in 0..3 {
            assert_eq!(info_status(&app, &code).await, 200);
        }
        let text = app.get("/metrics").await.text().await.unwrap();
        for needle in [
            "ferry_http_requests_total{route=\"/api/clip/{id}/info\"",
            "ferry_http_request_duration_seconds",
            "ferry_http_requests_in_flight",
            "ferry_cache_lookups_total{level=\"l1\",result=\"hit\"}",
            "ferry_store_query_seconds",
            "ferry_upload_bytes_total",
            "ferry_upload_chunks_total",
            "ferry_assembly_seconds",
        ] {
            assert!(text.contains(needle), "metrics lack {needle}");
        }
        assert!(!text.contains(&code), "no clip code in metrics");
        let perf = json_with(
            app.client
                .get(app.url("/api/admin/performance"))
                .header("authorization", "Bearer admin-token-for-tests-0123456789")
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        assert!(perf["cache"]["hitRate"].as_f64().is_some_and(|r| r > 0.0), "{perf}");
        let routes = perf["routes"].as_array().unwrap();
        let info = routes.iter().find(|r| r["route"] == "/api/clip/{id}/info").expect("info route listed");
        assert!(info["p50Ms"].is_f64() && info["p99Ms"].is_f64(), "{info}");
        error_with(app.get("/api/admin/performance").await, 401, "admin_unauthorized").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_and_redis_never_serve_a_consumed_clip_after_invalidation() {
    let Some(redis) = redis_url() else { return };
    let Some(a) = spawn_app_with(Backend::Postgres, |c: &mut ferry::Config| {
        small_chunks(c);
        c.redis_url = Some(Secret::new(redis.clone()));
        c.lookup_cache.ttl = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let b = spawn_sibling(&a).await;
    // Both listeners subscribed before anything is cached.
    for app in [&a, &b] {
        assert!(redis_becomes(app, "connected").await, "redis listener connected");
    }
    for _ in 0..3 {
        let once = clip(&a, json!({ "oneTime": true })).await;
        assert_eq!(info_status(&a, &once).await, 200);
        assert_eq!(info_status(&b, &once).await, 200, "b now holds it in memory");
        assert_eq!(download(&b, &once).await.status(), 200);
        assert!(eventually(&a, &once, 404).await, "a drops it once the invalidation arrives");
        assert_eq!(info_status(&b, &once).await, 404);
        let kept = clip(&b, json!({})).await;
        assert_eq!(info_status(&a, &kept).await, 200, "a fresh clip is visible from the other instance");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_keep_answering_when_redis_dies_and_health_says_degraded() {
    let Some(mut redis) = PrivateRedis::start() else { return };
    let url = redis.url();
    let app = spawn_app_with(Backend::Embedded, |c: &mut ferry::Config| {
        small_chunks(c);
        c.redis_url = Some(Secret::new(url.clone()));
    })
    .await
    .unwrap();
    assert!(redis_becomes(&app, "connected").await);
    let code = clip(&app, json!({})).await;
    assert_eq!(info_status(&app, &code).await, 200);
    redis.stop();
    for _ in 0..50 {
        assert_eq!(info_status(&app, &code).await, 200, "lookups survive a dead redis");
    }
    let fresh = clip(&app, json!({})).await;
    assert_eq!(info_status(&app, &fresh).await, 200, "uploads and lookups of new clips too");
    assert!(redis_becomes(&app, "degraded").await, "health reports redis as degraded");
    redis.restart();
    assert!(redis_becomes(&app, "connected").await, "reconnects by itself");
    assert_eq!(info_status(&app, &code).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_at_startup_does_not_stop_the_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let app = spawn_app_with(Backend::Embedded, |c: &mut ferry::Config| {
        small_chunks(c);
        c.redis_url = Some(Secret::new(format!("redis://127.0.0.1:{port}/")));
    })
    .await
    .unwrap();
    let health = json_with(app.get("/health").await, 200).await;
    assert_eq!(health["redis"], "degraded");
    let code = clip(&app, json!({})).await;
    for _ in 0..10 {
        assert_eq!(info_status(&app, &code).await, 200);
    }
}

/// The issue's own walk-through with real processes: two `ferry` binaries on their own ports
/// sharing one PostgreSQL, one blob directory and one Redis (a private one, so the test can
/// stop it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ferry_processes_share_invalidations_and_keep_answering_when_redis_stops() {
    let Some(server) = crate::helpers::pg_server_url() else { return };
    let Some(mut redis) = PrivateRedis::start() else { return };
    let db = crate::helpers::TestDb::create(&server).await;
    let data = tempfile::tempdir().unwrap();
    let start = || {
        let mut cmd = crate::helpers::binary();
        cmd.env("FERRY_DATA_DIR", data.path()).env("FERRY_BIND", "127.0.0.1:0");
        cmd.env("FERRY_DATABASE_URL", &db.url).env("FERRY_REDIS_URL", redis.url());
        cmd.env("FERRY_RATE_LIMITS", "off").env("FERRY_LOG__LEVEL", "info");
        crate::helpers::spawn_binary(cmd)
    };
    let (a, b) = (start(), start());
    let client = reqwest::Client::new();
    let url = |p: &crate::helpers::Proc, path: &str| format!("http://{}{path}", p.addr);
    let status = |p: &crate::helpers::Proc, path: &str| {
        let req = client.get(url(p, path));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let health = |p: &crate::helpers::Proc| {
        let req = client.get(url(p, "/health"));
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200, "redis is never a required dependency");
            res.json::<Value>().await.unwrap()["redis"].as_str().unwrap_or_default().to_string()
        }
    };
    // A clip made on `p` with a one-request upload: its code and delete token.
    let make = |p: &crate::helpers::Proc, name: &str, one_time: bool| {
        let req = client
            .put(url(p, &format!("/api/clips/{name}")))
            .header("accept", "application/json")
            .header("one-time", one_time.to_string())
            .body(format!("contents of {name}"));
        async move {
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 200);
            let token = res.headers()["x-delete-token"].to_str().unwrap().to_string();
            let body = res.json::<Value>().await.unwrap();
            (body["clipId"].as_str().unwrap().to_string(), token)
        }
    };
    let (health, status) = (&health, &status);
    for p in [&a, &b] {
        let connected = poll_until(300, Duration::from_millis(10), || async move { health(p).await == "connected" });
        assert!(connected.await, "both processes reach Redis");
    }

    // A one-time clip made on A and looked up there (so A has it in memory) ...
    let (code, _) = make(&a, "once.txt", true).await;
    let info = format!("/api/clip/{code}/info");
    assert_eq!(status(&a, &info).await, 200);
    assert_eq!(status(&b, &info).await, 200);
    // ... downloaded through B ...
    let got = client.post(url(&b, &format!("/api/file/{code}"))).json(&json!({})).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.unwrap(), "contents of once.txt");
    // ... is gone on A as soon as the invalidation arrives (bounded wait; delivery is async).
    let gone = poll_until(200, Duration::from_millis(5), || async { status(&a, &info).await == 404 });
    assert!(gone.await, "A stops serving the consumed clip's metadata");
    assert_eq!(status(&b, &info).await, 404);

    // A clip deleted through B with its token is gone on A too.
    let (code, token) = make(&a, "del.txt", false).await;
    let info = format!("/api/clip/{code}/info");
    assert_eq!(status(&a, &info).await, 200);
    let del =
        client.delete(url(&b, &format!("/api/clip/{code}"))).header("x-delete-token", token).send().await.unwrap();
    assert_eq!(del.status(), 204);
    let gone = poll_until(200, Duration::from_millis(5), || async { status(&a, &info).await == 404 });
    assert!(gone.await, "A stops serving the deleted clip's metadata");

    // Redis stops: both keep answering lookups, and report Redis as degraded.
    let (code, _) = make(&a, "keep.txt", false).await;
    let info = format!("/api/clip/{code}/info");
    redis.stop();
    for _ in 0..50 {
        assert_eq!(status(&a, &info).await, 200);
        assert_eq!(status(&b, &info).await, 200);
    }
    for p in [&a, &b] {
        let degraded = poll_until(500, Duration::from_millis(10), || async move { health(p).await == "degraded" });
        assert!(degraded.await, "health reports Redis as degraded");
    }
    assert_eq!(status(&b, &info).await, 200);
}
