"""Sizes at the edge of the hub (issue #11, item 3): the SDK refuses a package over the
hub's limit before publishing anything; the broker refuses messages over the hub's limit
plus a margin (set by `make setup`); when it does, the SDK says why at once and its next
send works without waiting for a reconnect."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.errors import PublishRefused, SendFailed
from router import topology
from router.directory.registry import AgencyRow
from router.settings import Settings
from schemas import LienthongError, PackageRejected, Reason
from tests.factory import edoc
from tests.hub import Hub, queue_depth


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([
        AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
        AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
    ])


async def test_sdk_refuses_a_package_over_the_limit_and_publishes_nothing(hub: Hub) -> None:
    await _setup(hub)
    too_big = b"<edXML>" + b"x" * hub.settings.max_package_bytes
    async with hub.client("vpcp") as vpcp:
        with pytest.raises(PackageRejected) as caught:
            await vpcp.send(too_big, validate=False, sender_code="000.00.00.G22", kind="edoc",
                            wait=False)
        assert caught.value.reason is Reason.PACKAGE_TOO_LARGE
        assert str(len(too_big)) in caught.value.detail
        # the same client goes on sending
        _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
        await vpcp.send(body, wait=False)
    # only the good one, waiting in vpcp's intake queue
    assert await queue_depth(hub, topology.intake_queue("vpcp")) == 1


async def test_broker_refusal_is_an_error_with_a_reason_and_the_next_send_is_immediate(
    hub: Hub,
) -> None:
    await _setup(hub)
    await hub.start_router()
    limit = Settings().max_message_bytes  # what `make setup` gives the broker
    over = b"<edXML>" + b"x" * limit
    # a client that does not check sizes itself (e.g. told a higher limit than the hub's)
    async with hub.client("vpcp", max_package_bytes=None, receipt_timeout=10) as vpcp:
        started = time.monotonic()
        with pytest.raises(LienthongError) as caught:
            await vpcp.send(over, validate=False, sender_code="000.00.00.G22", kind="edoc")
        assert time.monotonic() - started < 5, "the refused send must not hang"
        assert caught.value.reason is Reason.PACKAGE_TOO_LARGE, (
            "the broker accepted a message over the hub's limit: its max_message_size is "
            "not set (run `make setup`)")
        _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
        started = time.monotonic()
        receipt = await vpcp.send(body)
        took = time.monotonic() - started
        assert receipt is not None and receipt.type == "accepted"
        assert took < 1.0, f"the next send waited {took:.1f} s"


def test_a_refused_publish_is_a_send_failure_with_a_reason() -> None:
    err = PublishRefused("m-1", "406 PRECONDITION_FAILED")
    assert isinstance(err, SendFailed) and isinstance(err, LienthongError)
    assert err.as_dict()["code"] == Reason.PUBLISH_REFUSED.code


async def test_a_router_holds_no_more_unacknowledged_bytes_than_its_setting(hub: Hub) -> None:
    """The broker hands a router at most inflight_max_bytes / max message size messages."""
    from urllib.parse import quote

    hub.settings = hub.settings.with_(inflight_max_bytes=100 * 1024 * 1024)
    await hub.start_router()
    want = hub.settings.prefetch_count
    assert want * hub.settings.max_message_bytes <= 100 * 1024 * 1024
    path = f"/consumers/{quote(hub.settings.vhost, safe='')}"
    deadline = time.monotonic() + 30
    while True:  # the management API shows a consumer a moment after it starts
        consumers = await hub.admin.request("GET", path) or []
        router_in = [c for c in consumers if c["queue"]["name"] == "lt.router.in"]
        if router_in:
            break
        assert time.monotonic() < deadline, "no consumer on lt.router.in"
        await asyncio.sleep(0.2)
    assert [c["prefetch_count"] for c in router_in] == [want] == [3]
