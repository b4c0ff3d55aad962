"""Delivery limits and dead-lettering come from RabbitMQ policies: an operator changes the
limit on live queues with `lienthong topology apply`, and queues that an earlier version
declared with queue arguments are left as they are."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
from click.testing import CliRunner

from router import topology
from router.cli.topology import topology as topology_cli
from tests.hub import Hub, queue_depth


async def _effective(hub: Hub, queue: str, key: str, want: Any) -> dict[str, Any]:
    """The queue as the management API shows it, once ``key`` has taken ``want``
    (a policy reaches the queues a moment after it is set)."""
    for _ in range(100):
        q = await hub.admin.get_queue(hub.settings.vhost, queue)
        assert q is not None
        if (q.get("effective_policy_definition") or {}).get(key) == want:
            return q
        await asyncio.sleep(0.1)
    raise AssertionError(f"{queue}: {key} never became {want!r}: {q}")


async def test_queues_take_their_limits_from_policies(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    q = await _effective(hub, topology.ROUTER_IN, "delivery-limit", 20)
    assert q["policy"] == "lt-router-in"
    assert q["arguments"] == {"x-queue-type": "quorum"}  # nothing fixed at declaration
    assert q["effective_policy_definition"]["dead-letter-exchange"] == topology.DEAD
    assert q["effective_policy_definition"]["dead-letter-strategy"] == "at-least-once"
    inbox = await _effective(hub, "lt.gw.vpcp.inbox", "delivery-limit",
                             topology.GATEWAY_DELIVERY_LIMIT)
    assert inbox["policy"] == "lt-gateway-inbox"
    receipts = await _effective(hub, "lt.gw.vpcp.receipts", "max-length",
                                hub.settings.receipts_max_length)
    assert receipts["policy"] == "lt-gateway-receipts"  # bounded, oldest dropped
    assert receipts["effective_policy_definition"]["overflow"] == "drop-head"
    assert "delivery-limit" not in receipts["effective_policy_definition"]


async def test_topology_apply_changes_the_limit_of_the_live_queue(hub: Hub) -> None:
    """With the limit lowered to 3, a message given back over and over leaves
    lt.router.in for lt.parking (through lt.dead), kept, not dropped."""
    env = {
        "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
        "LIENTHONG_DATABASE_URL": hub.settings.database_url,
        "LIENTHONG_MANAGEMENT_URL": hub.settings.management_url,
        "LIENTHONG_DELIVERY_LIMIT": "3",
    }
    result = await asyncio.to_thread(CliRunner().invoke, topology_cli, ["apply"], env=env)
    assert result.exit_code == 0, result.output
    assert "delivery limit of lt.router.in: 3" in result.output
    await _effective(hub, topology.ROUTER_IN, "delivery-limit", 3)

    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"<not routed>", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=topology.ROUTER_IN,
        )
        queue = await channel.get_queue(topology.ROUTER_IN)
        deliveries = 0
        for _ in range(10):
            message = await queue.get(fail=False, timeout=5)
            if message is None:
                break
            deliveries += 1
            await message.nack(requeue=True)
    assert 3 <= deliveries <= 4
    for _ in range(50):  # dead-lettering at least once is asynchronous
        if await queue_depth(hub, topology.PARKING) == 1:
            break
        await asyncio.sleep(0.1)
    assert await queue_depth(hub, topology.PARKING) == 1
    assert await queue_depth(hub, topology.ROUTER_IN) == 0


async def test_a_queue_declared_with_arguments_by_an_earlier_version_is_kept(
    hub: Hub,
) -> None:
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        legacy = {"x-queue-type": "quorum", "x-delivery-limit": 20,
                  "x-dead-letter-exchange": topology.DEAD,
                  "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        await channel.declare_queue("lt.gw.old.inbox", durable=True, arguments=legacy)
        await topology.declare_gateway(channel, "old")  # no PRECONDITION_FAILED
        confirm = await connection.channel(publisher_confirms=True)
        deliver = await confirm.get_exchange(topology.DELIVER)
        await deliver.publish(aio_pika.Message(b"copy"), routing_key="old", mandatory=True)
    q = await hub.admin.get_queue(hub.settings.vhost, "lt.gw.old.inbox")
    assert q is not None and q["arguments"]["x-delivery-limit"] == 20
    assert await queue_depth(hub, "lt.gw.old.inbox") == 1  # and still bound
