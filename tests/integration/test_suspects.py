"""After a router dies, no valid package is refused because of another message, and no
accepted package is later rejected (issue #11). Routers here are real processes killed with
SIGKILL in the middle of a batch (tests/crashing_router.py)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from router.directory.registry import AgencyRow
from router.processes import RouterProcesses
from tests.crashing_router import CRASH_AFTER, CRASH_BEFORE
from tests.factory import edoc
from tests.hub import Hub, throwaway_hub


class CrashingRouters(RouterProcesses):
    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "tests.crashing_router"], env=self.env,
                                stdout=self._log, stderr=subprocess.STDOUT)


@contextlib.asynccontextmanager
async def crashing_routers(hub: Hub) -> AsyncIterator[CrashingRouters]:
    """One router process, started again each time it dies (as systemd would)."""
    log = Path(tempfile.mkstemp(prefix="lienthong-suspects-", suffix=".log")[1])
    routers = CrashingRouters(hub.settings, 1, log_path=log, sweep_seconds=0)

    async def respawn() -> None:
        while True:
            await asyncio.sleep(0.05)
            for i, p in enumerate(routers.procs):
                if p.poll() is not None:
                    routers.kills += 1
                    routers.procs[i] = routers._spawn()

    task = asyncio.create_task(respawn())
    try:
        yield routers
    finally:
        task.cancel()
        routers.stop()


async def until(check: Callable[[], Awaitable[bool]], within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within} s")
        await asyncio.sleep(0.1)


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("btc", serves=["000.00.00.G12"])
    await hub.add_gateway("nghean", serves=["000.00.00.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "VPCP"), AgencyRow("000.00.00.G12", "BTC"),
                            AgencyRow("000.00.00.H41", "Nghệ An")])


async def _outcomes(hub: Hub, message_ids: list[str]) -> dict[str, str]:
    rows = await hub.pool.fetch(
        """SELECT message_id, 'accepted' AS outcome FROM documents WHERE message_id = ANY($1)
           UNION ALL
           SELECT message_id, reason FROM rejections WHERE message_id = ANY($1)""",
        message_ids)
    out: dict[str, str] = {}
    for r in rows:
        out[r["message_id"]] = (out[r["message_id"]] + "+" + r["outcome"]
                                if r["message_id"] in out else r["outcome"])
    return out


async def test_valid_packages_are_not_refused_for_a_message_that_kills_the_router(
    hub: Hub,
) -> None:
    await _setup(hub)
    valid = [f"v-{i}" for i in range(10)]
    async with hub.client("vpcp") as vpcp, hub.client("btc") as btc:
        # all waiting in lt.router.in before the router starts: they make one batch
        await vpcp.send(b"<edXML>" + CRASH_BEFORE + b"</edXML>", validate=False, wait=False,
                        sender_code="000.00.00.G22", kind="edoc", message_id="poison")
        for mid in valid:
            await btc.send(edoc("000.00.00.G12", ["000.00.00.H41"])[1], message_id=mid,
                           wait=False)
        async with crashing_routers(hub) as routers:
            async def settled() -> bool:
                return len(await _outcomes(hub, [*valid, "poison"])) == len(valid) + 1

            await until(settled, within=120)
            outcomes = await _outcomes(hub, [*valid, "poison"])
            assert routers.kills >= 3  # it really died, more than once
    assert {mid: outcomes[mid] for mid in valid} == dict.fromkeys(valid, "accepted")
    assert outcomes["poison"] == "POISON"


async def test_an_accepted_package_is_never_rejected_later(template_db: str) -> None:
    # a low delivery limit keeps the test short: the package that kills every router after
    # it is accepted leaves lt.router.in after 8 deliveries
    async with throwaway_hub(template_db, delivery_limit=8) as hub:
        await _setup(hub)
        valid = [f"v-{i}" for i in range(5)]
        async with hub.client("vpcp") as vpcp, hub.client("btc") as btc:
            _, body = edoc("000.00.00.G22", ["000.00.00.H41"],
                           extra_text=CRASH_AFTER.decode())
            await vpcp.send(body, message_id="killer", wait=False)
            for mid in valid:
                await btc.send(edoc("000.00.00.G12", ["000.00.00.H41"])[1], message_id=mid,
                               wait=False)
            async with crashing_routers(hub) as routers:
                async def parked() -> bool:
                    return bool(await hub.pool.fetchval(
                        "SELECT count(*) FROM parked_messages WHERE message_id = 'killer'"))

                await until(parked, within=150)
                outcomes = await _outcomes(hub, [*valid, "killer"])
                assert routers.kills >= 4
        # accepted, and nothing else: no POISON rejection, so no contradicting receipt
        assert outcomes == dict.fromkeys([*valid, "killer"], "accepted")
