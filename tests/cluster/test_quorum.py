"""`topology apply`'s cluster check on the real 3-node cluster: every hub queue has a
replica on each node, uneven leaders get rebalanced, a queue short of replicas is named
with the command that fixes it."""

from __future__ import annotations

import pytest

from router import quorum, topology
from tests.chaos import harness
from tests.cluster.conftest import Cluster
from tests.hub import Hub
from tests.polling import eventually

pytestmark = pytest.mark.cluster


async def test_hub_queues_are_replicated_on_every_node(cluster_hub: Hub) -> None:
    await harness.provision(cluster_hub)
    report = await quorum.check(cluster_hub.admin, cluster_hub.settings.vhost,
                                rebalance=False)
    assert len(report.nodes) == 3
    # every queue of the vhost (the core's and each gateway's inbox and receipts)
    listed = {q["name"] for q in await cluster_hub.admin.list_queues(cluster_hub.settings.vhost)}
    assert report.queues == len(listed)
    gateways = {**harness.SENDERS, **harness.RECIPIENTS}
    assert {topology.inbox_queue(g) for g in gateways} <= listed
    assert {topology.receipts_queue(g) for g in gateways} <= listed
    assert topology.ROUTER_IN in listed
    assert report.missing == {}


async def test_uneven_leaders_are_rebalanced_and_short_queues_named(
        cluster_hub: Hub, cluster: Cluster) -> None:
    from adapters.endpoints import connect_first

    vhost = cluster_hub.settings.vhost
    first_node = cluster.amqp_hosts.split(",")[0]
    connection = await connect_first(
        cluster_hub.settings.amqp_url.replace(cluster.amqp_hosts, first_node))
    async with connection:
        channel = await connection.channel()
        for i in range(9):  # all led by the node the client is on
            await channel.declare_queue(f"lt.test.crowd.{i}", durable=True, arguments={
                "x-queue-type": "quorum", "x-queue-leader-locator": "client-local"})
        await channel.declare_queue("lt.test.single", durable=True, arguments={
            "x-queue-type": "quorum", "x-quorum-initial-group-size": 1})

    report = await quorum.check(cluster_hub.admin, vhost)
    assert report.rebalanced, report
    assert sorted(report.missing["lt.test.single"]) and len(report.missing["lt.test.single"]) == 2
    assert any(c.startswith("rabbitmq-queues grow ") for c in report.grow_commands(vhost))

    async def balanced() -> bool:
        r = await quorum.check(cluster_hub.admin, vhost, rebalance=False)
        return r.balanced

    await eventually(balanced, timeout=60, interval=1.0, what="leaders spread evenly")
