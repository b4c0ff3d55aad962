"""Chaos harness: router processes to kill, services to restart, a load to count.

The load: senders submit documents (fan-out to 3 of 4 recipient gateways); for 5% of
them, once accepted, the sender also submits an update (BussinessDocType 2) of it.
Recipients' SDK clients take their inboxes and record what they see.

What lienthong promises, and the checks:
* every accepted package reaches every recipient (``lost`` must be 0);
* each gateway's SDK yields each (document, recipient) once (``seen twice`` must be 0);
  copies the hub sent again are dropped by message id and counted (``duplicates dropped``);
* the ledger agrees: one document row per accepted package, one delivery per recipient;
* order: causal per document, not FIFO across documents. A package that refers to another
  (an update, a revocation, a status) and is sent after the first one's ``accepted``
  receipt reaches each recipient after it. Two independent documents may be delivered in
  either order when several routers work in parallel (counted, not asserted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from adapters import GatewayClient
from router.directory.registry import AgencyRow
from router.processes import RouterProcesses
from schemas import BusinessDocType
from tests.factory import edoc
from tests.hub import Hub

SENDERS = {"s-vpcp": "000.00.00.G22", "s-btc": "000.00.00.G12"}
RECIPIENTS = {
    "r-hanoi": "000.00.00.H01",
    "r-nghean": "000.00.00.H41",
    "r-quangnam": "000.00.00.H47",
    "r-danang": "000.00.00.H17",
}


async def provision(hub: Hub) -> None:
    for gid, code in {**SENDERS, **RECIPIENTS}.items():
        await hub.add_gateway(gid, serves=[code])
    await hub.add_agencies([AgencyRow(code, f"Cơ quan {code}") for code in
                            {**SENDERS, **RECIPIENTS}.values()])


def start_routers(hub: Hub, n: int) -> RouterProcesses:
    log = Path(tempfile.mkstemp(prefix="lienthong-chaos-", suffix=".log")[1])
    return RouterProcesses(hub.settings.with_(batch_wait_ms=10), n, log_path=log,
                           sweep_seconds=0)


def rabbitmq_restart() -> None:
    """``rabbitmqctl stop_app`` / ``start_app``; if the app refuses to start again (it can,
    when its database is still shutting down), restart the whole node."""
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
    time.sleep(2)
    started = subprocess.run(["rabbitmqctl", "-q", "start_app"], timeout=180, check=False)
    if started.returncode != 0:
        subprocess.run(["rabbitmqctl", "-q", "stop"], timeout=120, check=False)
        subprocess.run(["rabbitmq-server", "-detached"], timeout=60, check=True)
    subprocess.run(["rabbitmqctl", "-q", "await_startup", "--timeout", "180"], check=True,
                   timeout=200)
    for _ in range(60):  # the management API comes up a little after the broker
        ok = subprocess.run(["curl", "-fsS", "-o", "/dev/null", "-u", "guest:guest",
                             "http://127.0.0.1:15672/api/overview"], check=False)
        if ok.returncode == 0:
            return
        time.sleep(1)


def postgres_restart() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True, timeout=120,
    )


@dataclass
class Counts:
    sent: int = 0
    accepted: int = 0
    expected: set[tuple[str, str]] = field(default_factory=set)  # (hub id, agency)
    updates: dict[str, str] = field(default_factory=dict)  # update hub id -> target hub id
    send_retries: int = 0


@dataclass
class Seen:
    order: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    pairs: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    duplicates_dropped: int = 0


async def _send_retrying(client: GatewayClient, body: bytes, counts: Counts) -> str:
    message_id = str(uuid.uuid4())
    for attempt in range(60):
        try:
            r = await client.send(body, message_id=message_id)
        except Exception:
            counts.send_retries += 1
            await asyncio.sleep(min(0.5 * (attempt + 1), 3))
            continue
        assert r is not None and r.type in ("accepted", "duplicate"), r
        assert r.hub_id
        return r.hub_id
    raise AssertionError("could not submit within the retry budget")


async def produce(hub: Hub, n: int, counts: Counts, *, concurrency: int = 48) -> None:
    clients = {gid: hub.client(gid, receipt_timeout=90) for gid in SENDERS}
    for c in clients.values():
        await c.connect()
    sem = asyncio.Semaphore(concurrency)
    rng = random.Random(7)
    recipients = list(RECIPIENTS.values())

    async def one(i: int) -> None:
        gid = rng.choice(list(SENDERS))
        to = rng.sample(recipients, 3)
        doc, body = edoc(SENDERS[gid], to, number=f"{i}")
        async with sem:
            counts.sent += 1
            hub_id = await _send_retrying(clients[gid], body, counts)
            counts.accepted += 1
            counts.expected.update((hub_id, a) for a in to)
            if i % 20 == 0:
                _, upd = edoc(SENDERS[gid], to, number=f"{i}u",
                              business=BusinessDocType.UPDATE, target=doc.document_id)
                counts.sent += 1
                uh = await _send_retrying(clients[gid], upd, counts)
                counts.accepted += 1
                counts.expected.update((uh, a) for a in to)
                counts.updates[uh] = hub_id

    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in clients.values():
            with contextlib.suppress(Exception):
                await c.close()


async def consume(hub: Hub, gateway_id: str, seen: Seen, stop: asyncio.Event) -> None:
    client = hub.client(gateway_id)
    await client.connect()
    try:
        while not stop.is_set():
            async for msg in client.inbox(timeout=1.0):
                async with msg.process():
                    seen.order[gateway_id].append(msg.hub_id)
                    for agency in msg.recipients:
                        seen.pairs[(msg.hub_id, agency)] += 1
    finally:
        seen.duplicates_dropped += client.duplicates_dropped
        with contextlib.suppress(Exception):
            await client.close()


async def drain(counts: Counts, seen: Seen, timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if counts.expected <= set(seen.pairs):
            return
        await asyncio.sleep(0.5)


async def verify(hub: Hub, counts: Counts, seen: Seen, label: str) -> dict[str, int]:
    lost = counts.expected - set(seen.pairs)
    twice = [p for p, n in seen.pairs.items() if n > 1]
    unexpected = set(seen.pairs) - counts.expected
    async with hub.pool.acquire() as conn:
        docs = await conn.fetchval("SELECT count(*) FROM documents WHERE kind = 'edoc'")
        deliveries = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE kind = 'edoc' AND state = 'queued'")
        parked = await conn.fetchval("SELECT count(*) FROM parked_messages")
    # causal order: each update reaches each recipient after the document it updates
    inversions_causal = 0
    for order in seen.order.values():
        first: dict[str, int] = {}
        for i, h in enumerate(order):
            first.setdefault(h, i)
        for upd, target in counts.updates.items():
            if upd in first and target in first and first[upd] < first[target]:
                inversions_causal += 1
    report = {
        "sent": counts.sent,
        "accepted": counts.accepted,
        "expected_deliveries": len(counts.expected),
        "delivered": len(set(seen.pairs) & counts.expected),
        "duplicates_dropped": seen.duplicates_dropped,
        "seen_twice": len(twice),
        "lost": len(lost),
        "unexpected": len(unexpected),
        "ledger_documents": docs,
        "ledger_deliveries_queued": deliveries,
        "parked": parked,
        "send_retries": counts.send_retries,
        "causal_inversions": inversions_causal,
    }
    print(f"\nchaos[{label}]: " + ", ".join(f"{k}={v}" for k, v in report.items()))
    return report


def assert_nothing_lost(report: dict[str, int]) -> None:
    assert report["lost"] == 0, report
    assert report["seen_twice"] == 0, report
    assert report["unexpected"] == 0, report
    assert report["accepted"] == report["sent"], report
    assert report["ledger_documents"] == report["accepted"], report
    assert report["ledger_deliveries_queued"] == report["expected_deliveries"], report
    assert report["parked"] == 0, report
    assert report["causal_inversions"] == 0, report
