//! The admin API over HTTP: disabled without a token, Qopy's login and bearer checks (odd
//! input is a 401, never a 5xx), statistics from the background refresh, the newest clips and
//! the system view.

use ferry::config::Secret;
use serde_json::json;

use crate::helpers::TestApp;
use crate::upload::{CHUNK, error_with, file_initiate, json_with, small_chunks, upload_with};

const TOKEN: &str = "admin-token-for-tests-0123456789";

fn with_admin(c: &mut ferry::Config) {
    small_chunks(c);
    c.admin_token = Some(Secret::new(TOKEN));
}

async fn admin_get(app: &TestApp, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

all_backends! {
    async fn without_a_token_the_admin_api_is_not_there(app) {
        for path in ["/api/admin/stats", "/api/admin/clips", "/api/admin/system"] {
            error_with(admin_get(&app, path, Some("Bearer anything-at-all")).await, 404, "admin_disabled").await;
        }
        let res = app.client.post(app.url("/api/admin/auth")).json(&json!({ "password": "x" })).send().await.unwrap();
        error_with(res, 404, "admin_disabled").await;
    }

    async fn login_accepts_only_the_token_and_odd_input_is_never_a_5xx(app, with_admin) {
        let ok = app.client.post(app.url("/api/admin/auth")).json(&json!({ "password": TOKEN })).send().await.unwrap();
        assert_eq!(json_with(ok, 200).await, json!({ "success": true, "message": "Authentication successful" }));
        for wrong in [json!({ "password": "nope" }), json!({ "password": format!("{TOKEN}x") })] {
            let res = app.client.post(app.url("/api/admin/auth")).json(&wrong).send().await.unwrap();
            error_with(res, 401, "admin_login_failed").await;
        }
        for bad in [json!({}), json!({ "password": 5 }), json!({ "password": "" }), json!({ "password": "x".repeat(300) })] {
            let res = app.client.post(app.url("/api/admin/auth")).json(&bad).send().await.unwrap();
            error_with(res, 400, "validation").await;
        }
        for auth in ["", "Bearer", "Bearer ", "bearer admin-token-for-tests-0123456789", "Basic eDp5", "Bearer \u{00e9}\u{00e9}"] {
            let res = admin_get(&app, "/api/admin/stats", Some(auth)).await;
            error_with(res, 401, "admin_unauthorized").await;
        }
        let raw = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
        let res = app.client.get(app.url("/api/admin/system")).header("authorization", raw).send().await.unwrap();
        error_with(res, 401, "admin_unauthorized").await;
        error_with(admin_get(&app, "/api/admin/clips", None).await, 401, "admin_unauthorized").await;
    }

    async fn stats_clips_and_system_describe_the_server(app, with_admin) {
        let bearer = format!("Bearer {TOKEN}");
        let (plain, _) = upload_with(&app, b"a", file_initiate("a", 1, json!({})), json!({}), CHUNK, false).await;
        let (once, _) = upload_with(&app, b"b", file_initiate("b", 1, json!({ "oneTime": true })), json!({}), CHUNK, false).await;
        let (_, _) = upload_with(&app, b"c", file_initiate("c", 1, json!({ "hasPassword": true })), json!({ "accessCodeHash": "k" }), CHUNK, false).await;
        assert_eq!(crate::upload::download(&app, &plain).await.status(), 200);
        assert_eq!(crate::upload::download(&app, &once).await.status(), 200);
        ferry::http::admin::refresh_stats_once(&app.state).await.unwrap();
        let stats = json_with(admin_get(&app, "/api/admin/stats", Some(&bearer)).await, 200).await;
        assert_eq!(stats["totalClips"], 3, "{stats}");
        assert_eq!(stats["activeClips"], 2, "the one-time clip is consumed: {stats}");
        assert_eq!(stats["totalAccesses"], 1, "only claimed downloads are counted: {stats}");
        assert_eq!(stats["passwordClips"], 1);
        assert_eq!(stats["passwordPercentage"], 33);
        assert_eq!(stats["oneTimeClips"], 1);
        assert_eq!(stats["quickShareClips"], 0);
        assert_eq!(stats["normalClips"], 1);
        assert!(stats["lastUpdated"].is_i64());

        let clips = json_with(admin_get(&app, "/api/admin/clips", Some(&bearer)).await, 200).await;
        let list = clips.as_array().expect("a bare array");
        assert_eq!(list.len(), 3);
        assert_eq!(list[2]["clip_id"], plain, "newest first");
        let once_row = list.iter().find(|c| c["clip_id"] == once).unwrap();
        assert_eq!(once_row["is_expired"], true);
        assert_eq!(once_row["one_time"], true);
        assert_eq!(once_row["access_count"], 1);
        for key in ["created_at", "expiration_time", "has_password"] {
            assert!(list[0].get(key).is_some(), "{key}");
        }

        let system = json_with(admin_get(&app, "/api/admin/system", Some(&bearer)).await, 200).await;
        assert_eq!(system["status"], "OK");
        assert_eq!(system["database"], "Connected");
        assert!(system["currentTime"].is_i64());
    }

    async fn admin_logins_are_rate_limited(app, |c: &mut ferry::Config| {
        with_admin(c);
        c.rate_limits = ferry::config::Switch::On;
        c.rate.admin_auth_per_minute = 2;
    }) {
        for _ in 0..2 {
            let res = app.client.post(app.url("/api/admin/auth")).json(&json!({ "password": "guess" })).send().await.unwrap();
            assert_eq!(res.status(), 401);
        }
        let res = app.client.post(app.url("/api/admin/auth")).json(&json!({ "password": TOKEN })).send().await.unwrap();
        error_with(res, 429, "rate_limited").await;
    }
}
