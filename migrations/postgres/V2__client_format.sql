-- ferry schema v2 (PostgreSQL): what a browser client said about its encryption at complete
-- (FORMAT.md). All NULL for clips made by Qopy clients and curl, which mean format 3 / none.
--   format         3 (Qopy V3) or 4 (ferry's streaming V4)
--   meta           the encrypted file metadata, base64url, opaque to the server
--   stream_header  the first 28 bytes of a V4 stream (salt and nonce prefix, nothing secret),
--                  base64url: the metadata key is salted with it, so a reader needs it to show
--                  a file's name before the download that may spend the clip
ALTER TABLE clips ADD COLUMN format INTEGER CHECK (format IS NULL OR format IN (3, 4));
ALTER TABLE clips ADD COLUMN meta TEXT;
ALTER TABLE clips ADD COLUMN stream_header TEXT;
