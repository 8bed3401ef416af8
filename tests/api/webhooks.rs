//! Webhook notifications against a real HTTP receiver on loopback: every clip event (created,
//! downloaded, consumed, expired, deleted) arrives signed (`Ferry-Signature: sha256=<hex
//! HMAC-SHA256 of the body>`) and says nothing of content, names, codes or addresses; a
//! receiver that fails twice gets the third try; one that is down is tried again and gets the
//! delivery once it is up; a slow one times out without slowing any request; one that refuses
//! (4xx) fails the delivery for good.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Notify;

use ferry::domain::clock::Clock;

use crate::helpers::TestApp;

/// What the receiver does with the next request.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Answer with this status after this long.
    Slow(Duration, u16),
    /// Never answer (until the client goes away).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: String,
    pub delivery: String,
    pub signature: Option<String>,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a delivery's body is JSON")
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    got: Mutex<Vec<Delivery>>,
    arrived: Notify,
}

/// A webhook receiver on 127.0.0.1: answers as scripted (then 200), records every request.
pub struct Receiver {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    shared.got.lock().unwrap().push(Delivery {
        event: header("ferry-event").unwrap_or_default(),
        delivery: header("ferry-delivery").unwrap_or_default(),
        signature: header("ferry-signature"),
        content_type: header("content-type").unwrap_or_default(),
        body: body.to_vec(),
    });
    shared.arrived.notify_waiters();
    let reply = shared.script.lock().unwrap().pop_front().unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Slow(wait, code) => {
            tokio::time::sleep(wait).await;
            StatusCode::from_u16(code).unwrap()
        }
        Reply::Hang => std::future::pending().await,
    }
}

impl Receiver {
    pub async fn start(script: Vec<Reply>) -> Receiver {
        Receiver::start_on(0, script).await
    }

    /// A receiver on loopback port `port` (0: any free one).
    pub async fn start_on(port: u16, script: Vec<Reply>) -> Receiver {
        let shared = Arc::new(Shared { script: Mutex::new(script.into()), ..Shared::default() });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, shared, task }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.got.lock().unwrap().clone()
    }

    /// Wait until at least `n` requests arrived (bounded); all of them.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{n} deliveries expected within {limit:?}, got {}: {got:?}", got.len());
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), arrived).await;
        }
    }
}

pub fn hmac_hex(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

const SECRET: &str = "a-webhook-secret-of-some-length";

fn hooked(url: &str) -> impl FnOnce(&mut ferry::Config) + use<> {
    let url = url.to_string();
    move |c: &mut ferry::Config| {
        c.webhook.url = Some(url);
        c.webhook.secret = Some(ferry::config::Secret::new(SECRET));
    }
}

/// A one-request upload answered in JSON: (clip id, delete token).
async fn put(app: &TestApp, name: &str, body: &[u8], headers: &[(&str, &str)]) -> (String, String) {
    let mut req = app.client.put(app.url(&format!("/api/clips/{name}"))).header("accept", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.body(body.to_vec()).send().await.unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let v: Value = res.json().await.unwrap();
    (v["clipId"].as_str().unwrap().to_string(), v["deleteToken"].as_str().unwrap().to_string())
}

/// The state of the job that delivered event `delivery` (its Ferry-Delivery is the job id).
async fn job(app: &TestApp, delivery: &str) -> ferry::store::JobRecord {
    app.state.store().job(delivery.parse().unwrap()).await.unwrap().expect("the delivery's job exists")
}

async fn job_becomes(app: &TestApp, id: &str, state: &str) -> ferry::store::JobRecord {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let j = job(app, id).await;
        if j.state == state {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} never became {state}: {j:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

all_backends! {
    async fn every_clip_event_reaches_the_receiver_signed_and_without_secrets(app) {
        let receiver = Receiver::start(vec![]).await;
        let app = rebuild(app, &receiver).await;
        events_arrive(&app, &receiver).await;
    }
}

/// The body of the events test, on whatever backends `app` runs.
async fn events_arrive(app: &TestApp, receiver: &Receiver) {
    let code = "correct horse battery staple";
    let (plain, _) = put(app, "secret-name.txt", b"the content itself", &[]).await;
    let (protected, token) = put(app, "other-secret.txt", b"more content", &[("access-code", code)]).await;
    let (limited, _) = put(app, "limited.txt", b"limited content", &[("max-downloads", "1")]).await;
    let (expiring, _) = put(app, "short.txt", b"short-lived", &[("expire", "5min")]).await;
    receiver.wait_for(4, Duration::from_secs(15)).await;

    // Downloads: a plain one (nothing claimed), then the only download of the limited clip.
    let res = app.client.get(app.url(&format!("/raw/{plain}"))).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = app.client.post(app.url(&format!("/api/file/{limited}"))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.bytes().await.unwrap();
    // Deleted with its token.
    let res = app
        .client
        .delete(app.url(&format!("/api/clip/{protected}")))
        .header("x-delete-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // Expired, and swept.
    app.clock.advance(Duration::from_secs(6 * 60));
    let deps = app.state.deps();
    ferry::jobs::sweeper::sweep_once(deps, &app.state.sweep_settings(), deps.now()).await.unwrap();

    let got = receiver.wait_for(9, Duration::from_secs(15)).await;
    let mut seen: Vec<(String, String)> =
        got.iter().map(|d| (d.event.clone(), d.json()["clipId"].as_str().unwrap().to_string())).collect();
    seen.sort();
    let mut want = vec![
        ("clip.created".to_string(), plain.clone()),
        ("clip.created".into(), protected.clone()),
        ("clip.created".into(), limited.clone()),
        ("clip.created".into(), expiring.clone()),
        ("clip.downloaded".into(), plain.clone()),
        ("clip.downloaded".into(), limited.clone()),
        ("clip.consumed".into(), limited.clone()),
        ("clip.deleted".into(), protected.clone()),
        ("clip.expired".into(), expiring.clone()),
    ];
    want.sort();
    // The sweep also expires the plain clip (24 h) only much later: exactly these nine.
    assert_eq!(seen, want);
    for d in &got {
        assert_eq!(d.signature.as_deref(), Some(hmac_hex(SECRET, &d.body).as_str()), "signed: {d:?}");
        assert_eq!(d.content_type, "application/json");
        let body = d.json();
        assert_eq!(body["event"], d.event.as_str());
        for field in ["kind", "size", "createdAt", "expiresAt", "occurredAt"] {
            assert!(!body[field].is_null(), "{field} in {body}");
        }
        let text = String::from_utf8_lossy(&d.body);
        for secret in ["secret-name", "other-secret", "content", code, "127.0.0.1", SECRET] {
            assert!(!text.contains(secret), "{secret:?} leaked into {text}");
        }
        assert!(d.delivery.parse::<i64>().is_ok(), "a delivery id: {d:?}");
    }
    let consumed = got.iter().find(|d| d.event == "clip.consumed").unwrap().json();
    assert_eq!(consumed["downloadCount"], 1);
    assert_eq!(
        got.iter().find(|d| d.event == "clip.created" && d.json()["clipId"] == plain).unwrap().json()["size"],
        18
    );
}

/// Retries and failures, on each store.
mod deliveries {
    use super::*;

    both_stores! {
        async fn a_receiver_that_fails_twice_gets_the_third_try_with_the_same_signed_body(app, |c: &mut ferry::Config| {
            c.jobs.poll_interval = Duration::from_millis(100);
        }) {
            let receiver = Receiver::start(vec![Reply::Status(500), Reply::Status(503)]).await;
            let app = rebuild(app, &receiver).await;
            put(&app, "a.txt", b"x", &[]).await;
            let first = receiver.wait_for(1, Duration::from_secs(10)).await[0].clone();
            let j = job_becomes(&app, &first.delivery, "queued").await;
            assert_eq!(j.attempts, 1);
            assert!(j.last_error.as_deref().unwrap().contains("500"), "{j:?}");
            // Backoff: 2 s (+ up to 25 %) after the first failure, 4 s after the second.
            let t = j.run_at - app.clock.now_ms();
            assert!((2_000..=2_500).contains(&t), "first retry in {t} ms");
            app.clock.advance(Duration::from_millis(2_600));
            receiver.wait_for(2, Duration::from_secs(10)).await;
            let j = job_becomes(&app, &first.delivery, "queued").await;
            let t = j.run_at - app.clock.now_ms();
            assert!((4_000..=5_000).contains(&t), "second retry in {t} ms");
            assert!(j.last_error.as_deref().unwrap().contains("503"), "{j:?}");
            app.clock.advance(Duration::from_millis(5_100));
            let got = receiver.wait_for(3, Duration::from_secs(10)).await;
            let j = job_becomes(&app, &first.delivery, "done").await;
            assert_eq!(j.attempts, 3);
            assert_eq!(got.len(), 3);
            for d in &got {
                assert_eq!(d.delivery, first.delivery, "one delivery id for every try");
                assert_eq!(d.body, first.body, "the same body every try");
                assert_eq!(d.signature.as_deref(), Some(hmac_hex(SECRET, &d.body).as_str()));
            }
        }

        async fn a_slow_receiver_times_out_and_never_slows_a_request(app, |c: &mut ferry::Config| {
            c.webhook.timeout = Duration::from_millis(300);
        }) {
            let receiver = Receiver::start(vec![Reply::Slow(Duration::from_secs(3), 200); 4]).await;
            let app = rebuild(app, &receiver).await;
            let started = Instant::now();
            for i in 0..4 {
                put(&app, &format!("{i}.txt"), b"x", &[]).await;
            }
            assert!(started.elapsed() < Duration::from_secs(2), "uploads waited for the receiver: {:?}", started.elapsed());
            let first = receiver.wait_for(1, Duration::from_secs(10)).await[0].clone();
            let j = job_becomes(&app, &first.delivery, "queued").await;
            assert!(j.last_error.as_deref().unwrap().contains("did not answer in time"), "{j:?}");
        }

        async fn a_receiver_that_is_down_is_retried_and_gets_the_delivery_once_it_is_up(app, |c: &mut ferry::Config| {
            c.jobs.poll_interval = Duration::from_millis(100);
        }) {
            // A loopback port nothing listens on, until the receiver starts there.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let app = rebuild_to(app, &format!("http://127.0.0.1:{port}/hook")).await;
            let started = Instant::now();
            put(&app, "a.txt", b"x", &[]).await;
            assert!(started.elapsed() < Duration::from_secs(2), "the upload waited for the receiver");
            let deadline = Instant::now() + Duration::from_secs(10);
            let failed = loop {
                let retrying = app.state.store().retrying_jobs(10).await.unwrap();
                if let Some(j) = retrying.into_iter().find(|j| j.kind == "webhook") {
                    break j;
                }
                assert!(Instant::now() < deadline, "the delivery never failed and queued again");
                tokio::time::sleep(Duration::from_millis(25)).await;
            };
            assert_eq!(failed.attempts, 1);
            assert!(failed.last_error.as_deref().unwrap().contains("could not be reached"), "{failed:?}");
            assert!(!failed.last_error.as_deref().unwrap().contains(&port.to_string()), "no URL in the error: {failed:?}");
            let receiver = Receiver::start_on(port, vec![]).await;
            app.clock.advance(Duration::from_millis(2_600));
            let got = receiver.wait_for(1, Duration::from_secs(10)).await;
            assert_eq!(got[0].delivery, failed.id.to_string(), "the same delivery, tried again");
            assert_eq!(got[0].signature.as_deref(), Some(hmac_hex(SECRET, &got[0].body).as_str()));
            let j = job_becomes(&app, &got[0].delivery, "done").await;
            assert_eq!(j.attempts, 2);
        }

        async fn a_receiver_that_refuses_fails_the_delivery_for_good(app) {
            let receiver = Receiver::start(vec![Reply::Status(410)]).await;
            let app = rebuild(app, &receiver).await;
            put(&app, "a.txt", b"x", &[]).await;
            let first = receiver.wait_for(1, Duration::from_secs(10)).await[0].clone();
            let j = job_becomes(&app, &first.delivery, "failed").await;
            assert_eq!(j.attempts, 1);
            assert!(j.last_error.as_deref().unwrap().contains("410"), "{j:?}");
        }
    }
}

/// A new app on the same backends as `app` (which is stopped: the receiver's URL is known only
/// once it listens), with webhooks to `receiver` and `app`'s job settings.
async fn rebuild(app: TestApp, receiver: &Receiver) -> TestApp {
    rebuild_to(app, &receiver.url).await
}

/// `rebuild` with webhooks to `url`, whatever listens there.
async fn rebuild_to(app: TestApp, url: &str) -> TestApp {
    let (backend, blob, config, url) = (app.backend, app.blob, app.config.clone(), url.to_string());
    let redis = config.redis_url.is_some();
    drop(app);
    crate::helpers::spawn_app_full(backend, redis, blob, move |c: &mut ferry::Config| {
        c.jobs = config.jobs;
        c.webhook = config.webhook;
        hooked(&url)(c);
    })
    .await
    .unwrap()
}
