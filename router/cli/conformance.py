"""``lienthong conformance``: check that a gateway behaves (see router/conformance.py)."""

from __future__ import annotations

import json

import asyncpg
import click

from router.cli._services import run_async
from router.cli.gateway import gateway_url
from router.conformance import Scenario, report_text, run_conformance
from router.settings import Settings

__all__ = ["conformance"]


@click.command("conformance")
@click.option("--gateway", "gateway_id", required=True, help="The gateway under test.")
@click.option("--agency", required=True, help="An agency code the gateway under test serves.")
@click.option("--sender", "sender_gateway", required=True,
              help="The test sender gateway (provisioned like any other).")
@click.option("--sender-agency", required=True, help="An agency code the sender serves.")
@click.option("--sender-password", envvar="LIENTHONG_GATEWAY_PASSWORD", required=True,
              help="The sender's AMQP password (or LIENTHONG_GATEWAY_PASSWORD).")
@click.option("--answer-within", default=60.0, show_default=True,
              help="Seconds the gateway has to answer 01 and a recall.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def conformance(gateway_id: str, agency: str, sender_gateway: str, sender_agency: str,
                sender_password: str, answer_within: float, as_json: bool) -> None:
    """Drive a scripted scenario against a gateway through the hub and check what it does
    (acks, 01 in time, duplicates dropped, legal statuses, recalls answered). Prints a
    report with evidence; exit 1 when a check fails.

    Kiểm tra sự phù hợp của một hệ thống kết nối: in báo cáo, mã thoát 1 khi không đạt."""

    async def go(settings: Settings) -> bool:
        scenario = Scenario(
            gateway=gateway_id, agency=agency,
            sender_url=gateway_url(settings, sender_gateway, sender_password),
            sender_gateway=sender_gateway, sender_agency=sender_agency,
            answer_within=answer_within,
        )
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
        try:
            obs, results = await run_conformance(settings, pool, scenario)
        finally:
            await pool.close()
        if as_json:
            click.echo(json.dumps({"gateway": gateway_id, "agency": agency,
                                   "passed": all(r.passed for r in results),
                                   "checks": [r.as_dict() for r in results],
                                   "sent": obs.sent}, ensure_ascii=False, indent=2))
        else:
            click.echo(report_text(scenario, results))
        return all(r.passed for r in results)

    if not run_async(go):
        raise SystemExit(1)
