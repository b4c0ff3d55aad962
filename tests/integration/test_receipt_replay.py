"""Receipt queues are bounded, and a gateway that was away fetches what it missed from
the ledger (issue #11, item 5): every receipt once, with its original receipt_id, signed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from click.testing import CliRunner

from adapters import GatewayClient
from adapters.client import ReplayFailed
from router.cli import main as cli
from router.directory.registry import AgencyRow
from router.outbox.signing import HUB_KEY_ENV, generate_hub_key
from router.routing.batch import derive_id
from schemas import Reason, StatusCode
from schemas.receipt import Receipt, verify_receipt
from tests.factory import edoc, status
from tests.hub import Hub, throwaway_hub

BOUND = 5


@pytest.fixture
async def small_hub(template_db: str) -> AsyncIterator[Hub]:
    async with throwaway_hub(template_db, receipts_max_length=BOUND) as h:
        yield h


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([
        AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
        AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
    ])


async def _publish_away(hub: Hub, bodies: list[tuple[bytes, str]]) -> None:
    """What a gateway that does not read its receipts sends: plain AMQP, no consumer."""
    user = hub.credentials["vpcp"].user
    connection = await aio_pika.connect(hub.gateway_url("vpcp"))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("lt.submit", ensure=False)
        for i, (body, kind) in enumerate(bodies):
            await exchange.publish(
                aio_pika.Message(body, message_id=f"away-{i}", user_id=user, type=kind),
                routing_key="000.00.00.G22")


async def _until(check: Any, what: str, seconds: float = 30.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _expected_ids(hub: Hub) -> set[str]:
    """Every receipt the hub owes vpcp, computed from the ledger on its own."""
    docs = await hub.pool.fetch(
        "SELECT hub_id FROM documents WHERE sender_gateway_id = 'vpcp'")
    rejections = await hub.pool.fetch("SELECT id FROM rejections WHERE gateway_id = 'vpcp'")
    events = await hub.pool.fetch(
        """SELECT e.status_hub_id FROM status_events e
           JOIN deliveries d ON d.id = e.delivery_id JOIN documents doc ON doc.hub_id = d.hub_id
           WHERE doc.sender_gateway_id = 'vpcp' AND e.status_hub_id IS NOT NULL""")
    return ({str(derive_id("accepted", r["hub_id"])) for r in docs}
            | {str(derive_id("receipt", r["id"])) for r in rejections}
            | {str(derive_id("event", r["status_hub_id"])) for r in events})


async def test_a_gateway_that_was_away_replays_every_missed_receipt_once(
    small_hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = small_hub
    signer = generate_hub_key(tmp_path / "hub.key")
    monkeypatch.setenv(HUB_KEY_ENV, str(tmp_path / "hub.key"))
    hub.settings = hub.settings.with_(hub_key=str(tmp_path / "hub.key"))
    await _setup(hub)
    await hub.start_router()
    started = datetime.now(UTC) - timedelta(seconds=1)

    docs = [edoc("000.00.00.G22", ["000.00.00.H41"]) for _ in range(9)]
    bad = [(b"<not-edxml/>", "edoc"), (b"", "edoc")]
    # the refused ones first: the oldest receipts, which the bounded queue drops, so the
    # replay (not the queue's newest) must be what brings them back
    await _publish_away(hub, bad + [(body, "edoc") for _, body in docs])
    # the recipient answers two documents: events for the sender
    async with hub.client("lgsp-nghean") as ng:
        for pkg, _ in docs[:2]:
            _, answer = status("000.00.00.H41", pkg, StatusCode.ARRIVED)
            r = await ng.send(answer)
            assert r is not None and r.type == "accepted"

    async def all_recorded() -> bool:
        return len(await _expected_ids(hub)) == len(docs) + len(bad) + 2
    await _until(all_recorded, "the ledger to hold every package and event")
    expected = await _expected_ids(hub)

    async def bounded() -> bool:
        q = await hub.admin.get_queue(hub.settings.vhost, "lt.gw.vpcp.receipts")
        return q is not None and q.get("policy") == "lt-gateway-receipts" and \
            q.get("messages") == BOUND
    await _until(bounded, f"the receipts queue to hold its bound of {BOUND}")

    # the gateway comes back: the queue gives the newest, the replay the rest, each once
    async with hub.client("vpcp") as vpcp:
        replayed = [r async for r in vpcp.replay_receipts(since=started, page_size=4)]
        assert vpcp.replay_cursor is not None
        from_queue: list[Receipt] = []

        async def drained() -> bool:
            while not vpcp._other_receipts.empty():
                from_queue.append(vpcp._other_receipts.get_nowait())
            q = await hub.admin.get_queue(hub.settings.vhost, "lt.gw.vpcp.receipts")
            got = {r.receipt_id for r in replayed + from_queue}
            return got >= expected and q is not None and q.get("messages") == 0
        await _until(drained, "every receipt, from the replay and the queue")
        while not vpcp._other_receipts.empty():
            from_queue.append(vpcp._other_receipts.get_nowait())

        every = [r.receipt_id for r in replayed + from_queue]
        assert sorted(every) == sorted(expected), "each receipt exactly once"
        assert len(replayed) >= len(expected) - BOUND
        public = signer.public_key_pem()
        for r in replayed:
            verify_receipt(r.to_json(), public)  # signed by the hub like the originals
        kinds = {r.type for r in replayed}
        assert {"accepted", "rejected"} <= kinds
        rejected = [r for r in replayed if r.type == "rejected"]
        assert all(r.reason and r.reason["reason"] for r in rejected)

        # going on from the cursor: nothing new, nothing again
        again = [r async for r in vpcp.replay_receipts(after=vpcp.replay_cursor)]
        assert again == []
        # a fresh client (another server of the gateway) gets the whole history
    async with hub.client("vpcp") as other:
        history = [r async for r in other.replay_receipts(since=started)]
        assert {r.receipt_id for r in history} == expected


async def test_a_bad_replay_request_gets_a_reason(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        with pytest.raises(ReplayFailed) as caught:
            async for _ in vpcp.replay_receipts(after="not-a-cursor"):
                pass
        assert caught.value.reason is Reason.REPLAY_BAD_REQUEST
        # the client and the hub go on
        _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
        r = await vpcp.send(body)
        assert r is not None and r.type == "accepted"


async def test_topology_apply_bounds_the_live_receipts_queues(hub: Hub) -> None:
    await _setup(hub)
    env = {
        "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
        "LIENTHONG_DATABASE_URL": hub.settings.database_url,
        "LIENTHONG_MANAGEMENT_URL": hub.settings.management_url,
        "LIENTHONG_RECEIPTS_MAX_LENGTH": "7",
        "LIENTHONG_RECEIPTS_MAX_BYTES": "123456",
    }
    # a gateway provisioned by an earlier version may not write to lt.replay
    user = hub.credentials["vpcp"].user
    await hub.admin.set_permissions(hub.settings.vhost, user, configure="^$",
                                    write="^lt\\.submit$", read=".*")
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["topology", "apply"], env=env)
    assert result.exit_code == 0, result.output
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:  # may ask for a replay again
        got = [r async for r in vpcp.replay_receipts(since=datetime.now(UTC))]
        assert got == []

    async def applied() -> dict[str, Any] | None:
        q = await hub.admin.get_queue(hub.settings.vhost, "lt.gw.vpcp.receipts")
        d = (q or {}).get("effective_policy_definition") or {}
        return q if d.get("max-length") == 7 else None
    q = await _until(applied, "the new bound on the live queue")
    d = q["effective_policy_definition"]
    assert d["max-length-bytes"] == 123456 and d["overflow"] == "drop-head"
    assert q["policy"] == "lt-gateway-receipts"


async def test_operator_replays_a_gateways_receipts_from_the_cli(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router()
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    async with hub.client("vpcp") as vpcp:
        sent = [await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1]) for _ in range(3)]
    env = {"LIENTHONG_DATABASE_URL": hub.settings.database_url}
    result = await asyncio.to_thread(
        CliRunner().invoke, cli,
        ["receipts", "replay", "--gateway", "vpcp", "--since", since], env=env)
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("{")]
    got = [Receipt.from_json(ln).receipt_id for ln in lines]
    assert got == [r.receipt_id for r in sent if r is not None]


def test_client_refuses_a_replay_without_a_start() -> None:
    client = GatewayClient("amqp://u:p@127.0.0.1:5672/x")
    client._channel = object()  # type: ignore[assignment]
    with pytest.raises(ValueError, match="since or after"):
        asyncio.run(anext(client.replay_receipts()))  # type: ignore[arg-type]
