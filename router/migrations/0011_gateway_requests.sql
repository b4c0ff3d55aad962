-- lienthong ledger, version 11: gateways' requests that change the hub (router.requests).
--
-- manage_agencies: the operator lets a gateway register and delete agencies itself, within
-- its `serves` patterns (`lienthong gateways set G --manage-agencies on`); off by default.
ALTER TABLE gateways ADD COLUMN manage_agencies boolean NOT NULL DEFAULT false;

-- A gateway-side change (a VXP system added, its secret rotated...) is recorded once per
-- change id, however often the gateway asks (a retry after a lost answer): the lookup of
-- the id is this index, over the few rows that carry one.
CREATE INDEX audit_log_change_id ON audit_log ((details->>'change_id'))
    WHERE details ? 'change_id';
