-- ferry schema v3 (SQLite): mirrors migrations/postgres/V3. Chunks stay where they landed and
-- become the clip's content: upload_chunks.blob_leaf names each chunk's blob (unique per
-- attempt; NULL from an older build means `<index>`), clips.parts lists a clip's parts
-- (`leaf:size` joined by commas; NULL for a single blob at blob_key).
ALTER TABLE upload_chunks ADD COLUMN blob_leaf TEXT;
ALTER TABLE clips ADD COLUMN parts TEXT;
