-- The audit log covers the trust configuration (issue #20), and its head leaves the hub.
--
-- audit_anchors: every signed head the hub has published to the gateways (lt.receipts,
-- type audit.anchor). A gateway keeps its copies; `lienthong audit verify --anchor FILE`
-- checks the chain still passes through any of them. Each anchor names the one before it
-- (number - 1), so two anchors a gateway holds can be checked for consistency offline.
CREATE TABLE audit_anchors (
    number             bigint PRIMARY KEY,               -- 1, 2, 3, ... (one per publication)
    seq                bigint NOT NULL,                  -- audit_log.id of the head signed
    hash               bytea NOT NULL,                   -- that row's hash
    at                 timestamptz NOT NULL DEFAULT now(),
    gateways           integer NOT NULL,                 -- how many gateways it was sent to
    body               jsonb NOT NULL                    -- the signed anchor as published
);

-- `lienthong audit list --actor/--action/--since` on a log of millions of routing rows
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);

-- a removed gateway keeps its row (documents refer to it) but may do nothing any more
ALTER TABLE gateways DROP CONSTRAINT gateways_status_check;
ALTER TABLE gateways ADD CONSTRAINT gateways_status_check
    CHECK (status IN ('active', 'suspended', 'removed'));
