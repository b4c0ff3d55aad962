-- lienthong ledger, version 2: deadlines, parking, re-delivery jobs.

-- Deadlines. "Not arrived": queued for longer than the threshold without a 01.
-- "Overdue": the document's DueDate passed without a 06 from this recipient.
-- Partial indexes keep each sweep proportional to what is due, not to the ledger.
-- Status packages travel as deliveries too; only documents have deadlines.
ALTER TABLE deliveries ADD COLUMN kind text NOT NULL DEFAULT 'edoc'
    CHECK (kind IN ('edoc', 'status'));
ALTER TABLE deliveries ADD COLUMN due_at date;
ALTER TABLE deliveries ADD COLUMN not_arrived_at timestamptz;
ALTER TABLE deliveries ADD COLUMN overdue_at timestamptz;
-- When the hub first saw each answer: what the statistics (time to 01, 03, 06) read.
ALTER TABLE deliveries ADD COLUMN arrived_at timestamptz;
ALTER TABLE deliveries ADD COLUMN accepted_at timestamptz;
ALTER TABLE deliveries ADD COLUMN refused_at timestamptz;
ALTER TABLE deliveries ADD COLUMN done_at timestamptz;
CREATE INDEX deliveries_created ON deliveries (created_at);

CREATE INDEX deliveries_awaiting_arrival ON deliveries (queued_at)
    WHERE kind = 'edoc' AND state = 'queued' AND not_arrived_at IS NULL;
CREATE INDEX deliveries_awaiting_done ON deliveries (due_at)
    WHERE kind = 'edoc' AND due_at IS NOT NULL AND overdue_at IS NULL
      AND state NOT IN ('done', 'refused', 'revoked', 'replaced', 'recalled');
CREATE INDEX deliveries_hub ON deliveries (hub_id);
CREATE INDEX status_events_recorded ON status_events (recorded_at);

-- Messages dead-lettered to lt.parking, copied here by the routers so operators can list,
-- show, requeue and drop them with filters. The broker's copy is acked once recorded.
CREATE TABLE parked_messages (
    id                 uuid PRIMARY KEY,
    parked_at          timestamptz NOT NULL DEFAULT now(),
    source_queue       text,
    reason             text NOT NULL,                -- reason name (POISON, ...)
    reason_code        integer NOT NULL,
    error              text,
    amqp_user          text,
    gateway_id         text,
    routing_key        text,
    message_id         text,
    message_type       text,
    headers            jsonb NOT NULL DEFAULT '{}',
    body               bytea NOT NULL,
    content_sha256     bytea NOT NULL,
    state              text NOT NULL DEFAULT 'parked'
                       CHECK (state IN ('parked', 'requeued', 'dropped')),
    settled_at         timestamptz,
    settled_by         text,
    settled_why        text
);
CREATE INDEX parked_messages_state ON parked_messages (state, parked_at);

-- Every batch re-delivery: who, when, which filter, how far it got, what came of it.
CREATE TABLE redelivery_jobs (
    id                 uuid PRIMARY KEY,
    created_at         timestamptz NOT NULL DEFAULT now(),
    actor              text NOT NULL,
    filter             jsonb NOT NULL,
    rate               double precision,
    state              text NOT NULL DEFAULT 'running'
                       CHECK (state IN ('running', 'done', 'interrupted', 'failed')),
    total              integer NOT NULL DEFAULT 0,
    done               integer NOT NULL DEFAULT 0,
    queued             integer NOT NULL DEFAULT 0,
    undeliverable      integer NOT NULL DEFAULT 0,
    cursor_id          uuid,                          -- last delivery handled (resume point)
    updated_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    error              text
);
