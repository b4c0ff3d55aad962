-- lienthong ledger, version 4: what the ops service reads, kept cheap at 1,000 gateways.

-- Oldest package still queued per gateway: one index probe per gateway instead of reading
-- every queued delivery.
CREATE INDEX deliveries_gateway_queued ON deliveries (gateway_id, queued_at)
    WHERE state = 'queued';

-- The "not arrived" and "overdue" lists and gauges: only flagged, still-open deliveries.
CREATE INDEX deliveries_flagged_not_arrived ON deliveries (not_arrived_at)
    WHERE not_arrived_at IS NOT NULL AND state = 'queued';
CREATE INDEX deliveries_flagged_overdue ON deliveries (overdue_at)
    WHERE overdue_at IS NOT NULL
      AND state NOT IN ('done', 'refused', 'revoked', 'replaced', 'recalled');

-- Throughput per minute over the last hour.
CREATE INDEX documents_received ON documents (received_at);
CREATE INDEX rejections_received ON rejections (received_at);

-- When a consumer was last seen on each gateway's inbox (written by the ops process each
-- time it refreshes gateway health), so "last seen" survives an ops restart.
CREATE TABLE gateway_presence (
    gateway_id         text PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
    last_consumer_at   timestamptz NOT NULL
);
