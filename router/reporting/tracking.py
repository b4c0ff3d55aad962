"""Tracking a document through the ledger: find it, tell its story, list deliveries.

Used by ``lienthong track`` / ``lienthong report`` and by the ops API. Read-only.

Delivery lists take a ``state`` that is either a ledger state (``queued``, ``arrived``, ...)
or one of the operator lists:

==============  ===========================================================================
``failed``      the copy never reached the recipient's inbox (``undeliverable``)
``not_arrived`` queued, flagged by the deadline sweep (no 01 in time), still without a 01
``overdue``     flagged by the deadline sweep (due date passed), still not done or closed
==============  ===========================================================================
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from router.ledger import Conn
from router.routing import lifecycle
from schemas.agency_code import normalize
from schemas.reasons import OperationRefused, Reason

__all__ = [
    "DELIVERY_STATES",
    "LISTS",
    "DeliveryTrack",
    "DocumentTimeline",
    "TimelineEvent",
    "find_document",
    "jsonable",
    "query_deliveries",
    "throughput",
    "timeline",
]

DELIVERY_STATES = (
    lifecycle.SUBMITTED,
    lifecycle.QUEUED,
    lifecycle.UNDELIVERABLE,
    lifecycle.ARRIVED,
    lifecycle.ACCEPTED,
    lifecycle.REFUSED,
    lifecycle.ASSIGNED,
    lifecycle.PROCESSING,
    lifecycle.DONE,
    lifecycle.RECALLED,
    lifecycle.REVOKED,
    lifecycle.REPLACED,
)

# Operator lists: SQL conditions on deliveries ``d`` (literal, no user input).
LISTS: dict[str, str] = {
    "failed": "d.state = 'undeliverable'",
    "not_arrived": "d.not_arrived_at IS NOT NULL AND d.state = 'queued'",
    "overdue": (
        "d.overdue_at IS NOT NULL AND d.state NOT IN "
        "('done', 'refused', 'revoked', 'replaced', 'recalled')"
    ),
}


def jsonable(value: Any) -> Any:
    """Ledger values as JSON: UUIDs and times as text, bytes as hex, recursively."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    time: datetime
    state: str
    status_code: str | None
    issuer: str | None
    description: str | None
    flags: tuple[str, ...]
    event_time: datetime | None = None  # as stamped in the status package, if any

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time.isoformat(),
            "state": self.state,
            "status_code": self.status_code,
            "issuer": self.issuer,
            "description": self.description,
            "flags": list(self.flags),
            "event_time": self.event_time.isoformat() if self.event_time else None,
        }


@dataclass(frozen=True, slots=True)
class DeliveryTrack:
    delivery_id: uuid.UUID
    agency_code: str
    agency_name: str
    recipient_code: str  # as written in To
    gateway_id: str
    state: str
    last_status_code: str | None
    recall_state: str | None
    attempts: int
    created_at: datetime
    queued_at: datetime | None
    updated_at: datetime
    last_error: str | None
    not_arrived: bool
    overdue: bool
    events: tuple[TimelineEvent, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": str(self.delivery_id),
            "agency_code": self.agency_code,
            "agency_name": self.agency_name,
            "recipient_code": self.recipient_code,
            "gateway_id": self.gateway_id,
            "state": self.state,
            "last_status_code": self.last_status_code,
            "recall_state": self.recall_state,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "queued_at": self.queued_at.isoformat() if self.queued_at else None,
            "updated_at": self.updated_at.isoformat(),
            "last_error": self.last_error,
            "not_arrived": self.not_arrived,
            "overdue": self.overdue,
            "events": [e.as_dict() for e in self.events],
        }


@dataclass(frozen=True, slots=True)
class DocumentTimeline:
    hub_id: uuid.UUID
    kind: str
    document_id: str | None  # edXML DocumentId (for a status package: its target's)
    sender_code: str
    sender_name: str | None
    sender_gateway_id: str
    code: str | None
    subject: str | None
    business_type: int | None
    status_code: str | None
    target_hub_id: uuid.UUID | None
    promulgation_date: date | None
    due_date: date | None
    received_at: datetime
    size_bytes: int
    deliveries: tuple[DeliveryTrack, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "hub_id": str(self.hub_id),
            "kind": self.kind,
            "document_id": self.document_id,
            "sender_code": self.sender_code,
            "sender_name": self.sender_name,
            "sender_gateway_id": self.sender_gateway_id,
            "code": self.code,
            "subject": self.subject,
            "business_type": self.business_type,
            "status_code": self.status_code,
            "target_hub_id": str(self.target_hub_id) if self.target_hub_id else None,
            "promulgation_date": jsonable(self.promulgation_date),
            "due_date": jsonable(self.due_date),
            "received_at": self.received_at.isoformat(),
            "size_bytes": self.size_bytes,
            "deliveries": [d.as_dict() for d in self.deliveries],
        }


async def find_document(conn: Conn, ident: str) -> list[uuid.UUID]:
    """Hub ids for a hub id (uuid text) or an edXML DocumentId (several senders may share
    one), oldest first. An unknown identifier gives an empty list."""
    ident = ident.strip()
    if not ident:
        return []
    try:
        as_uuid: uuid.UUID | None = uuid.UUID(ident)
    except ValueError:
        as_uuid = None
    if as_uuid is not None:
        found = await conn.fetchval("SELECT hub_id FROM documents WHERE hub_id = $1", as_uuid)
        if found is not None:
            return [found]
    rows = await conn.fetch(
        """SELECT hub_id FROM documents
            WHERE edxml_document_id = $1 AND kind = 'edoc'
            ORDER BY received_at, hub_id""",
        ident,
    )
    return [r["hub_id"] for r in rows]


async def timeline(conn: Conn, hub_id: uuid.UUID) -> DocumentTimeline | None:
    """Everything the ledger knows about one package and each of its deliveries."""
    doc = await conn.fetchrow(
        """SELECT d.hub_id, d.kind, d.edxml_document_id, d.sender_code, a.name AS sender_name,
                  d.sender_gateway_id, d.code_text, d.subject, d.business_type, d.status_code,
                  d.target_hub_id, d.promulgation_date, d.due_date, d.received_at, d.size_bytes
             FROM documents d LEFT JOIN agencies a ON a.id = d.sender_agency_id
            WHERE d.hub_id = $1""",
        hub_id,
    )
    if doc is None:
        return None
    rows = await conn.fetch(
        """SELECT d.id, a.code AS agency_code, a.name AS agency_name, d.recipient_code,
                  d.gateway_id, d.state, d.last_status_code, d.recall_state, d.attempts,
                  d.created_at, d.queued_at, d.updated_at, d.last_error,
                  (d.not_arrived_at IS NOT NULL AND d.state = 'queued') AS not_arrived,
                  (d.overdue_at IS NOT NULL AND d.state NOT IN
                     ('done', 'refused', 'revoked', 'replaced', 'recalled')) AS overdue
             FROM deliveries d JOIN agencies a ON a.id = d.recipient_agency_id
            WHERE d.hub_id = $1
            ORDER BY a.code""",
        hub_id,
    )
    events: dict[uuid.UUID, list[TimelineEvent]] = {r["id"]: [] for r in rows}
    if rows:
        for e in await conn.fetch(
            """SELECT delivery_id, recorded_at, state, status_code, issuer_code, description,
                      flags, event_time
                 FROM status_events WHERE delivery_id = ANY($1::uuid[])
                ORDER BY delivery_id, id""",
            list(events),
        ):
            events[e["delivery_id"]].append(
                TimelineEvent(
                    time=e["recorded_at"],
                    state=e["state"],
                    status_code=e["status_code"],
                    issuer=e["issuer_code"],
                    description=e["description"],
                    flags=tuple(e["flags"] or ()),
                    event_time=e["event_time"],
                )
            )
    deliveries = tuple(
        DeliveryTrack(
            delivery_id=r["id"],
            agency_code=r["agency_code"],
            agency_name=r["agency_name"],
            recipient_code=r["recipient_code"],
            gateway_id=r["gateway_id"],
            state=r["state"],
            last_status_code=r["last_status_code"],
            recall_state=r["recall_state"],
            attempts=r["attempts"],
            created_at=r["created_at"],
            queued_at=r["queued_at"],
            updated_at=r["updated_at"],
            last_error=r["last_error"],
            not_arrived=bool(r["not_arrived"]),
            overdue=bool(r["overdue"]),
            events=tuple(events[r["id"]]),
        )
        for r in rows
    )
    return DocumentTimeline(
        hub_id=doc["hub_id"],
        kind=doc["kind"],
        document_id=doc["edxml_document_id"],
        sender_code=doc["sender_code"],
        sender_name=doc["sender_name"],
        sender_gateway_id=doc["sender_gateway_id"],
        code=doc["code_text"],
        subject=doc["subject"],
        business_type=doc["business_type"],
        status_code=doc["status_code"],
        target_hub_id=doc["target_hub_id"],
        promulgation_date=doc["promulgation_date"],
        due_date=doc["due_date"],
        received_at=doc["received_at"],
        size_bytes=doc["size_bytes"],
        deliveries=deliveries,
    )


async def _agency_ids(conn: Conn, code: str) -> list[int]:
    """An agency code in any spelling (canonical or alias) -> agency ids."""
    key = normalize(code)
    rows = await conn.fetch(
        """SELECT agency_id FROM agency_aliases WHERE alias = $1
           UNION SELECT id FROM agencies WHERE code = $1""",
        key,
    )
    return [r[0] for r in rows]


async def query_deliveries(
    conn: Conn,
    *,
    state: str | None = None,
    recipient: str | None = None,
    sender: str | None = None,
    gateway: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Deliveries matching every given filter, newest first, at most ``limit``.

    ``state`` is a ledger state or ``failed`` / ``not_arrived`` / ``overdue``; ``recipient``
    and ``sender`` are agency codes in any spelling; ``gateway`` is the recipient gateway;
    ``since``/``until`` bound the delivery's creation time. Values are Python objects
    (``uuid.UUID``, ``datetime``): pass the rows through :func:`jsonable` for JSON.
    Raises :class:`OperationRefused` (a ValueError) for an unknown state.
    """
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if state is not None:
        if state in LISTS:
            where.append(LISTS[state])
        elif state in DELIVERY_STATES:
            where.append(f"d.state = {arg(state)}")
        else:
            raise OperationRefused(
                Reason.OPS_BAD_FILTER,
                f"unknown state {state!r}: use one of {', '.join((*LISTS, *DELIVERY_STATES))}",
            )
    if recipient:
        where.append(f"d.recipient_agency_id = ANY({arg(await _agency_ids(conn, recipient))})")
    if sender:
        where.append(f"doc.sender_agency_id = ANY({arg(await _agency_ids(conn, sender))})")
    if gateway:
        where.append(f"d.gateway_id = {arg(gateway)}")
    if since is not None:
        where.append(f"d.created_at >= {arg(since)}")
    if until is not None:
        where.append(f"d.created_at < {arg(until)}")
    limit = max(1, min(int(limit), 10_000))
    sql = f"""
        SELECT d.id AS delivery_id, d.hub_id, doc.kind, doc.edxml_document_id AS document_id,
               doc.code_text AS code, doc.subject, doc.sender_code, doc.due_date,
               a.code AS recipient_code, a.name AS recipient_name, d.gateway_id, d.state,
               d.last_status_code, d.recall_state, d.attempts, d.created_at, d.queued_at,
               d.updated_at, d.not_arrived_at, d.overdue_at, d.last_reason_code, d.last_error
          FROM deliveries d
          JOIN documents doc ON doc.hub_id = d.hub_id
          JOIN agencies a ON a.id = d.recipient_agency_id
         {"WHERE " + " AND ".join(where) if where else ""}
         ORDER BY d.created_at DESC, d.id
         LIMIT {limit}"""  # noqa: S608 - fragments are literals; values are bound parameters
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def throughput(conn: Conn, minutes: int = 60) -> list[dict[str, Any]]:
    """Per-minute counts over the last ``minutes`` (oldest first, one row per minute, zeros
    included): documents and status packages accepted, packages rejected."""
    minutes = max(1, min(int(minutes), 24 * 60))
    rows = await conn.fetch(
        """WITH m AS (
               SELECT generate_series(date_trunc('minute', now()) - ($1 - 1) * interval '1 minute',
                                      date_trunc('minute', now()), interval '1 minute') AS minute),
           docs AS (
               SELECT date_trunc('minute', received_at) AS minute,
                      count(*) FILTER (WHERE kind = 'edoc') AS edoc,
                      count(*) FILTER (WHERE kind = 'status') AS status
                 FROM documents
                WHERE received_at >= date_trunc('minute', now()) - ($1 - 1) * interval '1 minute'
                GROUP BY 1),
           rej AS (
               SELECT date_trunc('minute', received_at) AS minute, count(*) AS rejected
                 FROM rejections
                WHERE received_at >= date_trunc('minute', now()) - ($1 - 1) * interval '1 minute'
                GROUP BY 1)
           SELECT m.minute, coalesce(docs.edoc, 0) AS edoc, coalesce(docs.status, 0) AS status,
                  coalesce(rej.rejected, 0) AS rejected
             FROM m LEFT JOIN docs USING (minute) LEFT JOIN rej USING (minute)
            ORDER BY m.minute""",
        minutes,
    )
    return [
        {"minute": r["minute"], "edoc": r["edoc"], "status": r["status"],
         "rejected": r["rejected"]}
        for r in rows
    ]
