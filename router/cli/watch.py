"""``lienthong watch``: a gateway's watch folder (the door for file-only software).

Thin: the folder logic is :mod:`adapters.watch`, which talks to the hub over AMQP only, as
the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from adapters.watch import watch as run_watch
from router.cli.gateway import gateway_url
from router.settings import Settings


@click.command("watch")
@click.option("--gateway", "gateway_id", required=True, help="Your gateway id.")
@click.option("--dir", "root", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="The watch folder (outbox/, sent/, failed/, inbox/ are created in it).")
@click.option("--password", envvar="LIENTHONG_GATEWAY_PASSWORD", default=None,
              help="Your gateway's AMQP password (or LIENTHONG_GATEWAY_PASSWORD); the hub's "
                   "address comes from LIENTHONG_AMQP_URL.")
@click.option("--url", envvar="LIENTHONG_GATEWAY_URL", default=None,
              help="The whole AMQP URL with the gateway's user and password instead "
                   "(or LIENTHONG_GATEWAY_URL).")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between outbox scans.")
@click.option("--timeout", default=30.0, show_default=True,
              help="Seconds to wait for a receipt before trying the file again later.")
def watch(gateway_id: str, root: Path, password: str | None, url: str | None, poll: float,
          timeout: float) -> None:
    """Send the packages put into DIR/outbox/ and save what arrives in DIR/inbox/
    (Gửi các gói tin đặt vào DIR/outbox/, lưu văn bản đến vào DIR/inbox/). Runs until
    Ctrl-C or SIGTERM."""
    settings = Settings.from_env()
    if url is None:
        if password is None:
            raise click.UsageError("give --password (or LIENTHONG_GATEWAY_PASSWORD) or --url")
        url = gateway_url(settings, gateway_id, password)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        click.echo(f"watching {root} for gateway {gateway_id} (Ctrl-C to stop)", err=True)
        await run_watch(url, gateway_id, root, poll=poll, receipt_timeout=timeout, stop=stop,
                        max_package_bytes=settings.max_package_bytes,
                        large_threshold=settings.large_threshold_bytes,
                        max_large_bytes=settings.max_large_package_bytes)

    asyncio.run(go())
