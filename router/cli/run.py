"""``lienthong router``: run routing workers."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import click

from router.logs import configure_logging
from router.settings import Settings


@click.command("router")
@click.option("--processes", "-n", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (competing consumers); >1 runs a supervisor that "
                   "restarts a worker that dies.")
def router_cmd(processes: int) -> None:
    """Route packages: consume lt.router.in, validate, record, fan out, send receipts."""
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if processes == 1:
        from router.routing.intake import run_router

        asyncio.run(run_router(settings))
        return
    _supervise(processes)


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "router.cli", "router", "-n", "1"])


def _supervise(n: int) -> None:
    children = [_spawn() for _ in range(n)]
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c.poll() is None:
                c.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"supervising {n} router workers (pids {[c.pid for c in children]})", err=True)
    while True:
        time.sleep(0.2)
        if stopping:
            for c in children:
                try:
                    c.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    c.kill()
            return
        for i, c in enumerate(children):
            code = c.poll()
            if code is not None:
                click.echo(f"worker {c.pid} exited ({code}); restarting", err=True)
                time.sleep(0.5)
                children[i] = _spawn()


