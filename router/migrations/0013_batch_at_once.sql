-- lienthong ledger, version 13: a batch written in one statement (issue #18).
--
-- A router writes most batches in one statement (router.routing.record): documents,
-- deliveries, status events, rejections and audit rows together, and the deliveries its
-- statuses act on moved only where their state is still the one its decision saw. The
-- statement ends by calling this function with whether everything applied; when not (a
-- document stored or a delivery moved since the router looked), it raises, nothing of the
-- statement stays, and the router writes the batch in a transaction that locks what it
-- reads, as before.
CREATE FUNCTION lienthong_batch_whole(whole boolean) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF NOT whole THEN
        RAISE EXCEPTION 'the ledger changed since the batch was decided'
            USING ERRCODE = 'LT409',
                  HINT = 'the router writes the batch again, under locks';
    END IF;
    RETURN true;
END;
$$;

-- deliveries (hub_id) is the first column of the unique key (hub_id, recipient_agency_id),
-- which serves every look-up by document: this index was one more to write on each insert
-- and on each change of state (every delivery changes state three to five times).
DROP INDEX IF EXISTS deliveries_hub;
