"""``lienthong vxp``: the façade serving the current axis's HTTP API (SDKVXP) to existing
gateways, and the systems allowed to use it. The façade itself lives in ``adapters.vxp``."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from router.cli._services import fail
from router.cli.exit_codes import EXIT_REJECTED, EXIT_UNREACHABLE
from router.cli.security import cli_actor
from router.logs import configure_logging
from router.settings import Settings

if TYPE_CHECKING:
    from adapters.vxp.store import Store
    from adapters.vxp.systems import AuditedSystems

T = TypeVar("T")


def _run(fn: Callable[[Settings], Awaitable[T]]) -> T:
    settings = Settings.from_env()
    try:
        return asyncio.run(fn(settings))  # type: ignore[arg-type]
    except ValueError as exc:  # a missing or wrong LIENTHONG_VXP_SECRET_KEY
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(
            f"cannot reach the façade's PostgreSQL ({settings.vxp_database_url}): {exc}"
        ) from exc


@click.group()
def vxp() -> None:
    """The current axis's HTTP API (cổng tương thích VXP) for gateways using the vendor SDK.

    State (systems, mailbox) lives in the façade's own database, LIENTHONG_VXP_DATABASE_URL;
    system secrets are encrypted with LIENTHONG_VXP_SECRET_KEY (`lienthong vxp new-key`).
    """


@vxp.command("new-key")
def new_key() -> None:
    """Print a new key for LIENTHONG_VXP_SECRET_KEY (keep it with the façade's config)."""
    from adapters.vxp.sealing import new_key as make

    click.echo(make())


@vxp.command("serve")
@click.option("--host", default=None, help="Address (default LIENTHONG_VXP_HOST, 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default LIENTHONG_VXP_PORT, 8090).")
def serve_cmd(host: str | None, port: int | None) -> None:
    """Serve the VXP API: {endpoint}/sendEdoc, getReceivedEdocList, getEdoc, ..."""
    from adapters.vxp import VxpConfig, serve

    async def go(settings: Settings) -> None:
        configure_logging(settings.log_level)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        state = Path(settings.vxp_state_dir) if settings.vxp_state_dir else None
        config = VxpConfig(max_package_bytes=settings.max_package_bytes,
                           large_threshold=settings.large_threshold_bytes,
                           max_large_bytes=settings.max_large_package_bytes,
                           timestamp_window_seconds=settings.vxp_timestamp_window_seconds,
                           max_inflight_bytes=4 * settings.max_package_bytes,
                           directory_path=(str(state / "directory.sqlite")
                                           if state else ":memory:"),
                           # large bodies and downloads pass through here, on disk
                           spool_dir=str(state / "spool") if state else None)
        h, p = host or settings.vxp_host, port or settings.vxp_port
        click.echo(f"VXP API on http://{h}:{p}/ (endpoint for the SDK)", err=True)
        await serve(settings.vxp_database_url, settings.vxp_secret_key, h, p, config, stop)

    _run(go)


@vxp.group()
@click.option("--hub-timeout", type=click.FloatRange(0.1, 600), default=15.0,
              show_default=True,
              help="Seconds to wait for the hub to record a change in its audit log.")
@click.pass_context
def systems(ctx: click.Context, hub_timeout: float) -> None:
    """Systems (systemId + secret) allowed to call the VXP API, each bound to a gateway.

    Every change (add, rotate-secret, mode, remove) is recorded in the hub's audit log,
    asked as the system's gateway, before it is kept: when the hub does not record it,
    nothing changes (exit 69)."""
    ctx.obj = hub_timeout


def _show_secret(system_id: str, gateway: str, secret: str, as_json: bool, verb: str) -> None:
    if as_json:
        click.echo(json.dumps({"system_id": system_id, "gateway": gateway, "secret": secret}))
        return
    click.echo(f"system {system_id} {verb} (gateway {gateway})")
    click.echo(f"  secret: {secret}   (shown once: give it to the system now / chỉ hiện một lần)")


def _audited(fn: Callable[[Settings], Awaitable[T]]) -> T:
    """Run a system change: each is recorded in the hub's audit log before it is kept
    (adapters.vxp.systems); when the hub does not record it, nothing changes and the
    command fails with its own exit code and a bilingual message."""
    from adapters import HubRefused
    from adapters.vxp.systems import ChangeNotAudited

    try:
        return _run(fn)
    except ChangeNotAudited as exc:
        r = exc.reason
        fail(f"{r.name} ({r.code}): {r.message_vi}\n  {r.message_en}\n  ({exc.detail})",
             EXIT_UNREACHABLE)
        raise  # fail() exits
    except HubRefused as exc:
        r = exc.reason
        fail(f"{r.name} ({r.code}): {r.message_vi} / {r.message_en} ({exc.detail})\n"
             "  không có gì bị thay đổi / nothing was changed", EXIT_REJECTED)
        raise
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc


def _systems(store: Store) -> AuditedSystems:
    from adapters.vxp.systems import AuditedSystems

    timeout = click.get_current_context().find_object(float)
    return AuditedSystems(store, by=cli_actor(), timeout=timeout or 15.0)


@systems.command("add")
@click.argument("system_id")
@click.option("--gateway", "gateway_id", required=True, help="The gateway it sends as.")
@click.option("--amqp-url", envvar="LIENTHONG_VXP_GATEWAY_URL", default=None,
              help="The gateway's AMQP URL with its password (from `lienthong gateways add`); "
                   "needed once per gateway, stored encrypted.")
@click.option("--strict", is_flag=True,
              help="Refuse stale timestamps and replays (clients that re-sign each request).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.option("--no-check", is_flag=True,
              help="Store --amqp-url without first logging in with it as the gateway.")
def add(system_id: str, gateway_id: str, amqp_url: str | None, strict: bool,
        as_json: bool, no_check: bool) -> None:
    """Register SYSTEM_ID; prints its secret once. Recorded in the hub's audit log
    (vxp.system.added) before it is kept: the hub must be reachable."""
    from adapters.vxp import open_store
    from adapters.vxp.sealing import new_secret

    async def go(settings: Settings) -> str:
        if amqp_url and not no_check:
            await _check_gateway(amqp_url, gateway_id)
        async with open_store(settings.vxp_database_url, settings.vxp_secret_key) as store:
            secret = new_secret()
            if not await _systems(store).add(system_id, gateway_id, secret, strict=strict,
                                             amqp_url=amqp_url or None):
                raise click.ClickException(f"system {system_id} exists (rotate-secret?)")
            return secret

    _show_secret(system_id, gateway_id, _audited(go), as_json, "added")


async def _check_gateway(amqp_url: str, gateway_id: str) -> None:
    """Log in as the gateway and find its queues, so a wrong URL is caught now (its
    receipts stay in its queue: this client does not take them)."""
    from adapters import GatewayClient

    client = GatewayClient(amqp_url, gateway_id=gateway_id, take_receipts=False)
    try:
        await asyncio.wait_for(client.connect(), 15.0)
    except Exception as exc:
        raise click.ClickException(
            f"cannot log in to the axis as gateway {gateway_id} with --amqp-url "
            f"({type(exc).__name__}: {exc}) / không đăng nhập được vào trục với --amqp-url"
        ) from exc
    finally:
        await client.close()


@systems.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def list_cmd(as_json: bool) -> None:
    """The registered systems (never their secrets)."""
    from adapters.vxp import open_store

    async def go(settings: Settings) -> list[dict[str, object]]:
        async with open_store(settings.vxp_database_url, settings.vxp_secret_key) as store:
            return await store.systems()

    rows = _run(go)
    if as_json:
        click.echo(json.dumps(rows, default=str))
        return
    for r in rows:
        mode = "strict" if r["strict"] else "compatible"
        click.echo(f"{r['system_id']}  gateway={r['gateway_id']}  mode={mode}  "
                   f"created={r['created_at']:%Y-%m-%d %H:%M}  "
                   f"rotated={r['rotated_at'] or '-'}")


@systems.command("rotate-secret")
@click.argument("system_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def rotate(system_id: str, as_json: bool) -> None:
    """A new secret for SYSTEM_ID (printed once); the old one stops working at once.
    Recorded in the hub's audit log (its fingerprint, never the secret)."""
    from adapters.vxp import open_store
    from adapters.vxp.sealing import new_secret

    async def go(settings: Settings) -> tuple[str, str]:
        async with open_store(settings.vxp_database_url, settings.vxp_secret_key) as store:
            secret = new_secret()
            gateway = await _systems(store).rotate_secret(system_id, secret)
            if gateway is None:
                raise click.ClickException(f"no system {system_id}")
            return gateway, secret

    gateway, secret = _audited(go)
    _show_secret(system_id, gateway, secret, as_json, "has a new secret")


@systems.command("mode")
@click.argument("system_id")
@click.argument("mode", type=click.Choice(["compatible", "strict"]))
def mode_cmd(system_id: str, mode: str) -> None:
    """compatible (the SDK's frozen timestamp accepted) or strict (fresh, no replays).
    Recorded in the hub's audit log."""
    from adapters.vxp import open_store

    async def go(settings: Settings) -> bool:
        async with open_store(settings.vxp_database_url, settings.vxp_secret_key) as store:
            changed = await _systems(store).set_mode(system_id, mode == "strict")
            if changed is None:
                raise click.ClickException(f"no system {system_id}")
            return changed

    changed = _audited(go)
    click.echo(f"system {system_id}: {mode}" + ("" if changed else " (unchanged)"))


@systems.command("remove")
@click.argument("system_id")
def remove(system_id: str) -> None:
    """Remove SYSTEM_ID: its requests fail with code 15 from now on. Recorded in the
    hub's audit log."""
    from adapters.vxp import open_store

    async def go(settings: Settings) -> None:
        async with open_store(settings.vxp_database_url, settings.vxp_secret_key) as store:
            if not await _systems(store).remove(system_id):
                raise click.ClickException(f"no system {system_id}")

    _audited(go)
    click.echo(f"system {system_id} removed")


@vxp.group()
def mailbox() -> None:
    """The façade's mailbox (copies taken from the gateways' inboxes)."""


@mailbox.command("purge")
@click.option("--days", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Forget copies marked done more than this many days ago.")
def purge(days: float) -> None:
    """Delete copies marked done long ago (pending copies are never deleted)."""
    from adapters.vxp import open_store

    async def go(settings: Settings) -> int:
        async with open_store(settings.vxp_database_url, settings.vxp_secret_key) as store:
            return await store.purge_done(days)

    click.echo(f"{_run(go)} copies purged")
