"""Every receipt the hub emits is signed with the hub's key, whichever path emits it: the
routing worker, a re-delivery (CLI or ops API), `lienthong deadlines`, a parked copy. An
ops-API re-delivery tells the senders, like the CLI's."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from router.cli.recovery import redeliver as redeliver_cli
from router.cli.tracking import deadlines as deadlines_cli
from router.directory.registry import AgencyRow
from router.ops.auth import TokenStore
from router.ops.server import create_app
from router.outbox.signing import generate_hub_key
from router.topology import declare_gateway, inbox_queue, receipts_queue
from schemas.receipt import verify_receipt
from tests.factory import edoc
from tests.hub import Hub, throwaway_hub

OPERATOR = "operator-token-0123456789abcdef"




@pytest.fixture
async def signing_hub(
    template_db: str, tmp_path: Path
) -> AsyncIterator[tuple[Hub, Path, bytes]]:
    """A hub that signs receipts with a fresh key; yields (hub, key file, public key PEM)."""
    key = tmp_path / "hub.key"
    public = generate_hub_key(key).public_key_pem()
    async with throwaway_hub(template_db, hub_key=str(key)) as hub:
        yield hub, key, public


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])


async def _undeliverable_then_inbox_back(hub: Hub) -> str:
    """vpcp sends one document whose copy cannot be delivered (the province's inbox is
    gone); the inbox then comes back. Returns the hub id."""
    await hub.admin.request(
        "DELETE", f"/queues/{hub.settings.vhost}/{inbox_queue('lgsp-nghean')}",
        ok_missing=True,
    )
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
    assert receipt is not None and receipt.recipients[0].state == "undeliverable"
    assert receipt.hub_id
    conn = await aio_pika.connect(hub.settings.amqp_url)
    async with conn:
        await declare_gateway(await conn.channel(), "lgsp-nghean")
    return receipt.hub_id


class ReceiptsFeed:
    """What lands in a gateway's receipts queue, read straight from the broker."""

    def __init__(self, hub: Hub, gateway: str) -> None:
        self.hub = hub
        self.queue = receipts_queue(gateway)
        self.seen: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    async def until(self, wanted: Any, within: float = 20.0) -> list[dict[str, Any]]:
        """Read until ``wanted(receipt)`` matched one receipt; returns all read so far."""
        deadline = time.monotonic() + within
        conn = await aio_pika.connect(self.hub.settings.amqp_url)
        async with conn:
            channel = await conn.channel()
            queue = await channel.get_queue(self.queue, ensure=False)
            while True:
                msg = await queue.get(fail=False, no_ack=True)
                if msg is not None:
                    self.raw.append(msg.body)
                    self.seen.append(json.loads(msg.body))
                    if wanted(self.seen[-1]):
                        return self.seen
                    continue
                if time.monotonic() > deadline:
                    raise AssertionError(f"no such receipt in {self.queue}: {self.seen}")
                await asyncio.sleep(0.2)


def _event(state: str, flag: str | None = None) -> Any:
    return lambda r: r["type"] == "delivery" and r["state"] == (flag or state)


def _all_verify(feed: ReceiptsFeed, public: bytes) -> None:
    assert feed.raw
    for body in feed.raw:
        verify_receipt(body, public)  # raises ReceiptSignatureError when unsigned or forged


def _cli_env(hub: Hub, key: Path) -> dict[str, str]:
    return {"LIENTHONG_AMQP_URL": hub.settings.amqp_url,
            "LIENTHONG_DATABASE_URL": hub.settings.database_url,
            "LIENTHONG_MANAGEMENT_URL": hub.settings.management_url,
            "LIENTHONG_HUB_KEY": str(key)}


async def test_receipts_of_the_worker_redeliver_and_deadlines_commands_are_signed(
    signing_hub: tuple[Hub, Path, bytes],
) -> None:
    hub, key, public = signing_hub
    await _setup(hub)
    await _undeliverable_then_inbox_back(hub)
    feed = ReceiptsFeed(hub, "vpcp")
    runner = CliRunner()
    env = _cli_env(hub, key)

    done = await asyncio.to_thread(
        runner.invoke, redeliver_cli, ["--gateway", "lgsp-nghean", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    await feed.until(_event("queued"))  # the sender hears its copy is on its way now

    flagged = await asyncio.to_thread(
        runner.invoke, deadlines_cli, ["--not-arrived-after", "0"], env=env)
    assert flagged.exit_code == 0, flagged.output
    await feed.until(_event("queued", "not_arrived"))
    _all_verify(feed, public)


async def test_an_ops_api_redelivery_tells_the_senders_with_signed_receipts(
    signing_hub: tuple[Hub, Path, bytes],
) -> None:
    hub, _key, public = signing_hub
    await _setup(hub)
    hub_id = await _undeliverable_then_inbox_back(hub)
    feed = ReceiptsFeed(hub, "vpcp")
    app = create_app(hub.settings, tokens=TokenStore.parse(f"alice:operator:{OPERATOR}"),
                     pool=hub.pool, refresh_interval=None)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        flt = {"states": ["undeliverable"], "gateway": "lgsp-nghean"}
        auth = {"Authorization": f"Bearer {OPERATOR}"}
        dry = await (await client.post("/api/redeliveries", json={"filter": flt},
                                       headers=auth)).json()
        run = await client.post("/api/redeliveries",
                                json={"filter": flt, "confirm": dry["confirm"]}, headers=auth)
        assert run.status == 200, await run.text()
        assert (await run.json())["job"]["queued"] == 1
    finally:
        await client.close()
    seen = await feed.until(_event("queued"))
    assert seen[-1]["hub_id"] == hub_id
    assert seen[-1]["recipients"][0]["agency"] == "000.00.00.H41"
    _all_verify(feed, public)


async def test_a_parked_copy_is_told_to_the_sender_signed(
    signing_hub: tuple[Hub, Path, bytes],
) -> None:
    hub, _key, public = signing_hub
    await _setup(hub)
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
    assert receipt is not None and receipt.type == "accepted"
    # the province's system refuses the copy for good: it is dead-lettered and parked
    conn = await aio_pika.connect(hub.gateway_url("lgsp-nghean"))
    async with conn:
        channel = await conn.channel()
        inbox = await channel.get_queue(inbox_queue("lgsp-nghean"), ensure=False)
        copy = await inbox.get(timeout=10)
        await copy.reject(requeue=False)
    feed = ReceiptsFeed(hub, "vpcp")
    await feed.until(_event("undeliverable"))
    _all_verify(feed, public)
