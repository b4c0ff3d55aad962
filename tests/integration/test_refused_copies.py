"""A copy the broker refuses (a publisher-confirm nack) is published again until its inbox
takes it: never marked undeliverable while its sender is told ``accepted``.

On the cluster, an inbox whose quorum-queue leader died nacks every copy until its members
elect a new leader (over 10 s seen with kill -9 on a loaded machine); routers used to give
up after ~5 s of retries and mark those deliveries undeliverable: 48 deliveries lost in
one run of the node-kill test. Here the inbox refuses for as long as a test policy
(``overflow: reject-publish`` with ``max-length: 0``) is in place."""

from __future__ import annotations

import asyncio
import functools

import aio_pika
import pytest
from prometheus_client import REGISTRY

from adapters import PublishNacked
from router import topology
from router.directory.registry import AgencyRow
from schemas import Reason
from tests.factory import edoc
from tests.hub import Hub, queue_depth
from tests.polling import eventually

SENDER, RECIPIENT = "000.00.00.G22", "000.00.00.H01"


async def test_a_refused_copy_waits_for_its_inbox_instead_of_being_dropped(hub: Hub) -> None:
    await hub.add_gateway("s-refused", serves=[SENDER])
    await hub.add_gateway("r-refused", serves=[RECIPIENT])
    await hub.add_agencies([AgencyRow(SENDER, "Gửi"), AgencyRow(RECIPIENT, "Nhận")])
    vhost = hub.settings.vhost
    await hub.admin.put_policy(  # the inbox refuses every copy while this policy holds
        vhost, "test-refuse", pattern=f"^{topology.inbox_queue('r-refused')}$".replace(".", r"\."),
        definition={"max-length": 0, "overflow": "reject-publish"}, priority=100)
    await eventually(lambda: _policy_is(hub, "test-refuse"), timeout=30,
                     what="the refusing policy applied")
    # a quorum queue's length limit is soft: one message over it and it refuses from then on
    inbox = topology.inbox_queue("r-refused")
    async with await aio_pika.connect(hub.settings.amqp_url) as conn:
        channel = await conn.channel()
        await channel.default_exchange.publish(aio_pika.Message(b"filler"), routing_key=inbox)
    await eventually(lambda: queue_depth(hub, inbox), timeout=30, what="the filler queued")
    await hub.start_router()
    sender = hub.client("s-refused", receipt_timeout=120)
    recipient = hub.client("r-refused")
    await sender.connect()
    await recipient.connect()
    try:
        _, body = edoc(SENDER, [RECIPIENT], number="refused-1")
        # the router runs in this process: its counters (not its logs, whose loggers an
        # earlier test may have cached before any capture) say what it did
        waits, renewals = _waits(), _renewals()
        sending = asyncio.create_task(sender.send(body))
        # the router ran out of quick retries and now waits for the inbox, the package
        # held (not acked, no receipt)
        await eventually(lambda: _waits() > waits, timeout=60,
                         what="the router waiting for the refusing inbox")
        # and it tried a fresh channel: a channel's stale queue state can refuse for
        # good on a cluster (see RouterWorker._renew_publishing)
        assert _renewals() > renewals
        assert not sending.done()  # no receipt yet: nothing was decided about the copy
        async with hub.pool.acquire() as conn:
            states = await conn.fetch("SELECT state FROM deliveries")
        assert [r["state"] for r in states] == ["submitted"]
        await hub.admin.request("DELETE", f"/queues/{vhost}/{inbox}/contents")
        await hub.admin.request("DELETE", f"/policies/{vhost}/test-refuse")
        receipt = await asyncio.wait_for(sending, 120)
        assert receipt is not None and receipt.type == "accepted", receipt
        async for m in recipient.inbox(timeout=30):
            async with m.process():
                assert m.hub_id == receipt.hub_id
            break
        else:
            raise AssertionError("the copy never reached the recipient")
        async with hub.pool.acquire() as conn:
            assert await conn.fetchval("SELECT state FROM deliveries") == "queued"
    finally:
        await sender.close()
        await recipient.close()
        await hub.stop_routers()


def _waits() -> float:
    return REGISTRY.get_sample_value("lienthong_router_outage_waits_total",
                                     {"cause": "refused"}) or 0.0


def _renewals() -> float:
    return REGISTRY.get_sample_value("lienthong_router_channel_renewals_total") or 0.0


async def _policy_is(hub: Hub, name: str) -> bool:
    q = await hub.admin.get_queue(hub.settings.vhost, topology.inbox_queue("r-refused"))
    return bool(q and q.get("policy") == name)


async def test_a_nacked_send_raises_and_the_same_client_sends_again(hub: Hub) -> None:
    """The SDK side: a send RabbitMQ nacks (the intake queue refusing, as while it elects a
    leader) raises PublishNacked with its reason, and the client, on a new channel, sends
    the same message again once the queue takes messages."""
    await hub.add_gateway("s-nacked", serves=[SENDER])
    await hub.add_gateway("r-nacked", serves=[RECIPIENT])
    await hub.add_agencies([AgencyRow(SENDER, "Gửi"), AgencyRow(RECIPIENT, "Nhận")])
    vhost = hub.settings.vhost
    await hub.admin.put_policy(
        vhost, "test-refuse-in", pattern=r"^lt\.router\.in(\..+)?$",
        definition={"max-length": 0, "overflow": "reject-publish"}, priority=100)
    for queue in (topology.ROUTER_IN, topology.intake_queue("s-nacked")):
        await eventually(functools.partial(_has_policy, hub, queue, "test-refuse-in"),
                         timeout=30, what=f"the refusing policy applied to {queue}")
    # a quorum queue refuses once past max-length: one filler in each intake queue
    intake = (topology.ROUTER_IN, topology.intake_queue("s-nacked"))
    async with await aio_pika.connect(hub.settings.amqp_url) as conn:
        channel = await conn.channel()
        for queue in intake:
            await channel.default_exchange.publish(aio_pika.Message(b"filler"),
                                                   routing_key=queue)
    for queue in intake:
        await eventually(functools.partial(queue_depth, hub, queue), timeout=30,
                         what=f"the filler queued in {queue}")
    sender = hub.client("s-nacked", receipt_timeout=60)
    await sender.connect()
    try:
        _, body = edoc(SENDER, [RECIPIENT], number="nacked-1")
        with pytest.raises(PublishNacked) as err:
            await sender.send(body, message_id="nacked-1")
        assert err.value.reason is Reason.PUBLISH_NACKED
        for queue in intake:
            await hub.admin.request("DELETE", f"/queues/{vhost}/{queue}/contents")
        await hub.admin.request("DELETE", f"/policies/{vhost}/test-refuse-in")
        for queue in intake:
            await eventually(functools.partial(_lacks_policy, hub, queue, "test-refuse-in"),
                             timeout=30, what=f"the refusing policy gone from {queue}")
        await hub.start_router()
        receipt = await sender.send(body, message_id="nacked-1")
        assert receipt is not None and receipt.type == "accepted", receipt
    finally:
        await sender.close()
        await hub.stop_routers()


async def _has_policy(hub: Hub, queue: str, name: str) -> bool:
    q = await hub.admin.get_queue(hub.settings.vhost, queue)
    return bool(q and q.get("policy") == name)


async def _lacks_policy(hub: Hub, queue: str, name: str) -> bool:
    return not await _has_policy(hub, queue, name)
