-- ferry schema v1 (SQLite). Append-only: never edit an applied migration, add V<n+1>.
-- Mirrors migrations/postgres/V1; timestamps are milliseconds since the Unix epoch.

CREATE TABLE clips (
    id                 INTEGER PRIMARY KEY,
    code               TEXT    NOT NULL CHECK (length(code) IN (6, 10) AND code NOT GLOB '*[^A-Z0-9]*'),
    kind               TEXT    NOT NULL CHECK (kind IN ('text', 'file')),
    blob_key           TEXT    NOT NULL,
    filename           TEXT,
    mime_type          TEXT,
    size               INTEGER NOT NULL CHECK (size >= 0),
    sha256             TEXT    NOT NULL CHECK (length(sha256) = 64),
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    one_time           INTEGER NOT NULL DEFAULT 0 CHECK (one_time IN (0, 1)),
    max_downloads      INTEGER CHECK (max_downloads IS NULL OR max_downloads > 0),
    download_count     INTEGER NOT NULL DEFAULT 0 CHECK (download_count >= 0),
    access_code_hash   TEXT,
    quick_share        INTEGER NOT NULL DEFAULT 0 CHECK (quick_share IN (0, 1)),
    consumed_at        INTEGER,
    deleted_at         INTEGER,
    delete_token_hash  TEXT    NOT NULL,
    upload_id          TEXT
);

-- One clip per upload session: makes completion idempotent without a transaction.
CREATE UNIQUE INDEX clips_upload_idx ON clips (upload_id);
-- Orphan reconciliation asks whether a stored blob still has its row.
CREATE INDEX clips_blob_key_idx ON clips (blob_key);

CREATE UNIQUE INDEX clips_live_code_idx ON clips (code)
    WHERE consumed_at IS NULL AND deleted_at IS NULL;
CREATE INDEX clips_live_expiry_idx ON clips (expires_at)
    WHERE consumed_at IS NULL AND deleted_at IS NULL;
CREATE INDEX clips_retired_idx ON clips (id)
    WHERE consumed_at IS NOT NULL OR deleted_at IS NOT NULL;

CREATE TABLE upload_sessions (
    id             TEXT    PRIMARY KEY CHECK (length(id) = 16 AND id NOT GLOB '*[^0-9A-F]*'),
    filename       TEXT    NOT NULL,
    filesize       INTEGER CHECK (filesize IS NULL OR filesize >= 0),
    total_chunks   INTEGER NOT NULL CHECK (total_chunks > 0),
    chunk_size     INTEGER NOT NULL CHECK (chunk_size > 0),
    mime_type      TEXT,
    kind           TEXT    NOT NULL CHECK (kind IN ('text', 'file')),
    expiry_ms      INTEGER NOT NULL CHECK (expiry_ms > 0),
    one_time       INTEGER NOT NULL DEFAULT 0 CHECK (one_time IN (0, 1)),
    has_password   INTEGER NOT NULL DEFAULT 0 CHECK (has_password IN (0, 1)),
    quick_share    INTEGER NOT NULL DEFAULT 0 CHECK (quick_share IN (0, 1)),
    is_text        INTEGER NOT NULL DEFAULT 0 CHECK (is_text IN (0, 1)),
    max_downloads  INTEGER CHECK (max_downloads IS NULL OR max_downloads > 0),
    status         TEXT    NOT NULL DEFAULT 'uploading'
                           CHECK (status IN ('uploading', 'assembling', 'complete')),
    clip_code      TEXT,
    -- Returned again by repeated completes; the clip itself keeps only its hash.
    delete_token   TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    last_activity  INTEGER NOT NULL
);

CREATE INDEX upload_sessions_abandoned_idx ON upload_sessions (last_activity)
    WHERE status = 'uploading';
-- Completed (or stale assembling) sessions kept for idempotent completes, swept later.
CREATE INDEX upload_sessions_finished_idx ON upload_sessions (last_activity)
    WHERE status <> 'uploading';

CREATE TABLE upload_chunks (
    upload_id    TEXT    NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    chunk_index  INTEGER NOT NULL CHECK (chunk_index >= 0),
    size         INTEGER NOT NULL CHECK (size >= 0),
    sha256       TEXT,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (upload_id, chunk_index)
) WITHOUT ROWID;

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL DEFAULT '{}',
    status        TEXT    NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    run_at        INTEGER NOT NULL,
    locked_until  INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL
);

CREATE INDEX jobs_runnable_idx ON jobs (run_at) WHERE status = 'pending';
