//! Rate limits over HTTP: per-group quotas with 429, Retry-After and RateLimit-* headers; the
//! steps of an allowed upload and the health probes never throttled; X-Forwarded-For believed
//! only from a trusted proxy; the quick-share miss throttle with its decaying block; with
//! `rate.backend = "redis"`, quotas and quick-share misses shared by two instances, and the
//! fall back to per-instance counts (reported by /health and /metrics) while Redis is away.

use std::time::Duration;

use ferry::config::{CommaList, RateBackend, Secret, Switch};
use serde_json::json;

use crate::helpers::{Backend, PrivateRedis, TestApp, poll_until, spawn_app_on, spawn_sibling};
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

    async fn quick_share_lookups_in_flight_at_once_cannot_pass_the_miss_limit_and_hits_do_not_count(app, |c: &mut ferry::Config| {
        limits_on(c);
        c.rate.quick_share_misses = 5;
    }) {
        // Finding clips is not guessing: hits never count.
        let code = quick_clip(&app).await;
        for _ in 0..10 {
            assert_eq!(app.get(&format!("/api/clip/{code}/info")).await.status(), 200);
        }
        let misses = concurrent_misses(&[&app]).await;
        assert!((1..=5).contains(&misses), "{misses} misses got through a limit of 5");
        assert_eq!(app.get("/api/clip/ZZZ999/info").await.status(), 429, "blocked once the misses are in");
    }
}

// ---------------------------------------------------------------------------------------------
// Limits shared by every instance (rate.backend = "redis"), each test with a Redis of its own so
// no other test's counts mix in.

/// Two instances on one PostgreSQL and one (private) Redis, with `reads_per_minute` reads.
async fn two_instances(backend: RateBackend, redis: &PrivateRedis, reads: u32) -> Option<(TestApp, TestApp)> {
    let url = redis.url();
    let a = spawn_app_on(Backend::Postgres, false, |c: &mut ferry::Config| {
        limits_on(c);
        c.redis_url = Some(Secret::new(url));
        c.rate.backend = backend;
        c.rate.reads_per_minute = reads;
        c.rate.quick_share_misses = 4;
    })
    .await?;
    let b = spawn_sibling(&a).await;
    for app in [&a, &b] {
        let want = if backend == RateBackend::Redis { "redis" } else { "memory" };
        let ready = poll_until(200, Duration::from_millis(25), || async {
            app.get("/health").await.json::<serde_json::Value>().await.unwrap()["rateLimits"] == want
        })
        .await;
        assert!(ready, "rate limits counted in {want}");
    }
    Some((a, b))
}

/// Alternate `n` reads of an unknown (long) code between the two; how many were allowed.
async fn alternate_reads(a: &TestApp, b: &TestApp, n: usize) -> usize {
    let mut allowed = 0;
    for i in 0..n {
        let app = if i % 2 == 0 { a } else { b };
        match app.get("/api/clip/ZZZZZZZZZZ/info").await.status().as_u16() {
            404 => allowed += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    allowed
}

#[tokio::test]
async fn with_redis_the_limit_holds_across_instances_and_without_it_each_instance_counts_alone() {
    let Some(redis) = PrivateRedis::start() else { return };
    let Some((a, b)) = two_instances(RateBackend::Redis, &redis, 20).await else { return };
    assert_eq!(alternate_reads(&a, &b, 40).await, 20, "one client, two instances, one quota of 20");
    let res = a.get("/api/clip/ZZZZZZZZZZ/info").await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit-limit"], "20");
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // The same two instances counting in memory let the client through twice over.
    let Some((c, d)) = two_instances(RateBackend::Memory, &redis, 20).await else { return };
    assert_eq!(alternate_reads(&c, &d, 40).await, 40, "per-instance limits multiply with instances");
}

#[tokio::test]
async fn with_redis_quick_share_misses_add_up_across_instances() {
    let Some(redis) = PrivateRedis::start() else { return };
    let Some((a, b)) = two_instances(RateBackend::Redis, &redis, 1000).await else { return };
    for i in 0..4 {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(app.get(&format!("/api/clip/ZZZZZ{i}/info")).await.status(), 404);
    }
    for app in [&a, &b] {
        let res = app.get("/api/clip/ZZZZZ9/info").await;
        assert_eq!(res.status(), 429, "blocked on every instance after four misses in all");
        error_with(res, 429, "rate_limited").await;
    }
    assert_eq!(a.get("/api/clip/ZZZZZZZZZZ/info").await.status(), 404, "long codes still answer");
}

#[tokio::test]
async fn when_redis_goes_away_limits_count_per_instance_and_say_so_until_it_is_back() {
    let Some(mut redis) = PrivateRedis::start() else { return };
    let Some((a, b)) = two_instances(RateBackend::Redis, &redis, 5).await else { return };
    redis.stop();
    // Each instance now counts alone: five each, and nothing fails.
    assert_eq!(alternate_reads(&a, &b, 16).await, 10, "per-instance limits while Redis is down");
    for app in [&a, &b] {
        let health = app.get("/health").await;
        assert_eq!(health.status(), 200, "Redis is never a required dependency");
        assert_eq!(health.json::<serde_json::Value>().await.unwrap()["rateLimits"], "memory (redis unavailable)");
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let shared = poll_until(100, Duration::from_millis(50), || async {
            app.get("/metrics").await.text().await.unwrap().contains("ferry_rate_limit_shared 0")
        })
        .await;
        assert!(shared, "the metric says the limits are not shared: {}", metrics.len());
    }
    redis.restart();
    let back = poll_until(200, Duration::from_millis(50), || async {
        a.get("/api/clip/ZZZZZZZZZZ/info").await;
        a.get("/health").await.json::<serde_json::Value>().await.unwrap()["rateLimits"] == "redis"
    })
    .await;
    assert!(back, "shared again once Redis is back");
}

/// A quick-share clip (6-character code) of a few bytes; its code.
async fn quick_clip(app: &TestApp) -> String {
    let init = initiate(app, file_initiate("q.bin", 5, json!({ "quickShare": true }))).await;
    let upload = upload_id_of(&init);
    assert_eq!(send_chunk(app, &upload, 0, b"quick").await.status(), 200);
    let res =
        app.client.post(app.url(&format!("/api/upload/complete/{upload}"))).json(&json!({})).send().await.unwrap();
    json_with(res, 200).await["clipId"].as_str().unwrap().to_string()
}

/// 40 lookups of unknown quick-share codes at once, alternating between `apps`; how many were
/// answered 404 (the rest must be 429).
async fn concurrent_misses(apps: &[&TestApp]) -> usize {
    let lookups = (0..40).map(|i| {
        let app = apps[i % apps.len()];
        async move { app.get(&format!("/api/clip/ZZZ{i:03}/info")).await.status().as_u16() }
    });
    let statuses = futures_util::future::join_all(lookups).await;
    assert!(statuses.iter().all(|s| *s == 404 || *s == 429), "{statuses:?}");
    statuses.iter().filter(|s| **s == 404).count()
}

#[tokio::test]
async fn with_redis_lookups_in_flight_at_once_on_two_instances_cannot_pass_the_miss_limit() {
    let Some(redis) = PrivateRedis::start() else { return };
    let Some((a, b)) = two_instances(RateBackend::Redis, &redis, 1000).await else { return };
    // two_instances allows 4 misses.
    let misses = concurrent_misses(&[&a, &b]).await;
    assert!((1..=4).contains(&misses), "{misses} misses got through a limit of 4 shared by two instances");
    for app in [&a, &b] {
        assert_eq!(app.get("/api/clip/ZZZ999/info").await.status(), 429);
    }
}
