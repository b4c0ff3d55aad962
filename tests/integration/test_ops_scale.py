"""``/api/gateways`` with 1,000 gateways: ledger rows and real queues (inbox + receipts,
quorum, as ``declare_gateway`` makes them) in the throwaway vhost; no AMQP users needed."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aio_pika
from aiohttp.test_utils import TestClient, TestServer

from router.broker_admin import BrokerAdmin
from router.ops.auth import TokenStore
from router.ops.server import create_app
from router.topology import declare_gateway
from tests.hub import Hub

N_GATEWAYS = 1000
TOKEN = "scale-token-0123456789abcdef"
# generous for a shared 2-core machine; the figure measured is printed for the report
BUDGET_SECONDS = 3.0


async def _make_gateways(hub: Hub) -> None:
    await hub.pool.execute(
        """INSERT INTO gateways (id, name, amqp_user)
           SELECT 'gw-' || lpad(i::text, 4, '0'), 'Hệ thống ' || i, 'scale-user-' || i
             FROM generate_series(1, $1) AS i;
           """,
        N_GATEWAYS,
    )
    # one agency per gateway, 20 queued deliveries each (20,000 rows) for the oldest lookup
    await hub.pool.execute(
        """INSERT INTO agencies (code, name, gateway_id)
           SELECT 'A' || lpad(i::text, 4, '0') || '.H99', 'Cơ quan ' || i,
                  'gw-' || lpad(i::text, 4, '0')
             FROM generate_series(1, $1) AS i""",
        N_GATEWAYS,
    )
    await hub.pool.execute(
        """INSERT INTO documents (hub_id, kind, dedup_key, edxml_document_id, sender_agency_id,
               sender_code, sender_gateway_id, content_sha256, size_bytes, body, received_at)
           SELECT gen_random_uuid(), 'edoc', 'k' || i, 'doc-' || i,
                  (SELECT min(id) FROM agencies), 'A0001.H99', 'gw-0001', '\\x00', 1, '\\x00',
                  now() - i * interval '1 second'
             FROM generate_series(1, 20) AS i"""
    )
    await hub.pool.execute(
        """INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code, gateway_id,
               copy_id, state, queued_at)
           SELECT gen_random_uuid(), d.hub_id, a.id, a.code, a.gateway_id, gen_random_uuid(),
                  'queued', d.received_at
             FROM documents d CROSS JOIN agencies a"""
    )
    conn = await aio_pika.connect(hub.settings.amqp_url)
    async with conn:
        channels = [await conn.channel() for _ in range(8)]
        ids = [f"gw-{i:04d}" for i in range(1, N_GATEWAYS + 1)]
        for start in range(0, len(ids), 64):
            chunk = ids[start : start + 64]
            await asyncio.gather(
                *(declare_gateway(channels[k % len(channels)], gid) for k, gid in
                  enumerate(chunk))
            )


async def test_gateways_endpoint_with_1000_gateways(hub: Hub) -> None:
    t0 = time.perf_counter()
    try:
        await _make_gateways(hub)
    except BaseException:
        await _drop_vhost(hub)
        raise
    setup = time.perf_counter() - t0
    app = create_app(
        hub.settings, tokens=TokenStore.parse(f"bench:read:{TOKEN}"), pool=hub.pool,
        refresh_interval=None, snapshot_ttl=0,
    )
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        # wait until the management API lists every queue (its stats lag a little)
        deadline = time.monotonic() + 60
        while True:
            queues = await hub.admin.request(
                "GET", f"/queues/{hub.settings.vhost}?columns=name"
            )
            if len([q for q in queues if q["name"].startswith("lt.gw.")]) >= 2 * N_GATEWAYS:
                break
            assert time.monotonic() < deadline, "queues did not show up in the management API"
            await asyncio.sleep(1)
        timings = []
        for _ in range(5):  # snapshot_ttl=0: every call asks the broker
            started = time.perf_counter()
            resp = await client.get("/api/gateways", headers={"Authorization": f"Bearer {TOKEN}"})
            data = await resp.json()
            timings.append(time.perf_counter() - started)
            assert resp.status == 200
        # where the time goes: the management API call alone, the ledger query alone
        t1 = time.perf_counter()
        await hub.admin.request("GET", f"/queues/{hub.settings.vhost}?columns=name,messages,"
                                "consumers,message_stats.publish_details.rate")
        broker_ms = (time.perf_counter() - t1) * 1000
        rows = data["gateways"]
        assert len(rows) == N_GATEWAYS
        assert all(g["inbox_present"] for g in rows)
        assert all(g["health"] == "no_consumer" for g in rows)
        assert all(g["oldest_unarrived_seconds"] >= 1 for g in rows)
        median = statistics.median(timings)
        print(
            f"\n/api/gateways with {N_GATEWAYS} gateways: median {median * 1000:.0f} ms, "
            f"min {min(timings) * 1000:.0f} ms, max {max(timings) * 1000:.0f} ms "
            f"(server-side {data['elapsed_ms']} ms, of which the management API call "
            f"~{broker_ms:.0f} ms; setup {setup:.1f} s)"
        )
        assert median < BUDGET_SECONDS
    finally:
        await client.close()
        await _drop_vhost(hub)


async def _drop_vhost(hub: Hub) -> None:
    """Dropping 2,000 quorum queues takes longer than the harness's management API timeout:
    drop the vhost here with a patient client (the fixture's own deletion then finds it gone).
    """
    async with BrokerAdmin(hub.settings.management_url, timeout=600) as admin:
        await admin.delete_vhost(hub.settings.vhost)
