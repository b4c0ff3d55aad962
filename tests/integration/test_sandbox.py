"""``lienthong sandbox``: a developer's throwaway hub, its faults, and its removal — on the
real RabbitMQ and PostgreSQL, with the sandbox's own router processes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aio_pika
import asyncpg
import pytest

from adapters import GatewayClient
from router.broker_admin import BrokerAdmin
from router.sandbox import GATEWAYS, SandboxState, fault, load_state
from router.settings import Settings
from schemas import BusinessDocType, EdocPackage, StatusCode, StatusPackage
from schemas.reasons import OperationRefused, Reason
from tests.factory import edoc
from tests.hub import AMQP_HOST, MGMT_URL, PG_URL, RUN_ID, require_services
from tests.polling import eventually

A, B = "000.00.00.G22", "000.00.00.H41"  # gw-a's and gw-b's agencies


def _base() -> Settings:
    return Settings(amqp_url=f"amqp://guest:guest@{AMQP_HOST}:5672/lienthong",
                    database_url=f"{PG_URL}/lienthong", management_url=MGMT_URL)


async def _cli(folder: Path, *args: str) -> tuple[int, str, str]:
    base = _base()
    env = {**os.environ, "LIENTHONG_AMQP_URL": base.amqp_url,
           "LIENTHONG_DATABASE_URL": base.database_url,
           "LIENTHONG_MANAGEMENT_URL": base.management_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "sandbox", *args, "--state-dir", str(folder),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


Got = tuple[EdocPackage | StatusPackage, float]


async def _next(gw: GatewayClient, timeout: float = 20) -> Got:  # noqa: ASYNC109
    async for msg in gw.inbox(timeout=timeout):
        async with msg.process():
            return msg.package, time.monotonic()
    raise AssertionError(f"nothing in {gw.gateway_id}'s inbox within {timeout} s")


async def test_sandbox_up_faults_and_down(tmp_path: Path) -> None:
    require_services()
    name = f"t{RUN_ID}"
    # up, through the command a developer types
    code, out, err = await _cli(tmp_path, "up", "--name", name, "--json")
    assert code == 0, err
    printed = json.loads(out)
    state = load_state(name, tmp_path)
    try:
        assert sorted(printed["gateways"]) == sorted(g for g, _, _ in GATEWAYS)
        assert oct((tmp_path / f"{name}.json").stat().st_mode & 0o777) == "0o600"
        await _exercise(state, tmp_path)
        await _conformance(state, tmp_path)
    finally:
        code, out, err = await _cli(tmp_path, "down", "--name", name)
    assert code == 0, err
    # everything is gone: routers, vhost, users, database, state file
    assert not (tmp_path / f"{name}.json").exists()
    assert not [pid for pid in state.pids if _router_alive(pid)]
    admin = BrokerAdmin(MGMT_URL)
    try:
        assert not await admin.vhost_exists(state.vhost)
        assert await admin.get_user(state.gateways["gw-a"]["user"]) is None
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1",
                                   state.database) == 0
    finally:
        await conn.close()
    code, _, err = await _cli(tmp_path, "fault", "duplicate", "--gateway", "gw-a",
                              "--name", name)
    assert code == 2 and "SANDBOX_NOT_RUNNING" in err


async def _conformance(state: SandboxState, folder: Path) -> None:
    """What a developer does next: check a gateway with the sandbox's counterpart. The
    SDK's example gateway as gw-a passes (exit 0, report written); gw-c, which nobody
    runs, fails (exit 1) with the reason and the checks it failed."""
    example = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adapters.examples.gateway", state.gateways["gw-a"]["url"],
        "gw-a", stderr=asyncio.subprocess.PIPE)
    env = {**os.environ, "LIENTHONG_AMQP_URL": state.amqp_url,
           "LIENTHONG_DATABASE_URL": state.database_url,
           "LIENTHONG_MANAGEMENT_URL": state.management_url,
           "LIENTHONG_AMQP_USER_PREFIX": state.user_prefix,
           "LIENTHONG_GATEWAY_PASSWORD": state.gateways["conformance"]["password"]}

    async def check(gateway: str, report: Path) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "router.cli", "conformance", "--gateway", gateway,
            "--counterpart", "conformance", "--limit", "10", "--settle", "4",
            "--report", str(report), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        return proc.returncode or 0, err.decode()

    try:
        code, err = await check("gw-a", folder / "gw-a.txt")
    finally:
        example.terminate()
        await example.wait()
    assert code == 0, err
    text = (folder / "gw-a.txt").read_text(encoding="utf-8")
    assert "ĐẠT / PASSED" in text and "[FAIL]" not in text
    code, err = await check("gw-c", folder / "gw-c.txt")
    assert code == 1, err
    assert "CONFORMANCE_FAILED (7111)" in err
    assert "acks-every-copy, answers-01" in err and "answers-recalls" in err
    report = (folder / "gw-c.txt").read_text(encoding="utf-8")
    assert report.count("[FAIL]") >= 3 and "KHÔNG ĐẠT / FAILED" in report


def _router_alive(pid: int) -> bool:
    try:
        return b"router.cli" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def _exercise(state: SandboxState, folder: Path) -> None:
    async with GatewayClient(state.gateways["gw-a"]["url"], gateway_id="gw-a") as a, \
            GatewayClient(state.gateways["gw-b"]["url"], gateway_id="gw-b") as b:
        # the sandbox routes: gw-a → gw-b, receipts signed with the sandbox's key
        doc, body = edoc(A, [B])
        receipt = await a.send(body)
        assert receipt is not None and receipt.type == "accepted", receipt
        assert receipt.signature is not None
        got, _ = await _next(b)
        assert isinstance(got, EdocPackage) and got.document_id == doc.document_id

        # duplicate: the same copy again; the SDK drops it
        said = await fault(state, folder, "duplicate", "gw-b")
        assert "1 copies" in said
        async for _ in b.inbox(timeout=0.2):
            raise AssertionError("a duplicate copy reached the application")
        await eventually(lambda: b.duplicates_dropped == 1, timeout=20,
                         what="the duplicate dropped by the SDK")

        # delay: the next copy waits in the holding queue, then arrives
        await fault(state, folder, "delay", "gw-b", seconds=2)
        _, body2 = edoc(A, [B])
        sent_at = time.monotonic()
        r2 = await a.send(body2)
        assert r2 is not None and r2.type == "accepted"
        _, arrived_at = await _next(b)
        assert arrived_at - sent_at >= 1.8
        # another delay, shorter: the holding queue is made anew
        said = await fault(state, folder, "delay", "gw-b", seconds=1)
        assert "wait 1 s" in said
        _, body2b = edoc(A, [B])
        sent_at = time.monotonic()
        await a.send(body2b)
        _, arrived_at = await _next(b)
        assert 0.8 <= arrived_at - sent_at < 1.8
        await fault(state, folder, "clear", "gw-b")
        _, body3 = edoc(A, [B])
        sent_at = time.monotonic()
        await a.send(body3)
        _, arrived_at = await _next(b)
        assert arrived_at - sent_at < 1.8

        # reject (through the CLI): gw-a's documents are refused with a reason; clear
        code, _, err = await _cli(folder, "fault", "reject", "--gateway", "gw-a",
                                    "--name", state.name)
        assert code == 0, err
        _, body4 = edoc(A, [B])
        refused = await a.send(body4)
        assert refused is not None and refused.type == "rejected"
        assert refused.reason is not None
        assert refused.reason["reason"] == Reason.RECIPIENT_LOCKED.name
        state = load_state(state.name, folder)
        await fault(state, folder, "clear", "gw-a")
        again = await a.send(body4)
        assert again is not None and again.type == "accepted", again
        await _next(b)

        # a recall and a revocation arrive at gw-b, from gw-a
        await fault(state, folder, "recall", "gw-b")
        recall, _ = await _next(b)
        assert isinstance(recall, StatusPackage)
        assert recall.status_code is StatusCode.RECALL_REQUESTED
        await fault(state, folder, "revoke", "gw-b")
        revoke, _ = await _next(b)
        assert isinstance(revoke, EdocPackage)
        assert revoke.business_type is BusinessDocType.REVOKE

        # disconnect: the broker closes gw-b's connections; the SDK's client comes back
        plain = await aio_pika.connect(state.gateways["gw-b"]["url"])
        closed = asyncio.Event()
        plain.close_callbacks.add(lambda *_: closed.set())
        await fault(state, folder, "disconnect", "gw-b")
        await asyncio.wait_for(closed.wait(), 20)  # the broker closed gw-b's connection
        _, body5 = edoc(A, [B])
        await a.send(body5)
        await _next(b, timeout=40)

        with pytest.raises(OperationRefused) as unknown:
            await fault(state, folder, "delay", "nobody")
        assert unknown.value.reason is Reason.GATEWAY_UNKNOWN
