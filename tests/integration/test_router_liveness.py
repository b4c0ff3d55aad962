"""A router worker's /healthz and /readyz (LIENTHONG_HEALTH_PORT), as a probe sees them
while the worker's RabbitMQ node goes away and comes back."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection

from router import topology
from router.processes import RouterProcesses
from router.requests import RequestServer
from router.routing.intake import RouterWorker
from tests.hub import AMQP_HOST, Hub, consumers
from tests.polling import eventually
from tests.relay import Relay

# Run by `make cluster-test` (which `make test` runs after the main suite). About 1 run in 3
# the worker used to stop answering its health port after its only node went away: /readyz
# said 200 before the worker had finished starting, the relay closed in the middle of the
# start and the start's error ended the process (test below).
pytestmark = pytest.mark.cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_readiness_follows_the_broker_and_liveness_the_process(hub: Hub) -> None:
    relay = Relay()
    await relay.start()
    port = _free_port()
    url = hub.settings.amqp_url.replace(f"@{AMQP_HOST}:5672/", f"@127.0.0.1:{relay.port}/")
    log = Path(tempfile.mkstemp(prefix="lienthong-liveness-", suffix=".log")[1])
    procs = RouterProcesses(hub.settings.with_(amqp_url=url), 1, log_path=log,
                            env={"LIENTHONG_HEALTH_PORT": str(port)})
    async with aiohttp.ClientSession() as http:

        async def probe(path: str) -> tuple[int, dict[str, object]] | None:
            try:
                async with http.get(f"http://127.0.0.1:{port}{path}") as r:
                    return r.status, await r.json()
            except aiohttp.ClientConnectionError:
                return None

        async def status(path: str, want: int) -> dict[str, object] | None:
            got = await probe(path)
            return got[1] if got is not None and got[0] == want else None

        try:
            ready = await eventually(lambda: status("/readyz", 200), timeout=60,
                                     what="router ready")
            assert ready["amqp"] == "connected" and ready["endpoint"] == f"127.0.0.1:{relay.port}"
            await relay.close()  # its only node is gone: not ready, still alive
            gone = await eventually(lambda: status("/readyz", 503), timeout=30,
                                    what="router not ready without a broker")
            assert gone["amqp"] == "reconnecting"
            assert await status("/healthz", 200) is not None
            back = Relay(relay.port)  # the node returns on the same address
            await back.start()
            await eventually(lambda: status("/readyz", 200), timeout=60,
                             what="router ready again")
            await back.close()
        finally:
            procs.stop()


async def test_a_node_lost_while_the_worker_starts_neither_ends_it_nor_reads_ready(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The flake's cause: ``/readyz`` said 200 as soon as ``lt.router.in`` had a consumer,
    while the worker was still opening its parking channel and its request server; a
    node lost then raised out of the start and the process ended (its health port with
    it). Here the node goes away at that very step, every time."""
    relay = Relay()
    await relay.start()
    url = hub.settings.amqp_url.replace(f"@{AMQP_HOST}:5672/", f"@127.0.0.1:{relay.port}/")
    worker = RouterWorker(hub.settings.with_(amqp_url=url), hub.pool)
    seen_ready: list[bool] = []
    original = RequestServer.start

    async def node_dies_midway(server: RequestServer,
                               connection: AbstractRobustConnection) -> None:
        if not seen_ready:  # the first start only: the node dies, then comes back
            seen_ready.append(bool(worker.health()["ready"]))
            await relay.close()
            back = Relay(relay.port)
            await back.start()
            relays.append(back)
        await original(server, connection)

    relays: list[Relay] = []
    monkeypatch.setattr(RequestServer, "start", node_dies_midway)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async def ready() -> bool:
            if task.done():  # the start failed: its error, not a time-out
                task.result()
            return bool(worker.health()["ready"])

        await eventually(ready, timeout=60, what="the worker started on its second try")
        assert seen_ready == [False]  # not ready before the whole start was done
        assert await consumers(hub, topology.ROUTER_IN) == 1  # one consumer, not one per try
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        for r in relays:
            await r.close()
