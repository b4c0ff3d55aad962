"""The watch folder (issue #13): document software that only writes and reads files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

from adapters.watchfolder import WatchFolder, message_id_for
from router.directory.registry import AgencyRow
from tests.factory import edoc
from tests.hub import Hub

VPCP, NGHEAN = "000.00.00.G22", "000.00.00.H41"


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[VPCP])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow(VPCP, "Văn phòng Chính phủ"),
                            AgencyRow(NGHEAN, "UBND tỉnh Nghệ An")])
    await hub.start_router()


@contextlib.asynccontextmanager
async def watching(hub: Hub, gateway_id: str, root: Path) -> AsyncIterator[None]:
    seen = WatchFolder.seen_copies(root)
    stop = asyncio.Event()
    try:
        async with hub.client(gateway_id, seen=seen) as gw:
            task = asyncio.create_task(WatchFolder(gw, root, interval=0.1).run(stop))
            try:
                yield
            finally:
                stop.set()
                await task
    finally:
        seen.close()


def drop(folder: Path, name: str, body: bytes) -> None:
    """What document software does: write under a temporary name, then rename."""
    (folder / "outbox").mkdir(parents=True, exist_ok=True)
    part = folder / "outbox" / f"{name}.part"
    part.write_bytes(body)
    os.replace(part, folder / "outbox" / name)


async def until(check: object, seconds: float = 20.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _files(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(suffix)) \
        if folder.exists() else []


async def test_files_go_out_and_come_in_with_their_receipts(hub: Hub, tmp_path: Path) -> None:
    await _setup(hub)
    a, b = tmp_path / "vpcp", tmp_path / "nghean"
    _, body = edoc(VPCP, [NGHEAN])
    _, lost = edoc(VPCP, ["000.00.00.Z99"])
    async with watching(hub, "vpcp", a), watching(hub, "lgsp-nghean", b):
        # a file still being written (.part) is left alone
        (a / "outbox" / "half.edxml.part").write_bytes(body[:100])
        drop(a, "cong-van.edxml", body)
        drop(a, "lost.edxml", lost)
        drop(a, "garbage.edxml", b"not xml at all")
        drop(a, "foreign.edxml", edoc(NGHEAN, [VPCP])[1])  # vpcp does not serve H41
        await until(lambda: (a / "sent" / "cong-van.edxml.receipt.json").exists())
        receipt = json.loads((a / "sent" / "cong-van.edxml.receipt.json").read_text())
        assert receipt["type"] == "accepted"
        assert (a / "sent" / "cong-van.edxml").read_bytes() == body
        await until(lambda: (a / "failed" / "lost.edxml.reason.json").exists()
                    and (a / "failed" / "garbage.edxml.reason.json").exists())
        assert json.loads((a / "failed" / "lost.edxml.reason.json").read_text())[
            "reason"] == "RECIPIENT_UNKNOWN"
        assert json.loads((a / "failed" / "garbage.edxml.reason.json").read_text())[
            "reason"] == "MALFORMED_XML"
        await until(lambda: (a / "failed" / "foreign.edxml.reason.json").exists())
        assert json.loads((a / "failed" / "foreign.edxml.reason.json").read_text())[
            "reason"] == "SENDER_NOT_SERVED"
        assert [p.name for p in (a / "outbox").iterdir()] == ["half.edxml.part"]
        # and the folder keeps working after the refusal
        _, later = edoc(VPCP, [NGHEAN])
        drop(a, "later.edxml", later)
        await until(lambda: (a / "sent" / "later.edxml.receipt.json").exists())

        await until(lambda: len(_files(b / "inbox", ".edxml")) == 2)
        got = next(p for p in _files(b / "inbox", ".edxml") if p.read_bytes() == body)
        meta = json.loads(got.with_suffix(".json").read_text())
        assert meta["hub_id"] == receipt["hub_id"] and meta["to"] == [NGHEAN]
        assert not [p for p in (b / "inbox").iterdir() if p.name.startswith(".")]


async def test_restarts_lose_and_duplicate_nothing(hub: Hub, tmp_path: Path) -> None:
    await _setup(hub)
    a, b = tmp_path / "vpcp", tmp_path / "nghean"
    _, body1 = edoc(VPCP, [NGHEAN])
    _, body2 = edoc(VPCP, [NGHEAN])
    # a crash after the hub accepted body1 but before the file was moved: the file is
    # still in outbox/ when the watcher starts again
    async with hub.client("vpcp") as gw:
        first = await gw.send(body1, message_id=message_id_for(body1))
        assert first is not None and first.type == "accepted"
    drop(a, "one.edxml", body1)
    drop(a, "two.edxml", body2)  # written while nothing watches
    async with watching(hub, "vpcp", a):
        await until(lambda: len(_files(a / "sent", ".receipt.json")) == 2)
    again = json.loads((a / "sent" / "one.edxml.receipt.json").read_text())
    # the same message id again: the hub answers with the first hub id, no new document
    assert again["type"] in ("accepted", "duplicate")
    assert again["hub_id"] == first.hub_id
    assert await hub.pool.fetchval("SELECT count(*) FROM documents") == 2

    # the receiving side, stopped and started: two copies, each written once
    async with watching(hub, "lgsp-nghean", b):
        await until(lambda: len(_files(b / "inbox", ".edxml")) == 2)
    for p in _files(b / "inbox", ".edxml"):  # the software takes them
        p.unlink()
    async with watching(hub, "lgsp-nghean", b):
        await asyncio.sleep(0)  # the consumer starts; nothing may come back
        async with hub.client("vpcp") as gw:  # a third one proves the consumer is live
            _, body3 = edoc(VPCP, [NGHEAN])
            assert (await gw.send(body3)) is not None
        await until(lambda: len(_files(b / "inbox", ".edxml")) == 1)
    assert _files(b / "inbox", ".edxml")[0].read_bytes() == body3
