//! The durable job queue on both stores: enqueueing commits (or not) with the write that needs
//! it, dedupe keys, retries with backoff until the tries run out (keeping the last error),
//! permanent failures and caught panics, claims that no two instances share, fencing of a
//! worker whose lease ran out, recovery, retention, wake-ups across instances (PostgreSQL's
//! LISTEN/NOTIFY), shutdown that lets running jobs finish and releases the rest; and the same
//! against the real binary killed with SIGKILL, stopped with SIGSTOP, and stopped with SIGTERM.
//! Tests with kinds of their own run them on a `Queue` of their own over the app's store; the
//! app's own workers never claim a kind they do not know.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::domain::clock::Clock;
use ferry::jobs::queue::{Handlers, JobError, Outcome, Queue, QueueSettings};
use ferry::store::{JobRecord, NewJob};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, TestDb, binary, pg_server_url, poll_until, signal, spawn_binary, wait_exit};
use crate::webhooks::{Receiver, Reply};

fn new_job(kind: &str, payload: &str, now: i64, dedupe: Option<&str>) -> NewJob {
    NewJob {
        kind: kind.into(),
        payload: payload.into(),
        max_attempts: 3,
        run_at: now,
        dedupe_key: dedupe.map(Into::into),
    }
}

fn now(app: &TestApp) -> i64 {
    app.clock.now_ms()
}

/// How many jobs of `kind` are in `state`.
async fn count(app: &TestApp, kind: &str, state: &str) -> i64 {
    let counts = app.state.store().job_counts().await.unwrap();
    counts.iter().filter(|c| c.kind == kind && c.state == state).map(|c| c.count).sum()
}

/// A queue of the test's own over the app's store, with these handlers.
fn queue(app: &TestApp, handlers: Handlers, tune: impl FnOnce(&mut QueueSettings)) -> Queue {
    let mut settings = QueueSettings::from_config(&app.config);
    tune(&mut settings);
    Queue::new(app.state.deps().clone(), handlers, settings)
}

fn fails_with(error: JobError) -> Handlers {
    Handlers::default().add("test.fails", None, move |_job| {
        let error = error.clone();
        Box::pin(async move { Err(error) })
    })
}

both_stores! {
    async fn jobs_enqueued_in_a_transaction_exist_only_once_it_commits(app) {
        let store = app.state.store();
        let t = now(&app);
        let mut tx = store.begin().await.unwrap();
        assert_eq!(tx.enqueue(&[new_job("test.tx", "{}", t, None)], t).await.unwrap(), 1);
        drop(tx); // rolled back
        assert_eq!(count(&app, "test.tx", "queued").await, 0);
        let mut tx = store.begin().await.unwrap();
        tx.enqueue(&[new_job("test.tx", "{}", t, None), new_job("test.tx", "{}", t, None)], t).await.unwrap();
        assert_eq!(count(&app, "test.tx", "queued").await, 0, "invisible before the commit");
        tx.commit().await.unwrap();
        assert_eq!(count(&app, "test.tx", "queued").await, 2);
        // The connection a rolled-back transaction used is fit for the next one.
        for _ in 0..8 {
            let mut tx = store.begin().await.unwrap();
            tx.enqueue(&[new_job("test.tx", "{}", t, None)], t).await.unwrap();
        }
        assert_eq!(store.enqueue(&[new_job("test.tx", "{}", t, None)], t).await.unwrap(), 1);
        assert_eq!(count(&app, "test.tx", "queued").await, 3);
    }

    async fn a_dedupe_key_allows_one_queued_or_running_job(app) {
        let store = app.state.store();
        let t = now(&app);
        let job = new_job("test.dedupe", "{}", t, Some("the-thing"));
        assert_eq!(store.enqueue(std::slice::from_ref(&job), t).await.unwrap(), 1);
        assert_eq!(store.enqueue(std::slice::from_ref(&job), t).await.unwrap(), 0, "a second queued one is refused");
        let claimed = store.claim_jobs(t, t + 30_000, "w", 10, &["test.dedupe"]).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(store.enqueue(std::slice::from_ref(&job), t).await.unwrap(), 0, "nor while one runs");
        assert!(store.finish_job(claimed[0].claim(), t).await.unwrap());
        assert_eq!(store.enqueue(std::slice::from_ref(&job), t).await.unwrap(), 1, "once done, the next may come");
        let other = new_job("test.dedupe", "{}", t, Some("another-thing"));
        assert_eq!(store.enqueue(&[other], t).await.unwrap(), 1);
    }

    async fn a_failing_job_is_retried_with_backoff_and_fails_for_good_with_its_last_error(app) {
        let store = app.state.store();
        let t = now(&app);
        store.enqueue(&[new_job("test.fails", "{}", t, None)], t).await.unwrap();
        let q = queue(&app, fails_with(JobError::Retry("the far side said no".into())), |_| {});
        let ran = q.work_once(t).await;
        assert_eq!(ran.len(), 1);
        assert_eq!(ran[0].1, Outcome::Retrying);
        let id = ran[0].0.id;
        let j = store.job(id).await.unwrap().unwrap();
        assert_eq!((j.state.as_str(), j.attempts), ("queued", 1));
        assert_eq!(j.last_error.as_deref(), Some("the far side said no"));
        assert!((t + 2_000..=t + 2_500).contains(&j.run_at), "first backoff 2 s + jitter: {}", j.run_at - t);
        assert!(q.work_once(t + 1_900).await.is_empty(), "not due before its backoff");
        let ran = q.work_once(j.run_at).await;
        assert_eq!(ran[0].1, Outcome::Retrying);
        let j = store.job(id).await.unwrap().unwrap();
        let wait = j.run_at - j.updated_at;
        assert!((4_000..=5_000).contains(&wait), "second backoff 4 s + jitter: {wait}");
        let ran = q.work_once(j.run_at).await;
        assert_eq!(ran[0].1, Outcome::Failed, "three tries by default");
        let j = store.job(id).await.unwrap().unwrap();
        assert_eq!((j.state.as_str(), j.attempts), ("failed", 3));
        assert_eq!(j.last_error.as_deref(), Some("the far side said no"));
        assert!(j.finished_at.is_some());
        assert!(q.work_once(j.run_at + 3_600_000).await.is_empty(), "a failed job is never claimed again");
    }

    async fn a_permanent_failure_or_a_panic_fails_the_job_at_once(app) {
        let store = app.state.store();
        let t = now(&app);
        store.enqueue(&[new_job("test.fails", "{}", t, None)], t).await.unwrap();
        let ran = queue(&app, fails_with(JobError::Permanent("not an image".into())), |_| {}).work_once(t).await;
        assert_eq!(ran[0].1, Outcome::Failed);
        let j = store.job(ran[0].0.id).await.unwrap().unwrap();
        assert_eq!((j.state.as_str(), j.attempts, j.last_error.as_deref()), ("failed", 1, Some("not an image")));

        store.enqueue(&[new_job("test.panics", "{}", t, None)], t).await.unwrap();
        let panics = Handlers::default().add("test.panics", None, |_job| Box::pin(async { panic!("decoder exploded") }));
        let ran = queue(&app, panics, |_| {}).work_once(t).await;
        assert_eq!(ran[0].1, Outcome::Failed);
        let j = store.job(ran[0].0.id).await.unwrap().unwrap();
        assert_eq!(j.state, "failed");
        assert!(j.last_error.as_deref().unwrap().contains("decoder exploded"), "{j:?}");
        // The server is unharmed.
        assert_eq!(app.get("/health").await.status(), 200);
    }

    async fn two_instances_never_run_the_same_job(app) {
        let sibling = crate::helpers::spawn_sibling(&app).await;
        let t = now(&app);
        let jobs: Vec<NewJob> = (0..300).map(|i| new_job("test.count", &format!("{{\"n\":{i}}}"), t, None)).collect();
        app.state.store().enqueue(&jobs, t).await.unwrap();
        let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
        let counting = || {
            let runs = runs.clone();
            Handlers::default().add("test.count", None, move |job: JobRecord| {
                let runs = runs.clone();
                Box::pin(async move {
                    *runs.lock().unwrap().entry(job.id).or_default() += 1;
                    tokio::task::yield_now().await;
                    Ok(())
                })
            })
        };
        let stop = CancellationToken::new();
        let tune = |s: &mut QueueSettings| s.concurrency = 4;
        let a = tokio::spawn(queue(&app, counting(), tune).run(stop.clone()));
        let b = tokio::spawn(queue(&sibling, counting(), tune).run(stop.clone()));
        let drained = poll_until(600, Duration::from_millis(50), || async { count(&app, "test.count", "done").await == 300 }).await;
        stop.cancel();
        a.await.unwrap();
        b.await.unwrap();
        assert!(drained, "300 jobs drained by two instances");
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 300);
        assert!(runs.values().all(|n| *n == 1), "a job ran twice: {:?}", runs.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
    }

    async fn a_kinds_limit_holds_however_many_of_it_are_due_at_once(app) {
        let store = app.state.store();
        let t = now(&app);
        let mut jobs: Vec<NewJob> = (0..6).map(|_| new_job("test.limited", "{}", t, None)).collect();
        jobs.extend((0..4).map(|_| new_job("test.free", "{}", t, None)));
        store.enqueue(&jobs, t).await.unwrap();
        let (now_running, most) = (Arc::new(Mutex::new(0u32)), Arc::new(Mutex::new(0u32)));
        let limited = {
            let (now_running, most) = (now_running.clone(), most.clone());
            move |_job: JobRecord| {
                let (now_running, most) = (now_running.clone(), most.clone());
                Box::pin(async move {
                    {
                        let mut r = now_running.lock().unwrap();
                        *r += 1;
                        let mut m = most.lock().unwrap();
                        *m = (*m).max(*r);
                    }
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    *now_running.lock().unwrap() -= 1;
                    Ok(())
                }) as ferry::jobs::queue::JobFuture
            }
        };
        let handlers = Handlers::default()
            .add("test.limited", Some(1), limited)
            .add("test.free", None, |_job| Box::pin(async { Ok(()) }));
        let stop = CancellationToken::new();
        let running = tokio::spawn(queue(&app, handlers, |s| s.concurrency = 4).run(stop.clone()));
        let drained = poll_until(400, Duration::from_millis(25), || async {
            count(&app, "test.limited", "done").await == 6 && count(&app, "test.free", "done").await == 4
        })
        .await;
        stop.cancel();
        running.await.unwrap();
        assert!(drained, "every job ran");
        assert_eq!(*most.lock().unwrap(), 1, "never two of a kind limited to one");
        for id in 1..=20 {
            if let Some(j) = store.job(id).await.unwrap().filter(|j| j.kind.starts_with("test.")) {
                assert_eq!(j.attempts, 1, "a job given back over its kind's limit did not spend a try: {j:?}");
            }
        }
    }

    async fn a_worker_whose_lease_ran_out_can_no_longer_change_its_job(app) {
        let store = app.state.store();
        let t = now(&app);
        store.enqueue(&[new_job("test.fence", "{}", t, None)], t).await.unwrap();
        let old = store.claim_jobs(t, t + 2_000, "old", 1, &["test.fence"]).await.unwrap().remove(0);
        assert_eq!((old.attempts, old.fence), (1, 1));
        assert!(store.heartbeat_job(old.claim(), t + 2_000, t).await.unwrap(), "the holder renews its lease");
        // The old worker stalls past its lease; recovery hands the job to another.
        store.rescue_jobs(t + 2_001).await.unwrap();
        let j = store.job(old.id).await.unwrap().unwrap();
        assert_eq!(j.state, "queued");
        assert!(j.last_error.as_deref().unwrap().contains("no heartbeat"), "{j:?}");
        let new = store.claim_jobs(t + 2_001, t + 32_001, "new", 1, &["test.fence"]).await.unwrap().remove(0);
        assert_eq!((new.id, new.attempts, new.fence), (old.id, 2, 2));
        // Everything the old worker says now is refused.
        assert!(!store.heartbeat_job(old.claim(), t + 60_000, t + 2_002).await.unwrap());
        assert!(!store.finish_job(old.claim(), t + 2_002).await.unwrap());
        assert_eq!(store.fail_job(old.claim(), "late", Some(t), t + 2_002).await.unwrap(), None);
        assert!(!store.release_job(old.claim(), t + 2_002).await.unwrap());
        let j = store.job(old.id).await.unwrap().unwrap();
        assert_eq!((j.state.as_str(), j.worker.as_deref(), j.fence), ("running", Some("new"), 2));
        assert!(store.finish_job(new.claim(), t + 2_003).await.unwrap());
        assert_eq!(store.job(old.id).await.unwrap().unwrap().state, "done");
    }

    async fn a_job_whose_worker_died_on_its_last_try_fails_saying_so(app) {
        let store = app.state.store();
        let t = now(&app);
        let mut job = new_job("test.dies", "{}", t, None);
        job.max_attempts = 1;
        store.enqueue(&[job], t).await.unwrap();
        let claimed = store.claim_jobs(t, t + 1_000, "w", 1, &["test.dies"]).await.unwrap().remove(0);
        store.rescue_jobs(t + 1_001).await.unwrap();
        let j = store.job(claimed.id).await.unwrap().unwrap();
        assert_eq!(j.state, "failed");
        assert!(j.last_error.as_deref().unwrap().contains("last attempt"), "{j:?}");
    }

    async fn finished_jobs_are_kept_for_their_retention_then_removed(app) {
        let store = app.state.store();
        let t = now(&app);
        store.enqueue(&[new_job("test.ok", "{}", t, None), new_job("test.fails", "{}", t, None)], t).await.unwrap();
        let ok = Handlers::default().add("test.ok", None, |_job| Box::pin(async { Ok(()) }));
        queue(&app, ok, |_| {}).work_once(t).await;
        queue(&app, fails_with(JobError::Permanent("no".into())), |_| {}).work_once(t).await;
        let q = queue(&app, Handlers::default(), |_| {});
        let hour = 3_600_000;
        let kept = || async { (count(&app, "test.ok", "done").await, count(&app, "test.fails", "failed").await) };
        assert_eq!(kept().await, (1, 1));
        q.maintain_once(t + 24 * hour - 1).await.unwrap();
        assert_eq!(kept().await, (1, 1));
        q.maintain_once(t + 24 * hour).await.unwrap();
        assert_eq!(kept().await, (0, 1), "done jobs go after 24 h");
        q.maintain_once(t + 7 * 24 * hour - 1).await.unwrap();
        assert_eq!(kept().await, (0, 1));
        q.maintain_once(t + 7 * 24 * hour).await.unwrap();
        assert_eq!(kept().await, (0, 0), "failed ones after 7 days");
    }

    async fn shutdown_lets_running_jobs_finish_within_the_grace_and_releases_the_rest(app) {
        let store = app.state.store();
        let t = now(&app);
        store.enqueue(&[new_job("test.slow", "{}", t, None), new_job("test.stuck", "{}", t, None)], t).await.unwrap();
        let started = Arc::new(tokio::sync::Semaphore::new(0));
        let handlers = Handlers::default()
            .add("test.slow", None, {
                let started = started.clone();
                move |_job| {
                    let started = started.clone();
                    Box::pin(async move {
                        started.add_permits(1);
                        tokio::time::sleep(Duration::from_millis(400)).await;
                        Ok(())
                    })
                }
            })
            .add("test.stuck", None, {
                let started = started.clone();
                move |_job| {
                    let started = started.clone();
                    Box::pin(async move {
                        started.add_permits(1);
                        std::future::pending::<()>().await;
                        Ok(())
                    })
                }
            });
        let stop = CancellationToken::new();
        let q = queue(&app, handlers, |s| {
            s.concurrency = 2;
            s.grace = Duration::from_millis(1_500);
        });
        let running = tokio::spawn(q.run(stop.clone()));
        let _both = started.acquire_many(2).await.unwrap();
        store.enqueue(&[new_job("test.slow", "{}", t, None)], t).await.unwrap();
        let asked = Instant::now();
        stop.cancel();
        running.await.unwrap();
        let took = asked.elapsed();
        assert!(took >= Duration::from_millis(1_400) && took < Duration::from_secs(5), "stopped after {took:?}");
        assert_eq!(count(&app, "test.slow", "done").await, 1, "the running job finished");
        assert_eq!(count(&app, "test.slow", "queued").await, 1, "nothing new was claimed after shutdown began");
        let stuck = store.claim_jobs(t, t + 1, "next", 5, &["test.stuck"]).await.unwrap();
        assert_eq!(stuck.len(), 1, "the job that outran the grace is back in the queue");
        assert_eq!(stuck[0].attempts, 1, "its interrupted try did not count");
    }

    async fn the_apps_own_workers_run_a_new_job_at_once_not_at_their_next_poll(app, |c: &mut ferry::Config| {
        c.jobs.poll_interval = Duration::from_secs(600);
    }) {
        // Let the workers settle into waiting first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let deps = app.state.deps();
        let job = deps.followups.job(ferry::domain::followups::NOOP, "{}".into(), now(&app), None);
        let asked = Instant::now();
        deps.enqueue_quietly(vec![job]).await;
        assert!(poll_until(200, Duration::from_millis(10), || async { count(&app, "noop", "done").await == 1 }).await);
        assert!(asked.elapsed() < Duration::from_secs(2), "ran after {:?}", asked.elapsed());
    }
}

/// LISTEN/NOTIFY: a job another process enqueues wakes this one's workers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_workers_wake_when_another_instance_enqueues() {
    let Some(app) =
        crate::helpers::spawn_app_full(crate::helpers::Backend::Postgres, false, crate::helpers::Blob::Fs, |c| {
            c.jobs.poll_interval = Duration::from_secs(600);
        })
        .await
    else {
        return;
    };
    tokio::time::sleep(Duration::from_millis(300)).await; // the listener connects
    let url = app.config.database_url.as_ref().unwrap().expose().to_string();
    let other = crate::helpers::pg_connect(&url).await;
    let t = now(&app);
    for round in 1..=3 {
        let asked = Instant::now();
        other
            .execute(
                "INSERT INTO jobs (kind, payload, max_attempts, run_at, created_at, updated_at) VALUES ('noop', '{}', 3, $1, $1, $1)",
                &[&t],
            )
            .await
            .unwrap();
        let ran =
            poll_until(300, Duration::from_millis(10), || async { count(&app, "noop", "done").await == round }).await;
        assert!(ran && asked.elapsed() < Duration::from_secs(2), "round {round}: woke after {:?}", asked.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary: SIGKILL, SIGSTOP and SIGTERM while a job runs.

/// A ferry process over one data directory (and database), delivering webhooks to `hook`,
/// with a short lease so a dead worker's job is taken back quickly.
struct Node {
    dir: tempfile::TempDir,
    db: Option<TestDb>,
    hook: String,
    grace: &'static str,
}

impl Node {
    async fn new(postgres: bool, hook: &str) -> Option<Node> {
        let db = if postgres { Some(TestDb::create(&pg_server_url()?).await) } else { None };
        Some(Node { dir: tempfile::tempdir().unwrap(), db, hook: hook.into(), grace: "10s" })
    }

    fn start(&self) -> crate::helpers::Proc {
        let mut cmd = binary();
        cmd.env("FERRY_DATA_DIR", self.dir.path())
            .env("FERRY_BIND", "127.0.0.1:0")
            .env("FERRY_RATE_LIMITS", "off")
            .env("FERRY_JOBS__LEASE", "2s")
            .env("FERRY_JOBS__POLL_INTERVAL", "200ms")
            // A failed try is not retried within a test: what the tests see is each claim's own.
            .env("FERRY_JOBS__BACKOFF_BASE", "60s")
            .env("FERRY_WEBHOOK__URL", &self.hook)
            .env("FERRY_WEBHOOK__TIMEOUT", "60s")
            .env("FERRY_SERVER__SHUTDOWN_GRACE", self.grace)
            .env("FERRY_ADMIN_TOKEN", "an-admin-token-for-tests");
        if let Some(db) = &self.db {
            cmd.env("FERRY_DATABASE_URL", &db.url);
        }
        spawn_binary(cmd)
    }
}

async fn upload(http: &reqwest::Client, proc: &crate::helpers::Proc) -> String {
    let res = http
        .put(format!("http://{}/api/clips/a.txt", proc.addr))
        .header("accept", "application/json")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["clipId"].as_str().unwrap().to_string()
}

async fn admin_jobs(http: &reqwest::Client, proc: &crate::helpers::Proc) -> Value {
    let res = http
        .get(format!("http://{}/api/admin/jobs", proc.addr))
        .bearer_auth("an-admin-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The webhook line of the admin view's counts: (queued, running, done, failed).
fn webhooks(v: &Value) -> (i64, i64, i64, i64) {
    let line = v["counts"].as_array().unwrap().iter().find(|c| c["kind"] == "webhook");
    let n = |state: &str| line.map_or(0, |l| l[state].as_i64().unwrap());
    (n("queued"), n("running"), n("done"), n("failed"))
}

/// Poll the admin view until `check` holds (bounded).
async fn jobs_until(http: &reqwest::Client, proc: &crate::helpers::Proc, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = admin_jobs(http, proc).await;
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "the queue never got there: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn killed_mid_job_the_job_is_taken_up_again_after_a_restart(postgres: bool) {
    // The first delivery hangs until its process dies; the second is answered.
    let receiver = Receiver::start(vec![Reply::Hang]).await;
    let Some(node) = Node::new(postgres, &receiver.url).await else { return };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut first = node.start();
    upload(&http, &first).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    signal(&first.child, "KILL");
    wait_exit(&mut first.child, Duration::from_secs(10));
    let killed = Instant::now();
    let second = node.start();
    let got2 = receiver.wait_for(2, Duration::from_secs(20)).await;
    let taken_up = killed.elapsed();
    assert_eq!(got2[1].delivery, got[0].delivery, "the same job, delivered again");
    // Lease 2 s, plus recovery every half second, plus a poll.
    assert!(taken_up < Duration::from_secs(6), "taken up again after {taken_up:?}");
    jobs_until(&http, &second, |v| webhooks(v) == (0, 0, 1, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_killed_mid_job_the_job_is_taken_up_again_after_a_restart() {
    killed_mid_job_the_job_is_taken_up_again_after_a_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_job_the_job_is_taken_up_again_after_a_restart() {
    killed_mid_job_the_job_is_taken_up_again_after_a_restart(true).await;
}

/// A process frozen mid-delivery (SIGSTOP) loses its claim; another takes the job over and
/// fails it; the frozen one, thawed, finishes its delivery but cannot mark the job done.
async fn a_frozen_worker_cannot_overwrite_the_job_after_another_took_it(postgres: bool) {
    let receiver = Receiver::start(vec![Reply::Slow(Duration::from_secs(4), 200), Reply::Status(500)]).await;
    let Some(node) = Node::new(postgres, &receiver.url).await else { return };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let frozen = node.start();
    upload(&http, &frozen).await;
    receiver.wait_for(1, Duration::from_secs(10)).await;
    signal(&frozen.child, "STOP");
    let thawed = scopeguard(&frozen);
    let other = node.start();
    // The other process takes the job once the lease ran out; the receiver fails that try.
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got[1].delivery, got[0].delivery);
    let v = jobs_until(&http, &other, |v| v["retrying"].as_array().is_some_and(|r| !r.is_empty())).await;
    let job = &v["retrying"][0];
    assert_eq!(job["attempts"], 2);
    assert!(job["lastError"].as_str().unwrap().contains("500"), "{job}");
    // Thaw the first: its slow delivery ends with 200 now, and its completion must be refused.
    signal(&frozen.child, "CONT");
    drop(thawed);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let v = admin_jobs(&http, &other).await;
    assert_eq!(webhooks(&v), (1, 0, 0, 0), "the late completion was fenced off: {v}");
    let log: Vec<String> = frozen.log.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("claim was lost") || l.contains("lost the claim")), "{log:?}");
}

/// Sends SIGCONT when dropped, so a failing test never leaves a stopped process behind.
struct Thaw(u32);
impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-CONT").arg(self.0.to_string()).status();
    }
}
fn scopeguard(proc: &crate::helpers::Proc) -> Thaw {
    Thaw(proc.child.id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_frozen_worker_cannot_overwrite_the_job_after_another_took_it() {
    a_frozen_worker_cannot_overwrite_the_job_after_another_took_it(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_frozen_worker_cannot_overwrite_the_job_after_another_took_it() {
    a_frozen_worker_cannot_overwrite_the_job_after_another_took_it(true).await;
}

/// SIGTERM: a delivery that ends within the grace period is recorded; one that does not is
/// given back to the queue (its try not counted), and the next process delivers it.
async fn sigterm_finishes_what_fits_in_the_grace_and_releases_the_rest(postgres: bool) {
    let receiver = Receiver::start(vec![Reply::Slow(Duration::from_millis(800), 200), Reply::Hang]).await;
    let Some(mut node) = Node::new(postgres, &receiver.url).await else { return };
    node.grace = "3s";
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut first = node.start();
    upload(&http, &first).await;
    upload(&http, &first).await;
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    let (finishes, hangs) = (got[0].delivery.clone(), got[1].delivery.clone());
    let asked = Instant::now();
    signal(&first.child, "TERM");
    let status = wait_exit(&mut first.child, Duration::from_secs(10));
    let took = asked.elapsed();
    assert!(status.success(), "a graceful stop exits 0");
    assert!(took >= Duration::from_millis(1_500), "it waited for the running jobs ({took:?})");
    let second = node.start();
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got[2].delivery, hangs, "the released job is delivered again");
    jobs_until(&http, &second, |v| webhooks(v) == (0, 0, 2, 0)).await;
    for (id, attempts) in [(&finishes, 1), (&hangs, 1)] {
        let res = http
            .get(format!("http://{}/api/admin/jobs/{id}", second.addr))
            .bearer_auth("an-admin-token-for-tests")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let job: Value = res.json().await.unwrap();
        assert_eq!(job["job"]["state"], "done", "{job}");
        assert_eq!(job["job"]["attempts"], attempts, "an interrupted try does not count: {job}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sigterm_finishes_what_fits_in_the_grace_and_releases_the_rest() {
    sigterm_finishes_what_fits_in_the_grace_and_releases_the_rest(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sigterm_finishes_what_fits_in_the_grace_and_releases_the_rest() {
    sigterm_finishes_what_fits_in_the_grace_and_releases_the_rest(true).await;
}
