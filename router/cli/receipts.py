"""``lienthong receipts replay``: a gateway's receipts rebuilt from the ledger.

Gateways replay over AMQP themselves (``GatewayClient.replay_receipts``); this command is
the operator's view of the same rebuild (:mod:`router.recovery.replay`): one receipt per
line (JSON, signed with ``LIENTHONG_HUB_KEY`` when set), oldest first, and on stderr the
cursor to go on from.
"""

from __future__ import annotations

from datetime import datetime

import click

from router.cli._services import connect_db, fail, run_async
from router.directory import lookup
from router.outbox.signing import hub_signer
from router.recovery.replay import PAGE_MAX, rebuild
from router.settings import Settings
from schemas.reasons import LienthongError

__all__ = ["receipts"]


@click.group()
def receipts() -> None:
    """Receipts and events the hub sent to gateways."""


@receipts.command("replay")
@click.option("--gateway", "gateway_id", required=True, help="The gateway's id.")
@click.option("--since", default=None,
              help="ISO 8601 time with a zone, e.g. 2026-11-21T04:00:00+07:00.")
@click.option("--after", default=None, help="A cursor printed by an earlier replay.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many receipts (default: all).")
def replay_cmd(gateway_id: str, since: str | None, after: str | None,
               limit: int | None) -> None:
    """Print the receipts of GATEWAY from --since (or after --after), one JSON per line."""
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            fail(f"--since {since!r} is not an ISO 8601 time")
            raise
        if start.tzinfo is None:
            fail("--since needs a time zone (e.g. +07:00 or Z)")
    if start is None and after is None:
        fail("give --since or --after")
    signer = hub_signer(Settings.from_env())

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            await lookup.require_gateway(conn, gateway_id)
            cursor, left, count = after, limit, 0
            while left is None or left > 0:
                page = await rebuild(conn, gateway_id, since=start if cursor is None else None,
                                     after=cursor, limit=min(left or PAGE_MAX, PAGE_MAX))
                for r in page.receipts:
                    click.echo((signer.sign(r) if signer else r).to_json().decode())
                count += len(page.receipts)
                cursor = page.cursor
                if left is not None:
                    left -= len(page.receipts)
                if not page.more:
                    break
            click.echo(f"{count} receipts; go on with --after '{cursor or ''}'", err=True)
        except LienthongError as err:
            fail(str(err), 2)
        finally:
            await conn.close()

    run_async(go)
