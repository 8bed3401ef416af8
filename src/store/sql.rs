//! Every SQL statement ferry runs, written once in PostgreSQL's `$n` placeholder style; the
//! SQLite backend rewrites `$n` to `?n`. Statements that only one backend can run say so.

macro_rules! clip_cols {
    () => {
        "id, code, kind, blob_key, filename, mime_type, size, sha256, created_at, expires_at, \
         one_time, max_downloads, download_count, access_code_hash, quick_share, delete_token_hash, \
         consumed_at, format, meta, stream_header, parts, thumb_key, thumb_type, thumb_size"
    };
}

macro_rules! job_cols {
    () => {
        "id, kind, payload, state, attempts, max_attempts, fence, run_at, dedupe_key, last_error, \
         locked_until, worker, created_at, started_at, finished_at, updated_at"
    };
}

/// What the sweep returns of each clip it deletes: enough to remove its bytes and to tell a
/// webhook receiver which clip expired.
macro_rules! gone_cols {
    () => {
        "id, code, kind, size, created_at, expires_at, blob_key, parts, thumb_key"
    };
}

macro_rules! upload_cols {
    () => {
        "id, filename, filesize, total_chunks, chunk_size, mime_type, kind, expiry_ms, one_time, \
         has_password, quick_share, is_text, max_downloads, status, clip_code, created_at, \
         last_activity, delete_token"
    };
}

/// The clip with this code that is neither consumed nor deleted, expired or not (uses
/// `clips_live_code_idx`, which holds at most one such row per code): the lookup tells a live
/// clip from one that expired and awaits the sweep. $1 code.
pub const UNRETIRED_CLIP_BY_CODE: &str =
    concat!("SELECT ", clip_cols!(), " FROM clips WHERE code = $1 AND consumed_at IS NULL AND deleted_at IS NULL");

/// The clip an upload session produced (uses `clips_upload_idx`). $1 upload id.
pub const CLIP_BY_UPLOAD: &str = concat!("SELECT ", clip_cols!(), " FROM clips WHERE upload_id = $1");

macro_rules! insert_clip {
    () => {
        "INSERT INTO clips (code, kind, blob_key, filename, mime_type, size, sha256, created_at, \
         expires_at, one_time, max_downloads, access_code_hash, quick_share, delete_token_hash, upload_id, \
         format, meta, stream_header, parts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT DO NOTHING RETURNING "
    };
}

/// Insert a clip unless its code collides with a live one or its upload already has a clip.
/// On SQLite `FORGET_TOMBSTONE` follows in the same transaction.
pub const INSERT_CLIP: &str = concat!(insert_clip!(), clip_cols!());
/// PostgreSQL: the same, and in the same statement the tombstone of an earlier clip with this
/// code goes: a tombstone never outlives the start of a new clip with its code.
pub const INSERT_CLIP_PG: &str = concat!(
    "WITH added AS (",
    insert_clip!(),
    clip_cols!(),
    "), forgotten AS (DELETE FROM clip_tombstones WHERE code IN (SELECT code FROM added)) SELECT ",
    clip_cols!(),
    " FROM added"
);

macro_rules! claim_download {
    () => {
        "UPDATE clips SET download_count = download_count + 1, \
         consumed_at = CASE WHEN one_time OR (max_downloads IS NOT NULL AND download_count + 1 >= max_downloads) \
                       THEN $2 ELSE NULL END \
         WHERE id = $1 AND consumed_at IS NULL AND deleted_at IS NULL AND expires_at > $2 \
           AND (max_downloads IS NULL OR download_count < max_downloads) \
         RETURNING "
    };
}

/// Write (or replace: the latest event of a code wins) tombstones from the rows of `$from`,
/// which names `code` and `gone_at`.
macro_rules! remember {
    ($reason:literal, $from:literal) => {
        concat!(
            "INSERT INTO clip_tombstones (code, reason, gone_at) SELECT code, '",
            $reason,
            "', gone_at FROM ",
            $from,
            // SQLite reads `ON` after a FROM as a join's unless a WHERE comes between.
            " WHERE true ON CONFLICT (code) DO UPDATE SET reason = excluded.reason, gone_at = excluded.gone_at"
        )
    };
}

/// The atomic download claim for one-time and download-limited clips: one statement, so
/// concurrent callers (in any number of processes) cannot both take the last download.
/// $1 id, $2 now. Returns the row as it is after the claim. On SQLite, when tombstones are
/// kept, `REMEMBER_CONSUMED` follows in the same transaction.
pub const CLAIM_DOWNLOAD: &str = concat!(claim_download!(), clip_cols!());
/// PostgreSQL, tombstones kept: the claim, and in the same statement the tombstone of a clip
/// the claim consumed (its last permitted download).
pub const CLAIM_DOWNLOAD_REMEMBERED_PG: &str = concat!(
    "WITH claimed AS (",
    claim_download!(),
    clip_cols!(),
    "), remembered AS (",
    remember!("consumed", "(SELECT code, consumed_at AS gone_at FROM claimed WHERE consumed_at IS NOT NULL) c"),
    ") SELECT ",
    clip_cols!(),
    " FROM claimed"
);
/// SQLite, after `CLAIM_DOWNLOAD` in its transaction: the tombstone of the clip if that claim
/// consumed it. $1 id, $2 now.
pub const REMEMBER_CONSUMED: &str =
    remember!("consumed", "(SELECT code, consumed_at AS gone_at FROM clips WHERE id = $1 AND consumed_at = $2) c");

/// Retire a live clip early. $1 id, $2 now. On SQLite, when tombstones are kept,
/// `REMEMBER_DELETED` follows in the same transaction.
pub const MARK_CLIP_DELETED: &str =
    "UPDATE clips SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL AND consumed_at IS NULL RETURNING id";
/// PostgreSQL, tombstones kept: the delete and its tombstone in one statement.
pub const MARK_CLIP_DELETED_REMEMBERED_PG: &str = concat!(
    "WITH retired AS (UPDATE clips SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL AND consumed_at IS NULL \
     RETURNING id, code, deleted_at), remembered AS (",
    remember!("deleted", "(SELECT code, deleted_at AS gone_at FROM retired) r"),
    ") SELECT id FROM retired"
);
/// SQLite, after `MARK_CLIP_DELETED` in its transaction. $1 id, $2 now.
pub const REMEMBER_DELETED: &str =
    remember!("deleted", "(SELECT code, deleted_at AS gone_at FROM clips WHERE id = $1 AND deleted_at = $2) d");

/// Why a code no longer opens, while its tombstone is younger than the retention. $1 code,
/// $2 the oldest time still remembered (exclusive).
pub const TOMBSTONE_BY_CODE: &str = "SELECT reason, gone_at FROM clip_tombstones WHERE code = $1 AND gone_at > $2";

/// SQLite, after `INSERT_CLIP` in its transaction: a new clip's code has no tombstone. $1 code.
pub const FORGET_TOMBSTONE: &str = "DELETE FROM clip_tombstones WHERE code = $1";

/// Sweep: tombstones from $1 or before (uses `clip_tombstones_gone_idx`). $2 limit.
pub const SWEEP_TOMBSTONES: &str = "DELETE FROM clip_tombstones WHERE code IN (SELECT code FROM clip_tombstones \
     WHERE gone_at <= $1 ORDER BY gone_at LIMIT $2)";
pub const SWEEP_TOMBSTONES_PG: &str = "DELETE FROM clip_tombstones WHERE code IN (SELECT code FROM clip_tombstones \
     WHERE gone_at <= $1 ORDER BY gone_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
/// The sweep's batch of tombstones past the retention, for reading its plan. $1 cutoff, $2 limit.
pub const TOMBSTONES_BATCH: &str = "SELECT code FROM clip_tombstones WHERE gone_at <= $1 ORDER BY gone_at LIMIT $2";

/// The sweep's batch of expired live clips (uses `clips_live_expiry_idx`). $1 now, $2 limit.
pub const EXPIRED_CLIPS_BATCH: &str = "SELECT id, blob_key FROM clips \
     WHERE expires_at <= $1 AND consumed_at IS NULL AND deleted_at IS NULL ORDER BY expires_at LIMIT $2";
/// PostgreSQL form: several instances sweep without taking the same rows.
pub const EXPIRED_CLIPS_BATCH_PG: &str = concat!(
    "SELECT id, blob_key FROM clips \
     WHERE expires_at <= $1 AND consumed_at IS NULL AND deleted_at IS NULL ORDER BY expires_at LIMIT $2",
    " FOR UPDATE SKIP LOCKED"
);
/// Abandoned upload sessions (uses `upload_sessions_abandoned_idx`). $1 cutoff, $2 limit.
pub const ABANDONED_UPLOADS_BATCH: &str = "SELECT id FROM upload_sessions \
     WHERE status = 'uploading' AND last_activity <= $1 ORDER BY last_activity LIMIT $2";
pub const ABANDONED_UPLOADS_BATCH_PG: &str = concat!(
    "SELECT id FROM upload_sessions \
     WHERE status = 'uploading' AND last_activity <= $1 ORDER BY last_activity LIMIT $2",
    " FOR UPDATE SKIP LOCKED"
);
pub const INSERT_UPLOAD: &str = "INSERT INTO upload_sessions (id, filename, filesize, total_chunks, \
     chunk_size, mime_type, kind, expiry_ms, one_time, has_password, quick_share, is_text, max_downloads, \
     status, created_at, last_activity, delete_token) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'uploading', $14, $14, $15)";

pub const UPLOAD_BY_ID: &str = concat!("SELECT ", upload_cols!(), " FROM upload_sessions WHERE id = $1");

/// Record (or atomically replace) a received chunk, only while the session accepts chunks.
/// $1 upload, $2 index, $3 size, $4 sha256, $5 now, $6 blob leaf.
pub const RECORD_CHUNK: &str = "INSERT INTO upload_chunks (upload_id, chunk_index, size, sha256, received_at, blob_leaf) \
     SELECT CAST($1 AS TEXT), CAST($2 AS INTEGER), CAST($3 AS BIGINT), CAST($4 AS TEXT), CAST($5 AS BIGINT), \
       CAST($6 AS TEXT) WHERE EXISTS \
       (SELECT 1 FROM upload_sessions WHERE id = $1 AND status = 'uploading') \
     ON CONFLICT (upload_id, chunk_index) DO UPDATE \
       SET size = excluded.size, sha256 = excluded.sha256, received_at = excluded.received_at, \
           blob_leaf = excluded.blob_leaf";

/// A chunk's SHA-256 computed after it arrived; only for the attempt that was hashed
/// (rows of an older build have no leaf and are hashed at arrival). $1 upload, $2 index,
/// $3 leaf, $4 sha256.
pub const SET_CHUNK_SHA256: &str = "UPDATE upload_chunks SET sha256 = $4 \
     WHERE upload_id = $1 AND chunk_index = $2 AND blob_leaf = $3 AND sha256 IS NULL";

/// PostgreSQL: record (or replace) a chunk in one statement, answering whether it was
/// recorded, the attempt it replaced and how many chunks there were before. The gate is a
/// share lock on the session row while it is 'uploading': concurrent chunks of one upload do
/// not wait for each other (an exclusive lock would queue every chunk behind the previous
/// one's commit), while a complete's UPDATE waits for them and, once committed, lets no
/// further chunk in. Same parameters as RECORD_CHUNK ($5 only stamps the chunk).
pub const RECORD_CHUNK_PG: &str = "WITH s AS ( \
       SELECT id FROM upload_sessions WHERE id = CAST($1 AS TEXT) AND status = 'uploading' FOR SHARE), \
     old AS ( \
       SELECT blob_leaf FROM upload_chunks WHERE upload_id = CAST($1 AS TEXT) AND chunk_index = CAST($2 AS INTEGER)), \
     ins AS ( \
       INSERT INTO upload_chunks (upload_id, chunk_index, size, sha256, received_at, blob_leaf) \
       SELECT s.id, CAST($2 AS INTEGER), CAST($3 AS BIGINT), CAST($4 AS TEXT), CAST($5 AS BIGINT), \
              CAST($6 AS TEXT) FROM s \
       ON CONFLICT (upload_id, chunk_index) DO UPDATE \
         SET size = excluded.size, sha256 = excluded.sha256, received_at = excluded.received_at, \
             blob_leaf = excluded.blob_leaf \
       RETURNING 1) \
     SELECT (SELECT count(*) FROM ins) AS recorded, (SELECT count(*) FROM old) AS had_old, \
            (SELECT blob_leaf FROM old) AS old_leaf, \
            (SELECT count(*) FROM upload_chunks WHERE upload_id = CAST($1 AS TEXT)) AS before_count";

/// Mark an upload active, at most once per interval: $1 id, $2 now, $3 only if idle since.
pub const TOUCH_IDLE_UPLOAD: &str = "UPDATE upload_sessions SET last_activity = $2 \
     WHERE id = $1 AND status = 'uploading' AND last_activity < $3";

pub const COUNT_CHUNKS: &str = "SELECT count(*) AS n FROM upload_chunks WHERE upload_id = $1";

/// The blob a recorded chunk names, before it is replaced. $1 upload, $2 index.
pub const CHUNK_LEAF: &str =
    "SELECT chunk_index, size, sha256, blob_leaf FROM upload_chunks WHERE upload_id = $1 AND chunk_index = $2";

pub const LIST_CHUNKS: &str =
    "SELECT chunk_index, size, sha256, blob_leaf FROM upload_chunks WHERE upload_id = $1 ORDER BY chunk_index";

pub const DELETE_CHUNK_ROW: &str = "DELETE FROM upload_chunks WHERE upload_id = $1 AND chunk_index = $2";

/// Take the assembly lock: only one caller moves a session out of 'uploading' (or takes over
/// an assembly that went stale, its owner having died). $1 id, $2 now, $3 stale cutoff.
pub const BEGIN_ASSEMBLY: &str = concat!(
    "UPDATE upload_sessions SET status = 'assembling', last_activity = $2 \
     WHERE id = $1 AND (status = 'uploading' OR (status = 'assembling' AND last_activity < $3)) \
     RETURNING ",
    upload_cols!()
);

/// Renew a running assembly's claim, only while it is still the claim made (or last renewed)
/// at $2: one taken over is left to its new owner. $1 id, $2 claim, $3 now.
pub const TOUCH_ASSEMBLY: &str = "UPDATE upload_sessions SET last_activity = $3 \
     WHERE id = $1 AND status = 'assembling' AND last_activity = $2";

/// Give the lock back after a failed assembly so the client can fix and retry, only while it
/// is still this attempt's claim. $1 id, $2 claim, $3 now.
pub const ABORT_ASSEMBLY: &str = "UPDATE upload_sessions SET status = 'uploading', last_activity = $3 \
     WHERE id = $1 AND status = 'assembling' AND last_activity = $2";

/// $1 id, $2 clip code, $3 now.
pub const MARK_UPLOAD_COMPLETE: &str =
    "UPDATE upload_sessions SET status = 'complete', clip_code = $2, last_activity = $3 WHERE id = $1";

/// Cancel: chunks go with the session (ON DELETE CASCADE).
pub const DELETE_UPLOAD: &str = "DELETE FROM upload_sessions WHERE id = $1";

/// The ids of one batch of expired live clips: in full order (`id` breaks ties), so the two
/// SQLite statements of one transaction that name it name the same rows.
macro_rules! expired_batch {
    () => {
        "SELECT id FROM clips WHERE expires_at <= $1 AND consumed_at IS NULL AND deleted_at IS NULL \
         ORDER BY expires_at, id LIMIT $2"
    };
}

/// Sweep: remove one batch of expired live clips, returning what `gone_cols` names. $1 now,
/// $2 limit. When tombstones are kept, `REMEMBER_EXPIRED` runs first in the same transaction.
pub const SWEEP_EXPIRED_CLIPS: &str =
    concat!("DELETE FROM clips WHERE id IN (", expired_batch!(), ") RETURNING ", gone_cols!());
/// SQLite, before `SWEEP_EXPIRED_CLIPS` in its transaction: the batch's tombstones, each at
/// its clip's expiry. Same parameters.
pub const REMEMBER_EXPIRED: &str = concat!(
    "INSERT INTO clip_tombstones (code, reason, gone_at) SELECT code, 'expired', expires_at FROM clips \
     WHERE id IN (",
    expired_batch!(),
    ") ON CONFLICT (code) DO UPDATE SET reason = excluded.reason, gone_at = excluded.gone_at"
);
macro_rules! sweep_expired_pg {
    () => {
        concat!(
            "DELETE FROM clips WHERE id IN (",
            expired_batch!(),
            " FOR UPDATE SKIP LOCKED) RETURNING ",
            gone_cols!()
        )
    };
}
pub const SWEEP_EXPIRED_CLIPS_PG: &str = sweep_expired_pg!();
/// PostgreSQL, tombstones kept: the batch's delete and its tombstones in one statement.
pub const SWEEP_EXPIRED_CLIPS_REMEMBERED_PG: &str = concat!(
    "WITH gone AS (",
    sweep_expired_pg!(),
    "), remembered AS (",
    remember!("expired", "(SELECT code, expires_at AS gone_at FROM gone) g"),
    ") SELECT ",
    gone_cols!(),
    " FROM gone"
);

/// Sweep: consumed or deleted clips retired before $1. $2 limit.
pub const SWEEP_RETIRED_CLIPS: &str = concat!(
    "DELETE FROM clips WHERE id IN (SELECT id FROM clips \
     WHERE (consumed_at IS NOT NULL OR deleted_at IS NOT NULL) AND coalesce(consumed_at, deleted_at) <= $1 \
     ORDER BY id LIMIT $2) RETURNING ",
    gone_cols!()
);
pub const SWEEP_RETIRED_CLIPS_PG: &str = concat!(
    "DELETE FROM clips WHERE id IN (SELECT id FROM clips \
     WHERE (consumed_at IS NOT NULL OR deleted_at IS NOT NULL) AND coalesce(consumed_at, deleted_at) <= $1 \
     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING ",
    gone_cols!()
);

/// Sweep: upload sessions with no activity since $1 (chunks go by cascade). $2 limit.
pub const SWEEP_ABANDONED_UPLOADS: &str = "DELETE FROM upload_sessions WHERE id IN (SELECT id FROM upload_sessions \
     WHERE status = 'uploading' AND last_activity <= $1 ORDER BY last_activity LIMIT $2) RETURNING id";
pub const SWEEP_ABANDONED_UPLOADS_PG: &str = "DELETE FROM upload_sessions WHERE id IN (SELECT id FROM upload_sessions \
     WHERE status = 'uploading' AND last_activity <= $1 ORDER BY last_activity LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING id";

/// Sweep: finished (or long-stale assembling) sessions older than $1. $2 limit.
pub const SWEEP_FINISHED_UPLOADS: &str = "DELETE FROM upload_sessions WHERE id IN (SELECT id FROM upload_sessions \
     WHERE status <> 'uploading' AND last_activity <= $1 ORDER BY last_activity LIMIT $2) RETURNING id";
pub const SWEEP_FINISHED_UPLOADS_PG: &str = "DELETE FROM upload_sessions WHERE id IN (SELECT id FROM upload_sessions \
     WHERE status <> 'uploading' AND last_activity <= $1 ORDER BY last_activity LIMIT $2 FOR UPDATE SKIP LOCKED) \
     RETURNING id";

/// Reconcile: does any row (live or retired) own this blob? $1 blob key.
pub const CLIP_BLOB_EXISTS: &str = "SELECT 1 AS found FROM clips WHERE blob_key = $1 LIMIT 1";

/// Admin statistics over the clips table, one scan. $1 now.
pub const CLIP_STATS: &str = "SELECT count(*) AS total, \
     coalesce(sum(CASE WHEN consumed_at IS NULL AND deleted_at IS NULL AND expires_at > $1 THEN 1 ELSE 0 END), 0) AS active, \
     coalesce(sum(download_count), 0) AS accesses, \
     coalesce(sum(CASE WHEN access_code_hash IS NOT NULL THEN 1 ELSE 0 END), 0) AS protected, \
     coalesce(sum(CASE WHEN quick_share THEN 1 ELSE 0 END), 0) AS quick, \
     coalesce(sum(CASE WHEN one_time THEN 1 ELSE 0 END), 0) AS once, \
     coalesce(sum(CASE WHEN access_code_hash IS NULL AND NOT quick_share AND NOT one_time THEN 1 ELSE 0 END), 0) AS normal \
     FROM clips";

/// The newest clips, for the admin list. $1 limit.
pub const RECENT_CLIPS: &str = concat!("SELECT ", clip_cols!(), ", deleted_at FROM clips ORDER BY id DESC LIMIT $1");

/// Multipart uploads opened by an assembly. $1 upload id, $2 blob key, $3 now.
pub const RECORD_MULTIPART: &str = "INSERT INTO blob_multiparts (upload_id, blob_key, created_at) VALUES ($1, $2, $3)";
/// $1 upload id.
pub const FORGET_MULTIPART: &str = "DELETE FROM blob_multiparts WHERE upload_id = $1";
/// $1 upload id.
pub const MULTIPART_CREATED: &str = "SELECT created_at FROM blob_multiparts WHERE upload_id = $1";
/// Recorded multipart uploads opened before $1, oldest first, at most $2.
pub const STALE_MULTIPARTS: &str = "SELECT upload_id, blob_key FROM blob_multiparts WHERE created_at <= $1 \
     ORDER BY created_at LIMIT $2";

/// A clip by its row id, whatever its state. $1 id.
pub const CLIP_BY_ID: &str = concat!("SELECT ", clip_cols!(), " FROM clips WHERE id = $1");

/// Attach a thumbnail to a live clip that has none. $1 id, $2 key, $3 type, $4 size.
pub const SET_THUMBNAIL: &str = "UPDATE clips SET thumb_key = $2, thumb_type = $3, thumb_size = $4 \
     WHERE id = $1 AND consumed_at IS NULL AND deleted_at IS NULL AND thumb_key IS NULL";

/// Reconcile: does any row own this thumbnail? $1 key.
pub const THUMB_EXISTS: &str = "SELECT 1 AS found FROM clips WHERE thumb_key = $1 LIMIT 1";

// ---- The job queue (jobs table, migration V5) ----

/// Enqueue one job; a queued or running job with the same dedupe key makes it a no-op.
/// $1 kind, $2 payload, $3 max attempts, $4 run at, $5 dedupe key, $6 now.
pub const INSERT_JOB: &str = "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, fence, run_at, \
     dedupe_key, created_at, updated_at) VALUES ($1, $2, 'queued', 0, $3, 0, $4, $5, $6, $6) ON CONFLICT DO NOTHING";

/// Claim up to $4 due jobs (uses `jobs_runnable_idx`) of the kinds listed in $5 as
/// `,kind,kind,` (those this worker knows and has room for: a kind added by a newer build is
/// left to the instances that know it). Each claim bumps `attempts` and `fence`.
/// $1 now, $2 lease end, $3 worker.
pub const CLAIM_JOBS: &str = concat!(
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, fence = fence + 1, locked_until = $2, \
       worker = $3, started_at = $1, updated_at = $1 \
     WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $1 \
       AND instr($5, ',' || kind || ',') > 0 ORDER BY run_at, id LIMIT $4) \
     RETURNING ",
    job_cols!()
);
/// PostgreSQL form: instances never claim the same row (SKIP LOCKED), nor wait for each other.
/// `= ANY(ARRAY(..))` makes the update find its rows by primary key (`IN (..)` let the planner
/// hash-join against a scan of the whole table, done jobs included).
pub const CLAIM_JOBS_PG: &str = concat!(
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, fence = fence + 1, locked_until = $2, \
       worker = $3, started_at = $1, updated_at = $1 \
     WHERE id = ANY(ARRAY(SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $1 \
       AND strpos($5, ',' || kind || ',') > 0 ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)) \
     RETURNING ",
    job_cols!()
);

/// Running jobs whose lease ran out (their worker died or hangs) go back to the queue, or fail
/// when that was their last attempt (uses `jobs_lease_idx`). $1 now.
pub const RESCUE_JOBS: &str = "UPDATE jobs SET \
       state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
       finished_at = CASE WHEN attempts >= max_attempts THEN CAST($1 AS BIGINT) ELSE NULL END, \
       last_error = CASE WHEN attempts >= max_attempts \
         THEN 'its worker stopped (no heartbeat within the lease) on the last attempt' \
         ELSE 'its worker stopped (no heartbeat within the lease); tried again' END, \
       run_at = $1, locked_until = NULL, worker = NULL, updated_at = $1 \
     WHERE state = 'running' AND locked_until < $1";

/// Extend a running job's lease, only for the claim that holds it. $1 id, $2 fence, $3 lease
/// end, $4 now.
pub const HEARTBEAT_JOB: &str = "UPDATE jobs SET locked_until = $3, updated_at = $4 \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

/// Mark done every job of $1 (JSON `[{"id":..,"fence":..},..]`) still held by that claim, in
/// one statement; the ids it marked. $2 now. (SQLite's `->> 'id'` is `json_extract(.., '$.id')`
/// without a `$`, which the `$n` to `?n` rewrite would break.)
pub const FINISH_JOBS: &str = "UPDATE jobs SET state = 'done', finished_at = $2, locked_until = NULL, updated_at = $2 \
     WHERE id IN (SELECT value ->> 'id' FROM json_each($1)) AND state = 'running' \
       AND fence = (SELECT value ->> 'fence' FROM json_each($1) WHERE value ->> 'id' = jobs.id) \
     RETURNING id";
pub const FINISH_JOBS_PG: &str = "UPDATE jobs SET state = 'done', finished_at = $2, locked_until = NULL, updated_at = $2 \
     FROM jsonb_to_recordset(CAST(CAST($1 AS TEXT) AS jsonb)) AS f(id bigint, fence int) \
     WHERE jobs.id = f.id AND jobs.fence = f.fence AND jobs.state = 'running' RETURNING jobs.id";

/// A failed try: queued again at $5 when $4 (retryable) and tries are left, else failed for
/// good. $1 id, $2 fence, $3 error, $6 now. Returns the new state.
pub const FAIL_JOB: &str = "UPDATE jobs SET \
       state = CASE WHEN CAST($4 AS BOOLEAN) AND attempts < max_attempts THEN 'queued' ELSE 'failed' END, \
       run_at = CASE WHEN CAST($4 AS BOOLEAN) AND attempts < max_attempts THEN CAST($5 AS BIGINT) ELSE run_at END, \
       finished_at = CASE WHEN CAST($4 AS BOOLEAN) AND attempts < max_attempts THEN NULL \
         ELSE CAST($6 AS BIGINT) END, \
       last_error = CAST($3 AS TEXT), locked_until = NULL, updated_at = CAST($6 AS BIGINT) \
     WHERE id = $1 AND fence = $2 AND state = 'running' RETURNING state";

/// Give an unfinished job back (shutdown): queued at once, the interrupted try not counted.
/// $1 id, $2 fence, $3 now.
pub const RELEASE_JOB: &str = "UPDATE jobs SET state = 'queued', attempts = attempts - 1, run_at = $3, \
       locked_until = NULL, worker = NULL, updated_at = $3 \
     WHERE id = $1 AND fence = $2 AND state = 'running'";

/// Retention: done jobs finished before $1 (uses `jobs_done_idx`). $2 limit.
pub const PRUNE_DONE_JOBS: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
     WHERE state = 'done' AND finished_at <= $1 ORDER BY finished_at LIMIT $2)";
/// PostgreSQL form: rows found by primary key (see CLAIM_JOBS_PG), skipping rows another
/// instance is pruning.
pub const PRUNE_DONE_JOBS_PG: &str = "DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs \
     WHERE state = 'done' AND finished_at <= $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))";
/// Retention: failed jobs finished before $1 (uses `jobs_failed_idx`). $2 limit.
pub const PRUNE_FAILED_JOBS: &str = "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs \
     WHERE state = 'failed' AND finished_at <= $1 ORDER BY finished_at LIMIT $2)";
pub const PRUNE_FAILED_JOBS_PG: &str = "DELETE FROM jobs WHERE id = ANY(ARRAY(SELECT id FROM jobs \
     WHERE state = 'failed' AND finished_at <= $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))";

/// Queue depth by kind and state.
pub const JOB_COUNTS: &str = "SELECT kind, state, count(*) AS n FROM jobs GROUP BY kind, state";

/// When the longest-waiting due job became due. $1 now.
pub const OLDEST_RUNNABLE_JOB: &str = "SELECT min(run_at) AS oldest FROM jobs WHERE state = 'queued' AND run_at <= $1";

/// The latest jobs that failed for good. $1 limit.
pub const RECENT_FAILED_JOBS: &str =
    concat!("SELECT ", job_cols!(), " FROM jobs WHERE state = 'failed' ORDER BY finished_at DESC LIMIT $1");

/// Jobs waiting for another try after a failure. $1 limit.
pub const RETRYING_JOBS: &str = concat!(
    "SELECT ",
    job_cols!(),
    " FROM jobs WHERE state = 'queued' AND last_error IS NOT NULL ORDER BY updated_at DESC LIMIT $1"
);

/// Make every queued job of kind $1 due at $2 (an operator's "run now"; the job benchmark).
pub const MAKE_JOBS_DUE: &str = "UPDATE jobs SET run_at = $2, updated_at = $2 WHERE state = 'queued' AND kind = $1";

/// How many jobs of kind $1 are done, the first start and the last finish among them.
pub const JOB_SPAN: &str = "SELECT count(*) AS n, min(started_at) AS first_start, max(finished_at) AS last_finish \
     FROM jobs WHERE kind = $1 AND state = 'done'";

/// $1 id.
pub const JOB_BY_ID: &str = concat!("SELECT ", job_cols!(), " FROM jobs WHERE id = $1");

/// An operator's retry of a failed job: queued now with its tries counted from zero. $1 id,
/// $2 now.
pub const RETRY_JOB: &str = concat!(
    "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, finished_at = NULL, locked_until = NULL, \
       worker = NULL, updated_at = $2 WHERE id = $1 AND state = 'failed' RETURNING ",
    job_cols!()
);

// ---- Storage accounting (storage_usage, migration V5) ----

/// Clips holding bytes (not retired; expired ones are counted until the sweep removes them).
pub const USAGE_CLIPS: &str = "SELECT kind, count(*) AS items, CAST(coalesce(sum(size), 0) AS BIGINT) AS bytes FROM clips \
     WHERE consumed_at IS NULL AND deleted_at IS NULL GROUP BY kind";
/// Thumbnails (uses `clips_thumb_key_idx`).
pub const USAGE_THUMBNAILS: &str = "SELECT count(*) AS items, CAST(coalesce(sum(thumb_size), 0) AS BIGINT) AS bytes \
     FROM clips \
     WHERE thumb_key IS NOT NULL";
/// Chunks of uploads still in progress (a completed upload's chunks are its clip's bytes).
pub const USAGE_UPLOADS: &str = "SELECT count(*) AS items, CAST(coalesce(sum(c.size), 0) AS BIGINT) AS bytes \
     FROM upload_chunks c \
     JOIN upload_sessions s ON s.id = c.upload_id WHERE s.status <> 'complete'";
/// $1 kind, $2 items, $3 bytes, $4 computed at; never over newer figures (a late run's).
pub const SAVE_USAGE: &str = "INSERT INTO storage_usage (kind, items, bytes, computed_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (kind) DO UPDATE SET items = excluded.items, bytes = excluded.bytes, computed_at = excluded.computed_at \
     WHERE storage_usage.computed_at <= excluded.computed_at";
pub const LOAD_USAGE: &str = "SELECT kind, items, bytes, computed_at FROM storage_usage";
