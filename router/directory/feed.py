"""The published directory: the hub's agencies as a versioned feed gateways mirror.

Gateway-side software (the VXP façade, the SDK, anyone) keeps a copy of the directory
without reading the hub's database: it asks for *the changes since the version it has*
and applies them (:mod:`adapters.directory_feed`).

How changes are recorded
========================

Every directory change made by :mod:`router.directory.registry` (an import, a gateway
taking or leaving agencies, an agency removed) ends, in the same transaction, with
:func:`publish`: the agencies it touched are read back as gateways see them
(:func:`records`) and compared with the feed (table ``directory_feed``, migration 0008);
each one that differs takes the next version of the sequence ``directory_version`` and
replaces its row. A removed agency stays as a tombstone (``deleted``), so a mirror that
was away for months still learns of the deletion. One row per code: the feed is bounded
by the number of agencies, whatever the number of changes.

Versions are handed out under a transaction-scoped advisory lock held until commit, so
they become visible in order: a mirror that has seen version ``v`` never later finds a
smaller version it missed.

How gateways ask
================

Over AMQP only, like the receipt replay (:mod:`router.recovery.replay`): a request to the
``lt.replay`` exchange with key ``directory`` (gateways may already write there), with
their ``user_id`` and RabbitMQ's direct reply-to. Every router serves the ``lt.directory``
queue (:class:`router.requests.RequestServer`, :func:`route`) and answers with one message::

    request:  {"after": 0, "limit": 1000}
    answer:   type "directory.page",
              {"records": [{"version": 17, "deleted": false, "modified_at": "…Z",
                            "code": "000.00.00.G22", "id": 3, "name": "…", "parent": null,
                            "gateway": "vpcp", "status": "active",
                            "aliases": ["G22"], "qd20": ["G22"], "qcvn102": ["000.00.00.G22"]},
                           …],
               "version": 17, "latest": 42, "more": true}
    error:    type "directory.error", {"reason": {"reason": "DIRECTORY_BAD_REQUEST", …}}

``after: 0`` is the snapshot (every agency, tombstones included); ``version`` is where to
go on from (``after`` of the next request), ``latest`` the feed's newest version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog

from router import topology
from router.ledger import Conn
from router.requests import HubRequest, Route, json_answer
from schemas.agency_code import AgencyCode, CodeForm
from schemas.reasons import LienthongError, Reason

__all__ = ["PAGE_MAX", "FeedPage", "changes", "parse_request", "publish", "records",
           "route"]

log = structlog.get_logger("lienthong.directory.feed")

PAGE_MAX = 1000  # records per answer (~400 bytes each): memory bounded whatever is asked
_LOCK_KEY = 0x6C74_6466  # "ltdf": one feed writer at a time, until its commit


def _alias_forms(code: str, aliases: list[str]) -> tuple[list[str], list[str]]:
    """The agency's QĐ 20 spellings and QCVN 102 spellings (its own code included)."""
    qd20: list[str] = []
    qcvn102: list[str] = []
    for alias in sorted({code, *aliases}):
        try:
            form = AgencyCode.parse(alias).form
        except LienthongError:
            continue
        if form is CodeForm.QD20:
            qd20.append(alias)
        elif form in (CodeForm.QCVN102, CodeForm.THREE_LEVEL):
            qcvn102.append(alias)
    return qd20, qcvn102


async def records(conn: Conn, codes: list[str] | None = None
                  ) -> dict[str, tuple[dict[str, Any], bool]]:
    """The agencies (all, or those with ``codes``) as the feed publishes them:
    code -> (record, deleted)."""
    rows = await conn.fetch(
        """SELECT a.id, a.code, a.name, a.parent_code, a.gateway_id, a.status, a.removed_at,
                  array(SELECT x.alias FROM agency_aliases x WHERE x.agency_id = a.id
                        AND x.alias <> a.code ORDER BY x.alias) AS aliases
           FROM agencies a WHERE $1::text[] IS NULL OR a.code = ANY($1::text[])""",
        codes,
    )
    out: dict[str, tuple[dict[str, Any], bool]] = {}
    for r in rows:
        aliases = list(r["aliases"])
        qd20, qcvn102 = _alias_forms(r["code"], aliases)
        out[r["code"]] = ({
            "id": r["id"], "code": r["code"], "name": r["name"], "parent": r["parent_code"],
            "gateway": r["gateway_id"], "status": r["status"], "aliases": aliases,
            "qd20": qd20, "qcvn102": qcvn102,
        }, r["removed_at"] is not None)
    return out


async def publish(conn: Conn, codes: list[str] | None = None) -> int:
    """Bring the feed up to date for ``codes`` (every agency when None), in the caller's
    transaction (or its own). Returns how many agencies took a new version."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        now = await records(conn, codes)
        if not now:
            return 0
        stored = await conn.fetch(
            "SELECT code, deleted, record FROM directory_feed WHERE code = ANY($1::text[])",
            sorted(now),
        )
        before = {r["code"]: (json.loads(r["record"]), r["deleted"]) for r in stored}
        changed = sorted(c for c, v in now.items() if before.get(c) != v)
        if changed:  # one statement, however many agencies an import touched
            await conn.execute(
                """INSERT INTO directory_feed (code, version, deleted, record, modified_at)
                   SELECT t.code, nextval('directory_version'), t.deleted, t.record::jsonb,
                          now()
                   FROM unnest($1::text[], $2::boolean[], $3::text[])
                        AS t(code, deleted, record)
                   ORDER BY t.code
                   ON CONFLICT (code) DO UPDATE SET version = EXCLUDED.version,
                       deleted = EXCLUDED.deleted, record = EXCLUDED.record,
                       modified_at = EXCLUDED.modified_at""",
                changed, [now[c][1] for c in changed],
                [json.dumps(now[c][0], ensure_ascii=False) for c in changed],
            )
    if changed:
        log.info("directory.published", agencies=len(changed))
    return len(changed)


@dataclass(frozen=True, slots=True)
class FeedPage:
    records: list[dict[str, Any]]  # each with version, deleted, modified_at
    version: int  # go on after this (the request's own ``after`` when empty)
    latest: int  # the feed's newest version
    more: bool

    def as_dict(self) -> dict[str, Any]:
        return {"records": self.records, "version": self.version, "latest": self.latest,
                "more": self.more}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def changes(conn: Conn, after: int = 0, limit: int = PAGE_MAX) -> FeedPage:
    """The agencies changed after version ``after`` (0: all of them), oldest change
    first, at most ``limit`` (capped at :data:`PAGE_MAX`)."""
    limit = max(1, min(limit, PAGE_MAX))
    rows = await conn.fetch(
        """SELECT version, deleted, record, modified_at FROM directory_feed
           WHERE version > $1 ORDER BY version LIMIT $2""",
        after, limit + 1,
    )
    latest = await conn.fetchval("SELECT coalesce(max(version), 0) FROM directory_feed")
    more = len(rows) > limit
    rows = rows[:limit]
    out = [{**json.loads(r["record"]), "version": r["version"], "deleted": r["deleted"],
            "modified_at": _iso(r["modified_at"])} for r in rows]
    return FeedPage(out, rows[-1]["version"] if rows else after, int(latest), more)


def parse_request(data: dict[str, Any]) -> tuple[int, int]:
    """``after`` and ``limit`` of a feed request (its JSON object); LienthongError
    (DIRECTORY_BAD_REQUEST) saying what is wrong otherwise."""
    after, limit = data.get("after", 0), data.get("limit", PAGE_MAX)
    for name, value in (("after", after), ("limit", limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise LienthongError(Reason.DIRECTORY_BAD_REQUEST,
                                 f"{name} is a non-negative integer")
    if limit < 1:
        raise LienthongError(Reason.DIRECTORY_BAD_REQUEST, "limit is a positive integer")
    return after, limit


async def _serve(conn: Conn, request: HubRequest) -> list[aio_pika.Message]:
    after, limit = parse_request(request.body)
    page = await changes(conn, after, limit)
    return [json_answer("directory.page", page.as_dict())]


def route() -> Route:
    """The feed's request (key ``directory`` on ``lt.directory``), for the RequestServer."""
    return Route(topology.DIRECTORY_KEY, topology.DIRECTORY, _serve, "directory.error",
                 Reason.DIRECTORY_BAD_REQUEST)
