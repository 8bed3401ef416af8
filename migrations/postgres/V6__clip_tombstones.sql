-- ferry schema v6 (PostgreSQL): tombstones, so a link that no longer opens can say why.
-- When a clip stops being live (its sender deleted it, its one-time or last permitted download
-- consumed it, or the sweep removed it after it expired), its code is remembered here with the
-- reason and the time, for `sweep.tombstone_retention`, then swept. Content-free by design:
-- no name, size, address, token or metadata, only the three columns below. A new clip that
-- gets the same code (a 6-character quick-share code may come round again) removes it.
--   code     the clip's public id
--   reason   expired | consumed | deleted
--   gone_at  when it stopped being live (for an expired clip: its expiry), ms since the epoch
CREATE TABLE clip_tombstones (
    code     TEXT    PRIMARY KEY CHECK (code ~ '^[A-Z0-9]{6}$|^[A-Z0-9]{10}$'),
    reason   TEXT    NOT NULL CHECK (reason IN ('expired', 'consumed', 'deleted')),
    gone_at  BIGINT  NOT NULL
);

-- The sweep's scan for tombstones past the retention.
CREATE INDEX clip_tombstones_gone_idx ON clip_tombstones (gone_at);
