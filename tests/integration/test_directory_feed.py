"""The hub publishes its directory as a versioned feed; gateway-side mirrors follow it over
AMQP only (issue #13, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import HubRefused
from adapters.directory_feed import DirectoryFeedFailed, DirectoryMirror
from router.directory.registry import AgencyRow, remove_agency
from schemas import Reason
from tests.hub import Hub


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([
        AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
        AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
        AgencyRow("000.01.00.H41", "Sở Tài chính Nghệ An", parent="000.00.00.H41",
                  aliases=("H41.01",)),
    ])


async def test_import_rename_alias_change_and_deletion_reach_mirrors(
    hub: Hub, tmp_path: Path
) -> None:
    await _setup(hub)
    await hub.start_router()
    live = DirectoryMirror(tmp_path / "live.sqlite")
    away = DirectoryMirror(tmp_path / "away.sqlite")
    async with hub.client("vpcp") as gw:
        assert await live.sync(gw) == 3
        await away.sync(gw)
        g22 = live.get("G22")
        assert g22 is not None and g22.code == "000.00.00.G22"
        assert g22.name == "Văn phòng Chính phủ" and g22.gateway == "vpcp"
        assert g22.qd20 == ("G22",) and g22.qcvn102 == ("000.00.00.G22",)
        so = live.get("h41.01")  # any spelling
        assert so is not None and so.parent == "000.00.00.H41" and so.gateway == "lgsp-nghean"
        snapshot_version = live.version
        assert snapshot_version == away.version > 0
        away.close()  # this mirror goes offline

        # a rename, an alias moved from one agency to another, an alias added
        await hub.add_agencies([
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ (VPCP)", aliases=("G22",)),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41", "H41.01")),
        ])
        assert await live.sync(gw) == 3  # G22 renamed; H41 took the alias; 000.01.00.H41 lost it
        assert live.version > snapshot_version
        renamed = live.get("000.00.00.G22")
        assert renamed is not None and renamed.name == "Văn phòng Chính phủ (VPCP)"
        moved = live.get("H41.01")
        assert moved is not None and moved.code == "000.00.00.H41"
        assert "H41.01" in moved.qd20
        so = live.get("000.01.00.H41")
        assert so is not None and "H41.01" not in so.aliases
        # importing the same again changes nothing and publishes nothing
        await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ (VPCP)",
                                          aliases=("G22",))])
        assert await live.sync(gw) == 0

        # a deletion
        async with hub.pool.acquire() as conn:
            await remove_agency(conn, "000.01.00.H41", actor="test")
        assert await live.sync(gw) == 1
        assert live.get("000.01.00.H41") is None
        gone = live.get("000.01.00.H41", include_deleted=True)
        assert gone is not None and gone.deleted and gone.version == live.version
        assert {r.code for r in live.records()} == {"000.00.00.G22", "000.00.00.H41"}
        tombstones = [r for r in live.records(include_deleted=True) if r.deleted]
        assert [r.code for r in tombstones] == ["000.01.00.H41"]
        since = [(r.code, r.deleted) for r in live.changed_since(snapshot_version)]
        assert since == [("000.00.00.G22", False), ("000.00.00.H41", False),
                         ("000.01.00.H41", True)]

    # the offline mirror comes back (a new process, from its file) and catches up in pages
    back = DirectoryMirror(tmp_path / "away.sqlite")
    assert back.version == snapshot_version
    async with hub.client("lgsp-nghean") as gw:
        await back.sync(gw, page_size=1)
    assert back.version == live.version == back.latest
    assert [r.as_feed() for r in back.records(include_deleted=True)] == \
        [r.as_feed() for r in live.records(include_deleted=True)]


async def test_a_removed_agency_no_longer_receives_and_comes_back_on_import(hub: Hub) -> None:
    from tests.factory import edoc

    await _setup(hub)
    await hub.start_router()
    async with hub.pool.acquire() as conn:
        await remove_agency(conn, "H41.01")
    mirror = DirectoryMirror()
    async with hub.client("vpcp") as gw:
        _, body = edoc("000.00.00.G22", ["000.01.00.H41"])
        r = await gw.send(body)
        assert r is not None and r.type == "rejected"
        assert r.reason is not None and r.reason["reason"] == "RECIPIENT_UNKNOWN"
        await hub.add_agencies([AgencyRow("000.01.00.H41", "Sở Tài chính Nghệ An",
                                          parent="000.00.00.H41", aliases=("H41.01",))])
        await mirror.sync(gw)
        back = mirror.get("H41.01")
        assert back is not None and not back.deleted and back.gateway == "lgsp-nghean"
        r = await gw.send(edoc("000.00.00.G22", ["000.01.00.H41"])[1])
        assert r is not None and r.type == "accepted"


async def test_a_bad_feed_request_gets_a_reason(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router()
    async with hub.client("vpcp") as gw:
        with pytest.raises(HubRefused) as refused:
            await gw.ask_hub("directory", {"after": "yesterday"})
        assert refused.value.reason is Reason.DIRECTORY_BAD_REQUEST
        mirror = DirectoryMirror()
        with pytest.raises(DirectoryFeedFailed) as caught:
            await mirror.sync(gw, page_size=0)
        assert caught.value.reason is Reason.DIRECTORY_BAD_REQUEST
        assert mirror.version == 0
        assert await mirror.sync(gw) == 3  # the client and the routers go on


async def test_a_router_of_a_hub_without_the_feed_queue_still_routes(hub: Hub) -> None:
    """A hub upgraded without `lienthong topology apply`: no feed, but no outage either."""
    import aio_pika

    from tests.factory import edoc

    await _setup(hub)
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete("lt.directory")
    await hub.start_router()
    async with hub.client("vpcp") as gw:
        r = await gw.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
        assert r is not None and r.type == "accepted"


async def test_operator_removes_an_agency_from_the_cli(hub: Hub) -> None:
    import asyncio

    from click.testing import CliRunner

    from router.cli import main as cli

    await _setup(hub)
    env = {"LIENTHONG_AMQP_URL": hub.settings.amqp_url,
           "LIENTHONG_DATABASE_URL": hub.settings.database_url,
           "LIENTHONG_MANAGEMENT_URL": hub.settings.management_url}
    result = await asyncio.to_thread(CliRunner().invoke, cli,
                                     ["agencies", "remove", "h41.01", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "000.01.00.H41: removed" in result.output
    row = await hub.pool.fetchrow(
        "SELECT deleted, record FROM directory_feed WHERE code = '000.01.00.H41'")
    assert row is not None and row["deleted"]
    audited = await hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'agency.removed'")
    assert audited == 1
    again = await asyncio.to_thread(CliRunner().invoke, cli,
                                    ["agencies", "remove", "h41.01", "--yes"], env=env)
    assert again.exit_code == 2
    assert "OPS_UNKNOWN_AGENCY" in again.output


async def test_a_large_directory_is_published_once_and_mirrored_in_pages(hub: Hub) -> None:
    import time

    n = 3000
    await _setup(hub)
    rows = [AgencyRow(f"{i // 100 + 1:03}.{i % 100 + 1:02}.00.H41", f"Đơn vị {i}",
                      parent="000.00.00.H41") for i in range(n)]
    started = time.monotonic()
    await hub.add_agencies(rows)
    imported = time.monotonic() - started
    await hub.start_router()
    mirror = DirectoryMirror()
    async with hub.client("lgsp-nghean") as gw:
        started = time.monotonic()
        assert await mirror.sync(gw) == n + 3
        mirrored = time.monotonic() - started
        assert mirror.version == mirror.latest
        await hub.add_agencies(rows)  # the same import again: nothing new to publish
        assert await mirror.sync(gw) == 0
    assert sum(1 for _ in mirror.records()) == n + 3
    print(f"directory feed: import of {n} agencies with the feed in {imported:.2f} s; "
          f"a new mirror took {n + 3} in {mirrored:.2f} s")
