//! The job queue's rows (migration V5): enqueueing (alone or inside a transaction with the
//! write that needs it, and durable like it), claiming (SKIP LOCKED on PostgreSQL; SQLite's
//! single writer), heartbeats, completion, failure with retry, release and recovery, all
//! fenced by the claim's `fence` and committed without waiting for the disk (a lost claim or
//! outcome only means a job runs again), plus retention, the admin view's counts, and the
//! storage accounting rows. Knows nothing of what a job does or when to run it: that is `jobs/`.

use super::records::{Decode, P, RowLike};
use super::{Store, StoreError, Tx, sql, text};

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub kind: String,
    /// JSON.
    pub payload: String,
    pub max_attempts: i32,
    /// Not before (ms since the epoch).
    pub run_at: i64,
    /// At most one queued or running job per key.
    pub dedupe_key: Option<String>,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The claim this row belongs to; a worker's later writes must name it.
    pub fence: i32,
    pub run_at: i64,
    pub dedupe_key: Option<String>,
    pub last_error: Option<String>,
    pub locked_until: Option<i64>,
    pub worker: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

impl JobRecord {
    pub fn decode(r: &dyn RowLike) -> Result<JobRecord, StoreError> {
        Ok(JobRecord {
            id: r.i64("id")?,
            kind: r.text("kind")?,
            payload: r.text("payload")?,
            state: r.text("state")?,
            attempts: r.i32("attempts")?,
            max_attempts: r.i32("max_attempts")?,
            fence: r.i32("fence")?,
            run_at: r.i64("run_at")?,
            dedupe_key: r.opt_text("dedupe_key")?,
            last_error: r.opt_text("last_error")?,
            locked_until: r.opt_i64("locked_until")?,
            worker: r.opt_text("worker")?,
            created_at: r.i64("created_at")?,
            started_at: r.opt_i64("started_at")?,
            finished_at: r.opt_i64("finished_at")?,
            updated_at: r.i64("updated_at")?,
        })
    }
}

/// One claim's handle on its job: what heartbeats and outcomes must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub id: i64,
    pub fence: i32,
}

impl JobRecord {
    pub fn claim(&self) -> Claim {
        Claim { id: self.id, fence: self.fence }
    }
}

/// How many jobs of a kind are in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCount {
    pub kind: String,
    pub state: String,
    pub count: i64,
}

/// One line of storage in use, as the accounting job computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// `file`, `text`, `thumbnail` or `upload` (chunks of uploads in progress).
    pub kind: String,
    pub items: i64,
    pub bytes: i64,
    pub computed_at: i64,
}

fn job_params(job: &NewJob, now: i64) -> Vec<P> {
    vec![
        text(&job.kind),
        text(&job.payload),
        P::I32(job.max_attempts),
        P::I64(job.run_at),
        P::OptText(job.dedupe_key.clone()),
        P::I64(now),
    ]
}

/// `,a,b,`: the form the claim statement tests kinds against.
fn kind_list(kinds: &[&str]) -> String {
    let mut list = String::from(",");
    for k in kinds {
        list.push_str(k);
        list.push(',');
    }
    list
}

impl Tx {
    /// Enqueue inside this transaction: the jobs exist exactly when the write that needs them
    /// commits. Returns how many were new (a duplicate dedupe key is skipped).
    pub async fn enqueue(&mut self, jobs: &[NewJob], now: i64) -> Result<u64, StoreError> {
        let mut added = 0;
        for job in jobs {
            added += self.execute(sql::INSERT_JOB, job_params(job, now)).await?;
        }
        Ok(added)
    }
}

impl Store {
    /// Enqueue on their own (one transaction for several).
    pub async fn enqueue(&self, jobs: &[NewJob], now: i64) -> Result<u64, StoreError> {
        match jobs {
            [] => Ok(0),
            [job] => self.execute(sql::INSERT_JOB, job_params(job, now)).await,
            _ => {
                let mut tx = self.begin().await?;
                let added = tx.enqueue(jobs, now).await?;
                tx.commit().await?;
                Ok(added)
            }
        }
    }

    /// Claim up to `limit` due jobs of `kinds` for `worker` until `lease_until`.
    pub async fn claim_jobs(
        &self,
        now: i64,
        lease_until: i64,
        worker: &str,
        limit: i64,
        kinds: &[&str],
    ) -> Result<Vec<JobRecord>, StoreError> {
        let params = vec![P::I64(now), P::I64(lease_until), text(worker), P::I64(limit), P::Text(kind_list(kinds))];
        self.query_relaxed(self.pick(sql::CLAIM_JOBS, sql::CLAIM_JOBS_PG), params, JobRecord::decode).await
    }

    /// Requeue (or fail, on their last try) running jobs whose lease ran out; how many.
    pub async fn rescue_jobs(&self, now: i64) -> Result<u64, StoreError> {
        self.execute_relaxed(sql::RESCUE_JOBS, vec![P::I64(now)]).await
    }

    /// Extend a lease; `false` when the claim no longer holds the job.
    pub async fn heartbeat_job(&self, claim: Claim, lease_until: i64, now: i64) -> Result<bool, StoreError> {
        let params = vec![P::I64(claim.id), P::I32(claim.fence), P::I64(lease_until), P::I64(now)];
        Ok(self.execute_relaxed(sql::HEARTBEAT_JOB, params).await? == 1)
    }

    /// Mark done; `false` when the claim no longer holds the job.
    pub async fn finish_job(&self, claim: Claim, now: i64) -> Result<bool, StoreError> {
        Ok(!self.finish_jobs(&[claim], now).await?.is_empty())
    }

    /// Mark done, in one statement, every job still held by its claim; the ids marked (a
    /// missing one lost its claim).
    pub async fn finish_jobs(&self, claims: &[Claim], now: i64) -> Result<Vec<i64>, StoreError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<serde_json::Value> =
            claims.iter().map(|c| serde_json::json!({ "id": c.id, "fence": c.fence })).collect();
        let params = vec![P::Text(serde_json::Value::Array(list).to_string()), P::I64(now)];
        self.query_relaxed(self.pick(sql::FINISH_JOBS, sql::FINISH_JOBS_PG), params, |r| r.i64("id")).await
    }

    /// Record a failed try: queued again at `retry_at` while tries are left (if `retry_at` is
    /// given), else failed. The state it is in now; `None` when the claim no longer holds it.
    pub async fn fail_job(
        &self,
        claim: Claim,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let params = vec![
            P::I64(claim.id),
            P::I32(claim.fence),
            text(error),
            P::Bool(retry_at.is_some()),
            P::I64(retry_at.unwrap_or(now)),
            P::I64(now),
        ];
        Ok(self.query_relaxed(sql::FAIL_JOB, params, |r| r.text("state")).await?.into_iter().next())
    }

    /// Give a running job back without counting the try; `false` when the claim lost it.
    pub async fn release_job(&self, claim: Claim, now: i64) -> Result<bool, StoreError> {
        Ok(self.execute_relaxed(sql::RELEASE_JOB, vec![P::I64(claim.id), P::I32(claim.fence), P::I64(now)]).await? == 1)
    }

    /// Remove up to `limit` done jobs finished before `done_before` and failed ones before
    /// `failed_before`; how many.
    pub async fn prune_jobs(&self, done_before: i64, failed_before: i64, limit: i64) -> Result<u64, StoreError> {
        let done = self.pick(sql::PRUNE_DONE_JOBS, sql::PRUNE_DONE_JOBS_PG);
        let failed = self.pick(sql::PRUNE_FAILED_JOBS, sql::PRUNE_FAILED_JOBS_PG);
        Ok(self.execute_relaxed(done, vec![P::I64(done_before), P::I64(limit)]).await?
            + self.execute_relaxed(failed, vec![P::I64(failed_before), P::I64(limit)]).await?)
    }

    pub async fn job_counts(&self) -> Result<Vec<JobCount>, StoreError> {
        let decode: Decode<JobCount> =
            |r| Ok(JobCount { kind: r.text("kind")?, state: r.text("state")?, count: r.i64("n")? });
        self.query(sql::JOB_COUNTS, vec![], decode).await
    }

    /// When the longest-waiting due job became due, if any is waiting.
    pub async fn oldest_runnable_job(&self, now: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.query_opt(sql::OLDEST_RUNNABLE_JOB, vec![P::I64(now)], |r| r.opt_i64("oldest")).await?.flatten())
    }

    pub async fn recent_failed_jobs(&self, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        self.query(sql::RECENT_FAILED_JOBS, vec![P::I64(limit)], JobRecord::decode).await
    }

    pub async fn retrying_jobs(&self, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
        self.query(sql::RETRYING_JOBS, vec![P::I64(limit)], JobRecord::decode).await
    }

    /// Make every queued job of `kind` due at `now`; how many.
    pub async fn make_jobs_due(&self, kind: &str, now: i64) -> Result<u64, StoreError> {
        self.execute(sql::MAKE_JOBS_DUE, vec![text(kind), P::I64(now)]).await
    }

    /// Done jobs of `kind`: how many, the first start and the last finish.
    pub async fn job_span(&self, kind: &str) -> Result<(i64, Option<i64>, Option<i64>), StoreError> {
        let decode: Decode<(i64, Option<i64>, Option<i64>)> =
            |r| Ok((r.i64("n")?, r.opt_i64("first_start")?, r.opt_i64("last_finish")?));
        Ok(self.query_opt(sql::JOB_SPAN, vec![text(kind)], decode).await?.unwrap_or((0, None, None)))
    }

    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>, StoreError> {
        self.query_opt(sql::JOB_BY_ID, vec![P::I64(id)], JobRecord::decode).await
    }

    /// Queue a failed job again with fresh tries; `None` when it is not failed. A queued or
    /// running job with the same dedupe key makes this a unique violation
    /// (`StoreError::is_unique_violation`).
    pub async fn retry_job(&self, id: i64, now: i64) -> Result<Option<JobRecord>, StoreError> {
        self.query_opt(sql::RETRY_JOB, vec![P::I64(id), P::I64(now)], JobRecord::decode).await
    }
}

/// Storage accounting.
impl Store {
    /// Count what is stored now (the accounting job's one expensive step).
    pub async fn compute_usage(&self, now: i64) -> Result<Vec<UsageRow>, StoreError> {
        let decode: Decode<(String, i64, i64)> = |r| Ok((r.text("kind")?, r.i64("items")?, r.i64("bytes")?));
        let mut rows: Vec<UsageRow> = ["file", "text", "thumbnail", "upload"]
            .iter()
            .map(|k| UsageRow { kind: (*k).into(), items: 0, bytes: 0, computed_at: now })
            .collect();
        let mut add = |kind: &str, items: i64, bytes: i64| {
            if let Some(row) = rows.iter_mut().find(|r| r.kind == kind) {
                row.items += items;
                row.bytes += bytes;
            }
        };
        for (kind, items, bytes) in self.query(sql::USAGE_CLIPS, vec![], decode).await? {
            add(&kind, items, bytes);
        }
        let plain: Decode<(i64, i64)> = |r| Ok((r.i64("items")?, r.i64("bytes")?));
        for (sql, kind) in [(sql::USAGE_THUMBNAILS, "thumbnail"), (sql::USAGE_UPLOADS, "upload")] {
            if let Some((items, bytes)) = self.query_opt(sql, vec![], plain).await? {
                add(kind, items, bytes);
            }
        }
        Ok(rows)
    }

    /// Keep the figures where every instance reads them.
    pub async fn save_usage(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for r in rows {
            let params = vec![text(&r.kind), P::I64(r.items), P::I64(r.bytes), P::I64(r.computed_at)];
            tx.execute(sql::SAVE_USAGE, params).await?;
        }
        tx.commit().await
    }

    pub async fn load_usage(&self) -> Result<Vec<UsageRow>, StoreError> {
        let decode: Decode<UsageRow> = |r| {
            Ok(UsageRow {
                kind: r.text("kind")?,
                items: r.i64("items")?,
                bytes: r.i64("bytes")?,
                computed_at: r.i64("computed_at")?,
            })
        };
        self.query(sql::LOAD_USAGE, vec![], decode).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_list_brackets_every_kind_with_commas() {
        assert_eq!(kind_list(&[]), ",");
        assert_eq!(kind_list(&["thumbnail", "webhook"]), ",thumbnail,webhook,");
    }
}
