-- lienthong ledger, version 7: national statistics and cheap gauges (issue #16).
--
-- Bussiness/Paper of each document: true when the sender says a paper copy goes alongside
-- the electronic one (Paper = 1), false when it says not (0), NULL when the package does not
-- say (older gateways, status packages). The statistics count "sent with paper" from it.
ALTER TABLE documents ADD COLUMN paper boolean;

-- The statistics read one period of documents by sender and of deliveries by recipient:
-- both already have a time index (documents_received, deliveries_created).

-- Deliveries per state without counting the table (issue #16: no gauge scans every
-- delivery). Each statement that inserts, updates or deletes deliveries appends one row
-- per state whose count it changed (statement-level triggers over transition tables: one
-- small insert per batch, no shared row to lock); the ops process folds the deltas into
-- delivery_state_counts on each refresh. The counts start from one count at migration.
CREATE TABLE delivery_state_counts (
    state              text PRIMARY KEY,
    n                  bigint NOT NULL
);
INSERT INTO delivery_state_counts (state, n)
    SELECT state, count(*) FROM deliveries GROUP BY state;

CREATE TABLE delivery_state_deltas (
    id                 bigserial PRIMARY KEY,
    state              text NOT NULL,
    n                  bigint NOT NULL
);

CREATE FUNCTION delivery_states_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_state_deltas (state, n)
        SELECT state, count(*) FROM new_rows GROUP BY state;
    RETURN NULL;
END;
$$;

CREATE FUNCTION delivery_states_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_state_deltas (state, n)
        SELECT state, sum(n) FROM (
            SELECT state, -1 AS n FROM old_rows
            UNION ALL
            SELECT state, 1 AS n FROM new_rows) c
        GROUP BY state HAVING sum(n) <> 0;
    RETURN NULL;
END;
$$;

CREATE FUNCTION delivery_states_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_state_deltas (state, n)
        SELECT state, -count(*) FROM old_rows GROUP BY state;
    RETURN NULL;
END;
$$;

CREATE TRIGGER delivery_states_inserted AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_states_inserted();
CREATE TRIGGER delivery_states_updated AFTER UPDATE ON deliveries
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_states_updated();
CREATE TRIGGER delivery_states_deleted AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION delivery_states_deleted();
