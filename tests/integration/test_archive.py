"""`lienthong archive`: old package bodies leave the documents table for files, their
SHA-256 stays verifiable, and re-delivery still sends the exact bytes."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner, Result

from router.cli.archive import archive as archive_cli
from router.directory.registry import AgencyRow
from router.outbox.outbox import Outbox
from router.recovery import redelivery
from tests.factory import edoc
from tests.hub import Hub, queue_depth

H41 = "000.00.00.H41"


async def _cli(hub: Hub, args: list[str]) -> Result:
    env = {"LIENTHONG_DATABASE_URL": hub.settings.database_url}
    return await asyncio.to_thread(CliRunner().invoke, archive_cli, args, env=env)


async def _body_bytes(hub: Hub) -> int:
    return int(await hub.pool.fetchval(
        "SELECT coalesce(sum(octet_length(body)), 0) FROM documents"))


async def test_old_bodies_move_to_files_and_come_back_exactly(hub: Hub, tmp_path: Path) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow(H41, "UBND tỉnh Nghệ An")])
    await hub.start_router()
    sent: dict[str, bytes] = {}
    async with hub.client("vpcp") as vpcp:
        for i in range(10):
            body = edoc("000.00.00.G22", [H41], attachment=b"%PDF" + bytes([i]) * 50_000)[1]
            r = await vpcp.send(body)
            assert r is not None and r.type == "accepted"
            sent[str(r.hub_id)] = body
    old = sorted(sent)[:6]
    await hub.pool.execute(
        "UPDATE documents SET received_at = now() - interval '40 days' "
        "WHERE hub_id = ANY($1::uuid[])", old)
    before = await _body_bytes(hub)

    root = tmp_path / "archive"
    done = await _cli(hub, ["run", "--older-than-days", "30", "--to", str(root)])
    assert done.exit_code == 0, done.output
    assert "archived 6 package bodies" in done.output
    after = await _body_bytes(hub)
    moved = sum(len(sent[h]) for h in old)
    assert before - after == moved
    print(f"archive: {moved} of {before} body bytes left the documents table")
    rows = await hub.pool.fetch(
        "SELECT hub_id::text, body IS NULL AS gone, archive_ref, content_sha256 FROM documents")
    for r in rows:
        assert r["gone"] == (r["hub_id"] in old)
        if r["gone"]:
            data = await asyncio.to_thread(Path(r["archive_ref"]).read_bytes)
            assert data == sent[r["hub_id"]]
            assert hashlib.sha256(data).digest() == bytes(r["content_sha256"])
    # again: nothing left to move; a body can only leave with its file recorded
    again = await _cli(hub, ["run", "--older-than-days", "30", "--to", str(root)])
    assert "archived 0 package bodies" in again.output
    with pytest.raises(asyncpg.CheckViolationError):
        await hub.pool.execute("UPDATE documents SET body = NULL")

    # re-delivery of every copy (archived or not) sends the bytes the sender signed
    async with hub.client("lgsp-nghean") as na:
        async for msg in na.inbox(timeout=2):
            async with msg.process():
                pass
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == 0
    import aio_pika

    conn = await aio_pika.connect(hub.settings.amqp_url)
    async with conn:
        outbox = await Outbox.open(await conn.channel(publisher_confirms=True), hub.settings)
        job = await redelivery.run(
            hub.pool, outbox, redelivery.RedeliveryFilter(states=("queued",)), actor="test")
    assert job.done == 10
    got: dict[str, bytes] = {}
    async with hub.client("lgsp-nghean") as na:
        async for msg in na.inbox(timeout=2):
            async with msg.process():
                got[msg.hub_id] = msg.body
    assert got == sent

    # verify: every file against the ledger; an altered file is named
    ok = await _cli(hub, ["verify"])
    assert ok.exit_code == 0, ok.output
    assert "6 archived bodies checked, 0 bad" in ok.output
    victim = await hub.pool.fetchval(
        "SELECT archive_ref FROM documents WHERE hub_id = $1::uuid", old[0])
    await asyncio.to_thread(Path(victim).write_bytes, b"<edXML/>")
    bad = await _cli(hub, ["verify"])
    assert bad.exit_code == 65
    assert old[0] in bad.output and "ARCHIVED_BODY_UNREADABLE" in bad.output
