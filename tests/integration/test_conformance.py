"""``lienthong conformance`` against real gateways on the real broker: the SDK's example
gateway passes every check; a deliberately broken one fails exactly the checks it breaks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys

from adapters import GatewayClient, InboxMessage
from adapters.example_gateway import serve
from router.conformance import Scenario, report_text, run_conformance
from router.directory.registry import AgencyRow
from schemas import EdocPackage, Organization, StatusCode
from tests.hub import Hub

TESTER, TESTER_AGENCY = "conformance", "000.00.00.G22"
UNDER_TEST, AGENCY = "gw-under-test", "000.00.00.H41"


async def _hub(hub: Hub) -> None:
    await hub.add_gateway(TESTER, serves=[TESTER_AGENCY])
    await hub.add_gateway(UNDER_TEST, serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow(TESTER_AGENCY, "Văn phòng Chính phủ"),
                            AgencyRow(AGENCY, "UBND tỉnh Nghệ An")])
    await hub.start_router()


def _scenario(hub: Hub, answer_within: float) -> Scenario:
    return Scenario(gateway=UNDER_TEST, agency=AGENCY, sender_url=hub.gateway_url(TESTER),
                    sender_gateway=TESTER, sender_agency=TESTER_AGENCY,
                    answer_within=answer_within)


class _Forgetful:
    """A duplicate filter that remembers nothing: every copy is handled again."""

    def __contains__(self, copy_id: object) -> bool:
        return False

    def add(self, copy_id: str) -> None:
        return None


async def _broken(gw: GatewayClient, stop: asyncio.Event) -> None:
    """Acks and answers 01, then 06 and a refusal (02) after it; ignores recalls."""
    while not stop.is_set():
        async for msg in gw.inbox(timeout=0.5):
            async with msg.process():
                await _answer_badly(gw, msg)


async def _answer_badly(gw: GatewayClient, msg: InboxMessage) -> None:
    if not isinstance(msg.package, EdocPackage):
        return
    us = Organization(AGENCY, "UBND tỉnh Nghệ An")
    for code in (StatusCode.ARRIVED, StatusCode.DONE, StatusCode.REFUSED):
        await gw.send_status(sender=us, about=msg, code=code)


async def _run_against(hub: Hub, gateway: object, *, answer_within: float,
                       seen: object = None) -> dict[str, bool]:
    stop = asyncio.Event()
    kw = {} if seen is None else {"seen": seen}
    async with hub.client(UNDER_TEST, **kw) as gw:
        task = asyncio.create_task(gateway(gw, stop))  # type: ignore[operator]
        try:
            obs, results = await run_conformance(hub.settings, hub.pool,
                                                 _scenario(hub, answer_within))
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
    print(report_text(_scenario(hub, answer_within), results), obs.sent)
    assert all(v == "accepted" for v in obs.sent.values()), obs.sent
    return {r.name: r.passed for r in results}


async def test_the_sdk_example_gateway_passes(hub: Hub) -> None:
    await _hub(hub)
    checks = await _run_against(hub, serve, answer_within=30)
    assert checks == dict.fromkeys(("acks_every_copy", "answers_arrived", "drops_duplicates",
                                    "legal_transitions", "answers_recall"), True)


async def test_a_broken_gateway_fails_the_checks_it_breaks(hub: Hub) -> None:
    await _hub(hub)
    checks = await _run_against(hub, _broken, answer_within=8, seen=_Forgetful())
    assert checks == {"acks_every_copy": True, "answers_arrived": True,
                      "drops_duplicates": False, "legal_transitions": False,
                      "answers_recall": False}


async def test_the_command_prints_the_report_and_exits_by_the_verdict(hub: Hub) -> None:
    await _hub(hub)
    s = hub.settings
    env = {**os.environ, "LIENTHONG_AMQP_URL": s.amqp_url,
           "LIENTHONG_DATABASE_URL": s.database_url,
           "LIENTHONG_MANAGEMENT_URL": s.management_url,
           "LIENTHONG_AMQP_USER_PREFIX": s.amqp_user_prefix,
           "LIENTHONG_GATEWAY_PASSWORD": hub.credentials[TESTER].password}
    argv = [sys.executable, "-m", "router.cli", "conformance", "--gateway", UNDER_TEST,
            "--agency", AGENCY, "--sender", TESTER, "--sender-agency", TESTER_AGENCY,
            "--answer-within", "30", "--json"]
    stop = asyncio.Event()
    async with hub.client(UNDER_TEST) as gw:
        task = asyncio.create_task(serve(gw, stop))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 180)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert proc.returncode == 0, (out.decode(), err.decode()[-2000:])
    report = json.loads(out)
    assert report["passed"] and len(report["checks"]) == 5
    assert all(c["passed"] and c["evidence"] for c in report["checks"])
