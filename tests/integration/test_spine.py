"""The routing spine end to end on the real RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio

import aio_pika

from adapters import GatewayClient
from router.directory.registry import AgencyRow
from schemas import StatusCode
from tests.factory import edoc, status
from tests.hub import Hub, queue_depth


async def _directory(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"], kind="agency")
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_gateway("bo-tai-chinh", serves=["000.00.00.G12"], kind="ministry")
    await hub.add_agencies(
        [
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
            AgencyRow("000.00.00.G12", "Bộ Tài chính", aliases=("G12",)),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
            AgencyRow("000.00.01.H41", "UBND TP Vinh", parent="000.00.00.H41"),
        ]
    )


async def test_document_fans_out_and_status_comes_back(hub: Hub) -> None:
    await _directory(hub)
    await hub.start_router()
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.01.H41", "G12", "000.00.00.G12"])
    async with hub.client("vpcp") as vpcp, hub.client("lgsp-nghean") as na, \
            hub.client("bo-tai-chinh") as btc:
        receipt = await vpcp.send(body)
        assert receipt is not None and receipt.type == "accepted", receipt
        # G12 and 000.00.00.G12 are one agency: one delivery, and a warning says so
        agencies = sorted(r.agency for r in receipt.recipients if r.agency)
        assert agencies == ["000.00.00.G12", "000.00.00.H41", "000.00.01.H41"]
        assert all(r.state == "queued" for r in receipt.recipients)
        assert any(w["warning"] == "DUPLICATE_RECIPIENT_ALIAS" for w in receipt.warnings)

        # the province platform gets ONE copy naming both of its recipient agencies
        got = [m async for m in _take(na, 1)]
        assert got[0].body == body  # bytes unchanged
        assert sorted(got[0].recipients) == ["000.00.00.H41", "000.00.01.H41"]
        assert got[0].hub_id == receipt.hub_id
        btc_got = [m async for m in _take(btc, 1)]
        assert btc_got[0].recipients == ["000.00.00.G12"]

        # Nghệ An answers 01 then 03; VPCP gets both status packages and delivery events
        for code in (StatusCode.ARRIVED, StatusCode.ACCEPTED):
            _, sbody = status("000.00.00.H41", doc, code)
            r = await na.send(sbody)
            assert r is not None and r.type == "accepted", r
        statuses = [m async for m in _take(vpcp, 2)]
        assert [m.status_code for m in statuses] == ["01", "03"]
        events = await _events(vpcp, 2)
        assert [(e.status_code, e.state) for e in events] == [("01", "arrived"),
                                                               ("03", "accepted")]
        row = await hub.pool.fetchrow(
            "SELECT state, last_status_code FROM deliveries WHERE recipient_code = $1",
            "000.00.00.H41",
        )
        assert row is not None and tuple(row) == ("accepted", "03")


async def test_resubmission_is_a_duplicate_and_conflict_is_rejected(hub: Hub) -> None:
    await _directory(hub)
    await hub.start_router()
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"], number="42")
    async with hub.client("vpcp") as vpcp:
        first = await vpcp.send(body)
        again = await vpcp.send(body)
        assert first is not None and again is not None
        assert (first.type, again.type) == ("accepted", "duplicate")
        assert again.hub_id == first.hub_id
        _, changed = edoc("000.00.00.G22", ["000.00.00.H41"], number="42", subject="Khác")
        clash = await vpcp.send(changed)
        assert clash is not None and clash.type == "rejected"
        assert clash.reason is not None and clash.reason["reason"] == "DOCUMENT_ID_CONFLICT"
    n = await hub.pool.fetchval("SELECT count(*) FROM deliveries")
    assert n == 1


async def _take(client, n: int):  # type: ignore[no-untyped-def]
    count = 0
    async for msg in client.inbox(timeout=10):
        async with msg.process():
            yield msg
        count += 1
        if count == n:
            return


async def _events(client, n: int):  # type: ignore[no-untyped-def]
    out = []
    it = client.receipts()
    while len(out) < n:
        r = await asyncio.wait_for(it.__anext__(), 10)
        if r.type == "delivery":
            out.append(r)
    return out


async def test_two_clients_of_one_gateway_each_get_their_own_receipts(hub: Hub) -> None:
    """A ministry runs its gateway on two servers: every send gets its own receipt,
    although both clients consume the gateway's one receipts queue."""
    await _directory(hub)
    await hub.start_router()
    async with hub.client("vpcp", receipt_timeout=20) as a, \
            hub.client("vpcp", receipt_timeout=20) as b:

        async def send_many(client: GatewayClient, tag: str) -> list[tuple[str, str]]:
            async def one(i: int) -> tuple[str, str]:
                r = await client.send(edoc("000.00.00.G22", ["G12"])[1],
                                      message_id=f"{tag}-{i}")
                assert r is not None
                return r.type, r.message_id or ""
            return list(await asyncio.gather(*(one(i) for i in range(20))))

        got_a, got_b = await asyncio.gather(send_many(a, "a"), send_many(b, "b"))
    assert got_a == [("accepted", f"a-{i}") for i in range(20)]
    assert got_b == [("accepted", f"b-{i}") for i in range(20)]


async def test_a_reply_to_naming_a_queue_gets_nothing_there(hub: Hub) -> None:
    """Only RabbitMQ's direct reply-to addresses are answered: a sender cannot make the
    hub write its receipt into another gateway's queue."""
    await _directory(hub)
    await hub.start_router()
    connection = await aio_pika.connect(hub.gateway_url("vpcp"))
    async with connection, hub.client("vpcp") as vpcp:
        channel = await connection.channel(publisher_confirms=True)
        submit = await channel.get_exchange("lt.submit", ensure=False)
        await submit.publish(
            aio_pika.Message(edoc("000.00.00.G22", ["H41"])[1], message_id="evil-1",
                             user_id=hub.credentials["vpcp"].user, type="edoc",
                             reply_to="lt.gw.bo-tai-chinh.inbox"),
            routing_key="000.00.00.G22",
        )
        # the receipt still reaches the sender's own queue
        receipt = await asyncio.wait_for(anext(aiter(vpcp.receipts())), 15)
        assert (receipt.type, receipt.message_id) == ("accepted", "evil-1")
    assert await queue_depth(hub, "lt.gw.bo-tai-chinh.inbox") == 0
