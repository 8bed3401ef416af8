-- ferry schema v6 (SQLite): mirrors migrations/postgres/V6 (see there for what it keeps and
-- why it keeps nothing else): the code, the reason and the time a clip stopped being live.
CREATE TABLE clip_tombstones (
    code     TEXT    PRIMARY KEY CHECK (length(code) IN (6, 10) AND code NOT GLOB '*[^A-Z0-9]*'),
    reason   TEXT    NOT NULL CHECK (reason IN ('expired', 'consumed', 'deleted')),
    gone_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX clip_tombstones_gone_idx ON clip_tombstones (gone_at);
