-- ferry schema v3 (PostgreSQL): a three-step upload's chunks stay where they landed and become
-- the clip's content, so completing moves no bytes.
--   upload_chunks.blob_leaf  the chunk's blob below chunks/<upload id>/, unique per attempt
--                            (`<index>.<random>`), so the row always names the bytes it
--                            describes; NULL for chunks received by an older build (`<index>`)
--   clips.parts              NULL: the content is the one blob at blob_key; else the ordered
--                            parts below blob_key as `leaf:size` joined by commas
ALTER TABLE upload_chunks ADD COLUMN blob_leaf TEXT;
ALTER TABLE clips ADD COLUMN parts TEXT;
