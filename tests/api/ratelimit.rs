//! Rate limits over HTTP: per-group quotas with 429, Retry-After and RateLimit-* headers; the
//! steps of an allowed upload and the health probes never throttled; X-Forwarded-For believed
//! only from a trusted proxy; the quick-share miss throttle with its decaying block.

use std::time::Duration;

use ferry::config::{CommaList, Switch};
use serde_json::json;

use crate::helpers::TestApp;
use crate::upload::{error_with, file_initiate, initiate, json_with, send_chunk, small_chunks, upload_id_of};

fn limits_on(c: &mut ferry::Config) {
    small_chunks(c);
    c.rate_limits = Switch::On;
}

async fn initiate_status(app: &TestApp) -> reqwest::Response {
    app.client.post(app.url("/api/upload/initiate")).json(&file_initiate("r.bin", 10, json!({}))).send().await.unwrap()
}

async fn info_as(app: &TestApp, id: &str, forwarded_for: &str) -> reqwest::StatusCode {
    app.client
        .get(app.url(&format!("/api/clip/{id}/info")))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

all_backends! {
    async fn past_the_initiate_quota_the_answer_is_429_with_retry_after_and_ratelimit_headers(app, |c: &mut ferry::Config| {
        limits_on(c);
        c.rate.initiate_per_minute = 3;
    }) {
        let mut uploads = Vec::new();
        for expected_remaining in ["2", "1", "0"] {
            let res = initiate_status(&app).await;
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["ratelimit-limit"], "3");
            assert_eq!(res.headers()["ratelimit-remaining"], expected_remaining);
            uploads.push(upload_id_of(&res.json().await.unwrap()));
        }
        let res = initiate_status(&app).await;
        assert_eq!(res.status(), 429);
        let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(res.headers()["ratelimit-remaining"], "0");
        assert!(res.headers().get("ratelimit-reset").is_some());
        error_with(res, 429, "rate_limited").await;
        // One-request uploads count against the same quota.
        let res = app.client.put(app.url("/api/clips/x.txt")).body("x").send().await.unwrap();
        assert_eq!(res.status(), 429);

        // Chunks, status and complete of the uploads that were allowed go through.
        for upload in &uploads {
            assert_eq!(send_chunk(&app, upload, 0, &[5u8; 10]).await.status(), 200);
            json_with(app.get(&format!("/api/upload/{upload}/status")).await, 200).await;
            let res = app.client.post(app.url(&format!("/api/upload/complete/{upload}"))).json(&json!({})).send().await.unwrap();
            json_with(res, 200).await;
        }
    }

    async fn health_probes_are_never_rate_limited(app, |c: &mut ferry::Config| {
        limits_on(c);
        c.rate.reads_per_minute = 1;
        c.rate.initiate_per_minute = 1;
    }) {
        for _ in 0..40 {
            for path in ["/health", "/api/health", "/ping", "/livez", "/readyz"] {
                assert_eq!(app.get(path).await.status(), 200, "{path}");
            }
        }
    }

    async fn forwarded_for_splits_clients_only_behind_a_trusted_proxy(app, |c: &mut ferry::Config| {
        limits_on(c);
        c.rate.reads_per_minute = 2;
        c.trusted_proxies = CommaList(vec!["127.0.0.1/32".into()]);
    }) {
        let id = "ZZZZZZZZZZ";
        assert_eq!(info_as(&app, id, "1.1.1.1").await, 404);
        assert_eq!(info_as(&app, id, "1.1.1.1").await, 404);
        assert_eq!(info_as(&app, id, "1.1.1.1").await, 429, "client 1.1.1.1 used its quota");
        assert_eq!(info_as(&app, id, "2.2.2.2").await, 404, "another client behind the proxy is separate");
        // A client cannot pick its key by prepending entries: the nearest untrusted hop counts.
        assert_eq!(info_as(&app, id, "9.9.9.9, 1.1.1.1").await, 429);
    }

    async fn forwarded_for_from_an_untrusted_peer_is_ignored(app, |c: &mut ferry::Config| {
        limits_on(c);
        c.rate.reads_per_minute = 2;
    }) {
        let id = "ZZZZZZZZZZ";
        assert_eq!(info_as(&app, id, "1.1.1.1").await, 404);
        assert_eq!(info_as(&app, id, "2.2.2.2").await, 404);
        assert_eq!(info_as(&app, id, "3.3.3.3").await, 429, "all requests are the peer's");
    }

    async fn repeated_quick_share_misses_block_the_client_until_the_window_passes(app, |c: &mut ferry::Config| {
        limits_on(c);
        c.rate.quick_share_misses = 5;
        c.rate.quick_share_block = Duration::from_secs(300);
    }) {
        // Long codes miss without counting.
        for _ in 0..10 {
            assert_eq!(app.get("/api/clip/ZZZZZZZZZZ/info").await.status(), 404);
        }
        for i in 0..5 {
            assert_eq!(app.get(&format!("/api/clip/ZZZZZ{i}/info")).await.status(), 404);
        }
        let res = app.get("/api/clip/ZZZZZ9/info").await;
        assert_eq!(res.status(), 429);
        assert!(res.headers().get("retry-after").is_some());
        error_with(res, 429, "rate_limited").await;
        assert_eq!(app.get("/raw/ZZZZZ9").await.status(), 429, "downloads of short codes too");
        assert_eq!(app.get("/api/clip/ZZZZZZZZZZ/info").await.status(), 404, "long codes still answer");
        app.clock.advance(Duration::from_secs(301));
        assert_eq!(app.get("/api/clip/ZZZZZ9/info").await.status(), 404, "the block decays");
    }

    async fn with_limits_off_nothing_is_throttled(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.rate_limits = Switch::Off;
        c.rate.initiate_per_minute = 1;
    }) {
        for _ in 0..5 {
            let init = initiate(&app, file_initiate("r.bin", 10, json!({}))).await;
            assert!(init["uploadId"].is_string());
        }
    }
}
