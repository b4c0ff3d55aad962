"""``lienthong agencies`` and ``lienthong gateways``: the directory."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from router import topology
from router.broker_admin import BrokerAdmin
from router.cli._services import connect_db, fail, run_async
from router.cli.exit_codes import EXIT_NOT_FOUND, EXIT_REJECTED
from router.cli.security import cli_actor as _actor
from router.directory import lookup
from router.directory import registry as directory
from router.directory.provision import ensure_core, provision_gateway
from router.settings import Settings
from schemas.reasons import LienthongError


@click.group()
def agencies() -> None:
    """Agencies (cơ quan) and their codes."""


@agencies.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_cmd(csv_file: Path) -> None:
    """Import agencies from CSV with columns code,name,parent,aliases,gateway
    (aliases separated by '|'). Re-importing updates; nothing is deleted (see `agencies
    remove`). Every change is published to the directory feed."""

    async def go(settings: Settings) -> None:
        try:
            rows = directory.read_agencies_csv(csv_file)
        except ValueError as exc:
            fail(str(exc), EXIT_REJECTED)
        conn = await connect_db(settings)
        try:
            result = await directory.import_agencies(conn, rows, actor=_actor())
            gateways = await lookup.gateway_ids(conn)
            async with BrokerAdmin(settings.management_url) as admin:
                for gid in gateways:
                    await directory.sync_gateway_permissions(conn, admin, settings.vhost, gid)
        except LienthongError as exc:
            fail(f"{exc.reason.name}: {exc.reason.message_en} / {exc.reason.message_vi}"
                 f" ({exc.detail})", EXIT_REJECTED)
        finally:
            await conn.close()
        click.echo(
            f"{result.created} created, {result.updated} updated, {result.aliases} codes "
            f"and aliases"
        )
        if result.unassigned:
            click.echo(f"{len(result.unassigned)} agencies have no gateway yet: "
                       + ", ".join(result.unassigned[:10])
                       + (" ..." if len(result.unassigned) > 10 else ""))

    run_async(go)


@agencies.command("remove")
@click.argument("code")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_agency(code: str, yes: bool) -> None:
    """Remove an agency (by its code or an alias): nothing routes to it any more and the
    directory feed publishes it as deleted. Its documents stay; importing it again brings
    it back."""
    if not yes:
        click.confirm(f"remove agency {code}?", abort=True)

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            removed = await directory.remove_agency(conn, code, actor=_actor())
            gateways = await lookup.gateway_ids(conn)
            async with BrokerAdmin(settings.management_url) as admin:
                for gid in gateways:
                    await directory.sync_gateway_permissions(conn, admin, settings.vhost, gid)
        except LienthongError as exc:
            fail(f"{exc.reason.name}: {exc.reason.message_en} / {exc.reason.message_vi}"
                 f" ({exc.detail})", 2)
            return
        finally:
            await conn.close()
        click.echo(f"agency {removed}: removed")

    run_async(go)


@agencies.command("show")
@click.argument("code")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def show_agency(code: str, as_json: bool) -> None:
    """Resolve a code or alias to its agency."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            row = await lookup.agency_by_alias(conn, code)
        finally:
            await conn.close()
        if row is None:
            fail(f"no agency is known by {code}", EXIT_NOT_FOUND)
            return
        if as_json:
            click.echo(json.dumps(
                {k: row[k] for k in ("code", "name", "parent_code", "gateway_id", "status")}
                | {"aliases": list(row["aliases"])}, ensure_ascii=False, indent=2))
            return
        click.echo(f"{row['code']}  {row['name']}")
        click.echo(f"  aliases: {', '.join(row['aliases'])}")
        click.echo(f"  parent:  {row['parent_code'] or '-'}")
        click.echo(f"  gateway: {row['gateway_id'] or '-'}   status: {row['status']}")

    run_async(go)


@click.group()
def gateways() -> None:
    """Gateways (hệ thống kết nối): AMQP accounts and their queues."""


@gateways.command("add")
@click.argument("gateway_id")
@click.option("--name", required=True, help="Display name, e.g. 'Văn phòng Chính phủ'.")
@click.option("--kind", default="agency", show_default=True,
              type=click.Choice(["ministry", "province-platform", "agency", "enterprise"]))
@click.option("--serves", "serves", multiple=True, metavar="CODE_OR_PATTERN",
              help="Agency code or pattern (#.H47 = the whole tree of H47). Repeatable.")
@click.option("--password", envvar="LIENTHONG_GATEWAY_PASSWORD", default=None,
              help="Set this password instead of generating one.")
def add_gateway(gateway_id: str, name: str, kind: str, serves: tuple[str, ...],
                password: str | None) -> None:
    """Register a gateway, create its AMQP user and queues; prints its password once."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            async with BrokerAdmin(settings.management_url) as admin:
                await ensure_core(settings, admin)
                creds = await provision_gateway(
                    settings, conn, admin, gateway_id, name=name, kind=kind, serves=serves,
                    password=password, actor=_actor(),
                )
        except ValueError as exc:
            fail(str(exc), EXIT_REJECTED)
            return
        finally:
            await conn.close()
        click.echo(f"gateway {creds.gateway_id} ready")
        click.echo(f"  AMQP user:     {creds.user}")
        click.echo(f"  AMQP password: {creds.password}   (shown once: store it now)")
        click.echo(f"  publish to:    exchange {topology.SUBMIT}, routing key = sender code")
        click.echo(f"  consume:       {topology.inbox_queue(gateway_id)}, "
                   f"{topology.receipts_queue(gateway_id)}")

    run_async(go)


def _status_command(name: str, status: str, help_text: str) -> None:
    @gateways.command(name, help=help_text)
    @click.argument("gateway_id")
    def cmd(gateway_id: str) -> None:
        async def go(settings: Settings) -> None:
            conn = await connect_db(settings)
            try:
                async with BrokerAdmin(settings.management_url) as admin:
                    await directory.set_gateway_status(
                        conn, admin, settings.vhost, gateway_id, status, actor=_actor()
                    )
            except LienthongError as exc:
                fail(f"{exc.reason.name}: {exc.detail}", EXIT_REJECTED)
            finally:
                await conn.close()
            click.echo(f"gateway {gateway_id}: {status}")

        run_async(go)


_status_command("suspend", "suspended",
                "Suspend a gateway: its AMQP permissions are removed, connections closed.")
_status_command("resume", "active", "Resume a suspended gateway.")


@gateways.command("remove")
@click.argument("gateway_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove_gateway(gateway_id: str, yes: bool) -> None:
    """Remove a gateway: its AMQP user is deleted, its agencies unassigned (its row and
    queues stay, for the record)."""
    if not yes:
        click.confirm(f"remove gateway {gateway_id}?", abort=True)

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            async with BrokerAdmin(settings.management_url) as admin:
                freed = await directory.remove_gateway(
                    conn, admin, settings.vhost, gateway_id, actor=_actor()
                )
        except LienthongError as exc:
            fail(f"{exc.reason.name}: {exc.detail}", EXIT_REJECTED)
            return
        finally:
            await conn.close()
        click.echo(f"gateway {gateway_id}: removed ({freed} agencies unassigned)")

    run_async(go)


@gateways.command("set")
@click.argument("gateway_id")
@click.option("--manage-agencies", type=click.Choice(["on", "off"]), required=True,
              help="on: the gateway may register and delete agencies itself (VXP "
                   "registerAgency/deleteAgency), only codes its --serves covers.")
def set_gateway(gateway_id: str, manage_agencies: str) -> None:
    """Change what a gateway may do itself (audited with the value before and after)."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            before = await directory.set_agency_management(
                conn, gateway_id, manage_agencies == "on", actor=_actor())
        except LienthongError as exc:
            fail(f"{exc.reason.name}: {exc.reason.message_vi} / {exc.reason.message_en}"
                 f" ({exc.detail})", EXIT_NOT_FOUND)
            return
        finally:
            await conn.close()
        was = "on" if before else "off"
        click.echo(f"gateway {gateway_id}: manage-agencies {manage_agencies}"
                   + ("" if was != manage_agencies else " (unchanged)"))

    run_async(go)


@gateways.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def list_gateways(as_json: bool) -> None:
    """Gateways with the number of agencies each serves."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            rows = await lookup.gateway_summaries(conn)
        finally:
            await conn.close()
        if as_json:
            click.echo(json.dumps(
                [{"id": r["id"], "name": r["name"], "kind": r["kind"], "status": r["status"],
                  "serves": list(r["serves"]), "agencies": r["agencies"],
                  "manage_agencies": r["manage_agencies"]} for r in rows],
                ensure_ascii=False, indent=2))
            return
        table = Table("id", "name", "kind", "status", "serves", "agencies", "manages agencies")
        for r in rows:
            table.add_row(r["id"], r["name"], r["kind"], r["status"], " ".join(r["serves"]),
                          str(r["agencies"]), "on" if r["manage_agencies"] else "off")
        Console().print(table)

    run_async(go)


def _attach_rotation() -> None:
    from router.cli.security import rotate_credentials_cmd

    gateways.add_command(rotate_credentials_cmd, "rotate-credentials")


_attach_rotation()
