"""Publishing the audit chain's head to every gateway (``schemas.audit_anchor``).

The routers publish: they already hold the hub's receipt key and a confirm channel on
``lt.receipts`` (the ops service faces HTTP and should not hold the key). Every router
runs :func:`anchor_loop`; a PostgreSQL advisory lock (taken for one transaction) and the
``audit_anchors`` table make one anchor per interval, whatever the number of routers:
the first router whose timer fires after the interval has passed publishes, the others
find the last anchor recent and do nothing. An anchor is published only when the head
moved since the last one.

Each anchor goes to every gateway not removed (routing key = gateway id, AMQP ``type``
``audit.anchor``), then is recorded in ``audit_anchors`` with its signed body, in the
same transaction that holds the lock. Should the process die between publishing and
recording, the next anchor reuses the number with a newer head: a gateway that kept both
sees :class:`schemas.audit_anchor.AnchorMismatch` ("signed for two different heads") — a
false alarm the hub's ``audit verify --anchor`` with both copies settles.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractExchange

from router.ledger import Conn
from router.outbox.publish import publish_all
from router.outbox.signing import ReceiptSigner
from schemas import wire_names as wire
from schemas.audit_anchor import ANCHOR_CONTENT_TYPE, ANCHOR_MESSAGE_TYPE, AuditAnchor

__all__ = ["ANCHOR_LOCK", "anchor_loop", "anchor_message", "publish_anchor", "recent"]

log = structlog.get_logger("lienthong.audit")

ANCHOR_LOCK = 0x6C74_4175  # "ltAu": one anchor publisher at a time


def anchor_message(anchor: AuditAnchor) -> aio_pika.Message:
    return aio_pika.Message(
        anchor.to_json(),
        message_id=f"audit-anchor-{anchor.number}",
        type=ANCHOR_MESSAGE_TYPE,
        content_type=ANCHOR_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id=wire.HUB_APP_ID,
        headers={wire.ANCHOR_NUMBER: anchor.number, wire.ANCHOR_SEQ: anchor.seq},
    )


async def publish_anchor(
    pool: asyncpg.Pool,
    receipts: AbstractExchange,
    signer: ReceiptSigner,
    *,
    interval: float,
    force: bool = False,
) -> AuditAnchor | None:
    """Sign the audit head and send it to every gateway, unless another process holds the
    lock, the last anchor is younger than ``interval`` seconds or the head has not moved
    (``force`` skips the last two). Returns the anchor published, if any."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", ANCHOR_LOCK):
            return None
        last = await conn.fetchrow(
            "SELECT number, seq, hash, at FROM audit_anchors ORDER BY number DESC LIMIT 1"
        )
        head = await conn.fetchrow("SELECT last_id, hash FROM audit_head")
        assert head is not None
        if head["last_id"] == 0:
            return None
        if last is not None and not force:
            age = (datetime.now(UTC) - last["at"]).total_seconds()
            if age < interval or (last["seq"] == head["last_id"]
                                  and bytes(last["hash"]) == bytes(head["hash"])):
                return None
        previous = None
        if last is not None:
            previous = (last["number"], last["seq"], bytes(last["hash"]).hex())
        unsigned = AuditAnchor(
            number=(last["number"] if last is not None else 0) + 1,
            seq=head["last_id"],
            hash=bytes(head["hash"]).hex(),
            previous=previous,
        )
        anchor = AuditAnchor.from_dict(signer.sign_object(unsigned.unsigned_dict()))
        gateways = [r["id"] for r in await conn.fetch(
            "SELECT id FROM gateways WHERE status <> 'removed' ORDER BY id")]
        message = anchor_message(anchor)
        await publish_all(receipts, [(message, gid) for gid in gateways], mandatory=False)
        await conn.execute(
            """INSERT INTO audit_anchors (number, seq, hash, gateways, body)
               VALUES ($1, $2, $3, $4, $5::jsonb)""",
            anchor.number, anchor.seq, bytes.fromhex(anchor.hash), len(gateways),
            anchor.to_json().decode(),
        )
    log.info("audit.anchor_published", number=anchor.number, seq=anchor.seq,
             gateways=len(gateways))
    return anchor


async def anchor_loop(
    pool: asyncpg.Pool,
    receipts: Callable[[], AbstractExchange],
    signer: ReceiptSigner | None,
    *,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Publish an anchor every ``interval`` seconds until ``stop``; off when the interval is
    0 or there is no hub key (an unsigned anchor proves nothing). ``receipts`` gives the
    exchange to publish to at each tick (a router renews its publishing channel)."""
    if interval <= 0:
        return
    if signer is None:
        log.warning("audit.anchors_off", hint="set LIENTHONG_HUB_KEY: audit anchors are "
                    "signed with the receipt key")
        return
    while not stop.is_set():
        try:
            await publish_anchor(pool, receipts(), signer, interval=interval * 0.9)
        except Exception as exc:  # a service away: try again at the next tick
            log.warning("audit.anchor_failed", error=repr(exc)[:300])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def recent(conn: Conn, limit: int = 100) -> list[dict[str, Any]]:
    """The newest anchors published (body as JSON text, gateways reached), newest first."""
    rows = await conn.fetch(
        "SELECT body::text AS body, gateways FROM audit_anchors ORDER BY number DESC LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]
