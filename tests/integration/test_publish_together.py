"""Publishing a batch in a few socket writes (``router.outbox.publish``) keeps what one
``Exchange.publish`` per message gave: each message's own confirm, the message back when
``mandatory`` finds no queue, the broker's refusal when a queue is full, bodies larger than
a frame, and the order of the messages in their queue."""

from __future__ import annotations

import uuid

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustConnection
from aiormq.abc import DeliveredMessage

from router import amqp
from router.outbox.publish import (
    WRITE_CHUNK_BYTES,
    QueueRefused,
    _publish_together,
    publish_all,
)
from tests.hub import Hub


async def _exchange_with_queue(connection: AbstractRobustConnection) -> tuple[
        AbstractChannel, AbstractExchange, AbstractQueue]:
    """A confirming channel, a throwaway exchange, and a queue bound to it with key ``in``."""
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(
        f"t.{uuid.uuid4().hex[:6]}", aio_pika.ExchangeType.DIRECT, auto_delete=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, "in")
    return channel, exchange, queue


async def test_confirms_returns_refusals_and_order(hub: Hub) -> None:
    connection = await amqp.connect(hub.settings, "test-publish")
    async with connection:
        channel, exchange, queue = await _exchange_with_queue(connection)
        full = await channel.declare_queue(
            exclusive=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        await full.bind(exchange, "full")
        big = b"x" * (300 * 1024)  # several frames, and a write of its own
        bodies = [f"m{i}".encode() for i in range(40)] + [big] + [b"last"]
        items = [(aio_pika.Message(b, message_id=f"id-{i}"), "in") for i, b in enumerate(bodies)]
        items.insert(5, (aio_pika.Message(b"nowhere", message_id="lost"), "no-such-key"))
        items.insert(7, (aio_pika.Message(b"first"), "full"))
        items.insert(8, (aio_pika.Message(b"second"), "full"))
        assert sum(len(m.body) for m, _ in items) > WRITE_CHUNK_BYTES

        # one write path, each message's own answer (publish_all retries the refused one,
        # then raises QueueRefused: a refusal is never an answer about a message)
        results = await _publish_together(exchange, items, mandatory=True)

        by_body = {m.body: r for (m, _), r in zip(items, results, strict=True)}
        assert isinstance(by_body[b"nowhere"], DeliveredMessage)  # returned, not lost
        assert isinstance(by_body[b"second"], aiormq.exceptions.DeliveryError)  # refused
        for b in (*bodies, b"first"):
            assert isinstance(by_body[b], aiormq.spec.Basic.Ack), b[:10]
        got = []
        async with queue.iterator(no_ack=True) as it:
            async for m in it:
                got.append(m.body)
                if len(got) == len(bodies):
                    break
        assert got == bodies
        with pytest.raises(QueueRefused) as refused:
            await publish_all(exchange, [(aio_pika.Message(b"third"), "full")],
                              mandatory=True, retries=2)
        assert refused.value.refused == 1


async def test_a_write_failing_midway_answers_each_message_with_the_error(hub: Hub) -> None:
    """What was written before a failed write is confirmed as usual; every message after
    it gets the write's error as its answer (a connection lost midway, here a routing key
    the frame cannot carry): an answer per message, never a crash of the whole batch."""
    connection = await amqp.connect(hub.settings, "test-publish")
    async with connection:
        _channel, exchange, queue = await _exchange_with_queue(connection)
        big = b"x" * WRITE_CHUNK_BYTES  # the first write ends with it
        items = [(aio_pika.Message(b"a"), "in"), (aio_pika.Message(big), "in"),
                 (aio_pika.Message(b"b"), "k" * 300), (aio_pika.Message(b"c"), "in")]

        results = await _publish_together(exchange, items, mandatory=True)

        assert [type(r) for r in results] == [aiormq.spec.Basic.Ack, aiormq.spec.Basic.Ack,
                                              ValueError, ValueError]
        # refused before anything was written: every message says why
        alone = await _publish_together(exchange, [(aio_pika.Message(b"d"), "k" * 300)],
                                        mandatory=True)
        assert [type(r) for r in alone] == [ValueError]
        assert await queue.declare() and queue.declaration_result.message_count == 2
