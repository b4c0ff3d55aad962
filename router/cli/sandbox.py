"""``lienthong sandbox``: a throwaway hub for gateway developers (router/sandbox.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from pathlib import Path

import asyncpg
import click

from router import sandbox
from router.broker_admin import BrokerAdmin
from router.cli._services import fail, run_async
from router.processes import RouterProcesses
from router.settings import Settings

__all__ = ["sandbox_group"]

_state = click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
                      default=Path("lienthong-sandbox.json"), show_default=True,
                      help="Where the sandbox's credentials are kept.")


@click.group("sandbox")
def sandbox_group() -> None:
    """A throwaway hub for gateway developers, with faults to switch on.
    Trục thử nghiệm cho người phát triển hệ thống kết nối."""


@sandbox_group.command("up")
@_state
@click.option("--routers", default=1, show_default=True, help="Router processes to run.")
def up(state_path: Path, routers: int) -> None:
    """Recreate the sandbox (vhost and database lienthong_sandbox), print the gateways'
    credentials, run the routers until Ctrl-C."""

    async def go(base: Settings) -> Settings:
        settings = sandbox.sandbox_settings(base)
        async with BrokerAdmin(settings.management_url) as admin:
            await sandbox.prepare(settings, admin)
            pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=4)
            try:
                gateways = await sandbox.populate(settings, pool, admin)
            finally:
                await pool.close()
        sandbox.write_state(state_path, gateways)
        for g in gateways.values():
            click.echo(f"{g.gateway_id:9} agency {g.agency}  {g.url}")
        click.echo(f"credentials in {state_path}; faults: lienthong sandbox fault "
                   f"{{{','.join(sandbox.FAULTS)}}}")
        return settings

    settings = run_async(go)
    log = Path(tempfile.gettempdir()) / "lienthong-sandbox-routers.log"
    procs = RouterProcesses(settings, routers, log_path=log)
    click.echo(f"{routers} router(s) running (log {log}); Ctrl-C stops the sandbox")
    try:
        asyncio.run(_until_stopped())
    finally:
        procs.stop()


async def _until_stopped() -> None:
    """Until Ctrl-C or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@sandbox_group.command("fault")
@click.argument("kind", type=click.Choice(sandbox.FAULTS))
@_state
def fault_cmd(kind: str, state_path: Path) -> None:
    """Switch on a fault in the running sandbox (see `lienthong sandbox --help`)."""
    if not state_path.exists():
        fail(f"{state_path} not found: run `lienthong sandbox up` first", 2)

    async def go(base: Settings) -> dict[str, object]:
        settings = sandbox.sandbox_settings(base)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            async with BrokerAdmin(settings.management_url) as admin:
                return await sandbox.fault(settings, pool, admin,
                                           sandbox.read_state(state_path), kind)
        except LookupError as exc:
            fail(str(exc), 2)
            raise
        finally:
            await pool.close()

    click.echo(json.dumps(run_async(go), ensure_ascii=False, indent=2, default=str))
