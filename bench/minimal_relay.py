"""A minimal relay: the plainest aio-pika loop that moves the bench's workload.

The yardstick for ``bench.relay`` (the raw relay ``make bench`` divides by): the same
queues, copies, receipts and delivery events, written the way a short script would —
consume with a prefetch of 400, take whatever is there (up to 200), publish it all with
pipelined confirms, ack once with ``multiple=True``. ``make bench`` drains the same packages
with both and shows both figures, so a raw relay slower than this one shows at once.

Run as its own process: ``python -m bench.minimal_relay`` (``LIENTHONG_AMQP_URL``).
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.relay import intake_queues_now
from router import topology
from router.settings import Settings
from schemas import wire_names

_MARKS = (wire_names.DOCUMENT_ID, wire_names.SENDER)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def main() -> None:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    settings = Settings.from_env()
    queues = await intake_queues_now(settings)
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=400)
        publish = await connection.channel(publisher_confirms=True)
        deliver = await publish.get_exchange(topology.DELIVER)
        receipts = await publish.get_exchange(topology.RECEIPTS)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        for name in queues:  # batches in delivery order: one multiple ack is right
            await (await consume.get_queue(name)).consume(inbox.put)
        while not stop.is_set():
            try:
                batch = [await asyncio.wait_for(inbox.get(), 0.5)]
            except TimeoutError:
                continue
            while len(batch) < 200 and not inbox.empty():
                batch.append(inbox.get_nowait())
            sends = []
            for m in batch:
                h = m.headers
                # the copy names its document and sender, as a router's does
                marks = {k: h[k] for k in _MARKS if k in h}
                for gateway in h["lt-bench-to"] or []:  # type: ignore[union-attr]
                    sends.append(deliver.publish(aio_pika.Message(
                        m.body, type=m.type, headers=marks,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT), _s(gateway)))
                for gateway in (h["lt-bench-from"], h["lt-bench-notify"]):
                    if gateway:
                        sends.append(receipts.publish(aio_pika.Message(
                            json.dumps({"message_id": m.message_id}).encode(),
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT), _s(gateway)))
            await asyncio.gather(*sends)
            await batch[-1].ack(multiple=True)


if __name__ == "__main__":
    asyncio.run(main())
