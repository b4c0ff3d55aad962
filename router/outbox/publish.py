"""Publishing copies and receipts: all at once, then every publisher confirm together.

Used by the routing worker and by batch re-delivery, so a re-delivered copy is the same
message (same ``message_id``, same headers) as the first one.

A batch goes to the broker in a few large writes (:func:`_publish_together`), not one
``Exchange.publish`` per message: with aio-pika each publish is its own task, lock, frame
marshalling, socket ``send`` and drain, and a router's profile showed that overhead (the
socket writes alone were a fifth of its CPU) costing more than parsing, validating and
recording the packages. The frames and the publisher-confirm bookkeeping are aiormq's own
(the channel's lock, delivery tags, confirmation futures and returned-message matching by
``message_id``), so confirms, ``mandatory`` returns and refusals behave as with
``Exchange.publish``.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractExchange
from aiormq.abc import ChannelFrame, DeliveredMessage
from pamqp import commands as spec
from pamqp.header import ContentHeader

from router.outbox.frames import publish_frames
from router.routing.batch import Copy
from schemas import wire_names as wire
from schemas.receipt import RECEIPT_CONTENT_TYPE, Receipt

__all__ = ["Outgoing", "QueueRefused", "copy_message", "publish_all", "publish_copies",
           "receipt_message", "receipt_outgoing"]

log = structlog.get_logger("lienthong.publishing")

PUBLISH_RETRIES = 7  # ~5 s of backoff in all
WRITE_CHUNK_BYTES = 256 * 1024  # bodies per socket write when publishing together
_PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


class QueueRefused(Exception):
    """The broker still refused (nacked) messages after every retry: their queue was not
    able to take them, as a quorum queue is while its members elect a new leader after
    its node died (seen for over 10 s on a loaded 3-node cluster). Nothing was enqueued;
    publishing again later is the answer, so callers treat it as an outage, never as a
    verdict on the messages."""

    def __init__(self, refused: int, last: BaseException) -> None:
        super().__init__(f"{refused} message(s) refused by the broker: {last!r}")
        self.refused = refused


class Outgoing(NamedTuple):
    """A message as it goes on the wire: its body and AMQP properties (what
    ``aio_pika.Message`` turns into at publish time, built once and directly)."""

    body: bytes
    properties: spec.Basic.Properties


Publishable = Outgoing | aio_pika.Message


async def publish_all(
    exchange: AbstractExchange,
    items: Sequence[tuple[Publishable, str]],
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
        outs = await _publish_together(exchange, [items[i] for i in todo], mandatory=mandatory)
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


async def _publish_together(
    exchange: AbstractExchange,
    items: Sequence[tuple[Publishable, str]],
    *,
    mandatory: bool,
) -> list[Any]:
    """Publish ``items`` in as few socket writes as their size allows; per item the
    broker's ack, the returned message (``mandatory``) or the exception."""
    if not items:
        return []
    try:
        channel = await exchange.channel.get_underlay_channel()  # type: ignore[attr-defined]
    except Exception as exc:
        return [exc] * len(items)
    if not isinstance(channel, aiormq.Channel) or not channel.publisher_confirms:
        return await asyncio.gather(
            *(channel.basic_publish(m.body, exchange=exchange.name, routing_key=key,
                                    properties=m.properties, mandatory=mandatory)
              for m, key in items),
            return_exceptions=True,
        )
    confirmations: list[asyncio.Future[Any]] = []
    failed: Exception | None = None
    try:
        async with channel.lock:
            for start, end in _chunks(items):
                await _write_chunk(channel, exchange.name, items[start:end], mandatory,
                                   confirmations)
    except Exception as exc:
        failed = exc
    # what was written is confirmed (or refused) as usual; the rest failed with the write
    # (a connection lost midway: its channel's close rejects the confirmations it waits for)
    outs = list(await asyncio.gather(*confirmations, return_exceptions=True))
    if failed is not None:
        outs += [failed] * (len(items) - len(outs))
    return outs


def _chunks(items: Sequence[tuple[Publishable, str]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = size = 0
    for i, (m, _key) in enumerate(items):
        size += len(m.body)
        if size >= WRITE_CHUNK_BYTES:
            out.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(items):
        out.append((start, len(items)))
    return out


async def _write_chunk(
    channel: aiormq.Channel,
    exchange: str,
    items: Sequence[tuple[Publishable, str]],
    mandatory: bool,
    confirmations: list[asyncio.Future[Any]],
) -> None:
    """One write of several messages, then their confirmations registered as
    ``Channel.basic_publish`` registers one (the channel lock is held by the caller)."""
    payload: list[bytes] = []
    ids: list[str] = []
    for message, routing_key in items:
        if len(routing_key) > 255:
            raise ValueError("Routing key too long (max 255 bytes)")
        props = message.properties
        if not props.message_id:
            props.message_id = uuid.uuid4().hex
        ids.append(props.message_id)
        data = publish_frames(channel.number, exchange, routing_key, mandatory, props,
                              message.body, channel.max_content_size)
        if data is None:  # a property this hub does not send itself: pamqp writes it
            data = ChannelFrame.marshall(channel.number, [
                spec.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                   mandatory=mandatory),
                ContentHeader(properties=props, body_size=len(message.body)),
                *channel._split_body(message.body),
            ]).payload
        payload.append(data)
    drain = channel.create_future()
    await channel.write_queue.put(
        ChannelFrame(payload=b"".join(payload), should_close=False, drain_future=drain))
    # no await between the put and here: the broker cannot confirm before the write
    for message_id in ids:
        channel.delivery_tag += 1
        tag = channel.delivery_tag
        confirmation = channel.create_future()
        channel.confirmations[tag] = confirmation
        channel.message_id_delivery_tag[message_id] = tag
        confirmation.add_done_callback(functools.partial(_forget, channel, message_id, tag))
        confirmations.append(confirmation)
    await drain


def _forget(channel: aiormq.Channel, message_id: str, tag: int, _f: asyncio.Future[Any]) -> None:
    if channel.message_id_delivery_tag.get(message_id) == tag:
        channel.message_id_delivery_tag.pop(message_id)


def copy_message(c: Copy) -> Outgoing:
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
    return Outgoing(c.body, spec.Basic.Properties(
        message_id=str(c.copy_id),
        message_type=c.kind,
        content_type=wire.PACKAGE_CONTENT_TYPE,
        delivery_mode=_PERSISTENT,
        app_id=wire.HUB_APP_ID,
        headers=headers,
    ))


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
    """A receipt as an ``aio_pika.Message`` (for answers whose properties the caller sets
    further, e.g. a request's ``correlation_id``)."""
    return aio_pika.Message(
        r.to_json(),
        message_id=r.receipt_id,
        type=wire.receipt_message_type(r.type),
        content_type=RECEIPT_CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id=wire.HUB_APP_ID,
        headers={wire.HUB_ID: r.hub_id or "", wire.RECEIPT_TYPE: r.type},
    )


def receipt_outgoing(r: Receipt) -> Outgoing:
    """The same receipt as :func:`receipt_message`, built directly as wire properties (the
    outbox's hot path)."""
    return Outgoing(r.to_json(), spec.Basic.Properties(
        message_id=r.receipt_id,
        message_type=wire.receipt_message_type(r.type),
        content_type=RECEIPT_CONTENT_TYPE,
        delivery_mode=_PERSISTENT,
        app_id=wire.HUB_APP_ID,
        headers={wire.HUB_ID: r.hub_id or "", wire.RECEIPT_TYPE: r.type},
    ))


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
