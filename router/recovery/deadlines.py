"""Deadlines: deliveries that have not arrived, documents past their DueDate.

* **not arrived**: a delivery queued longer than ``not_arrived_after`` (default 15 minutes)
  without a 01 from the recipient is flagged once (``not_arrived_at``);
* **overdue**: a delivery whose document's DueDate passed (Vietnam date) without a 06
  from that recipient is flagged once (``overdue_at``).

Each flag adds a status event and a ``delivery`` receipt to the sender's gateway (pushed,
never polled). A sweep reads only what is due through two partial indexes
(``deliveries_awaiting_arrival``, ``deliveries_awaiting_done``), in bounded batches with
``FOR UPDATE SKIP LOCKED``, so several routers can sweep at once and the cost follows the
number of deliveries that just became due, not the size of the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg

from router.ledger import Conn
from router.outbox.events import delivery_event
from router.outbox.outbox import Outbox
from router.routing.batch import OutgoingReceipt, derive_id

__all__ = ["DEFAULT_NOT_ARRIVED_AFTER", "SweepResult", "sweep", "sweep_and_tell"]

DEFAULT_NOT_ARRIVED_AFTER = timedelta(minutes=15)
_VIETNAM = timezone(timedelta(hours=7))


@dataclass(slots=True)
class SweepResult:
    not_arrived: int = 0
    overdue: int = 0
    receipts: list[OutgoingReceipt] = field(default_factory=list)


_NOT_ARRIVED = """
WITH due AS (
    SELECT id FROM deliveries
    WHERE kind = 'edoc' AND state = 'queued' AND not_arrived_at IS NULL AND queued_at < $1
    ORDER BY queued_at LIMIT $2 FOR UPDATE SKIP LOCKED),
flagged AS (
    UPDATE deliveries d SET not_arrived_at = $3, updated_at = $3
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.hub_id, d.recipient_code, d.recipient_agency_id, d.gateway_id, d.state),
ev AS (
    INSERT INTO status_events (delivery_id, state, flags, recorded_at)
    SELECT id, state, '{not_arrived}', $3 FROM flagged)
SELECT f.id, f.hub_id, f.recipient_code, a.code AS agency, f.gateway_id, f.state,
       doc.sender_gateway_id, doc.edxml_document_id, sa.code AS sender
FROM flagged f JOIN agencies a ON a.id = f.recipient_agency_id
JOIN documents doc ON doc.hub_id = f.hub_id JOIN agencies sa ON sa.id = doc.sender_agency_id
"""

_OVERDUE = """
WITH due AS (
    SELECT id FROM deliveries
    WHERE kind = 'edoc' AND due_at IS NOT NULL AND overdue_at IS NULL AND due_at < $1
      AND state NOT IN ('done', 'refused', 'revoked', 'replaced', 'recalled')
    ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED),  -- the predicate matches the partial index
flagged AS (
    UPDATE deliveries d SET overdue_at = $3, updated_at = $3
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.hub_id, d.recipient_code, d.recipient_agency_id, d.gateway_id, d.state),
ev AS (
    INSERT INTO status_events (delivery_id, state, flags, recorded_at)
    SELECT id, state, '{overdue}', $3 FROM flagged)
SELECT f.id, f.hub_id, f.recipient_code, a.code AS agency, f.gateway_id, f.state,
       doc.sender_gateway_id, doc.edxml_document_id, sa.code AS sender
FROM flagged f JOIN agencies a ON a.id = f.recipient_agency_id
JOIN documents doc ON doc.hub_id = f.hub_id JOIN agencies sa ON sa.id = doc.sender_agency_id
"""


def _receipt(r: asyncpg.Record, flag: str) -> OutgoingReceipt:
    return delivery_event(r, receipt_id=str(derive_id(flag, r["id"])), state=flag, kind="edoc")


async def sweep(
    conn: Conn,
    *,
    now: datetime | None = None,
    not_arrived_after: timedelta = DEFAULT_NOT_ARRIVED_AFTER,
    batch: int = 5000,
) -> SweepResult:
    """Flag what became due; return the counts and the receipts to push to senders."""
    now = now or datetime.now(UTC)
    today_vn: date = now.astimezone(_VIETNAM).date()
    result = SweepResult()
    async with conn.transaction():
        while True:
            rows = await conn.fetch(_NOT_ARRIVED, now - not_arrived_after, batch, now)
            result.not_arrived += len(rows)
            result.receipts += [_receipt(r, "not_arrived") for r in rows]
            if len(rows) < batch:
                break
        while True:
            rows = await conn.fetch(_OVERDUE, today_vn, batch, now)
            result.overdue += len(rows)
            result.receipts += [_receipt(r, "overdue") for r in rows]
            if len(rows) < batch:
                break
    return result




async def sweep_and_tell(
    conn: Conn,
    outbox: Outbox,
    *,
    now: datetime | None = None,
    not_arrived_after: timedelta = DEFAULT_NOT_ARRIVED_AFTER,
) -> SweepResult:
    """:func:`sweep`, then tell the senders (signed, through the outbox). Used by the
    routers' periodic sweep and by ``lienthong deadlines``."""
    result = await sweep(conn, now=now, not_arrived_after=not_arrived_after)
    await outbox.receipts(result.receipts)
    return result
