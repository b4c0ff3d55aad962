-- lienthong ledger, version 1: directory, documents, deliveries, status events, audit log.
-- Applied once by `lienthong db migrate`; recorded in schema_migrations.

CREATE TABLE gateways (
    id               text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name             text NOT NULL,
    kind             text NOT NULL DEFAULT 'agency',
    amqp_user        text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    serves           text[] NOT NULL DEFAULT '{}',   -- codes and topic patterns (#.H47)
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agencies (
    id               bigserial PRIMARY KEY,
    code             text NOT NULL UNIQUE,            -- canonical, normalised
    name             text NOT NULL,
    parent_code      text,
    gateway_id       text REFERENCES gateways (id),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agencies_gateway ON agencies (gateway_id);
CREATE INDEX agencies_parent ON agencies (parent_code);

-- Every spelling an agency is reached by, its canonical code included: one lookup resolves
-- G12 and 000.00.00.G12 to the same agency.
CREATE TABLE agency_aliases (
    alias            text PRIMARY KEY,                -- normalised
    agency_id        bigint NOT NULL REFERENCES agencies (id) ON DELETE CASCADE
);
CREATE INDEX agency_aliases_agency ON agency_aliases (agency_id);

-- One row per accepted package (documents and status packages alike).
CREATE TABLE documents (
    hub_id             uuid PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('edoc', 'status')),
    dedup_key          text NOT NULL UNIQUE,
    edxml_document_id  text,
    sender_agency_id   bigint NOT NULL REFERENCES agencies (id),
    sender_code        text NOT NULL,                -- as written in From/OrganId
    sender_gateway_id  text NOT NULL REFERENCES gateways (id),
    business_type      smallint,
    status_code        text,
    target_hub_id      uuid REFERENCES documents (hub_id),
    content_sha256     bytea NOT NULL,
    size_bytes         integer NOT NULL,
    code_text          text,
    subject            text,
    promulgation_date  date,
    due_date           date,
    message_id         text,                         -- the gateway's AMQP message_id
    warnings           jsonb NOT NULL DEFAULT '[]',
    received_at        timestamptz NOT NULL DEFAULT now(),
    body               bytea NOT NULL                -- the package bytes, unchanged
);
CREATE INDEX documents_edxml_id ON documents (edxml_document_id, sender_agency_id);
CREATE INDEX documents_sender_time ON documents (sender_agency_id, received_at);
CREATE INDEX documents_target ON documents (target_hub_id) WHERE target_hub_id IS NOT NULL;

-- One row per package x recipient agency.
CREATE TABLE deliveries (
    id                 uuid PRIMARY KEY,
    hub_id             uuid NOT NULL REFERENCES documents (hub_id),
    recipient_agency_id bigint NOT NULL REFERENCES agencies (id),
    recipient_code     text NOT NULL,                -- as written in To (first spelling)
    gateway_id         text NOT NULL REFERENCES gateways (id),
    copy_id            uuid NOT NULL,                -- AMQP message_id of the gateway's copy
    state              text NOT NULL,
    last_status_code   text,
    recall_state       text CHECK (recall_state IN ('requested', 'agreed', 'refused')),
    attempts           integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    queued_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_reason_code   integer,
    last_error         text,
    UNIQUE (hub_id, recipient_agency_id)
);
CREATE INDEX deliveries_recipient_state ON deliveries (recipient_agency_id, state);
CREATE INDEX deliveries_gateway_state ON deliveries (gateway_id, state);
CREATE INDEX deliveries_state_created ON deliveries (state, created_at);

-- Append-only: every status package and hub-side state change, per delivery.
CREATE TABLE status_events (
    id                 bigserial PRIMARY KEY,
    delivery_id        uuid NOT NULL REFERENCES deliveries (id),
    status_hub_id      uuid REFERENCES documents (hub_id),
    status_code        text,                         -- 01..16, NULL for hub-side events
    state              text NOT NULL,                -- delivery state after the event
    issuer_code        text,
    description        text,
    event_time         timestamptz,                  -- as stamped in the package
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    flags              text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX status_events_delivery ON status_events (delivery_id, id);

-- Every package the hub refused or parked, with its bytes: bad input is never lost.
CREATE TABLE rejections (
    id                 uuid PRIMARY KEY,
    received_at        timestamptz NOT NULL DEFAULT now(),
    amqp_user          text,
    gateway_id         text,
    message_id         text,
    routing_key        text,
    reason             text NOT NULL,
    reason_code        integer NOT NULL,
    detail             text,
    size_bytes         integer NOT NULL,
    content_sha256     bytea NOT NULL,
    body               bytea
);
CREATE INDEX rejections_gateway_time ON rejections (gateway_id, received_at);

-- A message a router saw more than once before acking it (a crash or an error mid-batch).
CREATE TABLE processing_attempts (
    content_sha256     bytea NOT NULL,
    message_id         text NOT NULL,
    attempts           integer NOT NULL DEFAULT 0,
    last_error         text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (content_sha256, message_id)
);

-- Append-only, hash-chained: each row's hash covers the previous row's hash and its own
-- content, so an edited, deleted or reordered row breaks the chain.
CREATE TABLE audit_log (
    id                 bigint PRIMARY KEY,               -- assigned by the chain trigger
    at                 timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor              text NOT NULL,
    action             text NOT NULL,
    subject            text NOT NULL,
    details            jsonb NOT NULL DEFAULT '{}',
    prev_hash          bytea NOT NULL,
    hash               bytea NOT NULL
);

CREATE TABLE audit_head (
    one                boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_id            bigint NOT NULL,
    hash               bytea NOT NULL
);
INSERT INTO audit_head (last_id, hash) VALUES (0, '\x00'::bytea);

CREATE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head audit_head%ROWTYPE;
BEGIN
    SELECT * INTO head FROM audit_head FOR UPDATE;
    NEW.id := head.last_id + 1;   -- ids follow the chain, whatever the commit order
    NEW.prev_hash := head.hash;
    NEW.hash := sha256(
        head.hash
        || convert_to(
            NEW.id::text || '|' || to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
            || '|' || NEW.actor || '|' || NEW.action || '|' || NEW.subject
            || '|' || NEW.details::text,
            'UTF8'));
    UPDATE audit_head SET last_id = NEW.id, hash = NEW.hash;
    RETURN NEW;
END;
$$;

CREATE TRIGGER audit_chain BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_chain();

CREATE FUNCTION audit_no_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_no_change();
