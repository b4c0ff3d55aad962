"""``lienthong conformance`` against real gateways through a real hub: the SDK's example
gateway passes; a broken one fails exactly the checks it breaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from adapters import GatewayClient, InboxMessage
from adapters.examples.gateway import serve
from router.conformance import ConformanceReport, run_conformance
from router.directory.registry import AgencyRow
from schemas import BusinessDocType, EdocPackage, Organization, StatusCode
from tests.hub import Hub

UNDER_TEST = "000.00.00.H41"
COUNTERPART = "000.00.00.G22"


class _ForgetsEverything:
    """A duplicate filter that never remembers: the gateway sees every copy again."""

    def __contains__(self, copy_id: object) -> bool:
        return False

    def add(self, copy_id: str) -> None:
        return None


async def _broken(gw: GatewayClient, stop: asyncio.Event) -> None:
    """Answers 01, but: no duplicate filter, 02 after 03 on the first document, ignores
    recalls, never acks the revocation's copy."""
    held: list[InboxMessage] = []
    first = True
    while not stop.is_set():
        async for msg in gw.inbox(timeout=0.2):
            package = msg.package
            if isinstance(package, EdocPackage):
                me = Organization(msg.recipients[0], "UBND tỉnh Nghệ An")
                await gw.send_status(sender=me, about=package, code=StatusCode.ARRIVED)
                if first:
                    first = False
                    await gw.send_status(sender=me, about=package, code=StatusCode.ACCEPTED)
                    await gw.send_status(sender=me, about=package, code=StatusCode.REFUSED)
                if package.business_type is BusinessDocType.REVOKE:
                    held.append(msg)  # never acked
                    continue
            await msg.ack()


@contextlib.asynccontextmanager
async def _running(
    hub: Hub, software: Callable[[GatewayClient, asyncio.Event], Coroutine[Any, Any, None]],
    **client: object,
) -> AsyncIterator[None]:
    stop = asyncio.Event()
    async with hub.client("gut", **client) as gw:
        task = asyncio.create_task(software(gw, stop))
        try:
            yield
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


async def _check(hub: Hub) -> ConformanceReport:
    async with hub.client("kttt") as counterpart:
        return await run_conformance(hub.settings, counterpart, COUNTERPART, "gut",
                                     answer_limit=15, settle=1.5)


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("gut", serves=[UNDER_TEST])
    await hub.add_gateway("kttt", serves=[COUNTERPART])
    await hub.add_agencies([AgencyRow(UNDER_TEST, "UBND tỉnh Nghệ An"),
                            AgencyRow(COUNTERPART, "Văn phòng Chính phủ")])
    await hub.start_router()


async def test_the_sdk_example_gateway_passes(hub: Hub) -> None:
    await _setup(hub)
    async with _running(hub, serve):
        report = await _check(hub)
    assert report.passed, report.render()
    assert [c.name for c in report.checks] == [
        "acks-every-copy", "answers-01", "drops-duplicates", "legal-transitions",
        "answers-recalls"]
    text = report.render()
    assert "ĐẠT / PASSED" in text
    # evidence names the copies: six documents, each answered with 01
    assert text.count(", 01 at ") == 6
    # the duplicate really reached the gateway, and the SDK dropped it
    assert "01 answers: 1" in text
    # the out-of-order recall reached the hub (not taken as a duplicate of the first)
    assert "sent the same recall (13) again, out of order: accepted" in text


async def test_a_broken_gateway_fails_the_right_checks(hub: Hub) -> None:
    await _setup(hub)
    async with _running(hub, _broken, seen=_ForgetsEverything()):
        report = await _check(hub)
    assert not report.passed
    assert set(report.failed()) == {
        "acks-every-copy", "drops-duplicates", "legal-transitions", "answers-recalls"
    }, report.render()
    text = report.render()
    assert "ILLEGAL_TRANSITION" in text
    assert "01 answers: 2" in text
    assert "no 15/16" in text
    assert "1 unacknowledged" in text
