-- The audit chain, linear in rows: the trigger of 0001 updated the single audit_head row
-- once per inserted row, so a statement of n rows cost O(n^2) (one row version each).
-- Now the head is locked and read once per transaction, the running head is kept in a
-- transaction-local setting, and audit_head is written once per statement. The hash of a
-- row is computed exactly as before, so `lienthong audit verify` is unchanged.

CREATE OR REPLACE FUNCTION audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    running text := current_setting('lienthong.audit_last', true);
    prev_id bigint;
    prev_hash bytea;
BEGIN
    IF running IS NULL OR running = '' THEN
        SELECT last_id, hash INTO prev_id, prev_hash FROM audit_head FOR UPDATE;
    ELSE
        prev_id := split_part(running, ':', 1)::bigint;
        prev_hash := decode(split_part(running, ':', 2), 'hex');
    END IF;
    NEW.id := prev_id + 1;   -- ids follow the chain, whatever the commit order
    NEW.prev_hash := prev_hash;
    NEW.hash := sha256(
        prev_hash
        || convert_to(
            NEW.id::text || '|' || to_char(NEW.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
            || '|' || NEW.actor || '|' || NEW.action || '|' || NEW.subject
            || '|' || NEW.details::text,
            'UTF8'));
    PERFORM set_config('lienthong.audit_last', NEW.id::text || ':' || encode(NEW.hash, 'hex'),
                       true);
    RETURN NEW;
END;
$$;

CREATE FUNCTION audit_head_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    running text := current_setting('lienthong.audit_last', true);
BEGIN
    IF running IS NOT NULL AND running <> '' THEN
        UPDATE audit_head SET last_id = split_part(running, ':', 1)::bigint,
                              hash = decode(split_part(running, ':', 2), 'hex');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER audit_head_sync AFTER INSERT ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_sync();
