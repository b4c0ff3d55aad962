-- lienthong ledger, version 8: the published directory feed (router.directory.feed).
--
-- One row per agency code ever published: the agency as gateways see it (name, parent,
-- gateway, aliases by form) with the feed version of its last change. A change replaces
-- the row and takes the next version; a removed agency stays as a tombstone
-- (deleted = true), so "what changed since version v" is one index range and a mirror
-- that was away for months still learns of the deletion. The feed is bounded by the
-- number of agencies, not by the number of changes.
CREATE SEQUENCE directory_version;

CREATE TABLE directory_feed (
    code             text PRIMARY KEY,                -- canonical, normalised
    version          bigint NOT NULL UNIQUE,
    deleted          boolean NOT NULL DEFAULT false,
    record           jsonb NOT NULL,                  -- what gateways get, without version
    modified_at      timestamptz NOT NULL DEFAULT now()
);

-- A removed agency keeps its row (documents refer to it) but no alias: nothing routes to it.
ALTER TABLE agencies ADD COLUMN removed_at timestamptz;
