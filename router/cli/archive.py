"""``lienthong archive``: package bodies of old documents out of the ledger's hot table."""

from __future__ import annotations

import getpass
from datetime import timedelta
from pathlib import Path

import asyncpg
import click

from router.cli._services import fail, run_async
from router.recovery import archive as archive_lib
from router.settings import Settings
from schemas.reasons import Reason

_actor = click.option("--actor", default=lambda: f"cli:{getpass.getuser()}",
                      show_default="cli:<your login>", help="Recorded in the audit log.")
EXIT_BAD = 65  # EX_DATAERR


@click.group()
def archive() -> None:
    """Archive package bodies (lưu trữ nội dung gói tin cũ ra tệp, giữ mã băm SHA-256)."""


@archive.command("run")
@click.option("--older-than-days", type=click.FloatRange(min=0), required=True,
              help="Documents received more than this many days ago.")
@click.option("--to", "root", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="The archive directory (files DIR/YYYY/MM/<hub id>.edxml); back it up.")
@_actor
def run(older_than_days: float, root: Path, actor: str) -> None:
    """Move the bodies of old documents into files; the ledger keeps hash, size and path."""
    absolute = root.resolve()

    async def go(settings: Settings) -> None:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            result = await archive_lib.archive(
                pool, absolute, older_than=timedelta(days=older_than_days), actor=actor)
        finally:
            await pool.close()
        click.echo(f"archived {result.archived} package bodies ({result.bytes} bytes) to "
                   f"{root}")
        if result.altered:
            r = Reason.ARCHIVE_SOURCE_ALTERED
            fail(f"{r.message_vi} / {r.message_en} ({r.name}, {r.code}): "
                 f"{', '.join(result.altered[:20])}", EXIT_BAD)

    run_async(go)


@archive.command("verify")
def verify() -> None:
    """Re-read every archived body and compare it with the ledger's SHA-256."""

    async def go(settings: Settings) -> None:
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            result = await archive_lib.verify(pool)
        finally:
            await pool.close()
        click.echo(f"{result.checked} archived bodies checked, {len(result.bad)} bad")
        if result.bad:
            r = Reason.ARCHIVED_BODY_UNREADABLE
            for hub_id, what in result.bad[:100]:
                click.echo(f"  {hub_id}: {what}", err=True)
            fail(f"{r.message_vi} / {r.message_en} ({r.name}, {r.code})", EXIT_BAD)

    run_async(go)
