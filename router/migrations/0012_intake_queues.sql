-- lienthong ledger, version 12: gateways' intake queues (router.directory.intake).
--
-- Each gateway whose keys no other gateway shares has an intake queue lt.router.in.<id>,
-- bound on lt.intake with the keys its topic permission admits; routers take from every
-- intake queue in turn, so one gateway's burst does not hold up another's document.
-- RabbitMQ cannot list bindings: what is bound is kept here. A fairness measure only: a
-- package is routed the same way whichever queue it came from.
CREATE TABLE intake_queues (
    -- no foreign key: a removed gateway's queue stays until it has drained
    gateway_id  text PRIMARY KEY,
    -- draining: unbound (the gateway is gone, inactive, or shares keys); deleted once it
    -- has been seen empty without consumers for the grace time
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining')),
    empty_since timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE intake_bindings (
    gateway_id  text NOT NULL REFERENCES intake_queues (gateway_id) ON DELETE CASCADE,
    binding_key text NOT NULL,
    PRIMARY KEY (gateway_id, binding_key)
);
