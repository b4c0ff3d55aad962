"""``lienthong track``, ``lienthong report`` and ``lienthong deadlines``."""

from __future__ import annotations

import asyncio
import csv
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from router import amqp
from router.cli._services import connect_db, fail, run_async
from router.recovery import deadlines as deadlines_lib
from router.reporting import statistics, tracking
from router.settings import Settings

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
                fail(f"no document known as {ident!r}", 2)
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


def _period(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo else dt.replace(tzinfo=VIETNAM)


@click.command("report")
@click.option("--from", "start", required=True, help="Start (ISO date/time, Vietnam time).")
@click.option("--to", "end", required=True, help="End, exclusive (ISO date/time).")
@click.option("--agency", help="One agency (any code or alias).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table to this CSV file.")
@click.option("--json", "as_json", is_flag=True)
def report(start: str, end: str, agency: str | None, csv_path: Path | None,
           as_json: bool) -> None:
    """Statistics per agency and period: sent, received, accepted, refused, done, revoked,
    median/p90 time to 01, 03, 06, not arrived, overdue."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            rows = await statistics.agency_report(
                conn, start=_period(start), end=_period(end), agency=agency)
        finally:
            await conn.close()
        if csv_path:
            with csv_path.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=list(statistics.COLUMNS))
                w.writeheader()
                for r in rows:
                    w.writerow(r.as_dict())
        if as_json:
            click.echo(json.dumps([r.as_dict() for r in rows], ensure_ascii=False, indent=2))
            return

        def s(v: float | None) -> str:
            return "-" if v is None else _delta(v).lstrip("+")

        table = Table("agency", "name", "sent", "recv", "acc", "ref", "done", "revk",
                      "t01 p50/p90", "t03 p50/p90", "t06 p50/p90", "not arr", "overdue",
                      title=f"{start} → {end}")
        for r in rows:
            table.add_row(r.agency, r.name[:40], str(r.sent), str(r.received), str(r.accepted),
                          str(r.refused), str(r.done), str(r.revoked),
                          f"{s(r.to_01_median_s)}/{s(r.to_01_p90_s)}",
                          f"{s(r.to_03_median_s)}/{s(r.to_03_p90_s)}",
                          f"{s(r.to_06_median_s)}/{s(r.to_06_p90_s)}",
                          str(r.not_arrived), str(r.overdue))
        Console().print(table)
        if csv_path:
            click.echo(f"wrote {len(rows)} rows to {csv_path}")

    run_async(go)


@click.command("deadlines")
@click.option("--not-arrived-after", default=15.0, show_default=True,
              help="Minutes a queued delivery may wait for its 01.")
@click.option("--watch", type=float, default=None,
              help="Sweep every N seconds until stopped (default: once).")
def deadlines(not_arrived_after: float, watch: float | None) -> None:
    """Flag deliveries not arrived in time and documents past their DueDate; tell senders.
    (Routers also sweep by themselves every LIENTHONG_SWEEP_SECONDS.)"""

    async def go(settings: Settings) -> None:

        from router import topology
        from router.outbox import publish as publishing

        conn = await connect_db(settings)
        connection = await amqp.connect_once(settings.amqp_url)
        try:
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(topology.RECEIPTS)
                while True:
                    res = await deadlines_lib.sweep(
                        conn, now=datetime.now(UTC),
                        not_arrived_after=timedelta(minutes=not_arrived_after))
                    await publishing.publish_all(
                        exchange,
                        [(publishing.receipt_message(r.receipt), r.gateway_id)
                         for r in res.receipts if r.gateway_id is not None],
                        mandatory=False,
                    )
                    click.echo(f"{datetime.now(VIETNAM):%H:%M:%S} flagged {res.not_arrived} "
                               f"not arrived, {res.overdue} overdue")
                    if watch is None:
                        return
                    await asyncio.sleep(watch)
        finally:
            await conn.close()

    run_async(go)
