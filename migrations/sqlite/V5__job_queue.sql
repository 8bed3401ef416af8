-- ferry schema v5 (SQLite): mirrors migrations/postgres/V5 (see there for what each column
-- means), without the NOTIFY trigger: on SQLite one process writes, and it wakes its own
-- workers.
DROP TABLE IF EXISTS jobs;
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL DEFAULT '{}',
    state         TEXT    NOT NULL DEFAULT 'queued'
                          CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  INTEGER NOT NULL CHECK (max_attempts > 0),
    fence         INTEGER NOT NULL DEFAULT 0,
    run_at        INTEGER NOT NULL,
    dedupe_key    TEXT,
    last_error    TEXT,
    locked_until  INTEGER,
    worker        TEXT,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    finished_at   INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX jobs_runnable_idx ON jobs (run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_done_idx ON jobs (finished_at) WHERE state = 'done';
CREATE INDEX jobs_failed_idx ON jobs (finished_at) WHERE state = 'failed';
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');

ALTER TABLE clips ADD COLUMN thumb_key TEXT;
ALTER TABLE clips ADD COLUMN thumb_type TEXT;
ALTER TABLE clips ADD COLUMN thumb_size INTEGER;
CREATE INDEX clips_thumb_key_idx ON clips (thumb_key) WHERE thumb_key IS NOT NULL;

CREATE TABLE storage_usage (
    kind         TEXT    PRIMARY KEY,
    items        INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    computed_at  INTEGER NOT NULL
);
