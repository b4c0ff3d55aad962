"""Undeliverable copies, batch re-delivery (dry run, rate, resume) and parking operations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import aio_pika
import pytest
from click.testing import CliRunner

from router import topology
from router.cli.gateway import inbox as inbox_cli
from router.directory.registry import AgencyRow
from router.outbox.outbox import Outbox
from router.recovery import parking, redelivery
from tests.factory import edoc
from tests.faults import Faults
from tests.hub import Hub, queue_depth


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_gateway("bo-tai-chinh", serves=["000.00.00.G12"], kind="ministry")
    await hub.add_agencies(
        [
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An"),
            AgencyRow("000.00.00.G12", "Bộ Tài chính"),
        ]
    )


async def _channel(
    hub: Hub,
) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractChannel]:
    conn = await aio_pika.connect(hub.settings.amqp_url)
    return conn, await conn.channel(publisher_confirms=True)


def _packages_shown(stdout: str) -> list[dict[str, object]]:
    """The packages `lienthong inbox --json` printed (the in-process router may log to the
    same captured stdout)."""
    shown = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict) and "hub_id" in item and "kind" in item:
                shown.append(item)
    return shown


async def _redeliver_queued(hub: Hub, gateway: str) -> redelivery.RedeliveryJob:
    """What an operator does: re-deliver every queued copy of ``gateway`` (same ids)."""
    conn, channel = await _channel(hub)
    async with conn:
        outbox = await Outbox.open(channel, hub.settings)
        flt = redelivery.RedeliveryFilter(states=("queued",), gateway=gateway)
        return await redelivery.run(hub.pool, outbox, flt, actor="test")


async def test_missing_inbox_is_undeliverable_then_redelivered_once(hub: Hub) -> None:
    await _setup(hub)
    conn, channel = await _channel(hub)
    async with conn:
        await topology.delete_gateway_queues(channel, "lgsp-nghean")
        await hub.start_router()
        async with hub.client("vpcp") as vpcp:
            to = ["000.00.00.H41", "000.00.00.G12"]
            receipts = [await vpcp.send(edoc("000.00.00.G22", to)[1]) for _ in range(30)]
        for r in receipts:
            assert r is not None and r.type == "accepted"
            states = {x.agency: x.state for x in r.recipients}
            assert states == {"000.00.00.H41": "undeliverable", "000.00.00.G12": "queued"}
        # the operator sees them, by reason, and previews a re-delivery
        flt = redelivery.RedeliveryFilter(gateway="lgsp-nghean")
        async with hub.pool.acquire() as c:
            pv = await redelivery.preview(c, flt)
        assert pv.total == 30
        assert pv.per_recipient[0]["agency"] == "000.00.00.H41"
        assert pv.sample and pv.sample[0]["gateway"] == "lgsp-nghean"

        # the gateway's queues come back; one copy was already taken by hand earlier:
        await topology.declare_gateway(channel, "lgsp-nghean")
        outbox = await Outbox.open(channel, hub.settings)
        # interrupt the job after the first batch, then resume it
        seen_batches = 0

        def stop_after_first(job: redelivery.RedeliveryJob) -> None:
            nonlocal seen_batches
            seen_batches += 1
            if seen_batches == 1:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            await redelivery.run(hub.pool, outbox, flt, actor="test", batch_size=10,
                                 progress=stop_after_first)
        job_id = await hub.pool.fetchval("SELECT id FROM redelivery_jobs")
        row = await hub.pool.fetchrow("SELECT state, done FROM redelivery_jobs")
        assert row is not None and tuple(row) == ("interrupted", 10)
        job = await redelivery.run(hub.pool, outbox, actor="test", resume=job_id, rate=200)
        assert (job.state, job.done, job.queued) == ("done", 30, 30)
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == 30
    # and the same job again sends nothing: they are queued now
    async with hub.pool.acquire() as c:
        assert (await redelivery.preview(c, flt)).total == 0
    # re-delivered copies keep their ids: the SDK drops a second copy of each
    assert (await _redeliver_queued(hub, "lgsp-nghean")).done == 30
    got = 0
    async with hub.client("lgsp-nghean") as na:
        async for msg in na.inbox(timeout=1.5):
            async with msg.process():
                got += 1
        assert (got, na.duplicates_dropped) == (30, 30)
    audit = await hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action LIKE 'redelivery.%'")
    assert audit == 5  # started+interrupted, running again → done, started+done


async def test_a_restarted_gateway_drops_copies_it_took_before(
    hub: Hub, tmp_path: Path
) -> None:
    """`lienthong inbox --save DIR` remembers the copies it took in DIR: after the process
    ends and the operator re-delivers them, the next run drops every one of them."""
    await _setup(hub)
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        for _ in range(5):
            r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
            assert r is not None and r.type == "accepted"
    env = {
        "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
        "LIENTHONG_AMQP_USER_PREFIX": hub.settings.amqp_user_prefix,
        "LIENTHONG_GATEWAY_PASSWORD": hub.credentials["lgsp-nghean"].password,
    }
    args = ["--gateway", "lgsp-nghean", "--save", str(tmp_path / "in"), "--timeout", "1.5",
            "--json"]
    runner = CliRunner()
    first = await asyncio.to_thread(runner.invoke, inbox_cli, args, env=env)
    assert first.exit_code == 0, first.output
    assert len(_packages_shown(first.stdout)) == 5
    assert len(list((tmp_path / "in").glob("*.edxml"))) == 5
    # the operator re-delivers everything queued for the province (same copy ids)
    assert (await _redeliver_queued(hub, "lgsp-nghean")).done == 5
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == 5
    again = await asyncio.to_thread(runner.invoke, inbox_cli, args, env=env)
    assert again.exit_code == 0, again.output
    assert _packages_shown(again.stdout) == []
    assert "5 copies taken before were delivered again and dropped" in again.stderr
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == 0  # dropped means acked


async def test_parked_submission_requeued_through_validation_or_dropped(
    hub: Hub, faults: Faults
) -> None:
    await _setup(hub)
    await hub.start_router()
    _, poison = edoc("000.00.00.G22", ["000.00.00.H41"], extra_text=" LIENTHONG-FAULT:raise")
    _, poison2 = edoc("000.00.00.G22", ["000.00.00.H41"], extra_text=" LIENTHONG-FAULT:raise")
    async with hub.client("vpcp", receipt_timeout=60) as vpcp:
        r1 = await vpcp.send(poison)
        r2 = await vpcp.send(poison2)
        assert r1 is not None and r2 is not None
        assert (r1.type, r2.type) == ("rejected", "rejected")
        rows: list[dict[str, object]] = []
        for _ in range(50):
            async with hub.pool.acquire() as c:
                rows = await parking.list_parked(c, parking.ParkedFilter(gateway="vpcp"))
            if len(rows) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(rows) == 2 and all(r["reason"] == "POISON" for r in rows)
        # the bug is fixed (faults off): requeue one; it goes through validation again
        faults.enabled = False
        ids = [uuid.UUID(str(r["id"])) for r in rows]
        conn, channel = await _channel(hub)
        async with conn, hub.pool.acquire() as c:
            assert await parking.requeue(
                c, channel, ids[:1], actor="ops:test", hub_user="guest"
            ) == 1
        accepted = None
        async for receipt in _receipts(vpcp):
            if receipt.type == "accepted":
                accepted = receipt
                break
        assert accepted is not None and accepted.sender == "000.00.00.G22"
        async with hub.pool.acquire() as c:
            with pytest.raises(ValueError, match="why"):
                await parking.drop(c, ids[1:], actor="ops:test", why=" ")
            assert await parking.drop(c, ids[1:], actor="ops:test", why="test data") == 1
            left = await parking.list_parked(c, parking.ParkedFilter())
            assert left == []
            who = await c.fetchrow(
                "SELECT actor, details->>'why' AS why FROM audit_log "
                "WHERE action = 'parking.dropped'")
            assert who is not None and tuple(who) == ("ops:test", "test data")
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == 1


async def _receipts(client):  # type: ignore[no-untyped-def]
    it = client.receipts()
    while True:
        yield await asyncio.wait_for(it.__anext__(), 15)
