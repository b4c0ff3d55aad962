"""National statistics (issue #16) on the real PostgreSQL ledger: a generated ledger with
known paper and timing shares gives exactly those figures; the ranking, the drill-down,
the exports and the 80-column report read them right; Bussiness/Paper is recorded by the
routers from packages that went through RabbitMQ."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner
from openpyxl import load_workbook

from router.cli import main
from router.directory.registry import AgencyRow
from router.ops.auth import TokenStore
from router.ops.server import create_app
from router.reporting import export, national
from tests.factory import edoc
from tests.hub import Hub
from tests.polling import eventually

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
T = datetime(2026, 11, 5, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam

AGENCIES = [
    AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
    AgencyRow("000.00.00.G12", "Bộ Tài chính", aliases=("BTC",)),
    AgencyRow("000.00.18.G12", "Tổng cục Thuế", parent="000.00.00.G12", aliases=("TCT",)),
    AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An"),
    AgencyRow("000.00.05.H41", "Sở Nội vụ tỉnh Nghệ An", parent="000.00.00.H41"),
    # a code that says nothing of its tree: the directory's parent places it
    AgencyRow("0201001073", "Công ty cổ phần X", parent="000.00.00.H41"),
]


async def _doc(hub: Hub, ids: dict[str, int], sender: str, paper: bool | None,
               at: datetime = T) -> uuid.UUID:
    hub_id = uuid.uuid4()
    await hub.pool.execute(
        """INSERT INTO documents (hub_id, kind, dedup_key, sender_agency_id, sender_code,
               sender_gateway_id, business_type, content_sha256, size_bytes, body,
               received_at, paper)
           VALUES ($1, 'edoc', $2, $3, $4, 'all', 0, '\\x00', 1, '\\x00', $5, $6)""",
        hub_id, str(hub_id), ids[sender], sender, at, paper,
    )
    return hub_id


async def _delivery(hub: Hub, ids: dict[str, int], doc: uuid.UUID, to: str, *,
                    state: str = "queued", to_01: timedelta | None = None,
                    to_03: timedelta | None = None, to_06: timedelta | None = None,
                    refused: bool = False, due: date | None = None,
                    at: datetime = T) -> None:
    def after(d: timedelta | None) -> datetime | None:
        return None if d is None else at + d

    await hub.pool.execute(
        """INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code, gateway_id,
               copy_id, state, kind, due_at, created_at, queued_at, arrived_at, accepted_at,
               refused_at, done_at)
           VALUES ($1, $2, $3, $4, 'all', $1, $5, 'edoc', $6, $7, $7, $8, $9, $10, $11)""",
        uuid.uuid4(), doc, ids[to], to, state, due, at, after(to_01), after(to_03),
        at + timedelta(minutes=1) if refused else None, after(to_06),
    )


async def _generated_ledger(hub: Hub) -> None:
    """The ledger whose figures the tests below know by heart."""
    await hub.add_gateway("all", serves=["#.G22", "#.G12", "#.H41"])
    await hub.add_agencies(AGENCIES)
    ids = {r["code"]: r["id"] for r in await hub.pool.fetch("SELECT id, code FROM agencies")}
    # sent: VPCP 10, none with paper (100 % electronic)
    docs = [await _doc(hub, ids, "000.00.00.G22", False) for _ in range(10)]
    # Bộ Tài chính's tree 8: 2 with paper, 2 without, 2 not saying, 2 from Tổng cục Thuế
    for paper in (True, True, False, False, None, None):
        await _doc(hub, ids, "000.00.00.G12", paper)
    for _ in range(2):
        await _doc(hub, ids, "000.00.18.G12", False)
    # Nghệ An's tree 4: 2 with paper, one of them from the enterprise under it (50 %)
    await _doc(hub, ids, "000.00.00.H41", True)
    await _doc(hub, ids, "0201001073", True)
    await _doc(hub, ids, "000.00.00.H41", False)
    await _doc(hub, ids, "000.00.00.H41", None)
    # outside the period: counted nowhere
    await _doc(hub, ids, "000.00.00.H41", True, at=START - timedelta(seconds=1))
    await _doc(hub, ids, "000.00.00.G22", True, at=END)

    # received by Nghệ An's tree: 10 deliveries, 01 after i minutes, 03 after 2i minutes,
    # 06 after i hours for i = 1..8 (done 80 %)
    due_later, due_before = date(2026, 11, 10), date(2026, 11, 4)
    for i in range(1, 11):
        to = "000.00.00.H41" if i <= 5 else "000.00.05.H41"
        kw: dict[str, object] = {}
        if i <= 8:
            # i = 7 finished after its DueDate (late); i = 8 on the same day (not late)
            due = {1: due_later, 7: due_before, 8: date(2026, 11, 5)}.get(i)
            kw = {"state": "done", "to_06": timedelta(hours=i), "due": due}
        elif i == 9:
            kw = {"state": "accepted", "due": due_later}  # open past its DueDate: late
        else:
            kw = {"state": "refused", "refused": True, "due": due_before}  # refused: not late
        await _delivery(hub, ids, docs[i - 1], to, to_01=timedelta(minutes=i),
                        to_03=timedelta(minutes=2 * i) if i != 10 else None,
                        **kw)  # type: ignore[arg-type]
    # received by Bộ Tài chính: one done (01 60 s, 03 120 s, 06 600 s), one revoked
    await _delivery(hub, ids, docs[0], "000.00.00.G12", state="done",
                    to_01=timedelta(seconds=60), to_03=timedelta(seconds=120),
                    to_06=timedelta(seconds=600))
    await _delivery(hub, ids, docs[1], "000.00.18.G12", state="revoked", due=due_before)
    # outside the period
    await _delivery(hub, ids, docs[2], "000.00.00.G12", state="done", at=END,
                    to_06=timedelta(seconds=1))


async def test_generated_ledger_gives_exactly_its_figures(hub: Hub) -> None:
    await _generated_ledger(hub)
    async with hub.pool.acquire() as conn:
        rows = await national.national_report(conn, start=START, end=END)
    assert [(r.rank, r.unit, r.kind) for r in rows] == [
        (1, "000.00.00.G22", "ministry"),
        (2, "000.00.00.G12", "ministry"),
        (3, "000.00.00.H41", "province"),
    ]
    g22, g12, h41 = rows
    assert (g22.sent, g22.sent_paper, g22.electronic_share, g22.received) == (10, 0, 1.0, 0)
    assert g22.done_share is None and g22.to_06_median_s is None
    assert (g12.sent, g12.sent_paper, g12.electronic_share) == (8, 2, 0.75)
    assert (g12.received, g12.done, g12.done_share, g12.revoked, g12.late) == (2, 1, 0.5, 1, 0)
    assert (g12.to_01_median_s, g12.to_01_p90_s, g12.to_03_median_s, g12.to_06_p90_s) == (
        60.0, 60.0, 120.0, 600.0)
    assert (h41.sent, h41.sent_paper, h41.electronic_share) == (4, 2, 0.5)
    assert (h41.received, h41.done, h41.done_share) == (10, 8, 0.8)
    assert (h41.late, h41.refused, h41.revoked) == (2, 1, 0)
    # percentile_cont over 1..10 minutes: p50 5.5 min, p90 9.1 min
    assert (h41.to_01_median_s, h41.to_01_p90_s) == (330.0, 546.0)
    # 03 after 2, 4, .., 18 minutes (the refused one never accepted): p50 10, p90 16.4 min
    assert (h41.to_03_median_s, h41.to_03_p90_s) == (600.0, 984.0)
    # 06 after 1..8 hours: p50 4.5 h, p90 7.3 h
    assert (h41.to_06_median_s, h41.to_06_p90_s) == (16200.0, 26280.0)


async def test_levels_and_drill_down(hub: Hub) -> None:
    await _generated_ledger(hub)
    async with hub.pool.acquire() as conn:
        provinces = await national.national_report(
            conn, start=START, end=END, level=national.Level.PROVINCES)
        ministries = await national.national_report(
            conn, start=START, end=END, level=national.Level.MINISTRIES)
        tree = await national.national_report(conn, start=START, end=END, within="H41")
    assert [(r.rank, r.unit) for r in provinces] == [(1, "000.00.00.H41")]
    assert [r.unit for r in ministries] == ["000.00.00.G22", "000.00.00.G12"]
    by = {r.unit: r for r in tree}
    assert set(by) == {"000.00.00.H41", "000.00.05.H41", "0201001073"}
    assert {r.kind for r in tree} == {"agency"}
    assert (by["000.00.00.H41"].sent, by["000.00.00.H41"].sent_paper) == (3, 1)
    assert (by["000.00.00.H41"].received, by["000.00.00.H41"].done) == (5, 5)
    assert (by["000.00.05.H41"].received, by["000.00.05.H41"].done) == (5, 3)
    assert (by["0201001073"].sent, by["0201001073"].electronic_share) == (1, 0.0)
    # the enterprise sent only with paper: it ranks last of those that sent
    assert [r.unit for r in tree] == ["000.00.00.H41", "0201001073", "000.00.05.H41"]


def _cli(hub: Hub, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["report", "--from", "2026-11-01T07:00", "--to", "2026-12-01T07:00", *args],
        env={"LIENTHONG_DATABASE_URL": hub.settings.database_url, "COLUMNS": "80"})
    return result.exit_code, result.output


async def test_report_fits_80_columns_and_exports(hub: Hub, tmp_path: Path) -> None:
    await _generated_ledger(hub)
    xlsx, csv_path = tmp_path / "rank.xlsx", tmp_path / "rank.csv"
    code, out = await asyncio.to_thread(
        _cli, hub, "--xlsx", str(xlsx), "--csv", str(csv_path))
    assert code == 0, out
    table = [line for line in out.splitlines() if not line.startswith("đã ghi / wrote")]
    assert max(len(line) for line in table) <= 80, out
    lines = [line.split() for line in out.splitlines()]
    # rank, code, then the figures at the end of the row: sent, paper, e-only %, ..., late
    g12 = next(words for words in lines if words[:2] == ["2", "G12"])
    assert g12[-7:-4] == ["8", "2", "75.0"] and g12[-3] == "50.0" and g12[-1] == "0"
    h41 = next(words for words in lines if words[:2] == ["3", "H41"])
    assert h41[-7:] == ["4", "2", "50.0", "10", "80.0", "4.5h", "2"], h41
    sheet = load_workbook(xlsx).active
    assert sheet is not None
    cells = [list(r) for r in sheet.iter_rows(min_row=2, values_only=True)]
    assert cells[0] == list(export.HEADERS)
    assert cells[3][:11] == [3, "000.00.00.H41", "UBND tỉnh Nghệ An", "province", 4, 2,
                             50.0, 10, 8, 80.0, 2]
    assert cells[3][17:19] == [4.5, 7.3]  # hours
    text = csv_path.read_text(encoding="utf-8-sig")
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == list(export.HEADERS)
    assert parsed[1][:7] == ["1", "000.00.00.G22", "Văn phòng Chính phủ", "ministry", "10",
                             "0", "100.0"]
    # the detail view of one unit, one figure a line
    code, out = await asyncio.to_thread(_cli, hub, "--agency", "H41")
    assert code == 0, out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "gửi kèm giấy / sent with paper" in out
    assert any(line.split()[-2:] == ["50.0", "%"] for line in out.splitlines()
               if "fully electronic" in line)
    assert any("5.5 min / 9.1 min" in line for line in out.splitlines() if "to 01" in line), out
    # aliases work: the detail of one agency, the drill-down into a tree
    code, out = await asyncio.to_thread(_cli, hub, "--agency", "TCT", "--json")
    assert code == 0, out
    assert [(r["unit"], r["sent"], r["revoked"]) for r in json.loads(out)] == [
        ("000.00.18.G12", 2, 1)]
    code, out = await asyncio.to_thread(_cli, hub, "--within", "BTC", "--json")
    assert code == 0, out
    assert {r["unit"] for r in json.loads(out)} == {"000.00.00.G12", "000.00.18.G12"}
    # --json for scripts; the drill-down ranks the tree's agencies
    code, out = await asyncio.to_thread(_cli, hub, "--within", "H41", "--json")
    assert code == 0, out
    assert [r["unit"] for r in json.loads(out)] == [
        "000.00.00.H41", "0201001073", "000.00.05.H41"]


async def test_routers_record_paper(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        for paper in ("1", "0", None):
            r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"], paper=paper)[1])
            assert r is not None and r.type == "accepted", r

    async def recorded() -> list[bool | None] | None:
        rows = await hub.pool.fetch(
            "SELECT paper FROM documents WHERE kind = 'edoc' ORDER BY received_at")
        return [r["paper"] for r in rows] if len(rows) == 3 else None

    assert await eventually(recorded, timeout=30, what="three documents") == [True, False, None]
    async with hub.pool.acquire() as conn:
        now = datetime.now(UTC)
        rows = await national.national_report(
            conn, start=now - timedelta(hours=1), end=now + timedelta(hours=1))
    vpcp_row = next(r for r in rows if r.unit == "000.00.00.G22")
    assert (vpcp_row.sent, vpcp_row.sent_paper) == (3, 1)
    assert vpcp_row.electronic_share == round(2 / 3, 4)


async def test_api_ranks_exports_and_rejects_bad_input(hub: Hub) -> None:
    await _generated_ledger(hub)
    tokens = TokenStore.parse("viewer:read:read-token-0123456789abcdef")
    headers = {"Authorization": "Bearer read-token-0123456789abcdef"}
    app = create_app(hub.settings, tokens=tokens, pool=hub.pool, refresh_interval=None)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        period = {"from": "2026-11-01T07:00", "to": "2026-12-01T07:00"}
        assert (await client.get("/api/statistics", params=period)).status == 401
        resp = await client.get("/api/statistics", params=period, headers=headers)
        body = await resp.json()
        assert resp.status == 200, body
        assert (body["from"], body["to"]) == ("2026-11-01T07:00:00+07:00",
                                              "2026-12-01T07:00:00+07:00")
        assert 'filename="thong-ke-20261101-20261201.csv"' in (await client.get(
            "/api/statistics", params={**period, "format": "csv"}, headers=headers)
        ).headers["Content-Disposition"]
        assert [(u["rank"], u["unit"], u["electronic_share"]) for u in body["units"]] == [
            (1, "000.00.00.G22", 1.0), (2, "000.00.00.G12", 0.75), (3, "000.00.00.H41", 0.5)]
        resp = await client.get("/api/statistics", headers=headers,
                                params={**period, "level": "provinces"})
        assert [u["unit"] for u in (await resp.json())["units"]] == ["000.00.00.H41"]
        resp = await client.get("/api/statistics", headers=headers,
                                params={**period, "within": "H41"})
        assert {u["unit"] for u in (await resp.json())["units"]} == {
            "000.00.00.H41", "000.00.05.H41", "0201001073"}
        resp = await client.get("/api/statistics", headers=headers,
                                params={**period, "format": "xlsx"})
        assert resp.status == 200
        sheet = load_workbook(io.BytesIO(await resp.read())).active
        assert sheet is not None
        assert sheet.cell(row=5, column=2).value == "000.00.00.H41"
        resp = await client.get("/api/statistics", headers=headers,
                                params={**period, "format": "csv"})
        text = (await resp.read()).decode("utf-8-sig")
        assert text.splitlines()[2].startswith("2,000.00.00.G12,Bộ Tài chính,ministry,8,2,75.0")
        # bad input: a clear rejection with its reason, never a 500
        for params, code in (({"from": "yesterday", "to": "2026-12-01"}, 7050),
                             ({"from": "2026-12-01", "to": "2026-11-01"}, 7050),
                             ({"from": "2025-01-01", "to": "2026-12-01"}, 7050),
                             # enums of the OpenAPI document: refused by its validation
                             ({**period, "level": "districts"}, 6001),
                             ({**period, "within": "H41; DROP"}, 7051),
                             ({**period, "format": "pdf"}, 6001),
                             ({"from": "0001-01-01T00:00+14:00", "to": "0001-01-02"}, 7050)):
            resp = await client.get("/api/statistics", params=params, headers=headers)
            err = await resp.json()
            assert resp.status == 400, err
            assert err["code"] == code and err["message_vi"] and err["message_en"]
    finally:
        await client.close()
