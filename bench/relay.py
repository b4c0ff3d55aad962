"""The raw relay: the ceiling any Python router can reach on this broker and machine.

A plain aio-pika loop over ``lt.router.in`` with the router's batching and none of its
work: it takes up to ``batch`` persistent messages, publishes for each the K copies its
``lt-bench-to`` header names (persistent, ``mandatory``, to ``lt.deliver``) plus one small
receipt to the sender (``lt-bench-from``, to ``lt.receipts``) and, for a status package,
one delivery event to the document's sender (``lt-bench-notify``) — the same AMQP messages
the router sends — awaits all publisher confirms together and acks the batch with
``multiple=True``. No parsing, no validation, no database.

Run as its own process, like a router: ``python -m bench.relay`` with
``LIENTHONG_AMQP_URL`` set; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from adapters.endpoints import connect_first
from router import topology
from router.directory import intake_queues
from router.settings import Settings

__all__ = ["relay"]

HEADER_TO = "lt-bench-to"
HEADER_FROM = "lt-bench-from"
HEADER_NOTIFY = "lt-bench-notify"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def intake_queues_now(settings: Settings) -> list[str]:
    """The intake queues the routers would consume now (lt.router.in and every gateway's):
    a relay takes from all of them, in delivery order."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        listed = await intake_queues.consumed_queues(conn)
    finally:
        await conn.close()
    return [name for name, draining in listed.items() if not draining]


async def relay(amqp_url: str, stop: asyncio.Event, *, batch_size: int = 200,
                batch_wait_ms: int = 20, queues: Sequence[str] = (topology.ROUTER_IN,)) -> int:
    """Relay until ``stop`` is set; returns the number of messages relayed. One ack with
    ``multiple=True`` per batch is right across ``queues``: batches are taken in delivery
    order."""
    connection = await connect_first(amqp_url, timeout=30)  # a cluster: its first node
    relayed = 0
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=batch_size * 2)
        publish = await connection.channel(publisher_confirms=True)
        deliver = await publish.get_exchange(topology.DELIVER)
        receipts = await publish.get_exchange(topology.RECEIPTS)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        for name in queues:
            await (await consume.get_queue(name)).consume(on_message)
        while not stop.is_set():
            try:
                first = await asyncio.wait_for(inbox.get(), timeout=0.5)
            except TimeoutError:
                continue
            batch = [first]
            deadline = time.monotonic() + batch_wait_ms / 1000
            while len(batch) < batch_size:
                remaining = deadline - time.monotonic()
                if inbox.empty() and remaining <= 0:
                    break
                try:
                    batch.append(inbox.get_nowait() if not inbox.empty()
                                 else await asyncio.wait_for(inbox.get(), remaining))
                except TimeoutError:
                    break
            pending: list[Awaitable[Any]] = []
            for m in batch:
                headers = m.headers or {}
                targets = headers.get(HEADER_TO) or []
                assert isinstance(targets, list | tuple)
                for gateway in targets:
                    pending.append(deliver.publish(
                        aio_pika.Message(m.body, message_id=str(uuid.uuid4()), type=m.type,
                                         content_type="application/xml",
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        _text(gateway), mandatory=True))
                notify = headers.get(HEADER_NOTIFY)
                for gateway, kind in ((headers.get(HEADER_FROM), "accepted"),
                                      (notify, "delivery")):
                    if not gateway:
                        continue
                    receipt = json.dumps({"type": kind, "message_id": m.message_id,
                                          "receipt_id": str(uuid.uuid4())}).encode()
                    pending.append(receipts.publish(
                        aio_pika.Message(receipt, content_type="application/json",
                                         delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        _text(gateway)))
            await asyncio.gather(*pending)
            await batch[-1].ack(multiple=True)
            relayed += len(batch)
    return relayed


async def _main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    settings = Settings.from_env()
    await relay(
        settings.amqp_url, stop, batch_size=settings.batch_size,
        batch_wait_ms=settings.batch_wait_ms, queues=await intake_queues_now(settings),
    )


if __name__ == "__main__":
    asyncio.run(_main())
