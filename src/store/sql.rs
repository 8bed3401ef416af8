//! Every SQL statement ferry runs, written once in PostgreSQL's `$n` placeholder style; the
//! SQLite backend rewrites `$n` to `?n`. Statements that only one backend can run say so.

macro_rules! clip_cols {
    () => {
        "id, code, kind, blob_key, filename, mime_type, size, sha256, created_at, expires_at, \
         one_time, max_downloads, download_count, access_code_hash, quick_share, delete_token_hash, \
         consumed_at, format, meta, stream_header, parts"
    };
}

macro_rules! upload_cols {
    () => {
        "id, filename, filesize, total_chunks, chunk_size, mime_type, kind, expiry_ms, one_time, \
         has_password, quick_share, is_text, max_downloads, status, clip_code, created_at, \
         last_activity, delete_token"
    };
}

/// A live clip by code (uses `clips_live_code_idx`). $1 code, $2 now.
pub const LIVE_CLIP_BY_CODE: &str = concat!(
    "SELECT ",
    clip_cols!(),
    " FROM clips WHERE code = $1 AND consumed_at IS NULL AND deleted_at IS NULL AND expires_at > $2"
);

/// The clip an upload session produced (uses `clips_upload_idx`). $1 upload id.
pub const CLIP_BY_UPLOAD: &str = concat!("SELECT ", clip_cols!(), " FROM clips WHERE upload_id = $1");

/// Insert a clip unless its code collides with a live one or its upload already has a clip.
pub const INSERT_CLIP: &str = concat!(
    "INSERT INTO clips (code, kind, blob_key, filename, mime_type, size, sha256, created_at, \
     expires_at, one_time, max_downloads, access_code_hash, quick_share, delete_token_hash, upload_id, \
     format, meta, stream_header, parts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
     ON CONFLICT DO NOTHING RETURNING ",
    clip_cols!()
);

/// The atomic download claim for one-time and download-limited clips: one statement, so
/// concurrent callers (in any number of processes) cannot both take the last download.
/// $1 id, $2 now. Returns the row as it is after the claim.
pub const CLAIM_DOWNLOAD: &str = concat!(
    "UPDATE clips SET download_count = download_count + 1, \
     consumed_at = CASE WHEN one_time OR (max_downloads IS NOT NULL AND download_count + 1 >= max_downloads) \
                   THEN $2 ELSE NULL END \
     WHERE id = $1 AND consumed_at IS NULL AND deleted_at IS NULL AND expires_at > $2 \
       AND (max_downloads IS NULL OR download_count < max_downloads) \
     RETURNING ",
    clip_cols!()
);

/// Retire a live clip early. $1 id, $2 now.
pub const MARK_CLIP_DELETED: &str =
    "UPDATE clips SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL AND consumed_at IS NULL";

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
/// Runnable jobs in due order (uses `jobs_runnable_idx`). $1 now, $2 limit.
pub const RUNNABLE_JOBS_BATCH: &str = "SELECT id, kind, payload FROM jobs \
     WHERE status = 'pending' AND run_at <= $1 ORDER BY run_at LIMIT $2";
pub const RUNNABLE_JOBS_BATCH_PG: &str = concat!(
    "SELECT id, kind, payload FROM jobs \
     WHERE status = 'pending' AND run_at <= $1 ORDER BY run_at LIMIT $2",
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

/// Give the lock back after a failed assembly so the client can fix and retry. $1 id, $2 now.
pub const ABORT_ASSEMBLY: &str =
    "UPDATE upload_sessions SET status = 'uploading', last_activity = $2 WHERE id = $1 AND status = 'assembling'";

/// $1 id, $2 clip code, $3 now.
pub const MARK_UPLOAD_COMPLETE: &str =
    "UPDATE upload_sessions SET status = 'complete', clip_code = $2, last_activity = $3 WHERE id = $1";

/// Cancel: chunks go with the session (ON DELETE CASCADE).
pub const DELETE_UPLOAD: &str = "DELETE FROM upload_sessions WHERE id = $1";

/// Sweep: remove one batch of expired live clips, returning their blob keys. $1 now, $2 limit.
pub const SWEEP_EXPIRED_CLIPS: &str = "DELETE FROM clips WHERE id IN (SELECT id FROM clips \
     WHERE expires_at <= $1 AND consumed_at IS NULL AND deleted_at IS NULL ORDER BY expires_at LIMIT $2) \
     RETURNING blob_key, parts";
pub const SWEEP_EXPIRED_CLIPS_PG: &str = "DELETE FROM clips WHERE id IN (SELECT id FROM clips \
     WHERE expires_at <= $1 AND consumed_at IS NULL AND deleted_at IS NULL ORDER BY expires_at LIMIT $2 \
     FOR UPDATE SKIP LOCKED) RETURNING blob_key, parts";

/// Sweep: consumed or deleted clips retired before $1. $2 limit.
pub const SWEEP_RETIRED_CLIPS: &str = "DELETE FROM clips WHERE id IN (SELECT id FROM clips \
     WHERE (consumed_at IS NOT NULL OR deleted_at IS NOT NULL) AND coalesce(consumed_at, deleted_at) <= $1 \
     ORDER BY id LIMIT $2) RETURNING blob_key, parts";
pub const SWEEP_RETIRED_CLIPS_PG: &str = "DELETE FROM clips WHERE id IN (SELECT id FROM clips \
     WHERE (consumed_at IS NOT NULL OR deleted_at IS NOT NULL) AND coalesce(consumed_at, deleted_at) <= $1 \
     ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING blob_key, parts";

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
