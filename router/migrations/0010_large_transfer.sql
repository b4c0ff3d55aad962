-- Large packages (router.transfer): a chunked, resumable upload whose bytes are stored once,
-- here in the ledger's own database, and claimed by a small message on the normal intake
-- path. The document row then holds a small JSON reference as its body (the claim), and
-- recipients fetch the chunks.
CREATE TABLE transfer_uploads (
    id             uuid PRIMARY KEY,
    gateway_id     text NOT NULL REFERENCES gateways (id),
    amqp_user      text NOT NULL,
    message_id     text NOT NULL,               -- the claim's message_id (receipts match it)
    size_bytes     bigint NOT NULL,
    sha256         bytea NOT NULL,              -- of the whole package
    chunk_bytes    integer NOT NULL,
    chunk_count    integer NOT NULL,
    -- open: chunks arriving; stored: claimed and accepted (hub_id set);
    -- rejected / expired / duplicate: its chunks are gone, the row stays for the record
    state          text NOT NULL DEFAULT 'open'
                   CHECK (state IN ('open', 'stored', 'rejected', 'expired', 'duplicate')),
    reason_code    integer,
    detail         text,
    hub_id         uuid REFERENCES documents (hub_id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    settled_at     timestamptz
);
-- one upload per (gateway, message_id, content): opening again resumes it
CREATE UNIQUE INDEX transfer_uploads_message
    ON transfer_uploads (gateway_id, message_id, sha256) WHERE state = 'open';
CREATE INDEX transfer_uploads_expiry ON transfer_uploads (expires_at) WHERE state = 'open';
CREATE INDEX transfer_uploads_hub ON transfer_uploads (hub_id) WHERE hub_id IS NOT NULL;

CREATE TABLE transfer_chunks (
    upload_id  uuid NOT NULL REFERENCES transfer_uploads (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    sha256     bytea NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
-- out of line, uncompressed: packages are mostly compressed already (PDF, ZIP, video),
-- and pglz on every 4 MiB chunk would cost CPU for nothing
ALTER TABLE transfer_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
