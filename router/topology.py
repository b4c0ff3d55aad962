"""The AMQP topology of the axis, declared idempotently.

=====================  ======  =====================================================
name                   type    role
=====================  ======  =====================================================
lt.submit              topic   gateways publish here; routing key = sender agency code
lt.router.in           quorum  bound to lt.submit with ``#``; routers consume it
lt.deliver             direct  routers publish copies; key = recipient gateway id
lt.receipts            direct  routers publish receipts and events; key = gateway id
lt.gw.<id>.inbox       quorum  a gateway's documents and status packages
lt.gw.<id>.receipts    quorum  a gateway's receipts and state-change events
lt.dead                fanout  dead letters of lt.router.in and of every inbox
lt.parking             quorum  poison messages, kept with their x-death history
lt.unroutable          fanout  alternate exchange of lt.submit and lt.receipts
lt.unroutable          quorum  what no binding wanted, kept for operators
=====================  ======  =====================================================

``lt.deliver`` has no alternate exchange on purpose: routers publish copies with
``mandatory`` and learn at once, from the broker's return, that a recipient's inbox is
missing; the delivery is then marked undeliverable in the ledger.
"""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, ExchangeType

from router.tls import ssl_context_from_env

__all__ = [
    "DEAD",
    "DELIVER",
    "PARKING",
    "RECEIPTS",
    "ROUTER_IN",
    "SUBMIT",
    "UNROUTABLE",
    "declare_core",
    "declare_gateway",
    "delete_gateway_queues",
    "inbox_queue",
    "receipts_queue",
]

SUBMIT = "lt.submit"
ROUTER_IN = "lt.router.in"
DELIVER = "lt.deliver"
RECEIPTS = "lt.receipts"
DEAD = "lt.dead"
PARKING = "lt.parking"
UNROUTABLE = "lt.unroutable"

GATEWAY_DELIVERY_LIMIT = 20


def inbox_queue(gateway_id: str) -> str:
    return f"lt.gw.{gateway_id}.inbox"


def receipts_queue(gateway_id: str) -> str:
    return f"lt.gw.{gateway_id}.receipts"


def _quorum(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if extra:
        args.update(extra)
    return args


async def declare_core(channel: AbstractChannel, *, delivery_limit: int = 20) -> None:
    """Declare the hub's exchanges and queues. Safe to run again with the same settings."""
    unroutable = await channel.declare_exchange(UNROUTABLE, ExchangeType.FANOUT, durable=True)
    unroutable_q = await channel.declare_queue(UNROUTABLE, durable=True, arguments=_quorum())
    await unroutable_q.bind(unroutable)

    dead = await channel.declare_exchange(DEAD, ExchangeType.FANOUT, durable=True)
    parking = await channel.declare_queue(PARKING, durable=True, arguments=_quorum())
    await parking.bind(dead)

    submit = await channel.declare_exchange(
        SUBMIT, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": UNROUTABLE}
    )
    router_in = await channel.declare_queue(
        ROUTER_IN,
        durable=True,
        arguments=_quorum(
            {
                "x-delivery-limit": delivery_limit,
                "x-dead-letter-exchange": DEAD,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        ),
    )
    await router_in.bind(submit, routing_key="#")

    await channel.declare_exchange(DELIVER, ExchangeType.DIRECT, durable=True)
    await channel.declare_exchange(
        RECEIPTS, ExchangeType.DIRECT, durable=True, arguments={"alternate-exchange": UNROUTABLE}
    )


async def declare_gateway(channel: AbstractChannel, gateway_id: str) -> None:
    """Declare a gateway's inbox and receipts queues and bind them. Idempotent."""
    deliver = await channel.get_exchange(DELIVER, ensure=False)
    receipts = await channel.get_exchange(RECEIPTS, ensure=False)
    inbox = await channel.declare_queue(
        inbox_queue(gateway_id),
        durable=True,
        arguments=_quorum(
            {
                "x-delivery-limit": GATEWAY_DELIVERY_LIMIT,
                "x-dead-letter-exchange": DEAD,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        ),
    )
    await inbox.bind(deliver, routing_key=gateway_id)
    rq = await channel.declare_queue(receipts_queue(gateway_id), durable=True, arguments=_quorum())
    await rq.bind(receipts, routing_key=gateway_id)


async def delete_gateway_queues(channel: AbstractChannel, gateway_id: str) -> None:
    for name in (inbox_queue(gateway_id), receipts_queue(gateway_id)):
        await channel.queue_delete(name)


async def apply(amqp_url: str, gateway_ids: list[str], *, delivery_limit: int = 20) -> None:
    """Declare everything: the core and every gateway's queues."""
    connection = await aio_pika.connect(amqp_url, ssl_context=ssl_context_from_env())
    async with connection:
        channel = await connection.channel()
        await declare_core(channel, delivery_limit=delivery_limit)
        for gid in gateway_ids:
            await declare_gateway(channel, gid)
