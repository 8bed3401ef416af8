-- ferry schema v5 (PostgreSQL): the durable job queue, thumbnails and storage accounting.
--
-- jobs replaces V1's unused table of the same name. A job is queued, running (claimed by one
-- worker, which keeps `locked_until` in the future with heartbeats), done or failed.
--   attempts      tries counted against max_attempts (a try released at shutdown is not one)
--   fence         bumped by every claim and never lowered: a worker's heartbeat, completion,
--                 failure or release names the fence it claimed with, so a worker presumed dead
--                 (its lease ran out and another claimed the job) can no longer change the row
--   dedupe_key    at most one queued or running job per key (jobs_dedupe_idx)
--   finished_at   when it became done or failed; retention removes it after a while
DROP TABLE IF EXISTS jobs;
CREATE TABLE jobs (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          TEXT    NOT NULL,
    payload       TEXT    NOT NULL DEFAULT '{}',
    state         TEXT    NOT NULL DEFAULT 'queued'
                          CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  INTEGER NOT NULL CHECK (max_attempts > 0),
    fence         INTEGER NOT NULL DEFAULT 0,
    run_at        BIGINT  NOT NULL,
    dedupe_key    TEXT,
    last_error    TEXT,
    locked_until  BIGINT,
    worker        TEXT,
    created_at    BIGINT  NOT NULL,
    started_at    BIGINT,
    finished_at   BIGINT,
    updated_at    BIGINT  NOT NULL
);
-- Claiming: queued jobs in due order.
CREATE INDEX jobs_runnable_idx ON jobs (run_at, id) WHERE state = 'queued';
-- Recovery: running jobs whose lease ran out.
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE state = 'running';
-- Retention of finished jobs (and the admin view's recent failures).
CREATE INDEX jobs_done_idx ON jobs (finished_at) WHERE state = 'done';
CREATE INDEX jobs_failed_idx ON jobs (finished_at) WHERE state = 'failed';
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');

-- Workers of every instance LISTEN on ferry_jobs; one notification per inserting statement
-- (delivered at commit) wakes them at once instead of at their next poll.
CREATE FUNCTION ferry_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferry_jobs', '');
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH STATEMENT EXECUTE FUNCTION ferry_jobs_notify();

-- A clip's thumbnail (plaintext images only): its blob key, content type and size.
ALTER TABLE clips ADD COLUMN thumb_key TEXT;
ALTER TABLE clips ADD COLUMN thumb_type TEXT;
ALTER TABLE clips ADD COLUMN thumb_size BIGINT;
-- The reconcile asks whether a stored thumbnail still has its clip.
CREATE INDEX clips_thumb_key_idx ON clips (thumb_key) WHERE thumb_key IS NOT NULL;

-- Storage in use as last computed by the accounting job, one row per kind of bytes, read by
-- every instance into memory (so no request counts rows or walks the blob store).
CREATE TABLE storage_usage (
    kind         TEXT   PRIMARY KEY,
    items        BIGINT NOT NULL,
    bytes        BIGINT NOT NULL,
    computed_at  BIGINT NOT NULL
);
