"""AMQP failover between endpoints, against the real RabbitMQ: a gateway whose URL names
two hosts connects past a dead one and moves to the other when its node goes away.

The "node" that goes away is a TCP relay in front of the real broker, closed mid-session
(the cluster tests in tests/cluster kill real RabbitMQ nodes)."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import quote

import pytest

from adapters import endpoints
from adapters.endpoints import FailoverConnection, connect_failover
from router.directory.registry import AgencyRow
from tests.factory import edoc
from tests.hub import AMQP_HOST, Hub
from tests.polling import eventually
from tests.relay import Relay


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_connect_skips_a_dead_endpoint(hub: Hub) -> None:
    dead = _closed_port()
    url = (f"amqp://guest:guest@127.0.0.1:{dead},{AMQP_HOST}:5672/"
           f"{quote(hub.settings.vhost, safe='')}")
    connection = await connect_failover(url)
    try:
        assert isinstance(connection, FailoverConnection)
        assert connection.url.port == 5672
        channel = await connection.channel()
        q = await channel.declare_queue(exclusive=True)
        assert q.name
    finally:
        await connection.close()


async def test_no_endpoint_answering_is_an_error_not_a_hang(hub: Hub) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{_closed_port()},127.0.0.1:{_closed_port()}/x"
    try:
        await asyncio.wait_for(connect_failover(url), 15)
    except ConnectionError:
        return
    raise AssertionError("connected to nothing")


async def test_gateway_keeps_sending_and_receiving_when_its_node_goes_away(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    # clients start at a random host (to spread over a cluster): this one starts at the first
    monkeypatch.setattr(endpoints.random, "randrange", lambda n: 0)
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("btc", serves=["000.00.00.G12"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.G12", "Bộ Tài chính")])
    await hub.start_router()
    relay = Relay()
    await relay.start()
    direct = hub.gateway_url("vpcp")
    # the relay first, the real broker second: the client starts on the relay
    two_hosts = direct.replace(f"@{AMQP_HOST}:5672/", f"@127.0.0.1:{relay.port},{AMQP_HOST}:5672/")
    async with hub.client("btc") as btc:
        sender = hub.client("vpcp")
        sender.amqp_url = two_hosts
        async with sender:
            assert relay.connections == 1
            before = await sender.send(edoc("000.00.00.G22", ["000.00.00.G12"], number="1")[1])
            assert before is not None and before.type == "accepted", before
            await relay.close()  # the node dies under the client
            conn = sender._connection
            assert isinstance(conn, FailoverConnection)
            await eventually(lambda: conn.url.port == 5672 and conn.connected.is_set(),
                             timeout=20, what="the client reconnected to the other node")
            after = await sender.send(edoc("000.00.00.G22", ["000.00.00.G12"], number="2")[1])
            assert after is not None and after.type == "accepted", after
            assert conn.failovers >= 1
        got = []
        async for msg in btc.inbox(timeout=10):
            async with msg.process():
                got.append(msg.hub_id)
            if len(got) == 2:
                break
        assert sorted(got) == sorted([before.hub_id, after.hub_id])
