//! Health probes, the JSON error shape of router and layer errors, request ids, HTTP/2 (h2c)
//! and graceful shutdown of the in-process server, on every backend combination.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::Backend;

all_backends! {
    async fn health_answers_ok_after_really_checking_store_and_storage(app) {
        // Timestamps come from the injected clock.
        app.clock.set(1_900_000_000_123);
        let res = app.get("/health").await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "OK");
        assert_eq!(body["database"], "connected");
        assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
        let kind = if app.backend == Backend::Postgres { "postgres" } else { "embedded" };
        assert_eq!(body["store"], kind);
        assert_eq!(body["checks"]["database"]["status"], "ok");
        assert_eq!(body["checks"]["storage"]["status"], "ok");
        assert!(body["uptime"].as_f64().unwrap() >= 0.0);
        assert_eq!(body["timestamp"].as_i64(), Some(1_900_000_000_123));
        assert!(body.get("failing").is_none());
    }

    async fn the_light_probes_answer_without_dependency_checks(app) {
        let api: Value = app.get("/api/health").await.json().await.unwrap();
        assert_eq!(api["status"], "OK");
        assert!(api["timestamp"].is_i64() && api["uptime"].is_f64());
        assert!(api.get("database").is_none());
        let ping: Value = app.get("/ping").await.json().await.unwrap();
        assert_eq!(ping["pong"], true);
        let live = app.get("/livez").await;
        assert_eq!(live.status(), 200);
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["status"], "ready");
    }

    async fn unknown_routes_and_wrong_methods_get_the_json_error_shape(app) {
        let res = app.get("/no/such/route").await;
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()["content-type"], "application/json");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "not_found");
        assert!(body["error"].is_string() && body["message"].is_string());

        let res = app.client.delete(app.url("/health")).send().await.unwrap();
        assert_eq!(res.status(), 405);
        assert!(res.headers().get("allow").is_some());
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "method_not_allowed");
    }

    async fn a_body_over_the_configured_limit_is_refused_with_413_json(
        app,
        |c: &mut ferry::Config| c.server.json_body_limit = ferry::config::ByteSize(4096)
    ) {
        let mut big = b"{\"filename\":\"".to_vec();
        big.extend(vec![b'x'; 8192]);
        big.extend(b"\"}");
        let res = app
            .client
            .post(app.url("/api/upload/initiate"))
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "payload_too_large");
    }

    async fn every_response_carries_a_request_id_and_a_given_plain_one_is_kept(app) {
        let res = app.get("/ping").await;
        let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let other = app.get("/ping").await.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(id, other);
        let res = app.client.get(app.url("/ping")).header("x-request-id", "trace-me-42").send().await.unwrap();
        assert_eq!(res.headers()["x-request-id"], "trace-me-42");
        // One that is too long or not a plain token is replaced: it would flood or garble logs.
        for given in ["x".repeat(65), "has space".to_string(), "quote\"d".to_string()] {
            let res = app.client.get(app.url("/ping")).header("x-request-id", &given).send().await.unwrap();
            let id = res.headers()["x-request-id"].to_str().unwrap();
            assert!(id != given && id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()), "{given:?} -> {id}");
        }
        let res = app.get("/missing").await;
        assert!(res.headers().get("x-request-id").is_some());
    }

    async fn http2_without_tls_is_served_to_prior_knowledge_clients(app) {
        let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
        let res = h2.get(app.url("/health")).send().await.unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        let res = app.client.get(app.url("/health")).send().await.unwrap();
        assert_eq!(res.version(), reqwest::Version::HTTP_11);
    }

    async fn shutdown_stops_accepting_and_returns_promptly_with_idle_keepalive_connections(app) {
        // A pooled keep-alive connection stays open after this request.
        assert_eq!(app.get("/ping").await.status(), 200);
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(4), app.shutdown())
            .await
            .expect("shutdown finishes well within the 5 s grace period")
            .expect("run returns Ok");
        assert!(started.elapsed() < Duration::from_secs(4));
        let fresh = reqwest::Client::new();
        assert!(fresh.get(app.url("/ping")).send().await.is_err(), "no longer accepting");
    }

    fs_only {
        // The blob directory itself removed under the server.
        async fn health_names_storage_when_the_blob_directory_is_gone(app) {
            std::fs::remove_dir_all(app.data_dir.path().join("blobs")).unwrap();
            let res = app.get("/health").await;
            assert_eq!(res.status(), 503);
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["status"], "ERROR");
            assert_eq!(body["failing"], serde_json::json!(["storage"]));
            assert_eq!(body["database"], "connected");
            assert_eq!(body["checks"]["storage"]["status"], "error");
            assert_eq!(app.get("/readyz").await.status(), 503);
            // Liveness is about the process, not its dependencies.
            assert_eq!(app.get("/livez").await.status(), 200);
            assert_eq!(app.get("/api/health").await.status(), 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_database_when_postgres_goes_away() {
    let Some(app) = crate::helpers::spawn_app(Backend::Postgres).await else {
        return;
    };
    assert_eq!(app.get("/health").await.status(), 200);
    app.db.as_ref().unwrap().drop_now().await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ERROR");
    assert_eq!(body["database"], "disconnected");
    assert_eq!(body["failing"], serde_json::json!(["database"]));
    assert_eq!(body["checks"]["storage"]["status"], "ok");
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/livez").await.status(), 200);
}
