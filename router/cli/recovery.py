"""``lienthong parking`` and ``lienthong redeliver``: failures, in bulk and safely."""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from router import amqp
from router.cli._services import connect_db, fail, run_async
from router.recovery import parking as parking_lib
from router.recovery import redelivery
from router.settings import Settings
from router.topology import DELIVER, RECEIPTS

_actor = click.option("--actor", default=lambda: f"cli:{getpass.getuser()}",
                      show_default="cli:<your login>", help="Recorded in the audit log.")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, uuid.UUID | datetime):
        return str(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return f"<{len(bytes(v))} bytes>"
    return v


@click.group()
def parking() -> None:
    """Parked messages: poison submissions and copies gateways refused (khu cách ly)."""


def _parked_filter(state: str | None, gateway: str | None, reason: str | None,
                   since: str | None, until: str | None, ids: tuple[str, ...],
                   limit: int) -> parking_lib.ParkedFilter:
    return parking_lib.ParkedFilter(
        state=None if state == "all" else state, gateway=gateway, reason=reason,
        since=_dt(since), until=_dt(until), ids=tuple(uuid.UUID(i) for i in ids), limit=limit,
    )


_filters = [
    click.option("--state", default="parked", show_default=True,
                 type=click.Choice(["parked", "requeued", "dropped", "all"])),
    click.option("--gateway", help="Sender gateway (submissions) or recipient (copies)."),
    click.option("--reason", help="Reason name, e.g. POISON or UNDELIVERABLE."),
    click.option("--since", help="ISO time, e.g. 2026-11-21T08:00"),
    click.option("--until", help="ISO time."),
    click.option("--limit", default=100, show_default=True),
]


def _with_filters(f: Any) -> Any:
    for opt in reversed(_filters):
        f = opt(f)
    return f


@parking.command("list")
@_with_filters
@click.option("--json", "as_json", is_flag=True)
def parking_list(state: str, gateway: str | None, reason: str | None, since: str | None,
                 until: str | None, limit: int, as_json: bool) -> None:
    """List parked messages."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            rows = await parking_lib.list_parked(
                conn, _parked_filter(state, gateway, reason, since, until, (), limit))
        finally:
            await conn.close()
        if as_json:
            click.echo(json.dumps([{k: _jsonable(v) for k, v in r.items()} for r in rows],
                                  ensure_ascii=False, indent=2))
            return
        table = Table("id", "parked at", "reason", "gateway", "queue", "size", "state", "error")
        for r in rows:
            table.add_row(str(r["id"]), f"{r['parked_at']:%Y-%m-%d %H:%M:%S}", r["reason"],
                          r["gateway_id"] or "-", r["source_queue"] or "-", str(r["size"]),
                          r["state"], (r["error"] or "")[:60])
        Console().print(table)
        click.echo(f"{len(rows)} message(s)")

    run_async(go)


@parking.command("show")
@click.argument("parked_id", type=click.UUID)
def parking_show(parked_id: uuid.UUID) -> None:
    """Everything about one parked message (the package is printed as text)."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            row = await parking_lib.show(conn, parked_id)
        finally:
            await conn.close()
        if row is None:
            fail(f"no parked message {parked_id}", 2)
            return
        body = bytes(row.pop("body"))
        click.echo(json.dumps({k: _jsonable(v) for k, v in row.items()}, ensure_ascii=False,
                              indent=2, default=str))
        click.echo("--- package ---")
        click.echo(body.decode("utf-8", "replace")[:20000])

    run_async(go)


@parking.command("requeue")
@click.argument("ids", nargs=-1, type=click.UUID)
@click.option("--all-matching", is_flag=True, help="Requeue everything the filters match.")
@_with_filters
@_actor
def parking_requeue(ids: tuple[uuid.UUID, ...], all_matching: bool, state: str,
                    gateway: str | None, reason: str | None, since: str | None,
                    until: str | None, limit: int, actor: str) -> None:
    """Send parked messages back: submissions through normal validation, copies to
    their gateway's inbox (same message id: a gateway that has it drops it)."""
    if not ids and not all_matching:
        fail("name message ids, or use --all-matching with filters", 2)

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        connection = await amqp.connect_once(settings.amqp_url)
        try:
            chosen = list(ids)
            if all_matching:
                rows = await parking_lib.list_parked(
                    conn, _parked_filter("parked", gateway, reason, since, until, (), limit))
                chosen += [r["id"] for r in rows]
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                hub_user = unquote(urlsplit(settings.amqp_url).username or "guest")
                n = await parking_lib.requeue(conn, channel, chosen, actor=actor,
                                              hub_user=hub_user)
        finally:
            await conn.close()
        click.echo(f"requeued {n} message(s)")

    run_async(go)


@parking.command("drop")
@click.argument("ids", nargs=-1, type=click.UUID, required=True)
@click.option("--why", required=True, help="Why it is dropped (kept in the audit log).")
@_actor
def parking_drop(ids: tuple[uuid.UUID, ...], why: str, actor: str) -> None:
    """Mark parked messages dropped, with who and why. Nothing is deleted."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            n = await parking_lib.drop(conn, list(ids), actor=actor, why=why)
        finally:
            await conn.close()
        click.echo(f"dropped {n} message(s)")

    run_async(go)


@click.command("redeliver")
@click.option("--state", "states", multiple=True, default=redelivery.DEFAULT_STATES,
              show_default=True, type=click.Choice(list(redelivery.REDELIVERABLE)),
              help="Delivery state to match (repeatable).")
@click.option("--recipient", help="Recipient agency code or alias.")
@click.option("--gateway", help="Recipient gateway id.")
@click.option("--sender", help="Sender agency code or alias.")
@click.option("--reason-code", type=int, help="Last failure reason code (e.g. 5001).")
@click.option("--since", help="Deliveries created at or after (ISO time).")
@click.option("--until", help="Deliveries created before (ISO time).")
@click.option("--not-arrived", is_flag=True, help="Only deliveries flagged not arrived.")
@click.option("--id", "delivery_ids", multiple=True, type=click.UUID,
              help="Explicit delivery id (repeatable).")
@click.option("--document", "hub_ids", multiple=True, type=click.UUID,
              help="All deliveries of this hub id (repeatable).")
@click.option("--dry-run", is_flag=True, help="Only show counts per recipient and a sample.")
@click.option("--rate", type=float, help="At most this many copies per second.")
@click.option("--resume", "resume", type=click.UUID, help="Resume an interrupted job.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_actor
def redeliver(states: tuple[str, ...], recipient: str | None, gateway: str | None,
              sender: str | None, reason_code: int | None, since: str | None,
              until: str | None, not_arrived: bool, delivery_ids: tuple[uuid.UUID, ...],
              hub_ids: tuple[uuid.UUID, ...], dry_run: bool, rate: float | None,
              resume: uuid.UUID | None, yes: bool, actor: str) -> None:
    """Re-deliver copies in bulk (gửi lại hàng loạt). Every job is recorded and resumable;
    copies keep their message id so gateways that have them drop them."""
    console = Console()
    try:
        flt = redelivery.RedeliveryFilter(
            states=tuple(states), recipient=recipient, gateway=gateway, sender=sender,
            reason_code=reason_code, since=_dt(since), until=_dt(until),
            not_arrived=not_arrived, delivery_ids=delivery_ids, hub_ids=hub_ids,
        )
    except ValueError as exc:
        fail(str(exc), 2)
        return

    async def go(settings: Settings) -> None:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            if resume is None:
                async with pool.acquire() as conn:
                    pv = await redelivery.preview(conn, flt)
                table = Table("recipient", "name", "gateway", "deliveries",
                              title=f"{pv.total} deliveries match")
                for r in pv.per_recipient[:30]:
                    table.add_row(r["agency"], r["name"], r["gateway"], str(r["count"]))
                console.print(table)
                for s in pv.sample:
                    console.print(f"  e.g. {s['delivery_id']} {s['document_id']} → "
                                  f"{s['recipient']} ({s['state']})", highlight=False)
                if dry_run or pv.total == 0:
                    return
                if not yes and not click.confirm(f"Re-deliver {pv.total} deliveries?"):
                    return
            connection = await amqp.connect(settings.amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(DELIVER)
                receipts = await channel.get_exchange(RECEIPTS)
                with Progress("[progress.description]{task.description}", BarColumn(),
                              MofNCompleteColumn(), TimeRemainingColumn(),
                              console=console) as bar:
                    task = bar.add_task("re-delivering", total=None)

                    def show(job: redelivery.RedeliveryJob) -> None:
                        bar.update(task, total=job.total, completed=job.done)

                    job = await redelivery.run(pool, exchange, flt, actor=actor, rate=rate,
                                               resume=resume, progress=show,
                                               receipts=receipts)
            console.print(
                f"job {job.id}: {job.state}, {job.done} re-delivered ({job.queued} queued, "
                f"{job.undeliverable} undeliverable) in {job.elapsed:.1f} s", highlight=False)
        finally:
            await pool.close()

    try:
        run_async(go)
    except KeyboardInterrupt:
        console.print("interrupted: resume with --resume <job id> (see the job id above)")
        raise SystemExit(130) from None


