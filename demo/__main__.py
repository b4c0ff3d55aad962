"""``make demo`` (``python -m demo``): watch documents travel between ministries and provinces."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import click
from rich.console import Console

from router.cli._services import explain, fail, fail_with
from router.settings import Settings


@click.command("demo")
def demo() -> None:
    """Run the demo on its own vhost and database (recreated each run): migrate, load the
    demo directory, start two routers, exchange documents, print each one's timeline."""
    from demo.hub import DEMO_DATABASE, DEMO_VHOST, DemoResult, demo_settings, run_demo
    from router.cli.tracking import render_timeline

    console = Console()
    base = Settings.from_env()
    started = time.monotonic()

    async def go() -> DemoResult:
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
            rows = await conn.fetch(
                "SELECT state, count(*) AS n FROM deliveries WHERE hub_id = ANY($1::uuid[]) "
                "GROUP BY state ORDER BY state", [h for _, h in result.documents])
            result.deliveries = {r["state"]: r["n"] for r in rows}
        finally:
            await conn.close()
        return result

    try:
        result = asyncio.run(go())
    except Exception as exc:
        failure = explain(exc, demo_settings(base))
        if failure is not None:
            fail_with(failure)
        if isinstance(exc, RuntimeError):
            fail(str(exc))
        raise
    settings = demo_settings(base)
    n = len(result.documents)
    states = ", ".join(f"{k} {v}" for k, v in result.deliveries.items())
    done = result.deliveries.get("done", 0)
    console.print(f"\ndeliveries by state: {states}")
    if done == 0:
        fail("no delivery reached done (06) / không văn bản nào được hoàn thành (06)")
    console.print(
        f"{done} deliveries done (06) / đã hoàn thành. "
        f"{n} documents routed in {time.monotonic() - started:.1f} s. The demo hub is kept "
        f"for you to explore (vhost {DEMO_VHOST!r}, database {DEMO_DATABASE!r}), e.g.:\n"
        f"  LIENTHONG_DATABASE_URL={settings.database_url} .venv/bin/lienthong track "
        f"'{result.example_document_id}'\n"
        f"and its dashboard (bảng điều khiển) at http://127.0.0.1:8080, token "
        f"'lienthong-demo-token':\n"
        f"  LIENTHONG_AMQP_URL={settings.amqp_url} "
        f"LIENTHONG_DATABASE_URL={settings.database_url} "
        f"LIENTHONG_OPS_TOKENS=demo:operator:lienthong-demo-token .venv/bin/lienthong ops",
        highlight=False,
    )


if __name__ == "__main__":
    demo()
