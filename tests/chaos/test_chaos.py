"""Chaos: kill routers, restart RabbitMQ and PostgreSQL, keep a gateway away — and count.

Each scenario runs a real load through real router processes and prints
``chaos[...]: sent=…, delivered=…, duplicates_dropped=…, lost=0, …``.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from router.processes import RouterProcesses as Routers
from tests.chaos import harness
from tests.chaos.harness import Counts, Seen
from tests.hub import Hub

LOAD = int(os.environ.get("LIENTHONG_CHAOS_LOAD", "5000"))

pytestmark = pytest.mark.timeout(900)


async def _run(hub: Hub, *, routers: int, load: int, during, late_gateway: str | None = None,
               label: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    await harness.provision(hub)
    procs = harness.start_routers(hub, routers)
    stop = asyncio.Event()
    seen = Seen()
    counts = Counts()
    consumers = [
        asyncio.create_task(harness.consume(hub, gid, seen, stop))
        for gid in harness.RECIPIENTS if gid != late_gateway
    ]
    async def progress() -> None:
        while True:
            await asyncio.sleep(5)
            print(f"  [{label}] sent={counts.sent} accepted={counts.accepted} "
                  f"retries={counts.send_retries} delivered={len(seen.pairs)} "
                  f"kills={procs.kills}", flush=True)

    ticker = asyncio.create_task(progress())
    try:
        producer = asyncio.create_task(harness.produce(hub, load, counts))
        chaos = asyncio.create_task(during(procs, counts))
        await producer
        await chaos
        if late_gateway:
            consumers.append(asyncio.create_task(harness.consume(hub, late_gateway, seen, stop)))
        await harness.drain(counts, seen, timeout=180)
        await asyncio.sleep(1.5)  # let late duplicates, if any, show up
    finally:
        ticker.cancel()
        stop.set()
        await asyncio.gather(*consumers, return_exceptions=True)
        procs.stop()
    report = await harness.verify(hub, counts, seen, label)
    report["router_kills"] = procs.kills
    if report["lost"]:
        print(f"router logs: {procs.log_path}")
    return report


async def test_kill_routers_repeatedly(hub: Hub) -> None:
    async def killer(procs: Routers, counts: Counts) -> None:
        await asyncio.sleep(1.0)
        while procs.kills < 5 or counts.accepted < LOAD * 0.8:
            await asyncio.sleep(2.0)
            if counts.accepted >= counts.sent and counts.sent >= LOAD:
                break
            procs.kill_one()

    report = await _run(hub, routers=2, load=LOAD, during=killer, label="kill -9 routers")
    assert report["router_kills"] >= 5
    harness.assert_nothing_lost(report)


async def test_restart_rabbitmq_mid_load(hub: Hub) -> None:
    async def restart(procs: Routers, counts: Counts) -> None:
        while counts.accepted < LOAD // 3:  # noqa: ASYNC110 - polling a running load
            await asyncio.sleep(0.2)
        await asyncio.to_thread(harness.rabbitmq_restart)

    report = await _run(hub, routers=2, load=LOAD, during=restart, label="RabbitMQ restart")
    harness.assert_nothing_lost(report)


async def test_restart_postgresql_mid_load(hub: Hub) -> None:
    async def restart(procs: Routers, counts: Counts) -> None:
        while counts.accepted < LOAD // 3:  # noqa: ASYNC110 - polling a running load
            await asyncio.sleep(0.2)
        await asyncio.to_thread(harness.postgres_restart)

    report = await _run(hub, routers=2, load=LOAD, during=restart, label="PostgreSQL restart")
    harness.assert_nothing_lost(report)


async def test_recipient_disconnected_for_the_whole_load(hub: Hub) -> None:
    async def nothing(procs: Routers, counts: Counts) -> None:
        return

    report = await _run(hub, routers=2, load=LOAD, during=nothing, late_gateway="r-danang",
                        label="recipient away")
    harness.assert_nothing_lost(report)
