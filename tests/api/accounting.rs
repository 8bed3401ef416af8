//! Storage accounting, the queue's admin view and its metrics, on both stores: bytes and clips
//! in use are counted by the background job and served from memory (admin stats, /metrics);
//! uploads that would pass `limits.max_total_storage` get 507 with a clear JSON error and
//! leave nothing; `GET /api/admin/jobs` shows counts, the oldest due job and failures, and a
//! failed job can be retried (409 for one that is not failed or that would duplicate another).

use std::time::Duration;

use ferry::domain::clock::Clock;
use ferry::jobs::queue::{Handlers, JobError, Queue, QueueSettings};
use ferry::store::NewJob;
use serde_json::{Value, json};

use crate::helpers::TestApp;

const TOKEN: &str = "an-admin-token-for-the-tests";

fn admin(c: &mut ferry::Config) {
    c.admin_token = Some(ferry::config::Secret::new(TOKEN));
    c.jobs.concurrency = 0;
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.get(app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let res = app.client.post(app.url(path)).bearer_auth(TOKEN).json(&json!({})).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn put(app: &TestApp, name: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/clips/{name}")))
        .header("accept", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp) {
    let deps = app.state.deps();
    ferry::jobs::accounting::refresh_usage_once(deps, deps.now()).await.unwrap();
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

both_stores! {
    async fn storage_in_use_is_counted_in_the_background_and_served_from_memory(app, admin) {
        assert_eq!(put(&app, "a.bin", vec![1; 1000]).await.status(), 200);
        assert_eq!(put(&app, "b.bin", vec![2; 234]).await.status(), 200);
        // An upload in progress holds its chunks' bytes too.
        let upload = app.initiate(json!({ "filename": "c.txt", "filesize": 100, "totalChunks": 2, "contentType": "text" })).await;
        assert_eq!(app.send_chunk(&upload, 0, vec![3u8; 60]).await.status(), 200);
        refresh(&app).await;
        let (status, stats) = get(&app, "/api/admin/stats").await;
        assert_eq!(status, 200);
        let storage = &stats["storage"];
        assert_eq!(storage["byKind"]["file"], json!({ "bytes": 1234, "items": 2 }), "{storage}");
        assert_eq!(storage["byKind"]["upload"], json!({ "bytes": 60, "items": 1 }), "{storage}");
        assert_eq!(storage["bytes"], 1294);
        assert_eq!(storage["store"], app.state.blobs().kind());
        let text = app.get("/metrics").await.text().await.unwrap();
        let store = app.state.blobs().kind();
        assert_eq!(metric(&text, &format!("ferry_storage_bytes{{kind=\"file\",store=\"{store}\"}}")), Some(1234.0), "{text}");
        assert_eq!(metric(&text, "ferry_clips{kind=\"file\"}"), Some(2.0));
        // The figures are saved for every instance: a sibling loads them without counting.
        let sibling = crate::helpers::spawn_sibling(&app).await;
        ferry::jobs::accounting::observe_once(sibling.state.deps(), &ferry::jobs::KINDS).await.unwrap();
        assert_eq!(sibling.state.deps().usage.total_bytes(), 1294);
    }

    async fn uploads_that_would_pass_the_storage_limit_are_refused_with_507(app, |c: &mut ferry::Config| {
        admin(c);
        c.limits.max_total_storage = Some(ferry::config::ByteSize(100_000));
    }) {
        refresh(&app).await;
        let first = put(&app, "a.bin", vec![1; 60_000]).await;
        assert_eq!(first.status(), 200);
        let first: Value = first.json().await.unwrap();
        let clips = app.clip_blob_count().await;
        // Known length: refused before the body is read.
        let res = put(&app, "b.bin", vec![2; 60_000]).await;
        assert_eq!(res.status(), 507);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "storage_limit_reached");
        assert_eq!(body["limit"], 100_000);
        assert!(body["message"].as_str().unwrap().contains("100000"), "{body}");
        // Declared at initiate.
        let res = app
            .client
            .post(app.url("/api/upload/initiate"))
            .json(&json!({ "filename": "c.bin", "filesize": 60_000, "contentType": "file" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 507);
        // Streamed without a length: refused as it passes the limit.
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..6).map(|_| Ok(vec![3u8; 10_000])).collect();
        let res = app
            .client
            .put(app.url("/api/clips/d.bin"))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 507);
        assert_eq!(app.clip_blob_count().await, clips, "nothing refused was kept");
        assert_eq!(app.partial_blob_count().await, 0);
        // Room again once the first clip is gone and counted.
        let res = app
            .client
            .delete(app.url(&format!("/api/clip/{}", first["clipId"].as_str().unwrap())))
            .header("x-delete-token", first["deleteToken"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204);
        refresh(&app).await;
        assert_eq!(put(&app, "b.bin", vec![2; 60_000]).await.status(), 200);
    }

    async fn the_admin_view_lists_the_queue_and_retries_a_failed_job(app, admin) {
        let store = app.state.store();
        let t = app.clock.now_ms();
        let job = |kind: &str, dedupe: Option<&str>| NewJob {
            kind: kind.into(),
            payload: "{}".into(),
            max_attempts: 2,
            run_at: t,
            dedupe_key: dedupe.map(Into::into),
        };
        store.enqueue(&[job("test.fails", None), job("test.fails", Some("k")), job("noop", None)], t).await.unwrap();
        let fails = Handlers::default().add("test.fails", None, |_job| {
            Box::pin(async { Err(JobError::Permanent("the thing is broken".into())) })
        });
        let q = Queue::new(app.state.deps().clone(), fails, QueueSettings::from_config(&app.config));
        let failed: Vec<i64> = q.work_once(t).await.into_iter().map(|(j, _)| j.id).collect();
        assert_eq!(failed.len(), 2);
        app.clock.advance(Duration::from_secs(5));

        let (status, v) = get(&app, "/api/admin/jobs").await;
        assert_eq!(status, 200, "{v}");
        let line = |kind: &str| v["counts"].as_array().unwrap().iter().find(|c| c["kind"] == kind).cloned().unwrap();
        assert_eq!(line("test.fails")["failed"], 2);
        assert_eq!(line("noop")["queued"], 1);
        assert!(v["oldestRunnableAgeMs"].as_i64().unwrap() >= 5_000, "{v}");
        let failures = v["recentFailures"].as_array().unwrap();
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0]["lastError"], "the thing is broken");
        assert!(v.to_string().find("payload").is_none(), "payloads stay out of the view");

        let (status, v) = post(&app, &format!("/api/admin/jobs/{}/retry", failed[0])).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!((v["job"]["state"].as_str(), v["job"]["attempts"].as_i64()), (Some("queued"), Some(0)));
        let (status, v) = post(&app, &format!("/api/admin/jobs/{}/retry", failed[0])).await;
        assert_eq!((status, v["code"].as_str()), (409, Some("job_not_failed")));
        // A queued job with the failed one's dedupe key: retrying would make two.
        store.enqueue(&[job("test.fails", Some("k"))], t).await.unwrap();
        let (status, v) = post(&app, &format!("/api/admin/jobs/{}/retry", failed[1])).await;
        assert_eq!((status, v["code"].as_str()), (409, Some("job_duplicate")), "{v}");
        assert_eq!(post(&app, "/api/admin/jobs/99999999/retry").await.0, 404);
        assert_eq!(post(&app, "/api/admin/jobs/abc/retry").await.0, 400);
        assert_eq!(get(&app, &format!("/api/admin/jobs/{}", failed[1])).await.1["job"]["state"], "failed");
        let res = app.client.get(app.url("/api/admin/jobs")).send().await.unwrap();
        assert_eq!(res.status(), 401);
    }

    async fn metrics_show_queue_depth_job_runs_and_durations(app, |c: &mut ferry::Config| {
        admin(c);
        c.jobs.concurrency = 2;
        c.sweep.interval = Duration::from_millis(100);
    }) {
        let deps = app.state.deps();
        deps.enqueue_quietly(vec![deps.followups.job("noop", "{}".into(), deps.now(), None)]).await;
        let ran = crate::helpers::poll_until(100, Duration::from_millis(50), || async {
            let text = app.get("/metrics").await.text().await.unwrap();
            text.contains("ferry_job_runs_total{kind=\"noop\",outcome=\"done\"}")
                && text.contains("ferry_job_runs_total{kind=\"sweep\",outcome=\"done\"}")
                && text.contains("ferry_job_runs_total{kind=\"admin_stats\",outcome=\"done\"}")
        })
        .await;
        assert!(ran, "runs of queued jobs, the sweep and the stats refresh are counted");
        ferry::jobs::accounting::observe_once(deps, &ferry::jobs::KINDS).await.unwrap();
        let text = app.get("/metrics").await.text().await.unwrap();
        for series in [
            "ferry_jobs{kind=\"noop\",state=\"done\"}",
            "ferry_jobs{kind=\"webhook\",state=\"failed\"}",
            "ferry_job_duration_seconds_count{kind=\"noop\",outcome=\"done\"}",
            "ferry_job_duration_seconds_count{kind=\"sweep\",outcome=\"done\"}",
            "ferry_job_claim_seconds_count",
            "ferry_jobs_oldest_runnable_seconds",
        ] {
            assert!(text.lines().any(|l| l.starts_with(series)), "{series} missing from /metrics");
        }
    }
}
