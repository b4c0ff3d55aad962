-- Package bodies leave the hot table: `lienthong archive run --older-than-days N --to DIR`
-- writes the body of an old, settled document to a file (checked against content_sha256
-- before the row changes), then sets body to NULL and records where the file is. The row,
-- its hash and its size stay: `lienthong archive verify` re-reads every file against them,
-- and re-delivery reads an archived body back from its file.
ALTER TABLE documents ALTER COLUMN body DROP NOT NULL;
ALTER TABLE documents ADD COLUMN archived_at timestamptz;
ALTER TABLE documents ADD COLUMN archive_ref text;
ALTER TABLE documents ADD CONSTRAINT documents_body_or_archive
    CHECK (body IS NOT NULL OR (archive_ref IS NOT NULL AND archived_at IS NOT NULL));
-- what `archive run` looks for: bodies still in the table, oldest first
CREATE INDEX documents_unarchived_time ON documents (received_at) WHERE archive_ref IS NULL;
