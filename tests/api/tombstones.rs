//! Links that no longer open say why: a clip deleted by its sender, consumed by its one-time or
//! last permitted download, or expired answers 404 (as Qopy's clients expect) with the code
//! `clip_deleted`, `clip_consumed` or `clip_expired` on every read route, for
//! `sweep.tombstone_retention`, then `clip_not_found` like an id never seen. The tombstone
//! holds the code, the reason and the time, nothing else; the sweep removes it after the
//! retention; a new clip with the same code is live, never shadowed; a tombstone hit still
//! counts as a quick-share miss. On every backend combination, and across two instances
//! sharing PostgreSQL and Redis.

use std::time::Duration;

use ferry::config::{Secret, Switch};
use ferry::domain::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, poll_until, redis_becomes, redis_url, spawn_app_with, spawn_sibling};
use crate::upload::{
    CHUNK, download, file_initiate, initiate, json_with, send_chunk, small_chunks, upload_id_of, upload_with,
};

/// A file clip (extra initiate fields in `extra`): its id and delete token.
async fn clip(app: &TestApp, extra: Value) -> (String, String) {
    let (id, done) =
        upload_with(app, b"tombstone bytes", file_initiate("t.txt", 15, extra), json!({}), CHUNK, false).await;
    (id, done["deleteToken"].as_str().unwrap().to_string())
}

/// A quick-share text clip (6-character code): its code and delete token.
async fn quick_clip(app: &TestApp) -> (String, String) {
    let body = json!({ "filename": "q.txt", "filesize": 5, "contentType": "text", "quickShare": true });
    let upload = upload_id_of(&initiate(app, body).await);
    json_with(send_chunk(app, &upload, 0, b"quick").await, 200).await;
    let res =
        app.client.post(app.url(&format!("/api/upload/complete/{upload}"))).json(&json!({})).send().await.unwrap();
    let done = json_with(res, 200).await;
    let code = done["clipId"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 6, "{done}");
    (code, done["deleteToken"].as_str().unwrap().to_string())
}

async fn delete_clip(app: &TestApp, id: &str, token: &str) {
    let res =
        app.client.delete(app.url(&format!("/api/clip/{id}"))).header("x-delete-token", token).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

/// Every read route that answers for a clip id: (label, response).
async fn every_read(app: &TestApp, id: &str) -> Vec<(&'static str, reqwest::Response)> {
    let c = &app.client;
    vec![
        ("GET info", c.get(app.url(&format!("/api/clip/{id}/info"))).send().await.unwrap()),
        ("GET clip", c.get(app.url(&format!("/api/clip/{id}"))).send().await.unwrap()),
        ("POST clip", c.post(app.url(&format!("/api/clip/{id}"))).json(&json!({})).send().await.unwrap()),
        ("GET file info", c.get(app.url(&format!("/api/file/{id}/info"))).send().await.unwrap()),
        ("POST file", c.post(app.url(&format!("/api/file/{id}"))).json(&json!({})).send().await.unwrap()),
        ("GET raw", c.get(app.url(&format!("/raw/{id}"))).send().await.unwrap()),
    ]
}

/// The 404 body of `res`, which must carry `code` and Qopy's title.
async fn not_found_with(label: &str, res: reqwest::Response, code: &str) -> Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 404, "{label}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {text}"));
    assert_eq!(body["code"], code, "{label}: {body}");
    assert_eq!(body["error"], "Clip not found", "{label}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| m.ends_with('.')), "{label}: {body}");
    body
}

/// Every read route answers 404 with `code`; the messages of each code are one sentence.
async fn all_routes_say(app: &TestApp, id: &str, code: &str) -> String {
    let mut messages = Vec::new();
    for (label, res) in every_read(app, id).await {
        messages.push(not_found_with(label, res, code).await["message"].as_str().unwrap().to_string());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one message per code: {messages:?}");
    messages.pop().unwrap()
}

async fn info_code(app: &TestApp, id: &str) -> Value {
    let res = app.get(&format!("/api/clip/{id}/info")).await;
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    if status == 200 { json!("live") } else { body["code"].clone() }
}

/// What the store keeps of tombstones: (code, reason, time) rows.
async fn tombstone_rows(app: &TestApp) -> Vec<(String, String, i64)> {
    const SQL: &str = "SELECT code, reason, gone_at FROM clip_tombstones ORDER BY code";
    match app.backend {
        Backend::Postgres => {
            let client = crate::helpers::pg_connect(&app.db.as_ref().unwrap().url).await;
            client.query(SQL, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
        }
        Backend::Embedded => {
            let conn = rusqlite::Connection::open(app.data_dir.path().join("ferry.db")).unwrap();
            let mut stmt = conn.prepare(SQL).unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
        }
    }
}

/// The columns of the tombstone table, sorted.
async fn tombstone_columns(app: &TestApp) -> Vec<String> {
    let mut columns: Vec<String> = match app.backend {
        Backend::Postgres => {
            let client = crate::helpers::pg_connect(&app.db.as_ref().unwrap().url).await;
            let sql = "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'clip_tombstones'";
            client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
        }
        Backend::Embedded => {
            let conn = rusqlite::Connection::open(app.data_dir.path().join("ferry.db")).unwrap();
            let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('clip_tombstones')").unwrap();
            stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
        }
    };
    columns.sort();
    columns
}

async fn sweep(app: &TestApp) -> ferry::jobs::sweeper::SweepReport {
    let now = app.clock.now_ms();
    ferry::jobs::sweeper::sweep_once(app.state.deps(), &app.state.sweep_settings(), now).await.unwrap()
}

fn week_retention(c: &mut ferry::Config) {
    small_chunks(c);
    c.sweep.tombstone_retention = Duration::from_secs(7 * 24 * 3600);
}

all_backends! {
    async fn a_deleted_clip_answers_404_clip_deleted_on_every_read_route(app, week_retention) {
        let (id, token) = clip(&app, json!({})).await;
        assert_eq!(info_code(&app, &id).await, "live");
        delete_clip(&app, &id, &token).await;
        let message = all_routes_say(&app, &id, "clip_deleted").await;
        assert!(message.contains("deleted"), "{message}");
        // Again from the cache (where there is one): the reason went with the negative answer.
        all_routes_say(&app, &id, "clip_deleted").await;
        let res = app.client.delete(app.url(&format!("/api/clip/{id}"))).header("x-delete-token", &token).send().await.unwrap();
        not_found_with("DELETE again", res, "clip_deleted").await;
    }

    async fn a_one_time_clip_once_downloaded_answers_clip_consumed(app, week_retention) {
        let (id, _) = clip(&app, json!({ "oneTime": true })).await;
        assert_eq!(download(&app, &id).await.status(), 200);
        let message = all_routes_say(&app, &id, "clip_consumed").await;
        assert!(message.contains("opened"), "{message}");
    }

    async fn a_clip_whose_last_permitted_download_was_taken_answers_clip_consumed(app, week_retention) {
        let (id, _) = clip(&app, json!({ "maxDownloads": 2 })).await;
        assert_eq!(download(&app, &id).await.status(), 200);
        assert_eq!(info_code(&app, &id).await, "live", "one download left");
        assert_eq!(download(&app, &id).await.status(), 200);
        all_routes_say(&app, &id, "clip_consumed").await;
    }

    async fn an_expired_clip_answers_clip_expired_before_and_after_the_sweep_removes_it(app, week_retention) {
        let (id, _) = clip(&app, json!({ "expiration": "5min" })).await;
        let expires: i64 = json_with(app.get(&format!("/api/clip/{id}/info")).await, 200).await["expiresAt"].as_i64().unwrap();
        app.clock.set(expires);
        let message = all_routes_say(&app, &id, "clip_expired").await;
        assert!(message.contains("expired"), "{message}");
        assert!(tombstone_rows(&app).await.is_empty(), "not swept yet: the row itself says expired");
        let report = sweep(&app).await;
        assert_eq!(report.expired_clips, 1, "{report:?}");
        assert_eq!(tombstone_rows(&app).await, vec![(id.clone(), "expired".to_string(), expires)]);
        all_routes_say(&app, &id, "clip_expired").await;
    }

    async fn an_id_never_seen_answers_clip_not_found(app, week_retention) {
        for id in ["ZZZZZZZZZZ", "ZZZZZ9"] {
            let message = all_routes_say(&app, id, "clip_not_found").await;
            assert!(message.starts_with("No such clip"), "{message}");
        }
    }

    async fn a_tombstone_holds_only_the_code_the_reason_and_the_time(app, week_retention) {
        assert_eq!(tombstone_columns(&app).await, ["code", "gone_at", "reason"]);
        let (id, token) = clip(&app, json!({ "oneTime": true })).await;
        let before = app.clock.now_ms();
        delete_clip(&app, &id, &token).await;
        assert_eq!(tombstone_rows(&app).await, vec![(id.clone(), "deleted".to_string(), before)]);
    }

    async fn a_tombstone_is_forgotten_after_the_retention_and_the_sweep_removes_it(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.sweep.tombstone_retention = Duration::from_secs(3600);
        c.sweep.batch_size = 2;
    }) {
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (id, token) = clip(&app, json!({})).await;
            delete_clip(&app, &id, &token).await;
            assert_eq!(info_code(&app, &id).await, "clip_deleted");
            ids.push(id);
        }
        app.clock.advance(Duration::from_secs(3599));
        assert_eq!(sweep(&app).await.tombstones, 0, "within the retention");
        assert_eq!(info_code(&app, &ids[0]).await, "clip_deleted");
        app.clock.advance(Duration::from_secs(1));
        for id in &ids {
            // Past the retention it is forgotten at once, the sweep or not.
            assert_eq!(info_code(&app, id).await, "clip_not_found");
        }
        assert_eq!(tombstone_rows(&app).await.len(), 3);
        let report = sweep(&app).await;
        assert_eq!(report.tombstones, 3, "in batches of two: {report:?}");
        assert!(tombstone_rows(&app).await.is_empty());
        for id in &ids {
            all_routes_say(&app, id, "clip_not_found").await;
        }
    }

    async fn a_retention_of_zero_keeps_no_tombstones(app, |c: &mut ferry::Config| {
        small_chunks(c);
        c.sweep.tombstone_retention = Duration::ZERO;
    }) {
        let (deleted, token) = clip(&app, json!({})).await;
        delete_clip(&app, &deleted, &token).await;
        let (once, _) = clip(&app, json!({ "oneTime": true })).await;
        assert_eq!(download(&app, &once).await.status(), 200);
        let (expired, _) = clip(&app, json!({ "expiration": "5min" })).await;
        app.clock.advance(Duration::from_secs(301));
        for id in [&deleted, &once, &expired] {
            all_routes_say(&app, id, "clip_not_found").await;
        }
        assert_eq!(sweep(&app).await.expired_clips, 1);
        assert!(tombstone_rows(&app).await.is_empty());
    }

    async fn a_reused_quick_share_code_is_live_not_tombstoned(app, week_retention) {
        let (code, token) = quick_clip(&app).await;
        delete_clip(&app, &code, &token).await;
        assert_eq!(info_code(&app, &code).await, "clip_deleted");
        // A later clip draws the same code (what the random generator may do for a 6-character
        // code): it goes in as every clip does, and its tombstone goes with it.
        let now = app.clock.now_ms();
        let new = ferry::store::NewClip {
            code: code.clone(),
            kind: "text".into(),
            blob_key: "clips/AB/reused".into(),
            filename: Some("q.txt".into()),
            mime_type: None,
            size: 5,
            sha256: "0".repeat(64),
            created_at: now,
            expires_at: now + 300_000,
            one_time: false,
            max_downloads: None,
            access_code_hash: None,
            quick_share: true,
            delete_token_hash: "0".repeat(64),
            upload_id: None,
            client: None,
            parts: None,
        };
        let inserted = app.state.store().insert_clip(&new, now, None).await.unwrap().expect("the code is free again");
        app.state.deps().cache.invalidate(&code).await;
        assert_eq!(inserted.code, code);
        assert_eq!(info_code(&app, &code).await, "live");
        assert!(tombstone_rows(&app).await.is_empty(), "the new clip removed the tombstone");
        // And a tombstone that somehow names a live clip never hides it.
        let (live, _) = clip(&app, json!({})).await;
        let (gone, token) = clip(&app, json!({})).await;
        delete_clip(&app, &gone, &token).await;
        rename_tombstone(&app, &gone, &live).await;
        app.state.deps().cache.invalidate(&live).await;
        assert_eq!(info_code(&app, &live).await, "live");
        assert_eq!(download(&app, &live).await.status(), 200);
    }

    async fn a_tombstone_hit_counts_as_a_quick_share_miss(app, |c: &mut ferry::Config| {
        week_retention(c);
        c.rate_limits = Switch::On;
        c.rate.quick_share_misses = 3;
        c.rate.quick_share_block = Duration::from_secs(300);
    }) {
        let (code, token) = quick_clip(&app).await;
        delete_clip(&app, &code, &token).await;
        for _ in 0..3 {
            assert_eq!(info_code(&app, &code).await, "clip_deleted");
        }
        assert_eq!(app.get(&format!("/api/clip/{code}/info")).await.status(), 429, "three misses block");
    }
}

/// Point the tombstone of `from` at `to` behind the server's back.
async fn rename_tombstone(app: &TestApp, from: &str, to: &str) {
    const SQL: &str = "UPDATE clip_tombstones SET code = $2 WHERE code = $1";
    match app.backend {
        Backend::Postgres => {
            let client = crate::helpers::pg_connect(&app.db.as_ref().unwrap().url).await;
            assert_eq!(client.execute(SQL, &[&from, &to]).await.unwrap(), 1);
        }
        Backend::Embedded => {
            let conn = rusqlite::Connection::open(app.data_dir.path().join("ferry.db")).unwrap();
            assert_eq!(conn.execute(&SQL.replace('$', "?"), [from, to]).unwrap(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_on_one_instance_the_other_answers_clip_consumed() {
    let Some(redis) = redis_url() else { return };
    let Some(a) = spawn_app_with(Backend::Postgres, |c: &mut ferry::Config| {
        week_retention(c);
        c.redis_url = Some(Secret::new(redis.clone()));
        c.lookup_cache.ttl = Duration::from_secs(3600);
        c.lookup_cache.negative_ttl = Duration::from_secs(3600);
    })
    .await
    else {
        return;
    };
    let b = spawn_sibling(&a).await;
    for app in [&a, &b] {
        assert!(redis_becomes(app, "connected").await, "redis listener connected");
    }
    for _ in 0..3 {
        let (once, _) = clip(&a, json!({ "oneTime": true })).await;
        assert_eq!(info_code(&a, &once).await, "live");
        assert_eq!(info_code(&b, &once).await, "live", "b now holds it in memory");
        assert_eq!(download(&a, &once).await.status(), 200);
        let told =
            poll_until(200, Duration::from_millis(10), || async { info_code(&b, &once).await == "clip_consumed" });
        assert!(told.await, "b answers clip_consumed once the invalidation arrives");
        all_routes_say(&b, &once, "clip_consumed").await;
        // Deleted on b, after a cached it: a says so too.
        let (doomed, token) = clip(&b, json!({})).await;
        assert_eq!(info_code(&a, &doomed).await, "live");
        delete_clip(&b, &doomed, &token).await;
        let told =
            poll_until(200, Duration::from_millis(10), || async { info_code(&a, &doomed).await == "clip_deleted" });
        assert!(told.await, "a answers clip_deleted once the invalidation arrives");
    }
}
