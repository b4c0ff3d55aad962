"""``lienthong watch``: a gateway's watch folder (see ``adapters.watchfolder``)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from router.cli.gateway import _gateway, _password, gateway_url
from router.logs import configure_logging
from router.settings import Settings


@click.command("watch")
@_gateway
@_password
@click.option("--dir", "root", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The folder: outbox/, sent/, failed/, inbox/ are created in it.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 60),
              help="Seconds between looks at outbox/.")
def watch(gateway_id: str, password: str, root: Path, interval: float) -> None:
    """Send what is written (then renamed) into DIR/outbox/; write what arrives into
    DIR/inbox/ (thư mục trao đổi cho phần mềm chỉ làm việc với tệp)."""
    from adapters import GatewayClient
    from adapters.watchfolder import WatchFolder

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    root.mkdir(parents=True, exist_ok=True)
    seen = WatchFolder.seen_copies(root)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        url = gateway_url(settings, gateway_id, password)
        async with GatewayClient(url, gateway_id=gateway_id, seen=seen) as gw:
            click.echo(f"watching {root} as gateway {gateway_id}", err=True)
            await WatchFolder(gw, root, interval=interval).run(stop)

    try:
        asyncio.run(go())
    finally:
        seen.close()
