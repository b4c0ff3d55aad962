"""What a gateway developer sees from the SDK when things go wrong, on the real broker:
a send that timed out is re-sent with the id the error carries and answered with the
original outcome marked ``repeat``; a publish RabbitMQ refuses raises PublishRefused and
the same client goes on working."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest

from adapters import PublishRefused, ReceiptTimeout
from router.directory.registry import AgencyRow
from schemas.reasons import Reason
from schemas.wire_names import SUBMIT, receipts_queue
from tests.factory import edoc
from tests.hub import Hub
from tests.polling import eventually


async def _directory(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])


async def test_a_timed_out_send_is_resent_with_its_message_id(hub: Hub) -> None:
    await _directory(hub)
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp", receipt_timeout=1.0) as gw:
        # no router runs yet: the package waits in its intake queue, no receipt comes
        with pytest.raises(ReceiptTimeout) as err:
            await gw.send(body)
        assert isinstance(err.value, TimeoutError)
        assert err.value.reason is Reason.RECEIPT_TIMEOUT and err.value.message_id
        [router] = await hub.start_router()
        gw.receipt_timeout = 30.0
        resent = await gw.send(body, message_id=err.value.message_id)
        # both sends reach the router, in one batch or two: the answer is the first one's
        # acceptance, the re-send's duplicate in the same batch, or (a later batch) the
        # acceptance repeated — marked repeat; one hub_id whichever it is
        assert resent is not None and resent.hub_id, resent
        assert (resent.type, resent.repeat) in {
            ("accepted", False), ("duplicate", True), ("accepted", True)}

        async def both_answered() -> bool:
            return router.stats.messages == 2

        await eventually(both_answered, timeout=30, what="both sends routed and answered")
        if router.stats.duplicates:
            # one batch: the other send's receipt (its own receipt_id) is still on its way,
            # and would answer the next send of this message_id: take it first, from the
            # feed of receipts no send waits for
            other = await asyncio.wait_for(anext(aiter(gw.receipts())), 30)
            assert other.message_id == err.value.message_id
            assert {other.type, resent.type} == {"accepted", "duplicate"}
        again = await gw.send(body, message_id=err.value.message_id)
    # once recorded, a re-send is answered with the package's acceptance (one hub_id)
    assert again is not None and again.type == "accepted", again
    assert again.hub_id == resent.hub_id
    async with hub.pool.acquire() as conn:  # one document, one delivery, in the ledger
        documents = await conn.fetch(
            "SELECT hub_id::text FROM documents WHERE message_id = $1", err.value.message_id)
        deliveries = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE hub_id::text = $1", resent.hub_id)
    assert [r["hub_id"] for r in documents] == [resent.hub_id] and deliveries == 1


async def test_a_resend_gets_the_first_acceptance_marked_repeat(hub: Hub) -> None:
    """What a gateway in any language sees in its receipts queue: the first answer, then
    for the re-send the same receipt (same receipt_id) with ``repeat: true``; the same
    content under a new message_id is a ``duplicate``, not a repeat."""
    await _directory(hub)
    await hub.start_router()
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    user = hub.credentials["vpcp"].user
    connection = await aio_pika.connect(hub.gateway_url("vpcp"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        submit = await channel.get_exchange(SUBMIT, ensure=False)
        receipts = await channel.get_queue(receipts_queue("vpcp"), ensure=False)

        async def answer() -> dict[str, Any]:
            async def take() -> dict[str, Any] | None:
                m = await receipts.get(fail=False, no_ack=True)
                return None if m is None else dict(json.loads(m.body))
            return await eventually(take, timeout=30, what="a receipt")

        async def send(message_id: str) -> dict[str, Any]:
            await submit.publish(aio_pika.Message(body, message_id=message_id, user_id=user,
                                                  type="edoc"), routing_key="000.00.00.G22")
            return await answer()

        first, second, third = await send("m-1"), await send("m-1"), await send("m-2")
    assert (first["type"], first["repeat"]) == ("accepted", False)
    assert (second["type"], second["repeat"]) == ("accepted", True)
    assert (second["receipt_id"], second["hub_id"]) == (first["receipt_id"], first["hub_id"])
    assert (third["type"], third["repeat"], third["hub_id"]) == (
        "duplicate", False, first["hub_id"])


async def test_a_refused_publish_raises_and_the_client_goes_on(hub: Hub) -> None:
    await _directory(hub)
    await hub.start_router()
    _, theirs = edoc("000.00.00.H41", ["000.00.00.G22"])  # an agency vpcp does not serve
    _, ours = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp", receipt_timeout=30.0) as gw:
        with pytest.raises(PublishRefused) as err:
            await gw.send(theirs, message_id="not-mine")
        assert err.value.reason is Reason.PUBLISH_REFUSED
        assert err.value.message_id == "not-mine" and "ACCESS_REFUSED" in str(err.value)
        receipt = await gw.send(ours)  # the same client, a new channel
    assert receipt is not None and receipt.type == "accepted", receipt


async def _cli(hub: Hub, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
           "LIENTHONG_AMQP_USER_PREFIX": hub.settings.amqp_user_prefix,
           "LIENTHONG_GATEWAY_PASSWORD": hub.credentials["vpcp"].password}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_lienthong_send_prints_the_id_to_resend_with(hub: Hub, tmp_path: Path) -> None:
    await _directory(hub)
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    package = tmp_path / "cong-van.edxml"
    package.write_bytes(body)
    code, _, err = await _cli(hub, "send", str(package), "--gateway", "vpcp", "--timeout", "1")
    assert code == 1, err
    found = re.search(r"--message-id (\S+)", err)
    assert found, err
    await hub.start_router()
    code, out, err = await _cli(hub, "send", str(package), "--gateway", "vpcp",
                                "--message-id", found.group(1))
    assert code == 0, err
    receipt = json.loads(out)
    assert receipt["message_id"] == found.group(1) and receipt["type"] in ("accepted",
                                                                          "duplicate")


async def test_the_connection_shows_its_name_in_rabbitmq(hub: Hub) -> None:
    await _directory(hub)
    vhost = quote(hub.settings.vhost, safe="")

    async with hub.client("vpcp", connection_name="vpcp server 2") as gw:
        async def named() -> list[str] | None:
            rows = await hub.admin.request("GET", f"/vhosts/{vhost}/connections") or []
            names = [r.get("client_properties", {}).get("connection_name") for r in rows]
            return names if "vpcp server 2" in names else None
        assert await eventually(named, timeout=30, interval=0.5, what="the named connection")
        assert gw.connection_name == "vpcp server 2"
