"""Receipts a gateway missed, rebuilt from the ledger and sent to it again.

A gateway's receipts queue is bounded (policy ``lt-gateway-receipts``: oldest dropped), so
a gateway that was away may find its oldest receipts gone from the queue. They are not gone
from the ledger: this module rebuilds them, with the **same** ``receipt_id`` as the
originals (:func:`router.routing.batch.derive_id`), so a gateway's duplicate filter drops
the ones it has, and signs them like every receipt (:mod:`router.outbox.signing`).

What is rebuilt, in ledger order (time, then a stable key):

* ``accepted`` — every package the gateway sent that the hub accepted (``documents``),
  with each recipient's *current* delivery state;
* ``rejected`` — every package of the gateway the hub refused (``rejections``);
* ``delivery`` events caused by status packages (a recipient answered 01/03/06 …) on the
  gateway's documents (``status_events`` with a status package).

Hub-side events (not arrived, overdue, revoked, parked, re-delivered) are left out: their
receipt ids depend on a cause the ledger does not keep, and the delivery's state is in the
``accepted`` receipt anyway. Receipts of duplicate submissions are left out too (the ledger
keeps the original's ``accepted``).

Gateways ask over AMQP only (the SDK never talks to the database): they publish a request
to the ``lt.replay`` exchange (key ``receipts``) with their ``user_id`` (checked by
RabbitMQ) and RabbitMQ's direct reply-to; every router serves ``lt.replay``
(:class:`router.requests.RequestServer`, :func:`route`) and answers, on the reply-to,
with one message per receipt (``type`` ``receipt.<type>``, the usual receipt JSON) and a
last one, ``replay.end``::

    request:  {"since": "2026-11-21T04:00:00Z", "after": null, "limit": 500}
    end:      {"cursor": "2026-11-21T04:40:00.123456+00:00|a:5f0e…", "more": true,
               "count": 500}
    error:    type "replay.error", {"reason": {"reason": "REPLAY_BAD_REQUEST", …}}

``cursor`` resumes exactly after the last receipt sent; ``more`` says whether to ask again.
Rows committed concurrently may carry a time just before a cursor already handed out: a
gateway that wants to be sure asks again with ``since`` a few seconds earlier (its
duplicate filter drops what it has). A window is read through the ledger's time indexes,
so ask for hours or days, not years. Operators use the same rebuild from the command line:
``lienthong receipts replay --gateway G --since …``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog

from router import topology
from router.ledger import Conn
from router.outbox.publish import receipt_message
from router.requests import HubRequest, Route, json_answer
from router.routing.batch import derive_id
from schemas.reasons import LienthongError, Reason
from schemas.receipt import Receipt, RecipientOutcome

__all__ = ["PAGE_MAX", "ReplayPage", "decode_cursor", "encode_cursor", "parse_request",
           "rebuild", "route"]

log = structlog.get_logger("lienthong.replay")

PAGE_MAX = 1000  # receipts per answer: memory bounded whatever a gateway asks


@dataclass(frozen=True, slots=True)
class ReplayPage:
    receipts: list[Receipt]
    cursor: str | None  # after the last receipt (the request's own cursor when empty)
    more: bool


def encode_cursor(at: datetime, key: str) -> str:
    return f"{at.isoformat()}|{key}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises LienthongError(REPLAY_BAD_REQUEST) for anything but a cursor we handed out."""
    at, sep, key = cursor.partition("|")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        when = None
    if not sep or when is None or when.tzinfo is None or key[:2] not in ("a:", "r:", "e:"):
        raise LienthongError(Reason.REPLAY_BAD_REQUEST, f"not a replay cursor: {cursor[:100]!r}")
    return when, key


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ITEMS = """
WITH items AS (
    SELECT d.received_at AS at, 'a:' || d.hub_id::text AS key
    FROM documents d
    WHERE d.sender_gateway_id = $1 AND d.received_at >= $2
    UNION ALL
    SELECT r.received_at, 'r:' || r.id::text
    FROM rejections r
    WHERE r.gateway_id = $1 AND r.received_at >= $2
    UNION ALL
    SELECT e.recorded_at, 'e:' || e.id::text
    FROM status_events e
    JOIN deliveries dl ON dl.id = e.delivery_id
    JOIN documents doc ON doc.hub_id = dl.hub_id
    WHERE doc.sender_gateway_id = $1 AND e.recorded_at >= $2
      AND e.status_hub_id IS NOT NULL AND cardinality(e.flags) = 0)
SELECT at, key FROM items WHERE (at, key) > ($2, $3) ORDER BY at, key LIMIT $4
"""


async def rebuild(
    conn: Conn,
    gateway_id: str,
    *,
    since: datetime | None = None,
    after: str | None = None,
    limit: int = PAGE_MAX,
) -> ReplayPage:
    """The gateway's receipts after ``after`` (a cursor) or from ``since``, oldest first,
    at most ``limit`` (capped at :data:`PAGE_MAX`)."""
    if after is not None:
        start, key = decode_cursor(after)
    elif since is not None:
        if since.tzinfo is None:
            raise LienthongError(Reason.REPLAY_BAD_REQUEST, "since needs a time zone")
        start, key = since, ""
    else:
        raise LienthongError(Reason.REPLAY_BAD_REQUEST, "give since or a cursor")
    limit = max(1, min(limit, PAGE_MAX))
    rows = await conn.fetch(_ITEMS, gateway_id, start, key, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    at_of = {r["key"]: r["at"] for r in rows}
    ids = {p: [r["key"][2:] for r in rows if r["key"].startswith(p)] for p in ("a:", "r:", "e:")}
    built: dict[str, Receipt] = {}
    built.update(await _accepted(conn, ids["a:"], at_of))
    built.update(await _rejected(conn, ids["r:"], at_of))
    built.update(await _events(conn, ids["e:"], at_of))
    receipts = [built[r["key"]] for r in rows if r["key"] in built]
    cursor = encode_cursor(rows[-1]["at"], rows[-1]["key"]) if rows else after
    return ReplayPage(receipts, cursor, more)


async def _accepted(conn: Conn, hub_ids: list[str], at_of: dict[str, datetime]
                    ) -> dict[str, Receipt]:
    if not hub_ids:
        return {}
    docs = await conn.fetch(
        """SELECT d.hub_id, d.kind, d.message_id, d.edxml_document_id, d.warnings,
                  a.code AS sender
           FROM documents d JOIN agencies a ON a.id = d.sender_agency_id
           WHERE d.hub_id = ANY($1::uuid[])""",
        hub_ids,
    )
    deliveries = await conn.fetch(
        """SELECT dl.hub_id, dl.id, dl.recipient_code, dl.gateway_id, dl.state,
                  a.code AS agency
           FROM deliveries dl JOIN agencies a ON a.id = dl.recipient_agency_id
           WHERE dl.hub_id = ANY($1::uuid[]) ORDER BY dl.created_at, dl.id""",
        hub_ids,
    )
    recipients: dict[uuid.UUID, list[RecipientOutcome]] = {}
    for r in deliveries:
        recipients.setdefault(r["hub_id"], []).append(RecipientOutcome(
            r["recipient_code"], r["agency"], r["gateway_id"], str(r["id"]), r["state"]))
    out: dict[str, Receipt] = {}
    for d in docs:
        key = f"a:{d['hub_id']}"
        warnings = d["warnings"]
        if isinstance(warnings, str):
            warnings = json.loads(warnings)
        out[key] = Receipt(
            receipt_id=str(derive_id("accepted", d["hub_id"])),
            type="accepted",
            hub_id=str(d["hub_id"]),
            message_id=d["message_id"],
            kind=d["kind"],
            document_id=d["edxml_document_id"],
            sender=d["sender"],
            recipients=tuple(recipients.get(d["hub_id"], ())),
            warnings=tuple(warnings or ()),
            at=_iso(at_of[key]),
        )
    return out


async def _rejected(conn: Conn, ids: list[str], at_of: dict[str, datetime]
                    ) -> dict[str, Receipt]:
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT id, message_id, routing_key, reason, detail FROM rejections
           WHERE id = ANY($1::uuid[])""",
        ids,
    )
    out: dict[str, Receipt] = {}
    for r in rows:
        key = f"r:{r['id']}"
        try:
            reason = Reason[r["reason"]]
        except KeyError:
            reason = Reason.PROCESSING_ERROR
        out[key] = Receipt(
            receipt_id=str(derive_id("receipt", r["id"])),
            type="rejected",
            message_id=r["message_id"],
            sender=r["routing_key"],
            reason=reason.as_dict(r["detail"] or None),
            at=_iso(at_of[key]),
        )
    return out


async def _events(conn: Conn, ids: list[str], at_of: dict[str, datetime]
                  ) -> dict[str, Receipt]:
    if not ids:
        return {}
    rows = await conn.fetch(
        """SELECT e.id, e.status_hub_id, e.status_code, e.state, e.delivery_id,
                  dl.hub_id, dl.recipient_code, a.code AS agency,
                  doc.edxml_document_id, sa.code AS sender
           FROM status_events e
           JOIN deliveries dl ON dl.id = e.delivery_id
           JOIN agencies a ON a.id = dl.recipient_agency_id
           JOIN documents doc ON doc.hub_id = dl.hub_id
           JOIN agencies sa ON sa.id = doc.sender_agency_id
           WHERE e.id = ANY($1::bigint[])""",
        [int(i) for i in ids],
    )
    out: dict[str, Receipt] = {}
    for r in rows:
        key = f"e:{r['id']}"
        out[key] = Receipt(
            receipt_id=str(derive_id("event", r["status_hub_id"])),
            type="delivery",
            hub_id=str(r["hub_id"]),
            kind="edoc",
            document_id=r["edxml_document_id"],
            sender=r["sender"],
            recipients=(RecipientOutcome(r["recipient_code"], r["agency"], None,
                                         str(r["delivery_id"]), r["state"]),),
            status_code=r["status_code"],
            state=r["state"],
            at=_iso(at_of[key]),
        )
    return out


def parse_request(data: dict[str, Any]) -> tuple[datetime | None, str | None, int]:
    """``since``, ``after`` and ``limit`` of a replay request (its JSON object);
    LienthongError (REPLAY_BAD_REQUEST) saying what is wrong otherwise."""
    since_raw, after, limit = data.get("since"), data.get("after"), data.get("limit", PAGE_MAX)
    since = None
    if since_raw is not None:
        try:
            since = datetime.fromisoformat(str(since_raw).replace("Z", "+00:00"))
        except ValueError:
            raise LienthongError(Reason.REPLAY_BAD_REQUEST,
                                 f"since is not an ISO 8601 time: {str(since_raw)[:60]!r}"
                                 ) from None
        if since.tzinfo is None:
            raise LienthongError(Reason.REPLAY_BAD_REQUEST, "since needs a time zone")
    if after is not None and not isinstance(after, str):
        raise LienthongError(Reason.REPLAY_BAD_REQUEST, "after is a cursor string")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise LienthongError(Reason.REPLAY_BAD_REQUEST, "limit is a positive integer")
    if since is None and after is None:
        raise LienthongError(Reason.REPLAY_BAD_REQUEST, "give since or a cursor")
    return since, after, limit


def route(sign: Callable[[Receipt], Receipt] | None) -> Route:
    """The replay request (key ``receipts`` on ``lt.replay``), for the RequestServer;
    ``sign`` signs each rebuilt receipt like every receipt."""

    async def serve(conn: Conn, request: HubRequest) -> list[aio_pika.Message]:
        since, after, limit = parse_request(request.body)
        page = await rebuild(conn, request.gateway, since=since, after=after, limit=limit)
        answer = [receipt_message(sign(r) if sign else r) for r in page.receipts]
        # the end comes last, once every receipt is confirmed (RequestServer)
        end = {"cursor": page.cursor, "more": page.more, "count": len(page.receipts)}
        answer.append(json_answer("replay.end", end))
        return answer

    return Route(topology.REPLAY_RECEIPTS_KEY, topology.REPLAY, serve, "replay.error",
                 Reason.REPLAY_BAD_REQUEST)
