"""A batch waiting for the broker's confirms does not hold up the packages behind it: the
router routes the next batch meanwhile, and still acks in order (an ack with
``multiple=True`` never covers a batch that is not finished)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from router import topology
from router.directory.registry import AgencyRow
from router.outbox.outbox import Outbox
from router.routing.batch import Copy
from tests.factory import edoc
from tests.hub import Hub
from tests.polling import eventually

SLOW = "Công văn chậm"  # the subject of the package whose batch is held


async def test_a_batch_waiting_for_confirms_does_not_hold_the_next(hub: Hub,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"], kind="agency")
    await hub.add_gateway("bo-tai-chinh", serves=["000.00.00.G12"], kind="ministry")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.G12", "Bộ Tài chính")])
    entered, release = asyncio.Event(), asyncio.Event()
    original = Outbox.copies

    async def copies(self: Outbox, batch: Sequence[Copy]) -> dict[uuid.UUID, str]:
        if any(SLOW.encode() in c.body for c in batch):
            entered.set()
            await release.wait()  # a slow confirm (a quorum queue's fsync, a busy node)
        return await original(self, batch)

    monkeypatch.setattr(Outbox, "copies", copies)
    await hub.start_router()
    _, slow = edoc("000.00.00.G22", ["000.00.00.G12"], number="1", subject=SLOW)
    _, quick = edoc("000.00.00.G12", ["000.00.00.G22"], number="2")
    async with hub.client("vpcp") as vpcp, hub.client("bo-tai-chinh") as btc:
        held = asyncio.create_task(vpcp.send(slow))
        await asyncio.wait_for(entered.wait(), 10)
        receipt = await asyncio.wait_for(btc.send(quick), 10)  # not behind the held batch
        assert receipt is not None and receipt.type == "accepted", receipt
        assert not held.done()
        release.set()
        first = await asyncio.wait_for(held, 10)
        assert first is not None and first.type == "accepted", first

    async def settled() -> bool:
        q = await hub.admin.get_queue(hub.settings.vhost, topology.ROUTER_IN)
        return q is not None and q.get("messages") == 0

    await eventually(settled, timeout=30, what="lt.router.in empty, nothing unacked")
    assert await hub.pool.fetchval("SELECT count(*) FROM documents") == 2
