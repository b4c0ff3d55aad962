"""Nothing a gateway publishes can stop the axis (issue #11): undecodable routing keys,
properties and headers, published with a raw client against the real broker and routers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika
import pytest

from router import topology
from router.directory.registry import AgencyRow
from router.recovery import parking
from schemas.receipt import Receipt
from tests.factory import edoc
from tests.hub import Hub, queue_depth
from tests.rawamqp import publish_raw, wire_text

BAD_KEY = b"\xff\xfe.H41"


async def until(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {within} s")
        await asyncio.sleep(0.05)


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])


async def _good_package_routes(hub: Hub, within: float = 1.0) -> None:
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp", receipt_timeout=within) as vpcp:
        started = time.monotonic()
        receipt = await vpcp.send(body)
        assert receipt is not None and receipt.type == "accepted"
        assert time.monotonic() - started < within


async def test_permissions_refuse_a_routing_key_that_is_not_an_agency_code(hub: Hub) -> None:
    await _setup(hub)
    user = hub.credentials["lgsp-nghean"].user
    _, body = edoc("000.00.00.H41", ["000.00.00.G22"])
    url = hub.gateway_url("lgsp-nghean")
    props = {"user_id": user, "message_id": "m1", "message_type": "edoc"}
    assert not await publish_raw(url, exchange=topology.SUBMIT, routing_key=BAD_KEY, body=body,
                                 properties=props)
    assert not await publish_raw(url, exchange=topology.SUBMIT, routing_key=b"a b.H41",
                                 body=body, properties=props)
    assert await publish_raw(url, exchange=topology.SUBMIT, routing_key=b"000.00.00.H41",
                             body=body, properties=props)


async def test_an_undecodable_envelope_is_rejected_and_routing_goes_on(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router(2)
    user = hub.credentials["lgsp-nghean"].user
    # the permission an older version wrote for "#": any byte passes the broker
    await hub.admin.set_topic_permissions(hub.settings.vhost, user, exchange=topology.SUBMIT,
                                          write="^.*$")
    _, body = edoc("000.00.00.H41", ["000.00.00.G22"])
    ok = await publish_raw(
        hub.gateway_url("lgsp-nghean"), exchange=topology.SUBMIT, routing_key=BAD_KEY,
        body=body,
        properties={"user_id": user, "message_id": wire_text(b"id-\xc3\x28"),
                    "message_type": "edoc",
                    "headers": {wire_text(b"k\xff"): "v", "lt-sent-at": 1.0}},
    )
    assert ok
    await _good_package_routes(hub)

    # the sender hears why, in its receipts queue (its user is known: RabbitMQ checked it)
    async with hub.client("lgsp-nghean") as nghean:
        receipt: Receipt = await asyncio.wait_for(anext(aiter(nghean.receipts())), 10)
    assert receipt.type == "rejected" and receipt.reason is not None
    assert receipt.reason["reason"] == "BAD_MESSAGE_PROPERTIES"
    assert receipt.reason["code"] == 1100
    assert "routing_key" in receipt.reason["detail"] and "\\xff\\xfe" in receipt.reason["detail"]
    row = await hub.pool.fetchrow("SELECT * FROM rejections")
    assert row is not None and row["reason"] == "BAD_MESSAGE_PROPERTIES"
    assert row["routing_key"] == "\\xff\\xfe.H41" and bytes(row["body"]) == body
    assert row["gateway_id"] == "lgsp-nghean"
    # nothing was delivered for it, nothing parked, nothing loops
    assert await queue_depth(hub, "lt.gw.vpcp.inbox") == 0
    assert await queue_depth(hub, topology.PARKING) == 0
    q = await hub.admin.get_queue(hub.settings.vhost, topology.ROUTER_IN)
    assert q is not None and q.get("consumers", 2) == 2


async def test_parking_records_what_it_cannot_decode(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router()
    ok = await publish_raw(
        hub.settings.amqp_url, exchange=topology.DEAD, routing_key=BAD_KEY, body=b"<x/>",
        properties={"message_id": wire_text(b"\xff"),
                    "headers": {wire_text(b"\xfe\xff"): {wire_text(b"\xfa"): 1},
                                "x-first-death-queue": topology.ROUTER_IN}},
    )
    assert ok

    async def listed() -> bool:
        async with hub.pool.acquire() as conn:
            return bool(await parking.list_parked(conn, parking.ParkedFilter()))

    await until(listed)
    async with hub.pool.acquire() as conn:
        (rec,) = await parking.list_parked(conn, parking.ParkedFilter())
    assert rec["routing_key"] == "\\xff\\xfe.H41" and rec["message_id"] == "\\xff"
    assert "BAD_MESSAGE_PROPERTIES" in rec["error"] and rec["reason"] == "POISON"
    assert await queue_depth(hub, topology.PARKING) == 0
    await _good_package_routes(hub)


async def test_what_parking_cannot_record_goes_to_quarantine(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router()
    # jsonb cannot hold U+0000: this one's headers cannot be copied into the ledger
    ok = await publish_raw(hub.settings.amqp_url, exchange=topology.DEAD, routing_key=b"k",
                           body=b"<nul/>", properties={"message_id": "nul-1",
                                                       "headers": {"x": "a\x00b"}})
    assert ok

    async def quarantined() -> bool:
        return await queue_depth(hub, topology.QUARANTINE) == 1

    await until(quarantined)
    assert await queue_depth(hub, topology.PARKING) == 0
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        rows = await parking.list_quarantine(await connection.channel())
    assert [r["message_id"] for r in rows] == ["nul-1"] and rows[0]["body"] == b"<nul/>"
    assert "Unicode" in rows[0]["error"]  # PostgreSQL's own words: why it was not kept
    assert await queue_depth(hub, topology.QUARANTINE) == 1  # listing removes nothing
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection, hub.pool.acquire() as conn:
        n = await parking.drop_quarantined(conn, await connection.channel(), [rows[0]["id"]],
                                           actor="test", why="hostile test message")
    assert n == 1
    assert await queue_depth(hub, topology.QUARANTINE) == 0
    audit = await hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'quarantine.dropped'")
    assert audit == 1


async def test_lt_parking_has_a_delivery_limit_into_the_quarantine(hub: Hub) -> None:
    async def has_policy() -> bool:  # the management API reports policies with a lag
        q = await hub.admin.get_queue(hub.settings.vhost, topology.PARKING)
        return q is not None and q.get("policy") == "lt-parking"

    await until(has_policy, within=30)
    q = await hub.admin.get_queue(hub.settings.vhost, topology.PARKING)
    assert q is not None
    definition = q["effective_policy_definition"]
    assert definition["dead-letter-exchange"] == topology.QUARANTINE
    assert definition["delivery-limit"] == topology.PARKING_DELIVERY_LIMIT
