-- ferry schema v2 (SQLite): mirrors migrations/postgres/V2. What a browser client said about
-- its encryption at complete (FORMAT.md); NULL for Qopy clients and curl.
ALTER TABLE clips ADD COLUMN format INTEGER CHECK (format IS NULL OR format IN (3, 4));
ALTER TABLE clips ADD COLUMN meta TEXT;
ALTER TABLE clips ADD COLUMN stream_header TEXT;
