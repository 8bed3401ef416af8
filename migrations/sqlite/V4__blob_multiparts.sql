-- ferry schema v4 (SQLite): mirrors migrations/postgres/V4. Multipart uploads an assembly has
-- opened in the object store, recorded before their first part and removed once completed or
-- aborted, so a crash mid-assembly leaves an open upload the sweep can find and abort.
CREATE TABLE blob_multiparts (
    upload_id  TEXT PRIMARY KEY,
    blob_key   TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX blob_multiparts_created ON blob_multiparts (created_at);
