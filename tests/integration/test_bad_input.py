"""Bad input end to end: each gets a rejected receipt with the right reason, nothing is
delivered, and the router keeps going."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from router.directory.registry import AgencyRow
from router.processes import RouterProcesses
from schemas import StatusCode
from schemas.receipt import Receipt
from tests.factory import edoc, status
from tests.faults import Faults, spawn_env
from tests.hub import Hub, queue_depth
from tests.polling import eventually


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies(
        [
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
            AgencyRow("000.00.00.G12", "Bộ Tài chính (no gateway)", aliases=("G12",)),
        ]
    )


async def _inbox_count(hub: Hub, gateway: str) -> int:
    return await queue_depth(hub, f"lt.gw.{gateway}.inbox")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("malformed", "MALFORMED_XML"),
        ("not_edxml", "NOT_EDXML"),
        ("unknown_recipient", "RECIPIENT_UNKNOWN"),
        ("recipient_without_gateway", "RECIPIENT_NO_GATEWAY"),
        ("sender_not_served", "SENDER_NOT_SERVED"),
        ("status_unknown_document", "DOCUMENT_UNKNOWN"),
        ("too_large", "PACKAGE_TOO_LARGE"),
        ("billion_laughs", "FORBIDDEN_XML_CONSTRUCT"),
    ],
)
async def test_rejected_with_reason_and_nothing_delivered(
    hub: Hub, case: str, reason: str
) -> None:
    hub.settings = hub.settings.with_(max_package_bytes=64_000)
    await _setup(hub)
    await hub.start_router()
    doc, good = edoc("000.00.00.G22", ["000.00.00.H41"])
    body: bytes
    key = "000.00.00.G22"
    kind = "edoc"
    if case == "malformed":
        body = good[: len(good) // 2]
    elif case == "not_edxml":
        body = b"<?xml version='1.0'?><invoice><total>1</total></invoice>"
    elif case == "unknown_recipient":
        _, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.99.H41"])
    elif case == "recipient_without_gateway":
        _, body = edoc("000.00.00.G22", ["G12"])
    elif case == "sender_not_served":
        # the routing key is VPCP's own (the broker's topic permission allows it), but the
        # package claims to come from Nghệ An
        _, body = edoc("000.00.00.H41", ["000.00.00.G22"])
    elif case == "status_unknown_document":
        _, body = status("000.00.00.G22", doc, StatusCode.ARRIVED, to="000.00.00.H41")
        kind = "status"
    elif case == "too_large":
        _, body = edoc("000.00.00.G22", ["000.00.00.H41"], attachment=b"x" * 80_000)
    elif case == "billion_laughs":
        body = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
                b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&lol2;</edXML>')
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(body, validate=False, sender_code=key, kind=kind)
        assert receipt is not None and receipt.type == "rejected"
        assert receipt.reason is not None and receipt.reason["reason"] == reason
        assert receipt.reason["message_vi"] and receipt.reason["message_en"]
        # the router keeps going: a good package right after is accepted and delivered
        ok = await vpcp.send(good)
        assert ok is not None and ok.type == "accepted"
    # the accepted receipt comes after the copies are confirmed: the good copy is there,
    # and no copy of the bad package went anywhere
    await eventually(lambda: _inbox_count(hub, "lgsp-nghean"), what="the good copy")
    assert await _inbox_count(hub, "lgsp-nghean") == 1
    assert await _inbox_count(hub, "vpcp") == 0
    row = await hub.pool.fetchrow("SELECT reason, body FROM rejections")
    assert row is not None and row["reason"] == reason
    if case != "too_large":
        assert bytes(row["body"]) == body  # bad input is kept, never lost


async def test_poison_message_is_parked_and_the_ledger_says_why(hub: Hub, faults: Faults) -> None:
    await _setup(hub)
    await hub.start_router()
    _, poison = edoc("000.00.00.G22", ["000.00.00.H41"], extra_text=" LIENTHONG-FAULT:raise")
    _, good = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp", receipt_timeout=60) as vpcp:
        rejected = await vpcp.send(poison)
        ok = await vpcp.send(good)
    assert ok is not None and ok.type == "accepted"
    assert rejected is not None and rejected.type == "rejected"
    assert rejected.reason is not None and rejected.reason["reason"] == "POISON"
    assert "injected fault" in rejected.reason["detail"]
    parked = await eventually(
        lambda: hub.pool.fetchrow("SELECT reason, error, body FROM parked_messages"),
        what="the parked row",
    )
    assert parked is not None and parked["reason"] == "POISON"
    assert "injected fault" in parked["error"]
    assert bytes(parked["body"]) == poison
    assert await _inbox_count(hub, "lgsp-nghean") == 1


async def _publish_raw(hub: Hub, gateway: str, body: bytes, **props: Any) -> Receipt | None:
    """Publish as ``gateway`` with a plain AMQP client (no SDK) and the given properties;
    returns what comes back on the direct reply-to address within 15 s (None: nothing)."""
    connection = await aio_pika.connect(hub.gateway_url(gateway))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def on_reply(message: AbstractIncomingMessage) -> None:
            if not got.done():
                got.set_result(message.body)

        replies = await channel.declare_queue("amq.rabbitmq.reply-to", passive=True)
        await replies.consume(on_reply, no_ack=True)
        submit = await channel.get_exchange("lt.submit", ensure=False)
        await submit.publish(aio_pika.Message(body, reply_to="amq.rabbitmq.reply-to", **props),
                             routing_key="000.00.00.G22")
        try:
            return Receipt.from_json(await asyncio.wait_for(got, 15))
        except TimeoutError:
            return None


async def _queued_receipt(hub: Hub, gateway: str, message_id: str) -> Receipt:
    async with hub.client(gateway) as client:
        async for receipt in client.receipts():
            if receipt.message_id == message_id:
                return receipt
    raise AssertionError("unreachable")


async def test_a_submission_without_user_id_is_answered(hub: Hub) -> None:
    """#11 item 2: no user_id, so the broker vouches for no sender: the client gets a
    rejected receipt on its direct reply-to address, and the one gateway whose permission
    admits the routing key (VPCP for 000.00.00.G22) gets it in its receipts queue."""
    await _setup(hub)
    await hub.start_router()
    _, good = edoc("000.00.00.G22", ["000.00.00.H41"])
    reply = await _publish_raw(hub, "vpcp", good, message_id="no-user-1", type="edoc")
    assert reply is not None, "no receipt on the direct reply-to address"
    assert (reply.type, reply.message_id) == ("rejected", "no-user-1")
    assert reply.reason is not None and reply.reason["reason"] == "GATEWAY_UNKNOWN"
    assert "user_id" in reply.reason["detail"]
    queued = await asyncio.wait_for(_queued_receipt(hub, "vpcp", "no-user-1"), 15)
    assert queued.receipt_id == reply.receipt_id
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.receipts") == 0
    assert await _inbox_count(hub, "lgsp-nghean") == 0
    row = await hub.pool.fetchrow("SELECT reason, amqp_user, gateway_id FROM rejections")
    assert row is not None and dict(row) == {
        "reason": "GATEWAY_UNKNOWN", "amqp_user": None, "gateway_id": "vpcp"}


async def test_a_message_without_type_is_rejected(hub: Hub) -> None:
    """#11 item 7: the README calls ``type`` required; a package without it is refused
    with TYPE_MISSING, not routed."""
    await _setup(hub)
    await hub.start_router()
    _, good = edoc("000.00.00.G22", ["000.00.00.H41"])
    reply = await _publish_raw(hub, "vpcp", good, message_id="untyped-1",
                               user_id=hub.credentials["vpcp"].user)
    assert reply is not None and reply.type == "rejected"
    assert reply.reason is not None and reply.reason["reason"] == "TYPE_MISSING"
    assert reply.reason["code"] == 3100
    queued = await asyncio.wait_for(_queued_receipt(hub, "vpcp", "untyped-1"), 15)
    assert queued.receipt_id == reply.receipt_id
    assert await _inbox_count(hub, "lgsp-nghean") == 0


async def test_the_product_has_no_fault_hook(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old LIENTHONG_ENABLE_FAULTS switch is gone: a gateway's marker is just text."""
    monkeypatch.setenv("LIENTHONG_ENABLE_FAULTS", "1")
    await _setup(hub)
    await hub.start_router()
    _, marked = edoc("000.00.00.G22", ["000.00.00.H41"], extra_text=" LIENTHONG-FAULT:raise")
    async with hub.client("vpcp", receipt_timeout=30) as vpcp:
        receipt = await vpcp.send(marked)
    assert receipt is not None and receipt.type == "accepted", receipt
    assert await _inbox_count(hub, "lgsp-nghean") == 1


async def test_the_test_fault_hook_crashes_a_spawned_router(hub: Hub, tmp_path: Path) -> None:
    """tests/faults.py reaches router processes through PYTHONPATH (the chaos tests' way)."""
    await _setup(hub)
    routers = RouterProcesses(hub.settings, 1, log_path=tmp_path / "router.log", env=spawn_env())
    try:
        _, crash = edoc("000.00.00.G22", ["000.00.00.H41"], extra_text=" LIENTHONG-FAULT:crash")
        async with hub.client("vpcp", receipt_timeout=1) as vpcp:
            with contextlib.suppress(Exception):
                await vpcp.send(crash)
        deadline = asyncio.get_running_loop().time() + 60
        while routers.procs[0].poll() is None:
            assert asyncio.get_running_loop().time() < deadline, "the router did not crash"
            await asyncio.sleep(0.1)
        assert routers.procs[0].returncode == 70
    finally:
        routers.stop()
