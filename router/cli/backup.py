"""``lienthong backup`` and ``lienthong restore``: the ledger and the broker definitions of
one hub, for the drill in deploy/README.md."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from router.cli._services import fail, run_async
from router.recovery import backup as backup_lib
from router.settings import Settings
from schemas.reasons import LienthongError

_actor = click.option("--actor", default=lambda: f"cli:{getpass.getuser()}",
                      show_default="cli:<your login>", help="Recorded in the audit log.")
EXIT_REFUSED = 65  # EX_DATAERR


def _refuse(exc: LienthongError) -> None:
    r = exc.reason
    fail(f"{r.message_vi} / {r.message_en} ({r.name}, {r.code}): {exc.detail}", EXIT_REFUSED)


@click.command("backup")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@_actor
def backup(directory: Path, actor: str) -> None:
    """Back up the ledger (pg_dump) and the vhost's broker definitions into DIRECTORY
    (sao lưu sổ cái và cấu hình RabbitMQ)."""

    async def go(settings: Settings) -> None:
        try:
            m = await backup_lib.backup(settings, directory, actor=actor)
        except LienthongError as exc:
            _refuse(exc)
            return
        click.echo(f"backup {directory}: vhost {m.vhost}, database {m.database}")
        click.echo(f"  ledger: {m.ledger['documents']} documents, {m.ledger['deliveries']} "
                   f"deliveries ({m.ledger['deliveries_queued']} queued)")
        click.echo(f"  broker: {m.broker['queues']} queues, {m.broker['users']} users")

    run_async(go)


@click.command("restore")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@_actor
def restore(directory: Path, actor: str) -> None:
    """Restore a backup into LIENTHONG_DATABASE_URL (a new or empty database) and the vhost
    of LIENTHONG_AMQP_URL (phục hồi). Then run `lienthong redeliver --state queued --yes`."""

    async def go(settings: Settings) -> None:
        try:
            m = await backup_lib.restore(settings, directory, actor=actor)
        except LienthongError as exc:
            _refuse(exc)
            return
        click.echo(f"restored {directory} (taken {m.created_at}) into vhost {settings.vhost}")
        click.echo(f"  {m.ledger['deliveries_queued']} deliveries were queued: send them "
                   "again with `lienthong redeliver --state queued --yes`")

    run_async(go)
