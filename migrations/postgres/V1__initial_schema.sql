-- ferry schema v1 (PostgreSQL). Append-only: never edit an applied migration, add V<n+1>.
-- Timestamps are milliseconds since the Unix epoch (BIGINT), as in the API.

CREATE TABLE clips (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code               TEXT    NOT NULL CHECK (code ~ '^[A-Z0-9]{6}$|^[A-Z0-9]{10}$'),
    kind               TEXT    NOT NULL CHECK (kind IN ('text', 'file')),
    blob_key           TEXT    NOT NULL,
    filename           TEXT,
    mime_type          TEXT,
    size               BIGINT  NOT NULL CHECK (size >= 0),
    sha256             TEXT    NOT NULL CHECK (length(sha256) = 64),
    created_at         BIGINT  NOT NULL,
    expires_at         BIGINT  NOT NULL,
    one_time           BOOLEAN NOT NULL DEFAULT FALSE,
    max_downloads      INTEGER CHECK (max_downloads IS NULL OR max_downloads > 0),
    download_count     INTEGER NOT NULL DEFAULT 0 CHECK (download_count >= 0),
    access_code_hash   TEXT,
    quick_share        BOOLEAN NOT NULL DEFAULT FALSE,
    consumed_at        BIGINT,
    deleted_at         BIGINT,
    delete_token_hash  TEXT    NOT NULL,
    upload_id          TEXT
);

-- One clip per upload session: makes completion idempotent without a transaction.
CREATE UNIQUE INDEX clips_upload_idx ON clips (upload_id);
-- Orphan reconciliation asks whether a stored blob still has its row.
CREATE INDEX clips_blob_key_idx ON clips (blob_key);

-- The hot lookup: a live clip by its code. Codes are unique among live clips only; a retired
-- row keeps its code until the sweep removes it.
CREATE UNIQUE INDEX clips_live_code_idx ON clips (code)
    WHERE consumed_at IS NULL AND deleted_at IS NULL;
-- The sweep's expiry scan over live clips.
CREATE INDEX clips_live_expiry_idx ON clips (expires_at)
    WHERE consumed_at IS NULL AND deleted_at IS NULL;
-- The sweep's scan for consumed or deleted clips whose blobs and rows remain.
CREATE INDEX clips_retired_idx ON clips (id)
    WHERE consumed_at IS NOT NULL OR deleted_at IS NOT NULL;

CREATE TABLE upload_sessions (
    id             TEXT    PRIMARY KEY CHECK (id ~ '^[0-9A-F]{16}$'),
    filename       TEXT    NOT NULL,
    filesize       BIGINT  CHECK (filesize IS NULL OR filesize >= 0),
    total_chunks   INTEGER NOT NULL CHECK (total_chunks > 0),
    chunk_size     BIGINT  NOT NULL CHECK (chunk_size > 0),
    mime_type      TEXT,
    kind           TEXT    NOT NULL CHECK (kind IN ('text', 'file')),
    expiry_ms      BIGINT  NOT NULL CHECK (expiry_ms > 0),
    one_time       BOOLEAN NOT NULL DEFAULT FALSE,
    has_password   BOOLEAN NOT NULL DEFAULT FALSE,
    quick_share    BOOLEAN NOT NULL DEFAULT FALSE,
    is_text        BOOLEAN NOT NULL DEFAULT FALSE,
    max_downloads  INTEGER CHECK (max_downloads IS NULL OR max_downloads > 0),
    status         TEXT    NOT NULL DEFAULT 'uploading'
                           CHECK (status IN ('uploading', 'assembling', 'complete')),
    clip_code      TEXT,
    -- Returned again by repeated completes; the clip itself keeps only its hash.
    delete_token   TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    last_activity  BIGINT  NOT NULL
);

-- The sweep's scan for abandoned uploads.
CREATE INDEX upload_sessions_abandoned_idx ON upload_sessions (last_activity)
    WHERE status = 'uploading';
-- Completed (or stale assembling) sessions kept for idempotent completes, swept later.
CREATE INDEX upload_sessions_finished_idx ON upload_sessions (last_activity)
    WHERE status <> 'uploading';

CREATE TABLE upload_chunks (
    upload_id    TEXT    NOT NULL REFERENCES upload_sessions (id) ON DELETE CASCADE,
    chunk_index  INTEGER NOT NULL CHECK (chunk_index >= 0),
    size         BIGINT  NOT NULL CHECK (size >= 0),
    sha256       TEXT,
    received_at  BIGINT  NOT NULL,
    PRIMARY KEY (upload_id, chunk_index)
);

CREATE TABLE jobs (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL DEFAULT '{}',
    status        TEXT    NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    run_at        BIGINT  NOT NULL,
    locked_until  BIGINT,
    last_error    TEXT,
    created_at    BIGINT  NOT NULL
);

-- Runnable jobs in due order.
CREATE INDEX jobs_runnable_idx ON jobs (run_at) WHERE status = 'pending';
