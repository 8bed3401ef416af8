//! The job runtime: one dispatcher per process claims due jobs from the store (up to
//! `jobs.concurrency` at once and each kind's own limit), runs each with a heartbeat that keeps
//! its lease, and records the outcome fenced by the claim, so a worker that was presumed dead
//! can never overwrite what a later claim did. Failures are retried with exponential backoff
//! and jitter until the job's tries run out; panics are caught and fail the job. The
//! dispatcher wakes at once when this process enqueues (or, on PostgreSQL, any process), and
//! polls as a fallback. It also runs the queue's maintenance: recovery of jobs whose lease ran
//! out, retention, and the periodic storage accounting job. On shutdown it stops claiming, lets
//! running jobs finish within the grace period, and releases the rest back to the queue.
//! What each kind of job does lives beside it (thumbnail.rs, webhook.rs, accounting.rs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::Deps;
use crate::domain::followups::{ACCOUNTING, NOOP};
use crate::store::{Claim, JobRecord};

/// How a run ended, as the job itself says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// Worth another try later (a receiver down, the store unreachable).
    Retry(String),
    /// Another try cannot help (not an image, a receiver refusing the request).
    Permanent(String),
}

impl JobError {
    fn message(&self) -> &str {
        match self {
            JobError::Retry(m) | JobError::Permanent(m) => m,
        }
    }
}

pub type JobFuture = BoxFuture<'static, Result<(), JobError>>;
type Handler = Arc<dyn Fn(JobRecord) -> JobFuture + Send + Sync>;

/// The kinds this process can run, each with its own concurrency limit (if any).
#[derive(Clone, Default)]
pub struct Handlers {
    map: HashMap<&'static str, (Handler, Option<usize>)>,
}

impl Handlers {
    pub fn add(
        mut self,
        kind: &'static str,
        limit: Option<usize>,
        run: impl Fn(JobRecord) -> JobFuture + Send + Sync + 'static,
    ) -> Handlers {
        self.map.insert(kind, (Arc::new(run), limit));
        self
    }

    fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.map.keys().copied()
    }
}

/// Queue settings, from configuration.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub keep_done: Duration,
    pub keep_failed: Duration,
    pub accounting_every: Duration,
    /// How long running jobs may take to finish once shutdown begins.
    pub grace: Duration,
}

impl QueueSettings {
    pub fn from_config(c: &Config) -> QueueSettings {
        let grace = c.server.shutdown_grace;
        QueueSettings {
            concurrency: c.jobs.concurrency,
            lease: c.jobs.lease,
            poll: c.jobs.poll_interval,
            backoff_base: c.jobs.backoff_base,
            backoff_max: c.jobs.backoff_max,
            keep_done: c.jobs.keep_done,
            keep_failed: c.jobs.keep_failed,
            accounting_every: c.jobs.accounting_interval,
            // Leave time to give the unfinished jobs back before the process stops waiting.
            grace: grace.saturating_sub(Duration::from_secs(1)).max(grace / 2),
        }
    }

    /// Delay before the try after `attempts` tries: base × 2^(attempts−1), at most the
    /// maximum, plus up to a quarter more at random (so a burst of failures does not retry in
    /// lockstep).
    pub fn backoff(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let delay = self.backoff_base.saturating_mul(1u32 << doublings.min(20)).min(self.backoff_max);
        let jitter = rand::random_range(0..=delay.as_millis() as u64 / 4);
        delay + Duration::from_millis(jitter)
    }

    fn heartbeat(&self) -> Duration {
        self.lease / 3
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Who holds a claim, for the admin view: host, process id and a random tag.
fn worker_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "unknown".into()
    };
    format!("{host}:{}:{:04x}", std::process::id(), rand::random::<u16>())
}

/// What the maintenance units did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    pub rescued: u64,
    pub pruned: u64,
}

/// The queue of one process.
#[derive(Clone)]
pub struct Queue {
    deps: Deps,
    handlers: Handlers,
    settings: QueueSettings,
    worker: Arc<str>,
}

/// The dispatcher's running jobs: their tasks, and which kind each task is, so a slot is freed
/// however its task ends.
#[derive(Default)]
struct Running {
    tasks: JoinSet<Ran>,
    kinds: HashMap<tokio::task::Id, &'static str>,
    per_kind: HashMap<&'static str, usize>,
}

type Ended = Result<(tokio::task::Id, Ran), tokio::task::JoinError>;

/// How running a job ended before anything was written for a success.
enum Ran {
    /// Its work is done; `finish` records it.
    Succeeded { job: Box<JobRecord>, took: Duration },
    /// Its outcome is written (or could not be).
    Recorded(Outcome),
}

/// How one run ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Retrying,
    Failed,
    /// The claim was lost (the lease ran out and the job went to someone else): nothing written.
    Fenced,
    /// Given back unfinished at shutdown.
    Released,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retrying => "retrying",
            Outcome::Failed => "failed",
            Outcome::Fenced => "fenced",
            Outcome::Released => "released",
        }
    }
}

/// Record one run of a background job (queued or not: the sweep and the admin statistics
/// refresh report here too).
pub fn record_run(kind: &str, outcome: &'static str, took: Duration) {
    metrics::counter!("ferry_job_runs_total", "kind" => kind.to_string(), "outcome" => outcome).increment(1);
    metrics::histogram!("ferry_job_duration_seconds", "kind" => kind.to_string(), "outcome" => outcome)
        .record(took.as_secs_f64());
}

impl Queue {
    pub fn new(deps: Deps, handlers: Handlers, settings: QueueSettings) -> Queue {
        Queue { deps, handlers, settings, worker: worker_name().into() }
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Requeue (or fail) jobs whose lease ran out, and remove finished jobs past retention.
    pub async fn maintain_once(&self, now: i64) -> Result<Maintenance, crate::store::StoreError> {
        let store = &self.deps.store;
        let rescued = store.rescue_jobs(now).await?;
        if rescued > 0 {
            tracing::warn!(jobs = rescued, "took back jobs whose worker stopped renewing its lease");
            self.deps.followups.wake();
        }
        let (done_before, failed_before) = (now - ms(self.settings.keep_done), now - ms(self.settings.keep_failed));
        let mut pruned = 0;
        loop {
            let n = store.prune_jobs(done_before, failed_before, 1000).await?;
            pruned += n;
            if n < 1000 {
                break;
            }
        }
        Ok(Maintenance { rescued, pruned })
    }

    /// Enqueue the storage accounting job (one queued per cluster: its dedupe key).
    pub async fn schedule_accounting(&self, now: i64) {
        let job = self.deps.followups.job(ACCOUNTING, "{}".into(), now, Some(ACCOUNTING.into()));
        self.deps.enqueue_quietly(vec![job]).await;
    }

    /// Claim what is due at `now` (at most `limit`, of kinds with room in `running`), timing
    /// the claim.
    async fn claim(&self, now: i64, limit: usize, running: &HashMap<&'static str, usize>) -> Vec<JobRecord> {
        let kinds: Vec<&'static str> = self
            .handlers
            .map
            .iter()
            .filter(|(kind, (_, cap))| cap.is_none_or(|cap| running.get(*kind).copied().unwrap_or(0) < cap))
            .map(|(kind, _)| *kind)
            .collect();
        if kinds.is_empty() || limit == 0 {
            return Vec::new();
        }
        let started = Instant::now();
        let lease_until = now + ms(self.settings.lease);
        let claimed = self.deps.store.claim_jobs(now, lease_until, &self.worker, limit as i64, &kinds).await;
        metrics::histogram!("ferry_job_claim_seconds").record(started.elapsed().as_secs_f64());
        let jobs = match claimed {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim jobs");
                return Vec::new();
            }
        };
        // One statement claims for every kind with room; when it took more of a limited kind
        // than that kind has room for (several due at once), the excess goes straight back,
        // its try not counted, for a later turn.
        let mut taken: HashMap<&'static str, usize> = HashMap::new();
        let mut kept = Vec::with_capacity(jobs.len());
        for job in jobs {
            let Some((kind, (_, cap))) = self.handlers.map.get_key_value(job.kind.as_str()) else {
                kept.push(job);
                continue;
            };
            let n = taken.entry(*kind).or_default();
            let room = cap.map(|cap| cap.saturating_sub(running.get(kind).copied().unwrap_or(0)));
            if room.is_some_and(|room| *n >= room) {
                if let Err(e) = self.deps.store.release_job(job.claim(), now).await {
                    tracing::warn!(error = %e, job = job.id, "could not give back a job over its kind's limit; its lease will run out");
                }
                continue;
            }
            *n += 1;
            kept.push(job);
        }
        kept
    }

    /// Claim and run every job due at `now`, one at a time, until none is left (tests drive
    /// the queue with this instead of waiting for the dispatcher).
    pub async fn work_once(&self, now: i64) -> Vec<(JobRecord, Outcome)> {
        let mut ran = Vec::new();
        loop {
            let jobs = self.claim(now, 1, &HashMap::new()).await;
            let Some(job) = jobs.into_iter().next() else { break };
            let outcome = match self.run_one(job.clone(), CancellationToken::new()).await {
                Ran::Succeeded { job, took } => self.finish(vec![(*job, took)]).await.remove(0),
                Ran::Recorded(outcome) => outcome,
            };
            ran.push((job, outcome));
        }
        ran
    }

    /// Run one claimed job, keeping its lease alive meanwhile; `stop` cancelled means give it
    /// back unfinished. Failures are recorded here; successes are left to `finish`, which
    /// records them in batches.
    async fn run_one(&self, job: JobRecord, stop: CancellationToken) -> Ran {
        let claim = job.claim();
        let started = Instant::now();
        let Some((handler, _)) = self.handlers.map.get(job.kind.as_str()) else {
            // Claims name only known kinds; this cannot happen, but must not lose the job.
            let outcome = self.record_failure(claim, &job, JobError::Retry("no handler in this process".into())).await;
            record_run(&job.kind, outcome.as_str(), started.elapsed());
            return Ran::Recorded(outcome);
        };
        let work = std::panic::AssertUnwindSafe(handler(job.clone())).catch_unwind();
        let outcome = tokio::select! {
            result = work => {
                let result = result.unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    Err(JobError::Permanent(format!("the job panicked: {what}")))
                });
                match result {
                    Ok(()) => return Ran::Succeeded { job: Box::new(job), took: started.elapsed() },
                    Err(e) => self.record_failure(claim, &job, e).await,
                }
            }
            _ = self.keep_lease(claim) => {
                tracing::warn!(job = job.id, kind = %job.kind, "lost the claim on a running job (its lease ran out); stopped it");
                Outcome::Fenced
            }
            _ = stop.cancelled() => {
                match self.deps.store.release_job(claim, self.deps.now()).await {
                    Ok(true) => Outcome::Released,
                    Ok(false) => Outcome::Fenced,
                    Err(e) => {
                        tracing::warn!(error = %e, job = job.id, "could not release a job at shutdown; its lease will run out");
                        Outcome::Released
                    }
                }
            }
        };
        record_run(&job.kind, outcome.as_str(), started.elapsed());
        Ran::Recorded(outcome)
    }

    /// Record the jobs that succeeded, in one statement, each fenced by its claim; their
    /// outcomes in the same order.
    async fn finish(&self, done: Vec<(JobRecord, Duration)>) -> Vec<Outcome> {
        let claims: Vec<Claim> = done.iter().map(|(j, _)| j.claim()).collect();
        let marked = match self.deps.store.finish_jobs(&claims, self.deps.now()).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, jobs = claims.len(), "could not record finished jobs; they run again once their lease runs out");
                Vec::new()
            }
        };
        done.iter()
            .map(|(job, took)| {
                let outcome = if marked.contains(&job.id) {
                    Outcome::Done
                } else {
                    tracing::warn!(job = job.id, kind = %job.kind, "a job's outcome came after its claim was lost; not recorded");
                    Outcome::Fenced
                };
                record_run(&job.kind, outcome.as_str(), *took);
                outcome
            })
            .collect()
    }

    /// Renew the lease every third of it; returns when the claim is lost, or when no renewal
    /// has got through for a whole lease (the store unreachable: another instance may already
    /// have taken the job back, so this one must not go on with it).
    async fn keep_lease(&self, claim: Claim) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.heartbeat()).await;
            let now = self.deps.now();
            match self.deps.store.heartbeat_job(claim, now + ms(self.settings.lease), now).await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return,
                Err(e) if renewed.elapsed() >= self.settings.lease => {
                    tracing::warn!(error = %e, job = claim.id, "could not renew a job's lease for a whole lease; giving it up");
                    return;
                }
                // The store may come back before the lease runs out; keep working meanwhile.
                Err(e) => tracing::warn!(error = %e, job = claim.id, "could not renew a job's lease"),
            }
        }
    }

    /// Write a failed run, fenced by its claim: queued again after a backoff while tries are
    /// left (unless the failure is permanent), else failed for good.
    async fn record_failure(&self, claim: Claim, job: &JobRecord, e: JobError) -> Outcome {
        let now = self.deps.now();
        let retry_at = match &e {
            JobError::Retry(_) => Some(now + ms(self.settings.backoff(job.attempts))),
            JobError::Permanent(_) => None,
        };
        match self.deps.store.fail_job(claim, e.message(), retry_at, now).await {
            Ok(Some(state)) => {
                let outcome = if state == "queued" { Outcome::Retrying } else { Outcome::Failed };
                tracing::warn!(job = job.id, kind = %job.kind, attempt = job.attempts, outcome = outcome.as_str(), error = e.message(), "job failed");
                outcome
            }
            Ok(None) => {
                tracing::warn!(job = job.id, kind = %job.kind, "a job's outcome came after its claim was lost; not recorded");
                Outcome::Fenced
            }
            Err(err) => {
                tracing::warn!(error = %err, job = job.id, "could not record a job's outcome; it runs again once its lease runs out");
                Outcome::Fenced
            }
        }
    }

    /// Take `first` and every other run that has ended, free their slots and record the
    /// successes together.
    async fn settle(&self, first: Ended, running: &mut Running) {
        let mut succeeded = Vec::new();
        let mut next = Some(first);
        while let Some(ended) = next {
            let id = match &ended {
                Ok((id, _)) => *id,
                Err(e) => e.id(),
            };
            if let Some(kind) = running.kinds.remove(&id)
                && let Some(n) = running.per_kind.get_mut(kind)
            {
                *n = n.saturating_sub(1);
            }
            match ended {
                Ok((_, Ran::Succeeded { job, took })) => succeeded.push((*job, took)),
                Ok((_, Ran::Recorded(_))) => {}
                // run_one catches the job's own panics; this is a bug of ours. The job's lease
                // runs out and it is taken up again.
                Err(e) => tracing::error!(error = %e, "a job task failed outside its job"),
            }
            next = running.tasks.try_join_next_with_id();
        }
        if !succeeded.is_empty() {
            self.finish(succeeded).await;
        }
    }

    /// Run until `shutdown`: claim and run jobs, maintain the queue, schedule accounting; then
    /// stop claiming, give running jobs the grace period, and release the rest.
    pub async fn run(self, shutdown: CancellationToken) {
        let wake = self.deps.followups.waker();
        let listener = {
            let (store, wake, stop) = (self.deps.store.clone(), wake.clone(), shutdown.child_token());
            tokio::spawn(async move { store.forward_job_notifications(wake, stop).await })
        };
        let stop = CancellationToken::new();
        let mut running = Running::default();
        let maintain_every = (self.settings.lease / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
        let mut next_maintenance = Instant::now();
        let mut next_accounting = Instant::now();
        let kinds: Vec<&'static str> = self.handlers.kinds().collect();
        tracing::debug!(worker = %self.worker, ?kinds, concurrency = self.settings.concurrency, "job workers started");
        loop {
            if Instant::now() >= next_maintenance {
                if let Err(e) = self.maintain_once(self.deps.now()).await {
                    tracing::warn!(error = %e, "job queue maintenance failed");
                }
                next_maintenance = Instant::now() + maintain_every;
            }
            if Instant::now() >= next_accounting {
                self.schedule_accounting(self.deps.now()).await;
                next_accounting = Instant::now() + self.settings.accounting_every;
            }
            let free = self.settings.concurrency.saturating_sub(running.tasks.len());
            let mut claimed_all = false;
            if free > 0 {
                let jobs = self.claim(self.deps.now(), free, &running.per_kind).await;
                claimed_all = !jobs.is_empty() && jobs.len() == free;
                for job in jobs {
                    let kind = self.handlers.map.get_key_value(job.kind.as_str()).map(|(k, _)| *k).unwrap_or(NOOP);
                    *running.per_kind.entry(kind).or_default() += 1;
                    let (queue, stop) = (self.clone(), stop.clone());
                    let task = running.tasks.spawn(async move { queue.run_one(job, stop).await });
                    running.kinds.insert(task.id(), kind);
                }
            }
            let idle = tokio::time::sleep(if claimed_all { Duration::ZERO } else { self.settings.poll });
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = idle => {}
                Some(first) = running.tasks.join_next_with_id(), if !running.tasks.is_empty() => {
                    // Everything that finished meanwhile is recorded in one statement; then the
                    // loop claims again at once for the free slots.
                    self.settle(first, &mut running).await;
                }
                _ = tokio::time::sleep_until(next_maintenance.min(next_accounting).into()) => {}
            }
        }
        // Shutdown: no more claims; running jobs get the grace period, then are given back.
        if !running.tasks.is_empty() {
            tracing::info!(running = running.tasks.len(), grace = ?self.settings.grace, "shutdown: waiting for running jobs");
            // Only the wait for a job is cut short by the deadline, never the recording of
            // jobs that ended (a `settle` cancelled halfway would leave them running).
            let deadline = tokio::time::Instant::now() + self.settings.grace;
            loop {
                let ended = tokio::select! {
                    ended = running.tasks.join_next_with_id() => ended,
                    _ = tokio::time::sleep_until(deadline), if !stop.is_cancelled() => {
                        stop.cancel();
                        continue;
                    }
                };
                let Some(first) = ended else { break };
                self.settle(first, &mut running).await;
            }
        }
        listener.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_with_at_most_a_quarter_of_jitter_and_a_cap() {
        let mut s = QueueSettings::from_config(&Config::defaults());
        s.backoff_base = Duration::from_secs(2);
        s.backoff_max = Duration::from_secs(60);
        for (attempts, base) in [(1, 2), (2, 4), (3, 8), (4, 16), (6, 60), (40, 60)] {
            for _ in 0..50 {
                let d = s.backoff(attempts);
                let base = Duration::from_secs(base);
                assert!(d >= base && d <= base + base / 4, "attempt {attempts}: {d:?}");
            }
        }
    }

    #[test]
    fn a_worker_name_says_host_and_process() {
        let name = worker_name();
        assert!(name.contains(&format!(":{}:", std::process::id())), "{name}");
    }
}
