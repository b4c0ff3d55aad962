"""Publishing copies and receipts: all at once, then every publisher confirm together.

Used by the routing worker and by batch re-delivery, so a re-delivered copy is the same
message (same ``message_id``, same headers) as the first one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractExchange
from aiormq.abc import DeliveredMessage

from router.routing.batch import Copy
from schemas import wire_names as wire
from schemas.receipt import RECEIPT_CONTENT_TYPE, Receipt

__all__ = ["QueueRefused", "copy_message", "publish_all", "publish_copies", "receipt_message"]

log = structlog.get_logger("lienthong.publishing")

PUBLISH_RETRIES = 7  # ~5 s of backoff in all


class QueueRefused(Exception):
    """The broker still refused (nacked) messages after every retry: their queue was not
    able to take them, as a quorum queue is while its members elect a new leader after
    its node died (seen for over 10 s on a loaded 3-node cluster). Nothing was enqueued;
    publishing again later is the answer, so callers treat it as an outage, never as a
    verdict on the messages."""

    def __init__(self, refused: int, last: BaseException) -> None:
        super().__init__(f"{refused} message(s) refused by the broker: {last!r}")
        self.refused = refused


async def publish_all(
    exchange: AbstractExchange,
    items: Sequence[tuple[aio_pika.Message, str]],
    *,
    mandatory: bool,
    retries: int = PUBLISH_RETRIES,
) -> list[Any]:
    """Publish everything at once and await all confirms together; retry what failed for
    a transient reason (connection, channel) with exponential backoff, never forever.

    Returns, per item, the broker's ack or the returned message (unroutable with
    ``mandatory``). Raises the last transient error when retries run out, and
    :class:`QueueRefused` when the broker still refuses (nacks) some: a refusal is never
    an answer about the message (a queue without a leader, a full queue) and is never
    returned as one.
    """
    results: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    for attempt in range(retries):
        outs = await asyncio.gather(
            *(exchange.publish(items[i][0], items[i][1], mandatory=mandatory) for i in todo),
            return_exceptions=True,
        )
        retry: list[int] = []
        for i, out in zip(todo, outs, strict=True):
            results[i] = out
            # a refusal (nack) is retried too: a quorum queue whose leader was on a node
            # that just died refuses until its members elect another (a second or two)
            if isinstance(out, BaseException):
                retry.append(i)
        if not retry:
            return results
        log.warning(
            "publish.retry", failed=len(retry), attempt=attempt + 1, error=repr(results[retry[0]])
        )
        if attempt + 1 < retries:
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        todo = retry
    for i in todo:  # a connection or channel error: raise it
        err = results[i]
        if not isinstance(err, aiormq.exceptions.DeliveryError):
            raise err
    raise QueueRefused(len(todo), results[todo[0]])


def copy_message(c: Copy) -> aio_pika.Message:
    headers: dict[str, Any] = {
        wire.HUB_ID: str(c.hub_id),
        wire.KIND: c.kind,
        wire.SENDER: c.sender,
        wire.RECIPIENTS: list(c.recipients),
        wire.DELIVERY_IDS: [str(d) for d in c.delivery_ids],
    }
    if c.document_id:
        headers[wire.DOCUMENT_ID] = c.document_id
    if c.status_code:
        headers[wire.STATUS_CODE] = c.status_code
    return aio_pika.Message(
        c.body,
        message_id=str(c.copy_id),
        type=c.kind,
        content_type=wire.PACKAGE_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id=wire.HUB_APP_ID,
        headers=headers,
    )


async def publish_copies(
    exchange: AbstractExchange, copies: Sequence[Copy]
) -> dict[uuid.UUID, str]:
    """Publish copies with ``mandatory``; returns each delivery's new state: ``queued``
    when confirmed, ``undeliverable`` when returned (no inbox). Copies the broker keeps
    refusing raise :class:`QueueRefused` (nothing is marked): a copy refused while its
    inbox elects a new leader was once marked undeliverable, and so never delivered,
    while its sender was told ``accepted``."""
    if not copies:
        return {}
    results = await publish_all(
        exchange, [(copy_message(c), c.gateway_id) for c in copies], mandatory=True
    )
    states: dict[uuid.UUID, str] = {}
    for c, res in zip(copies, results, strict=True):
        failed = isinstance(res, DeliveredMessage)
        for did in c.delivery_ids:
            states[did] = "undeliverable" if failed else "queued"
        if failed:
            log.warning("publish.undeliverable", hub_id=str(c.hub_id), gateway=c.gateway_id)
    return states


def receipt_message(r: Receipt) -> aio_pika.Message:
    return aio_pika.Message(
        r.to_json(),
        message_id=r.receipt_id,
        type=wire.receipt_message_type(r.type),
        content_type=RECEIPT_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id=wire.HUB_APP_ID,
        headers={wire.HUB_ID: r.hub_id or "", wire.RECEIPT_TYPE: r.type},
    )


MARK_SQL = """
WITH u AS (
    UPDATE deliveries d SET state = x.s, updated_at = now(),
        attempts = d.attempts + 1,
        queued_at = CASE WHEN x.s = 'queued' THEN now() ELSE d.queued_at END,
        not_arrived_at = CASE WHEN x.s = 'queued' THEN NULL ELSE d.not_arrived_at END,
        last_reason_code = CASE WHEN x.s = 'undeliverable' THEN $3
                                ELSE d.last_reason_code END
    FROM unnest($1::uuid[], $2::text[]) AS x(i, s)
    WHERE d.id = x.i AND d.state IN ('submitted', 'undeliverable', 'queued')
    RETURNING d.id, d.state)
INSERT INTO status_events (delivery_id, state, flags)
SELECT id, state, $4::text[] FROM u
"""
