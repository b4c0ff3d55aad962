"""Gateways' intake queues (issue #18): what a gateway publishes waits in its own queue,
routers take from every queue in turn, so one gateway's burst does not hold up another
gateway's document; keys no queue takes still reach lt.router.in; upgrading a running hub
loses nothing; one gateway's packages are decided in order; a router holds no more bytes
than its budget (plus what was on its way)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aio_pika
import pytest

from router import metrics, topology
from router.directory import intake_queues
from router.directory.provision import ensure_core, reconcile_intake
from router.directory.registry import AgencyRow, remove_gateway
from schemas import wire_names
from tests.factory import edoc
from tests.hub import Hub, queue_depth, throwaway_hub
from tests.polling import eventually

G22, G12, H41 = "000.00.00.G22", "000.00.00.G12", "000.00.00.H41"


async def _directory(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[G22])
    await hub.add_gateway("bo-tai-chinh", serves=[G12], kind="ministry")
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow(G22, "Văn phòng Chính phủ"),
                            AgencyRow(G12, "Bộ Tài chính"),
                            AgencyRow(H41, "UBND tỉnh Nghệ An"),
                            AgencyRow("000.00.01.H41", "Sở Nội vụ Nghệ An"),
                            AgencyRow("000.00.02.H41", "Sở Tài chính Nghệ An")])


async def _documents(hub: Hub, sender: str) -> int:
    return int(await hub.pool.fetchval(
        "SELECT count(*) FROM documents WHERE sender_code = $1", sender))


async def _all_routed(hub: Hub, n: int) -> bool:
    return await hub.pool.fetchval("SELECT count(*) FROM documents") == n


async def _count(hub: Hub, sender: str, n: int) -> bool:
    return await _documents(hub, sender) == n


async def _holds(hub: Hub, queue: str, n: int) -> bool:
    return await queue_depth(hub, queue) == n


async def _topology_before_intake_queues(hub: Hub) -> None:
    """The hub as an earlier version left it: lt.router.in bound to lt.submit with '#',
    no lt.intake, no gateway intake queue, nothing of them in the ledger."""
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(topology.INTAKE)
        await channel.exchange_delete(topology.INTAKE_OTHER)
        for gid in ("vpcp", "bo-tai-chinh", "lgsp-nghean"):
            await channel.queue_delete(topology.intake_queue(gid))
        router_in = await channel.get_queue(topology.ROUTER_IN)
        await router_in.bind(topology.SUBMIT, routing_key="#")
    await hub.pool.execute("DELETE FROM intake_queues")
    await hub.pool.execute("DELETE FROM intake_bindings")


async def _send_all(hub: Hub, gateway: str, bodies: Sequence[bytes]) -> None:
    async with hub.client(gateway) as client:
        for k in range(0, len(bodies), 200):
            await asyncio.gather(*(client.send(b, wait=False)
                                   for b in bodies[k:k + 200]))


async def test_a_package_waits_in_its_gateways_intake_queue_and_is_routed(hub: Hub) -> None:
    await _directory(hub)
    async with hub.client("vpcp") as vpcp:
        await vpcp.send(edoc(G22, [G12], number="1")[1], wait=False)
        await eventually(lambda: queue_depth(hub, topology.intake_queue("vpcp")), timeout=10,
                         what="the package in vpcp's intake queue")
        assert await queue_depth(hub, topology.ROUTER_IN) == 0
        await hub.start_router()
        receipt = await asyncio.wait_for(vpcp.send(edoc(G22, [G12], number="2")[1]), 20)
        assert receipt is not None and receipt.type == "accepted", receipt
    await eventually(lambda: _documents(hub, G22), timeout=20, what="both routed")
    await eventually(lambda: _holds(hub, topology.intake_queue("vpcp"), 0), timeout=10)
    assert await _documents(hub, G22) == 2


async def test_the_alternate_exchange_of_lt_intake_takes_what_no_queue_is_bound_for(
        hub: Hub) -> None:
    """lt.intake is reached through an exchange-to-exchange binding from lt.submit; its
    alternate exchange is still used (RabbitMQ 3.10, checked here on the real broker)."""
    await _directory(hub)
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        submit = await channel.get_exchange(topology.SUBMIT)
        await submit.publish(aio_pika.Message(b"<edXML/>"), routing_key="000.00.00.Z99")
    assert await eventually(lambda: queue_depth(hub, topology.ROUTER_IN), timeout=10) == 1
    assert await queue_depth(hub, topology.UNROUTABLE) == 0


async def test_gateways_that_share_keys_go_through_lt_router_in_and_are_routed(
        hub: Hub) -> None:
    await hub.add_gateway("lgsp-hue", serves=["#.H46"], kind="province-platform")
    await hub.add_gateway("hue-city", serves=["000.01.00.H46"])  # inside lgsp-hue's pattern
    await hub.add_gateway("bo-tai-chinh", serves=[G12], kind="ministry")
    await hub.add_agencies([AgencyRow("000.00.00.H46", "UBND tỉnh Thừa Thiên Huế"),
                            AgencyRow("000.01.00.H46", "UBND thành phố Huế",
                                      gateway="hue-city"),
                            AgencyRow(G12, "Bộ Tài chính")])
    async with hub.client("hue-city") as city:
        await city.send(edoc("000.01.00.H46", [G12], number="1")[1], wait=False)
        assert await eventually(lambda: queue_depth(hub, topology.ROUTER_IN), timeout=10) == 1
        await hub.start_router()
        receipt = await asyncio.wait_for(city.send(edoc("000.01.00.H46", [G12],
                                                        number="2")[1]), 20)
        assert receipt is not None and receipt.type == "accepted", receipt
    async with hub.client("lgsp-hue") as lgsp:
        receipt = await asyncio.wait_for(lgsp.send(edoc("000.00.00.H46", [G12])[1]), 20)
        assert receipt is not None and receipt.type == "accepted", receipt
    # lgsp-hue had a queue until hue-city came: unbound since (draining), not deleted yet
    rows = await hub.pool.fetch("SELECT gateway_id, state FROM intake_queues")
    assert {r["gateway_id"]: r["state"] for r in rows} == {"bo-tai-chinh": "active",
                                                          "lgsp-hue": "draining"}


async def test_a_burst_does_not_delay_another_gateways_document(hub: Hub) -> None:
    await _directory(hub)
    burst = [edoc(G22, [G12], number=f"B{i}", attachment=None)[1] for i in range(1500)]
    await _send_all(hub, "vpcp", burst)
    await eventually(lambda: _holds(hub, topology.intake_queue("vpcp"), len(burst)),
                     timeout=30, what="the burst waiting in vpcp's intake queue")
    started = time.monotonic()
    await hub.start_router()
    async with hub.client("lgsp-nghean") as nghean:
        await eventually(lambda: _documents(hub, G22), timeout=30, what="the burst routing")
        sent = time.monotonic()
        receipt = await asyncio.wait_for(nghean.send(edoc(H41, [G12], number="Q1")[1]), 30)
        latency = time.monotonic() - sent
        routed_before = await _documents(hub, G22)
    assert receipt is not None and receipt.type == "accepted", receipt
    await eventually(lambda: _count(hub, G22, len(burst)), timeout=120,
                     what="the whole burst routed")
    drain = time.monotonic() - started
    print(f"quiet document: {latency * 1000:.0f} ms; burst of {len(burst)}: {drain:.1f} s; "
          f"{routed_before} of the burst routed when it was")
    assert routed_before < len(burst) * 0.9  # it did not wait for the burst
    assert latency < drain / 5


async def test_one_gateways_packages_are_decided_in_order_during_a_burst(hub: Hub) -> None:
    """A province platform sends 40 documents one after the other (none waiting for its
    receipt) while another gateway's burst is routed: the recipient's inbox gets them in
    the order they were sent, the burst's copies interleaved."""
    await _directory(hub)
    await hub.start_router()
    burst = [edoc(G22, [G12], number=f"B{i}", attachment=None)[1] for i in range(600)]
    flood = asyncio.create_task(_send_all(hub, "vpcp", burst))
    await eventually(lambda: _documents(hub, G22), timeout=30, what="the burst routing")
    ours = [edoc(H41, [G12], number=f"P{i}") for i in range(40)]
    async with hub.client("lgsp-nghean") as nghean:
        for _, body in ours:  # each published before the next, none waiting for a receipt
            await nghean.send(body, wait=False)
    await flood
    await eventually(lambda: _count(hub, H41, len(ours)), timeout=120,
                     what="the 40 documents routed")
    arrived: list[str] = []
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        inbox = await channel.get_queue(topology.inbox_queue("bo-tai-chinh"))
        while (m := await inbox.get(no_ack=True, fail=False)) is not None:
            arrived.append(str((m.headers or {}).get(wire_names.DOCUMENT_ID)))
    want = [pkg.document_id for pkg, _ in ours]
    assert [d for d in arrived if d in set(want)] == want
    assert len(arrived) == len(burst) + len(ours)  # interleaved with the burst's copies


async def test_upgrading_a_running_hub_from_lt_router_in_on_lt_submit_loses_nothing(
        hub: Hub) -> None:
    await _directory(hub)
    await _topology_before_intake_queues(hub)
    upgraded = asyncio.Event()
    bodies: list[bytes] = []

    async def send_throughout() -> None:
        """Packages go out before, during and after the upgrade."""
        after = 0
        async with hub.client("vpcp") as vpcp:
            while after < 5:
                after += upgraded.is_set()
                batch = [edoc(G22, [G12], number=f"U{len(bodies) + i}", attachment=None)[1]
                         for i in range(20)]
                bodies.extend(batch)
                await asyncio.gather(*(vpcp.send(b, wait=False) for b in batch))

    sending = asyncio.create_task(send_throughout())
    await eventually(lambda: queue_depth(hub, topology.ROUTER_IN), timeout=20,
                     what="packages arriving the old way")
    await ensure_core(hub.settings, hub.admin)  # lienthong topology apply
    async with hub.pool.acquire() as conn:
        await reconcile_intake(hub.settings, conn)
    upgraded.set()
    await sending
    assert await queue_depth(hub, topology.intake_queue("vpcp")) > 0  # the new way now
    await hub.start_router()
    await eventually(lambda: _count(hub, G22, len(bodies)), timeout=120,
                     what="every package routed")
    print(f"{len(bodies)} packages sent across the upgrade, all routed")
    assert await queue_depth(hub, topology.UNROUTABLE) == 0
    assert await hub.pool.fetchval("SELECT count(*) FROM rejections") == 0


@pytest.fixture
async def small_budget_hub(template_db: str) -> object:
    async with throwaway_hub(template_db, inflight_max_bytes=8 * 1024 * 1024,
                             max_package_bytes=1024 * 1024,
                             large_threshold_bytes=1024 * 1024) as h:
        yield h


async def test_a_router_holds_no_more_bytes_than_its_budget_and_routes_everything(
        small_budget_hub: Hub) -> None:
    hub = small_budget_hub
    senders = {"vpcp": G22, "bo-tai-chinh": G12, "lgsp-nghean": H41}
    await _directory(hub)
    attachment = bytes(range(256)) * 2700  # ~690 KB, ~920 KB in base64
    for gid, code in senders.items():
        to = G12 if code != G12 else G22
        await _send_all(hub, gid, [edoc(code, [to], number=f"L{i}", attachment=attachment)[1]
                                   for i in range(10)])
    size = len(edoc(G22, [G12], number="L0", attachment=attachment)[1])
    pauses = metrics.INTAKE_PAUSES._value.get()
    (worker,) = await hub.start_router()
    await eventually(lambda: _all_routed(hub, 30), timeout=120,
                     what="every package routed")
    budget = hub.settings.inflight_max_bytes
    prefetch = hub.settings.prefetch_count
    # three queues had 12 packages in all at most on their way (prefetch 4 each): without
    # the pause the router would have held them all
    assert prefetch == 4 and 3 * prefetch * size > budget
    assert metrics.INTAKE_PAUSES._value.get() > pauses
    print(f"peak held {worker.peak_held_bytes} bytes, budget {budget}")
    assert worker.peak_held_bytes <= budget + 3 * prefetch * size


@pytest.fixture
async def quick_hub(template_db: str) -> object:
    async with throwaway_hub(template_db, intake_refresh_seconds=0.2) as h:
        yield h


async def test_a_removed_gateways_intake_queue_is_deleted_only_once_drained(
        quick_hub: Hub) -> None:
    hub = quick_hub
    await _directory(hub)
    queue = topology.intake_queue("vpcp")
    async with hub.client("vpcp") as vpcp:
        await vpcp.send(edoc(G22, [G12], number="1")[1], wait=False)
    await eventually(lambda: queue_depth(hub, queue), timeout=10, what="the package waiting")
    async with hub.pool.acquire() as conn:
        await remove_gateway(conn, hub.admin, hub.settings.vhost, "vpcp")

    async def reconciled() -> bool:
        connection = await aio_pika.connect(hub.settings.amqp_url)
        async with connection, hub.pool.acquire() as conn:
            done = await intake_queues.reconcile(conn, await connection.channel(),
                                                 grace_seconds=0)
            return done is not None

    await eventually(reconciled, timeout=10, what="a reconciliation")
    # unbound (draining), not deleted: a package still waits in it
    assert await hub.pool.fetchval(
        "SELECT state FROM intake_queues WHERE gateway_id = 'vpcp'") == "draining"
    assert await queue_depth(hub, queue) == 1
    await hub.start_router()  # routes what waits, then leaves the empty queue

    async def deleted() -> bool:
        await reconciled()
        return not await hub.pool.fetchval(
            "SELECT count(*) FROM intake_queues WHERE gateway_id = 'vpcp'")

    await eventually(deleted, timeout=30, interval=0.3, what="the drained queue deleted")
    assert await hub.pool.fetchval("SELECT count(*) FROM rejections") == 1  # it was routed
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        assert await intake_queues.queue_counts(await connection.channel(), queue) is None


async def test_during_a_rolling_upgrade_routers_of_the_earlier_version_get_everything(
        hub: Hub) -> None:
    """A router of the earlier version consumes lt.router.in alone: a gateway's intake queue
    is not bound while no router consumes it, so that router still gets every package."""
    await _directory(hub)
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        for gid in ("vpcp", "bo-tai-chinh", "lgsp-nghean"):
            await channel.queue_delete(topology.intake_queue(gid))
        await hub.pool.execute("DELETE FROM intake_queues")
        got: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        old_router = await channel.get_queue(topology.ROUTER_IN)
        await old_router.consume(got.put)  # the earlier version: lt.router.in only
        async with hub.pool.acquire() as conn:
            await reconcile_intake(hub.settings, conn)  # lienthong topology apply
        async with hub.client("vpcp") as vpcp:
            await vpcp.send(edoc(G22, [G12], number="1")[1], wait=False)
        message = await asyncio.wait_for(got.get(), 10)
        assert message.routing_key == G22
        assert await queue_depth(hub, topology.intake_queue("vpcp")) == 0
        assert await hub.pool.fetchval("SELECT count(*) FROM intake_bindings") == 0


async def test_a_router_started_before_topology_apply_routes_from_lt_router_in(
        hub: Hub) -> None:
    """Routers upgraded before `lienthong topology apply`: no lt.intake exchange yet. They
    start (logging router.intake_topology_missing: run `lienthong topology apply`) and
    route what arrives in lt.router.in, as before (they used to fail to start)."""
    await _directory(hub)
    await _topology_before_intake_queues(hub)
    await hub.start_router()
    bodies = [edoc(G22, [G12], number=f"B{i}", attachment=None)[1] for i in range(10)]
    await _send_all(hub, "vpcp", bodies)
    await eventually(lambda: _count(hub, G22, len(bodies)), timeout=30,
                     what="packages routed from lt.router.in")
