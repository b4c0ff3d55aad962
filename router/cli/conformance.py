"""``lienthong conformance``: check a gateway's behaviour through the hub (router.conformance)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from router.cli._services import explain, fail, fail_with
from router.settings import Settings

if TYPE_CHECKING:
    from router.conformance import ConformanceReport
from schemas.reasons import LienthongError, Reason


@click.command("conformance")
@click.option("--gateway", "gateway_id", required=True, help="The gateway under test.")
@click.option("--counterpart", required=True,
              help="The gateway this check sends as (a test gateway of the same hub, e.g. "
                   "the sandbox's `conformance`), never the one under test.")
@click.option("--password", envvar="LIENTHONG_GATEWAY_PASSWORD", required=True,
              help="The counterpart's AMQP password (or LIENTHONG_GATEWAY_PASSWORD).")
@click.option("--limit", "answer_limit", default=30.0, show_default=True,
              help="Seconds the gateway has to answer 01 and a recall.")
@click.option("--settle", default=3.0, show_default=True,
              help="Seconds to watch for a second 01 after the duplicate copy.")
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report to this file (attach it to a connection request).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def conformance(gateway_id: str, counterpart: str, password: str, answer_limit: float,
                settle: float, report_file: Path | None, as_json: bool) -> None:
    """Drive a scripted scenario against a gateway through the hub and check what it does:
    acks every copy, answers 01 in time, drops duplicates, sends legal transitions only,
    answers recalls. Exits 1 when a check fails. / Kiểm tra tuân thủ của một cổng kết nối."""
    from adapters import GatewayClient
    from router.cli.gateway import gateway_url
    from router.conformance import find_subject, run_conformance

    settings = Settings.from_env()

    async def go() -> ConformanceReport:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url)
        try:
            me = await find_subject(conn, counterpart)
        finally:
            await conn.close()
        url = gateway_url(settings, counterpart, password)
        async with GatewayClient(url, gateway_id=counterpart) as client:
            return await run_conformance(
                settings, client, me.agency, gateway_id, answer_limit=answer_limit,
                settle=settle, say=lambda line: click.echo(line, err=True))

    try:
        report = asyncio.run(go())
    except LienthongError as exc:
        fail(f"{exc.reason.name} ({exc.reason.code}): {exc.reason.message_vi} / "
             f"{exc.reason.message_en}: {exc.detail}", 2)
        return
    except Exception as exc:
        failure = explain(exc, settings)
        if failure is not None:
            fail_with(failure)
        raise
    text = report.to_json() if as_json else report.render()
    if report_file is not None:
        report_file.write_text(text, encoding="utf-8")
    click.echo(text, nl=False)
    if not report.passed:
        r = Reason.CONFORMANCE_FAILED
        fail(f"{r.name} ({r.code}): {r.message_vi} / {r.message_en}: "
             f"{', '.join(report.failed())}", 1)
