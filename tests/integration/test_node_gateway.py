"""A gateway in another language (Node 20 + amqplib, docs/examples/node-gateway) talks to a
real hub with nothing but the AMQP contract: it sends a document and gets its receipt,
takes a copy and answers 01, and drops a copy delivered twice.

Needs ``node`` and ``npm`` (the npm registry, once, for ``npm ci`` from the example's own
package-lock.json). Without them the test is skipped, except under CI=true, where a
missing toolchain is a failure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from router.directory.registry import AgencyRow
from router.outbox.outbox import Outbox
from router.recovery.redelivery import resend_copies
from tests.factory import edoc
from tests.hub import Hub
from tests.polling import eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "node-gateway"
NODE_AGENCY = "000.00.00.H41"
PY_AGENCY = "000.00.00.G22"


def _toolchain() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node and npm are needed for the Node gateway test (CI=true)")
        pytest.skip("node/npm not installed: the Node gateway test needs them")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"the Node gateway needs Node 20 or later, found {version}")
    if not (EXAMPLE / "node_modules" / "amqplib").is_dir():
        # from the example's own package-lock.json, exactly
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXAMPLE, check=True,
                       capture_output=True, timeout=300)
    return node, npm


class _Lines:
    """The Node gateway's JSON lines, as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[dict[str, Any]] = []

    async def next(self, event: str, timeout: float = 30) -> dict[str, Any]:  # noqa: ASYNC109
        for line in self.seen:
            if line["event"] == event:
                self.seen.remove(line)
                return line
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.process.stdout.readline()
                if not raw:
                    err = await self.process.stderr.read() if self.process.stderr else b""
                    raise AssertionError(f"node gateway ended before {event!r}: {err!r}")
                line = json.loads(raw)
                if line["event"] == event:
                    return dict(line)
                self.seen.append(line)


@contextlib.asynccontextmanager
async def _node(hub: Hub, *args: str) -> AsyncIterator[_Lines]:
    node, _ = _toolchain()
    env = {**os.environ, "LIENTHONG_GATEWAY_URL": hub.gateway_url("node-gw"),
           "LIENTHONG_GATEWAY_ID": "node-gw"}
    process = await asyncio.create_subprocess_exec(
        node, str(EXAMPLE / "gateway.js"), *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        yield _Lines(process)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def test_a_node_gateway_sends_receives_and_answers(hub: Hub, tmp_path: Path) -> None:
    _toolchain()
    await hub.add_gateway("node-gw", serves=[NODE_AGENCY])
    await hub.add_gateway("vpcp", serves=[PY_AGENCY])
    await hub.add_agencies([AgencyRow(NODE_AGENCY, "UBND tỉnh Nghệ An"),
                            AgencyRow(PY_AGENCY, "Văn phòng Chính phủ")])
    await hub.start_router()

    outgoing = tmp_path / "from-node.edxml"
    node_doc, body = edoc(NODE_AGENCY, [PY_AGENCY], subject="Gửi từ cổng Node.js")
    outgoing.write_bytes(body)
    _, to_node_body = edoc(PY_AGENCY, [NODE_AGENCY], subject="Gửi tới cổng Node.js")

    async with hub.client("vpcp") as vpcp, _node(hub, "--send", str(outgoing)) as node:
        # 1. the Node gateway's document: accepted, and delivered to the Python gateway
        receipt = await node.next("receipt")
        assert receipt["type"] == "accepted", receipt
        async for msg in vpcp.inbox(timeout=15):
            async with msg.process():
                assert msg.document_id == node_doc.document_id
                assert msg.sender == NODE_AGENCY
                assert msg.hub_id == receipt["hub_id"]
            break
        else:
            raise AssertionError("the Node gateway's document never reached vpcp")

        # 2. a document to the Node gateway: it takes the copy and answers 01
        sent = await vpcp.send(to_node_body)
        assert sent is not None and sent.type == "accepted"
        copy = await node.next("copy")
        assert copy["kind"] == "edoc" and copy["recipients"] == [NODE_AGENCY]
        answered = await node.next("answered")
        assert answered["code"] == "01" and answered["receipt"] == "accepted", answered
        row = await hub.pool.fetchrow(
            "SELECT id, state, copy_id FROM deliveries WHERE hub_id = $1", sent.hub_id)
        assert row["state"] == "arrived" and str(row["copy_id"]) == copy["copy_id"]
        # the sender hears of it: a delivery receipt for the arrival
        async def arrived() -> bool:
            got = await asyncio.wait_for(anext(aiter(vpcp.receipts())), 15)
            return got.type == "delivery" and any(
                r.state == "arrived" for r in got.recipients)
        await eventually(arrived, timeout=20, what="a delivery receipt for 01")

        # 3. the same copy again (same copy id): dropped, no second 01
        connection = await aio_pika.connect(hub.settings.amqp_url)
        async with connection:
            outbox = await Outbox.open(await connection.channel(publisher_confirms=True),
                                       hub.settings)
            async with hub.pool.acquire() as conn:
                assert await resend_copies(conn, outbox, [row["id"]]) == {row["id"]: "queued"}
        duplicate = await node.next("duplicate")
        assert duplicate["copy_id"] == copy["copy_id"]
        assert not [line for line in node.seen if line["event"] == "answered"]
        assert await hub.pool.fetchval(
            "SELECT count(*) FROM status_events WHERE delivery_id = $1 AND status_code = '01'",
            row["id"]) == 1
