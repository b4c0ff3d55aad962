"""Kill cluster nodes under load — and count (issue #15).

Routers run as processes against the local cluster (``make cluster``) with every URL
listing all hosts; senders and recipients use the SDK the same way. While documents flow,
one fault per test:

(a) kill -9 the RabbitMQ node leading a sender's intake queue (``lt.router.in.<gateway>``,
    where its packages wait for the routers), then bring it back;
(b) stop the RabbitMQ node leading the most gateway inboxes, then bring it back;
(c) kill -9 the PostgreSQL primary (Patroni and postgres): the synchronous standby takes
    over; the old primary comes back as a standby.

Each prints ``cluster[...]: sent=…, accepted=…, delivered=…, lost=…, seen_twice=…,
parked=…, routing_stopped_s=…`` and asserts lost = 0, seen twice = 0, parked = 0 and that
routing (receipts ``accepted`` reaching senders) stopped for less than 30 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

import pytest

from router import topology
from tests.chaos import harness
from tests.chaos.harness import Counts, Seen
from tests.cluster.conftest import Cluster
from tests.hub import Hub, consumers, queue_depth
from tests.polling import eventually

LOAD = int(os.environ.get("LIENTHONG_CLUSTER_LOAD", "1200"))
ROUTING_STOP_LIMIT = 30.0

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]


class Stopwatch:
    """The longest stretch without a new ``accepted`` receipt while senders were busy."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.longest = 0.0

    async def watch(self, busy: Callable[[], bool]) -> None:
        last_value, last_change = self.counts.accepted, time.monotonic()
        while busy():
            await asyncio.sleep(0.05)
            now = time.monotonic()
            if self.counts.accepted != last_value:
                last_value, last_change = self.counts.accepted, now
            self.longest = max(self.longest, now - last_change)


async def _node_leading(hub: Hub, queue: str) -> int:
    info = await hub.admin.request(
        "GET", f"/queues/{quote(hub.settings.vhost, safe='')}/{quote(queue, safe='')}")
    leader = str(info.get("leader") or info.get("node"))
    return int(leader.split("@")[0].rsplit("-", 1)[1])  # lt-rabbit-N@localhost -> N


async def _connections_on(hub: Hub, node: int) -> int:
    """This hub's client connections (routers, gateways) held by node ``node``."""
    rows = await hub.admin.request("GET", "/connections?columns=node,vhost")
    return sum(1 for r in rows if r.get("vhost") == hub.settings.vhost
               and str(r.get("node", "")).startswith(f"lt-rabbit-{node}@"))


async def _until_progress(counts: Counts, more: int, timeout: float) -> None:  # noqa: ASYNC109
    start = counts.accepted
    await eventually(lambda: counts.accepted >= start + more or counts.accepted >= counts.sent
                     >= LOAD, timeout=timeout, interval=0.2,
                     what=f"{more} more documents accepted after the fault")


async def _settled(hub: Hub) -> bool:
    """Nothing left in flight: the intake queues and every inbox are empty."""
    names = [topology.ROUTER_IN, *(topology.intake_queue(g) for g in harness.SENDERS),
             *(topology.inbox_queue(g) for g in harness.RECIPIENTS)]
    depths = [await queue_depth(hub, n) for n in names]
    return not any(depths)


async def _run(hub: Hub, label: str, fault: Callable[[Counts], object]) -> dict[str, float]:
    await harness.provision(hub)
    procs = harness.start_routers(hub, 2)
    stop = asyncio.Event()
    seen, counts = Seen(), Counts()
    try:
        await eventually(lambda: consumers(hub, topology.ROUTER_IN), timeout=60,
                         what="routers consuming")
        recipients = [asyncio.create_task(harness.consume(hub, gid, seen, stop))
                      for gid in harness.RECIPIENTS]
        producer = asyncio.create_task(harness.produce(hub, LOAD, counts))

        async def progress() -> None:
            while True:
                await asyncio.sleep(5)
                print(f"  [{label}] sent={counts.sent} accepted={counts.accepted} "
                      f"retries={counts.send_retries} delivered={len(seen.pairs)}", flush=True)

        ticker = asyncio.create_task(progress())
        watch = Stopwatch(counts)
        watcher = asyncio.create_task(watch.watch(lambda: not producer.done()))
        started = time.monotonic()
        await eventually(lambda: counts.accepted >= LOAD // 3 or producer.done(), timeout=120,
                         interval=0.1, what="a third of the load accepted")
        await fault(counts)  # type: ignore[misc]
        await producer
        await watcher
        elapsed = time.monotonic() - started
        await harness.drain(counts, seen, timeout=120)
        await eventually(lambda: _settled(hub), timeout=60, interval=0.5,
                         what="router and inbox queues empty")
    finally:
        ticker.cancel()
        stop.set()
        await asyncio.gather(*recipients, return_exceptions=True)
        procs.stop()
    report: dict[str, float] = dict(await harness.verify(hub, counts, seen, label))
    report["routing_stopped_s"] = round(watch.longest, 1)
    report["load_seconds"] = round(elapsed, 1)
    print(f"cluster[{label}]: " + ", ".join(
        f"{k}={report[k]}" for k in ("sent", "accepted", "delivered", "lost", "seen_twice",
                                      "parked", "routing_stopped_s", "load_seconds",
                                      "send_retries")), flush=True)
    if report["lost"]:
        print(f"router logs: {procs.log_path}")
    return report


def _assert_goal(report: dict[str, float]) -> None:
    harness.assert_nothing_lost({k: int(v) for k, v in report.items()})
    assert report["routing_stopped_s"] < ROUTING_STOP_LIMIT, report


async def test_kill_the_node_leading_the_routers_queue(cluster_hub: Hub,
                                                       cluster: Cluster) -> None:
    async def fault(counts: Counts) -> None:
        # the senders' packages wait in their intake queues (lt.router.in.<gateway>)
        queue = topology.intake_queue(next(iter(harness.SENDERS)))
        node = await _node_leading(cluster_hub, queue)
        print(f"  kill -9 node {node}, leader of {queue}, holding "
              f"{await _connections_on(cluster_hub, node)} connections", flush=True)
        await asyncio.to_thread(cluster.run, "rabbit-kill", str(node))
        try:
            await _until_progress(counts, 100, timeout=90)  # routing goes on without it
        finally:
            await asyncio.to_thread(cluster.run, "rabbit-start", str(node))

    _assert_goal(await _run(cluster_hub, "kill -9 a sender's intake queue leader", fault))


async def test_stop_the_node_leading_most_inboxes(cluster_hub: Hub, cluster: Cluster) -> None:
    async def fault(counts: Counts) -> None:
        leaders = Counter([await _node_leading(cluster_hub, topology.inbox_queue(g))
                           for g in harness.RECIPIENTS])
        node, n = leaders.most_common(1)[0]
        print(f"  stop node {node}, leader of {n} of {len(harness.RECIPIENTS)} inboxes, holding "
              f"{await _connections_on(cluster_hub, node)} connections", flush=True)
        await asyncio.to_thread(cluster.run, "rabbit-stop", str(node))
        try:
            await _until_progress(counts, 100, timeout=90)
        finally:
            await asyncio.to_thread(cluster.run, "rabbit-start", str(node))

    _assert_goal(await _run(cluster_hub, "stop the inbox-leading node", fault))


async def test_kill_the_postgresql_primary(cluster_hub: Hub, cluster: Cluster) -> None:
    async def fault(counts: Counts) -> None:
        primary = await asyncio.to_thread(cluster.run, "pg-primary")
        print(f"  kill -9 PostgreSQL primary {primary}", flush=True)
        await asyncio.to_thread(cluster.run, "pg-kill", primary)
        try:
            await _until_progress(counts, 100, timeout=90)  # the standby took over
        finally:
            await asyncio.to_thread(cluster.run, "pg-start", primary)

    report = await _run(cluster_hub, "kill -9 PostgreSQL primary", fault)
    # the old primary is back as the synchronous standby before the next test
    await asyncio.to_thread(cluster.run, "pg-wait-sync", "120", timeout=150)
    _assert_goal(report)
