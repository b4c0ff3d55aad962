"""AMQP-level fuzzing (issue #11): whatever routing key, properties, headers and body a
gateway publishes, with or without wildcard permissions, another gateway's good package
still routes within a second afterwards, and nothing is left looping in the hub's queues.

Raw publishing (tests/rawamqp.py) sends bytes the SDK never could. Deterministic under CI
(``derandomize``); about 40 cases, well under a minute."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router import topology
from router.directory.registry import AgencyRow
from tests.factory import edoc
from tests.hub import Hub, queue_depth
from tests.rawamqp import publish_raw, wire_text

_GOOD_PACKAGE = edoc("000.00.00.H41", ["000.00.00.G22"])[1]

_wire_bytes = st.binary(max_size=40)
_short = st.one_of(_wire_bytes, st.sampled_from([b"", b"000.00.00.H41", b"H41", b"\xff\xfe.H41",
                                                  b"\x00.H41", b"a b.H41", b"#", b"*.H41"]))
_header_value = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.text(max_size=20), _wire_bytes.map(wire_text),
    st.lists(st.text(max_size=5), max_size=3),
)
_headers = st.dictionaries(_wire_bytes.filter(lambda b: len(b) < 100).map(wire_text),
                           _header_value, max_size=4)
_case = st.fixed_dictionaries({
    "wildcard": st.booleans(),
    "routing_key": _short,
    "body": st.one_of(st.binary(max_size=300), st.just(_GOOD_PACKAGE)),
    "message_id": st.one_of(st.none(), _short.map(wire_text)),
    "message_type": st.one_of(st.none(), st.sampled_from(["edoc", "status"]),
                              _wire_bytes.map(wire_text)),
    "headers": _headers,
    "own_user_id": st.booleans(),
})


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_gateway("wild", serves=["#"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])


async def test_nothing_a_gateway_publishes_stops_routing(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router(2)
    seen = {"published": 0, "refused": 0}

    async with hub.client("vpcp", receipt_timeout=5) as vpcp:

        loop = asyncio.get_running_loop()

        async def one(case: dict[str, Any]) -> None:
            gateway = "wild" if case["wildcard"] else "lgsp-nghean"
            user = hub.credentials[gateway].user
            props: dict[str, Any] = {
                "message_id": case["message_id"], "message_type": case["message_type"],
                "headers": case["headers"], "delivery_mode": 2,
                "user_id": user if case["own_user_id"] else "someone-else",
            }
            ok = await publish_raw(hub.gateway_url(gateway), exchange=topology.SUBMIT,
                                   routing_key=case["routing_key"], body=case["body"],
                                   properties={k: v for k, v in props.items() if v is not None})
            seen["published" if ok else "refused"] += 1
            started = time.monotonic()
            receipt = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
            assert receipt is not None and receipt.type == "accepted"
            assert time.monotonic() - started < 1.0

        # Hypothesis drives a plain function (in a worker thread); each case runs on this
        # test's event loop, where the routers and the SDK client live.
        @settings(max_examples=40, deadline=None, derandomize=bool(os.environ.get("CI")),
                  database=None, suppress_health_check=list(HealthCheck))
        @given(case=_case)
        def run_case(case: dict[str, Any]) -> None:
            asyncio.run_coroutine_threadsafe(one(case), loop).result(timeout=60)

        await asyncio.to_thread(run_case)

    # nothing is left going round: the router queue drains, parking holds nothing unread
    async def drained() -> bool:
        return (await queue_depth(hub, topology.ROUTER_IN) == 0
                and await queue_depth(hub, topology.PARKING) == 0)

    deadline = time.monotonic() + 10
    while not await drained():
        assert time.monotonic() < deadline, "messages left in lt.router.in or lt.parking"
        await asyncio.sleep(0.1)
    assert seen["published"] > 0 and seen["refused"] > 0  # both sides were exercised
    q = await hub.admin.get_queue(hub.settings.vhost, topology.ROUTER_IN)
    assert q is not None and q.get("consumers", 2) == 2
