"""``lienthong db``: create the ledger database and apply migrations."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import click

from router import migrate as migrations
from router.cli._services import connect_db, run_async
from router.settings import Settings


@click.group()
def db() -> None:
    """The ledger database."""


@db.command("migrate")
@click.option("--create/--no-create", default=True, show_default=True,
              help="Create the database first when it does not exist.")
def migrate_cmd(create: bool) -> None:
    """Apply pending migrations (recorded; running it again is harmless)."""

    async def go(settings: Settings) -> None:
        if create and await migrations.ensure_database(settings.database_url):
            click.echo(f"created database {urlsplit(settings.database_url).path.lstrip('/')}")
        conn = await connect_db(settings)
        try:
            applied = await migrations.migrate(conn)
        finally:
            await conn.close()
        for m in applied:
            click.echo(f"applied {m.version}_{m.name}")
        if not applied:
            click.echo("ledger is up to date")

    run_async(go)


@db.command("status")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def status_cmd(as_json: bool) -> None:
    """List migrations and whether each is applied."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            done = await migrations.applied_versions(conn)
        finally:
            await conn.close()
        if as_json:
            click.echo(json.dumps([{"version": m.version, "name": m.name,
                                    "applied": m.version in done}
                                   for m in migrations.available()], indent=2))
            return
        for m in migrations.available():
            mark = "applied" if m.version in done else "pending"
            click.echo(f"{m.version}_{m.name}: {mark}")

    run_async(go)
