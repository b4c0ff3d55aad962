"""Telling senders, without being asked: a ``delivery`` receipt to the sender gateway for
every state change of one of its documents' deliveries. :func:`delivery_event` builds
every such receipt of hub-side changes (revocation, parking, re-delivery, deadlines);
changes caused by status packages are built in ``router.routing.batch``. They leave,
signed, through :class:`router.outbox.outbox.Outbox`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from router.ledger import Conn
from router.routing.batch import OutgoingReceipt, derive_id
from schemas.receipt import Receipt, RecipientOutcome

__all__ = ["delivery_event", "delivery_events"]


async def delivery_events(
    conn: Conn, delivery_ids: Sequence[uuid.UUID | str], *, cause: str
) -> list[OutgoingReceipt]:
    """One receipt per delivery with its current state. ``cause`` (``revoked``,
    ``parked``, ``redelivered:<job>`` …) makes the receipt id: the same change told twice
    has the same id, and gateways drop the second."""
    if not delivery_ids:
        return []
    rows = await conn.fetch(
        """SELECT d.id, d.hub_id, d.state, d.recipient_code, d.gateway_id, a.code AS agency,
                  doc.sender_gateway_id, doc.edxml_document_id, sa.code AS sender, doc.kind
           FROM deliveries d JOIN agencies a ON a.id = d.recipient_agency_id
           JOIN documents doc ON doc.hub_id = d.hub_id
           JOIN agencies sa ON sa.id = doc.sender_agency_id
           WHERE d.id = ANY($1::uuid[])""",
        [str(i) for i in delivery_ids],
    )
    return [
        delivery_event(r, receipt_id=str(derive_id("event", cause, r["id"], r["state"])),
                       state=r["state"], kind=r["kind"])
        for r in rows
    ]


def delivery_event(
    r: asyncpg.Record | Mapping[str, Any], *, receipt_id: str, state: str, kind: str
) -> OutgoingReceipt:
    """The one builder of ``delivery`` receipts: ``r`` names the delivery (``id``,
    ``hub_id``, ``state``, ``recipient_code``, ``agency``, ``gateway_id``) and its document
    (``sender_gateway_id``, ``edxml_document_id``, ``sender``); ``state`` is what the
    sender is told (the delivery's state, or a flag such as ``not_arrived``)."""
    return OutgoingReceipt(
        r["sender_gateway_id"],
        Receipt(
            receipt_id=receipt_id,
            type="delivery",
            hub_id=str(r["hub_id"]),
            kind=kind,
            document_id=r["edxml_document_id"],
            sender=r["sender"],
            recipients=(
                RecipientOutcome(
                    code=r["recipient_code"],
                    agency=r["agency"],
                    gateway=r["gateway_id"],
                    delivery_id=str(r["id"]),
                    state=r["state"],
                ),
            ),
            state=state,
        ),
    )
