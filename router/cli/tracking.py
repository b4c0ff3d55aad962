"""``lienthong track``, ``lienthong report`` and ``lienthong deadlines``."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from router import amqp
from router.cli._services import connect_db, fail, run_async
from router.cli.exit_codes import EXIT_NOT_FOUND, EXIT_REJECTED
from router.recovery import deadlines as deadlines_lib
from router.reporting import export, national, tracking
from router.settings import Settings
from schemas.agency_code import AgencyCode
from schemas.reasons import LienthongError

VIETNAM = timezone(timedelta(hours=7))

# what a văn thư reads: Vietnamese first, English after
STATE_LABELS = {
    "submitted": "đã gửi lên trục / submitted",
    "queued": "đã chuyển đến hệ thống nhận / queued",
    "undeliverable": "không chuyển được / undeliverable",
    "arrived": "đã đến / arrived (01)",
    "refused": "từ chối tiếp nhận / refused (02)",
    "accepted": "đã tiếp nhận / accepted (03)",
    "assigned": "đã phân công / assigned (04)",
    "processing": "đang xử lý / processing (05)",
    "done": "hoàn thành / done (06)",
    "recalled": "đã lấy lại / recalled",
    "revoked": "đã thu hồi / revoked",
    "replaced": "đã thay thế / replaced",
}
CODE_SHORT = {"01": "01 đã đến", "02": "02 từ chối", "03": "03 tiếp nhận", "04": "04 phân công",
              "05": "05 đang xử lý", "06": "06 hoàn thành", "13": "13 lấy lại",
              "15": "15 đồng ý lấy lại", "16": "16 từ chối lấy lại"}


def _delta(seconds: float) -> str:
    if seconds < 1:
        return f"+{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"+{seconds:.1f} s"
    if seconds < 3 * 3600:
        return f"+{seconds / 60:.0f} min"
    return f"+{seconds / 3600:.1f} h"


async def render_timeline(conn: asyncpg.Connection, hub_id: uuid.UUID, console: Console) -> bool:
    tl = await tracking.timeline(conn, hub_id)
    if tl is None:
        return False
    start = tl.received_at
    what = "Gói trạng thái / status" if tl.kind == "status" else "Văn bản / document"
    console.print(f"[bold]{what} {escape(tl.code or '')}[/bold] — {escape(tl.subject or '')}",
                  highlight=False)
    console.print(
        f"  DocumentId {tl.document_id or '-'} · hub id {tl.hub_id}\n"
        f"  từ / from {tl.sender_code} {tl.sender_name or ''} (gateway {tl.sender_gateway_id})"
        f"\n  trục nhận / received {start.astimezone(VIETNAM):%Y-%m-%d %H:%M:%S} (giờ VN)"
        + (f" · hạn xử lý / due {tl.due_date:%Y-%m-%d}" if tl.due_date else ""),
        highlight=False,
    )
    for d in tl.deliveries:
        steps = ["submitted +0 ms"]
        for e in d.events:
            delta = _delta((e.time - start).total_seconds())
            if e.status_code:
                label = CODE_SHORT.get(e.status_code, e.status_code)
            elif e.state == "submitted":
                label = "accepted"
            else:
                label = e.state
            flags = f" ({', '.join(e.flags)})" if e.flags else ""
            steps.append(f"{label} {delta}{flags}")
        now = STATE_LABELS.get(d.state, d.state)
        if d.not_arrived:
            now += " · CHƯA ĐẾN / not arrived"
        if d.overdue:
            now += " · QUÁ HẠN / overdue"
        console.print(
            f"  • [bold]{escape(d.agency_code)}[/bold] {escape(d.agency_name)} "
            f"(gateway {escape(d.gateway_id)}): [bold]{escape(now)}[/bold]",
            highlight=False,
        )
        console.print("      " + escape(" → ".join(steps)), highlight=False)
    return True


@click.command("track")
@click.argument("ident")
@click.option("--json", "as_json", is_flag=True, help="The timeline as JSON.")
def track(ident: str, as_json: bool) -> None:
    """Where is a document, for each recipient, since when (hub id or edXML DocumentId)."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            hubs = await tracking.find_document(conn, ident)
            if not hubs:
                fail(f"no document known as {ident!r}", EXIT_NOT_FOUND)
            if as_json:
                out = []
                for h in hubs:
                    tl = await tracking.timeline(conn, h)
                    if tl is not None:
                        out.append(tl.as_dict())
                click.echo(json.dumps(out, ensure_ascii=False, indent=2))
                return
            console = Console()
            for h in hubs:
                await render_timeline(conn, h, console)
        finally:
            await conn.close()

    run_async(go)


@click.command("report")
@click.option("--from", "start", required=True, help="Start (ISO date/time, Vietnam time).")
@click.option("--to", "end", required=True, help="End, exclusive (ISO date/time).")
@click.option("--level", type=click.Choice([lv.value for lv in national.Level]),
              default="all", show_default=True,
              help="Rank ministries (G), provinces (H) or all level-1 units.")
@click.option("--within", help="Drill down: rank the agencies of this tree (e.g. H41).")
@click.option("--agency", help="Detail view of one unit (level-1 code) or agency.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the ranking to this CSV file.")
@click.option("--xlsx", "xlsx_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the ranking to this XLSX file.")
@click.option("--json", "as_json", is_flag=True)
def report(start: str, end: str, level: str, within: str | None, agency: str | None,
           csv_path: Path | None, xlsx_path: Path | None, as_json: bool) -> None:
    """National statistics: ministries and provinces ranked on fully electronic sending,
    share handled to 06, time to 06; --within drills down, --agency shows one in full."""
    try:
        t0, t1 = national.parse_period(start, end)
    except LienthongError as exc:
        fail(f"{exc.reason.message_vi} / {exc.reason.message_en}: {exc.detail}",
             EXIT_REJECTED)

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            tree, key = within, None
            if agency:
                key = await national.canonical(conn, agency)
                if _is_level1(key):
                    key = national.unit_of(key, {})
                else:
                    tree = key
            rows = await national.national_report(
                conn, start=t0, end=t1, level=national.Level(level), within=tree)
        except LienthongError as exc:
            fail(f"{exc.reason.message_vi} / {exc.reason.message_en}: {exc.detail}",
                 EXIT_REJECTED)
        finally:
            await conn.close()
        if agency:
            rows = [r for r in rows if r.unit == key]
            if not rows:
                fail(f"no figures for {agency!r} between {start} and {end} / "
                     f"không có số liệu cho {agency!r}", EXIT_NOT_FOUND)
        if csv_path:
            export.write_csv(csv_path, rows)
        if xlsx_path:
            export.write_xlsx(xlsx_path, rows, start=t0, end=t1)
        if as_json:
            click.echo(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
            return
        console = Console()
        if agency:
            print_detail(console, rows[0], f"{start} → {end}")
        else:
            print_ranking(console, rows, f"{start} → {end}", short=within is None)
        for path in (csv_path, xlsx_path):
            if path:
                click.echo(f"đã ghi / wrote {len(rows)} rows to {path}")

    run_async(go)


def _is_level1(code: str) -> bool:
    try:
        return AgencyCode.parse(code).is_top_level
    except LienthongError:
        return False


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}"


def _dur(v: float | None) -> str:
    """A duration with one decimal: 45.0 s, 5.5 min, 4.5 h, 3.2 d."""
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.1f} s"
    if v < 3 * 3600:
        return f"{v / 60:.1f} min"
    if v < 48 * 3600:
        return f"{v / 3600:.1f} h"
    return f"{v / 86400:.1f} d"


def _short(v: float | None) -> str:
    """A duration in at most five characters: 45s, 12m, 4.5h, 3.2d."""
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.0f}s"
    if v < 3 * 3600:
        return f"{v / 60:.0f}m"
    if v < 48 * 3600:
        return f"{v / 3600:.1f}h"
    return f"{v / 86400:.1f}d"


def print_ranking(console: Console, rows: list[national.UnitStats], title: str, *,
                  short: bool) -> None:
    """The ranking view: ten columns that fit an 80-column terminal (names cut with …)."""
    table = Table(title=f"Xếp hạng / Ranking {title}", box=box.SIMPLE_HEAD, show_edge=False,
                  padding=0,
                  caption="ĐT% = điện tử hoàn toàn / fully electronic; 06% = hoàn thành / "
                  "done; t06 = trung vị đến 06 / median to 06; trễ = quá hạn / late")
    figures = (("gửi\nsent", 6), ("giấy\npaper", 5), ("ĐT%\nelec", 5), ("nhận\nrecv", 6),
               ("06%\ndone", 5), ("t06\np50", 5), ("trễ\nlate", 4))
    code_width = 5 if short else 13
    # every column but the name has a fixed width, one space between columns; the name
    # takes what is left of the terminal, cut with … when longer
    fixed = 3 + code_width + sum(w for _, w in figures) + len(figures) + 2
    table.add_column("#", justify="right", no_wrap=True, width=3)
    table.add_column("mã\ncode", no_wrap=True, width=code_width)
    table.add_column("đơn vị\nunit", no_wrap=True, overflow="ellipsis",
                     width=max(10, console.width - fixed))
    for head, width in figures:
        table.add_column(head, justify="right", no_wrap=True, width=width)
    for r in rows:
        code = r.unit.removeprefix("000.00.00.") if short else r.unit
        table.add_row(str(r.rank), code, r.name, str(r.sent), str(r.sent_paper),
                      _pct(r.electronic_share), str(r.received), _pct(r.done_share),
                      _short(r.to_06_median_s), str(r.late))
    console.print(table)


def print_detail(console: Console, r: national.UnitStats, title: str) -> None:
    """The per-unit view: one figure a line, label in Vietnamese and English."""
    console.print(f"[bold]{escape(r.name)}[/bold] ({escape(r.unit)}) — {escape(title)}",
                  highlight=False)
    lines = [
        ("hạng / rank", str(r.rank)),
        ("đã gửi / sent", str(r.sent)),
        ("gửi kèm giấy / sent with paper", str(r.sent_paper)),
        ("điện tử hoàn toàn / fully electronic", f"{_pct(r.electronic_share)} %"),
        ("đã nhận / received", str(r.received)),
        ("hoàn thành 06 / done (06)", f"{r.done} ({_pct(r.done_share)} %)"),
        ("quá hạn / late (past DueDate)", str(r.late)),
        ("từ chối / refused (02)", str(r.refused)),
        ("thu hồi / revoked", str(r.revoked)),
        ("đến 01 / to 01 (p50 / p90)", f"{_dur(r.to_01_median_s)} / {_dur(r.to_01_p90_s)}"),
        ("tiếp nhận 03 / to 03 (p50 / p90)",
         f"{_dur(r.to_03_median_s)} / {_dur(r.to_03_p90_s)}"),
        ("hoàn thành 06 / to 06 (p50 / p90)",
         f"{_dur(r.to_06_median_s)} / {_dur(r.to_06_p90_s)}"),
    ]
    for label, value in lines:
        console.print(f"  {label:<38} {value}", highlight=False)


@click.command("deadlines")
@click.option("--not-arrived-after", default=15.0, show_default=True,
              help="Minutes a queued delivery may wait for its 01.")
@click.option("--watch", type=float, default=None,
              help="Sweep every N seconds until stopped (default: once).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON line per sweep: at, not_arrived, overdue, events (for scripts).")
def deadlines(not_arrived_after: float, watch: float | None, as_json: bool) -> None:
    """Flag deliveries not arrived in time and documents past their DueDate; tell senders.
    (Routers also sweep by themselves every LIENTHONG_SWEEP_SECONDS.)"""

    async def go(settings: Settings) -> None:
        from router.outbox.outbox import Outbox

        conn = await connect_db(settings)
        try:
            async with await amqp.connect(settings, "deadlines") as connection:
                channel = await connection.channel(publisher_confirms=True)
                outbox = await Outbox.open(channel, settings)
                while True:
                    res = await deadlines_lib.sweep_and_tell(
                        conn, outbox, now=datetime.now(UTC),
                        not_arrived_after=timedelta(minutes=not_arrived_after))
                    if as_json:
                        click.echo(json.dumps({
                            "at": datetime.now(UTC).isoformat(), "not_arrived": res.not_arrived,
                            "overdue": res.overdue, "events": len(res.receipts)}))
                    else:
                        click.echo(f"{datetime.now(VIETNAM):%H:%M:%S} flagged "
                                   f"{res.not_arrived} not arrived, {res.overdue} overdue")
                    if watch is None:
                        return
                    await asyncio.sleep(watch)
        finally:
            await conn.close()

    run_async(go)
