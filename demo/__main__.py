"""``make demo`` (``python -m demo``): watch documents travel between ministries and provinces."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import click
from rich.console import Console

from router.cli._services import fail
from router.settings import Settings


@click.command("demo")
def demo() -> None:
    """Run the demo on its own vhost and database (recreated each run): migrate, load the
    demo directory, start two routers, exchange documents, print each one's timeline."""
    from demo.hub import DEMO_DATABASE, DEMO_VHOST, demo_settings, run_demo
    from router.cli.tracking import render_timeline

    console = Console()
    base = Settings.from_env()
    started = time.monotonic()

    async def go() -> int:
        result = await run_demo(
            base,
            lambda line: console.print(
                f"[dim]{time.monotonic() - started:5.1f}s[/dim] {line}", highlight=False),
        )
        console.print("6/6 timelines (văn thư's view: where is each document, since when)")
        conn = await asyncpg.connect(demo_settings(base).database_url)
        try:
            for label, hub_id in result.documents:
                console.rule(label)
                await render_timeline(conn, uuid.UUID(hub_id), console)
        finally:
            await conn.close()
        return len(result.documents)

    try:
        n = asyncio.run(go())
    except RuntimeError as exc:
        fail(str(exc))
        return
    except OSError as exc:
        fail(f"cannot reach RabbitMQ or PostgreSQL ({exc}); run `make setup` first")
        return
    settings = demo_settings(base)
    console.print(
        f"\n{n} documents routed in {time.monotonic() - started:.1f} s. The demo hub is kept "
        f"for you to explore (vhost {DEMO_VHOST!r}, database {DEMO_DATABASE!r}), e.g.:\n"
        f"  LIENTHONG_DATABASE_URL={settings.database_url} .venv/bin/lienthong track "
        f"'000.00.00.G22,2026/11/21,1021/VPCP-KSTT'\n"
        f"and its dashboard (bảng điều khiển) at http://127.0.0.1:8080, token "
        f"'lienthong-demo-token':\n"
        f"  LIENTHONG_AMQP_URL={settings.amqp_url} "
        f"LIENTHONG_DATABASE_URL={settings.database_url} "
        f"LIENTHONG_OPS_TOKENS=demo:operator:lienthong-demo-token .venv/bin/lienthong ops",
        highlight=False,
    )


if __name__ == "__main__":
    demo()
