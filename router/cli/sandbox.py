"""``lienthong sandbox``: a throwaway hub for gateway developers (router.sandbox)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from router.cli._services import explain, fail, fail_with
from router.settings import Settings
from schemas.reasons import LienthongError

T = TypeVar("T")

_name = click.option("--name", default="dev", show_default=True,
                     help="Which sandbox (several may run side by side).")
_folder = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                       default=None, hidden=True,
                       help="Where the sandboxes' state files live (default: a private "
                            "folder of the temporary directory).")


def _run(coro: Coroutine[Any, Any, T], settings: Settings | None = None) -> T:
    try:
        return asyncio.run(coro)
    except LienthongError as exc:
        r = exc.reason
        fail(f"{r.name} ({r.code}): {r.message_vi} / {r.message_en}: {exc.detail}", 2)
        raise  # not reached
    except Exception as exc:
        failure = explain(exc, settings)
        if failure is not None:
            fail_with(failure)
        raise


def _dir(folder: Path | None) -> Path:
    from router.sandbox import state_dir

    if folder is None:
        return state_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


@click.group("sandbox")
def sandbox() -> None:
    """A throwaway hub to build a gateway against: test gateways, faults on demand.
    / Môi trường thử nghiệm cho người phát triển cổng kết nối."""


@sandbox.command("up")
@_name
@_folder
@click.option("--routers", default=1, show_default=True, type=click.IntRange(1, 8))
@click.option("--json", "as_json", is_flag=True, help="Print the credentials as JSON.")
def up(name: str, state_dir: Path | None, routers: int, as_json: bool) -> None:
    """Start sandbox NAME (its own vhost, database and routers; a sandbox of the same name
    is replaced) and print its gateways' credentials."""
    from router.sandbox import sandbox_up

    base = Settings.from_env()
    state = _run(sandbox_up(base, name, _dir(state_dir), routers=routers,
                            say=lambda line: click.echo(line, err=True)), base)
    if as_json:
        click.echo(json.dumps(state.public(), ensure_ascii=False, indent=2))
        return
    click.echo(f"sandbox {name!r} is up / môi trường thử nghiệm đã chạy: vhost {state.vhost}, "
               f"database {state.database}")
    click.echo(f"receipts are signed with the key whose public half is {state.hub_key}.pub")
    for gid, gw in state.gateways.items():
        click.echo(f"  {gid:12} agency {gw['agency']:14} {gw['agency_name']}\n"
                   f"  {'':12} {gw['url']}")
    click.echo(f"faults: lienthong sandbox fault KIND --gateway ID --name {name}  "
               "(delay, duplicate, disconnect, reject, revoke, recall, clear)\n"
               f"check a gateway: LIENTHONG_AMQP_URL={state.amqp_url} LIENTHONG_DATABASE_URL="
               f"{state.database_url} LIENTHONG_AMQP_USER_PREFIX={state.user_prefix} "
               f"lienthong conformance --gateway gw-a --counterpart "
               f"conformance --password {state.gateways['conformance']['password']}\n"
               f"remove it: lienthong sandbox down --name {name}")


@sandbox.command("fault")
@click.argument("kind", type=click.Choice(
    ["delay", "duplicate", "disconnect", "reject", "revoke", "recall", "clear"]))
@click.option("--gateway", "gateway_id", required=True, help="The gateway the fault hits.")
@click.option("--seconds", default=10.0, show_default=True, help="delay: how long.")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 1000),
              help="duplicate: how many of the last copies.")
@_name
@_folder
def fault_cmd(kind: str, gateway_id: str, seconds: float, count: int, name: str,
              state_dir: Path | None) -> None:
    """Switch a fault on for a gateway of the sandbox (clear: delay and reject off)."""
    from router.sandbox import fault, load_state

    folder = _dir(state_dir)

    async def go() -> str:
        state = load_state(name, folder)
        return await fault(state, folder, kind, gateway_id, seconds=seconds, count=count)

    click.echo(_run(go()))


@sandbox.command("down")
@_name
@_folder
def down(name: str, state_dir: Path | None) -> None:
    """Stop sandbox NAME's routers and remove its vhost, users, database and files."""
    from router.sandbox import sandbox_down

    _run(sandbox_down(name, _dir(state_dir), say=click.echo))
