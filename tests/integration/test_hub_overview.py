"""The hub overview (``/api/overview``) and the alert rules' broker metrics, against the real
RabbitMQ and PostgreSQL: with no router the overview says so and counts what waits in
lt.router.in; with one it is quiet; every RabbitMQ metric the rules read is one the
broker's Prometheus plugin serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from router import metrics, topology
from router.directory.registry import AgencyRow
from router.ops.auth import TokenStore
from router.ops.gauges import GaugeRefresher
from router.ops.queue_health import QueueSnapshot
from router.ops.server import create_app
from tests.factory import edoc
from tests.hub import Hub
from tests.polling import eventually

TOKEN = "read-token-0123456789abcdef"
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "lienthong-alerts.yml"


async def _overview(client: TestClient[Any, Any]) -> dict[str, Any]:
    resp = await client.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


async def test_overview_without_and_with_a_router(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    app = create_app(hub.settings, tokens=TokenStore.parse(f"viewer:read:{TOKEN}"),
                     pool=hub.pool, refresh_interval=None, snapshot_ttl=0)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await client.get("/api/overview")).status == 401
        # no router: three documents wait in lt.router.in
        async with hub.client("vpcp") as vpcp:
            for _ in range(3):
                await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1], wait=False)

        async def waiting() -> dict[str, Any] | None:
            o = await _overview(client)
            return o if o["router_in_depth"] == 3 else None

        o = await eventually(waiting, timeout=30, interval=0.5, what="3 in lt.router.in")
        assert o["routers"] == 0 and o["banner"] is True
        assert [a["name"] for a in o["alerts"] if a["severity"] == "critical"] == [
            "LienthongNoRouter"]
        assert o["alerts"][0]["message_vi"] and o["alerts"][0]["message_en"]
        assert o["router_in_oldest_seconds"] is not None
        assert o["documents_today"] == 0 and o["unroutable"] == 0 and o["parked"] == 0

        # a router: the three are routed, the banner goes, today's figures count them
        await hub.start_router()

        async def quiet() -> dict[str, Any] | None:
            o = await _overview(client)
            return o if (o["routers"] == 1 and o["router_in_depth"] == 0
                         and o["documents_today"] == 3) else None

        o = await eventually(quiet, timeout=30, interval=0.5, what="routed and quiet")
        assert o["banner"] is False and o["alerts"] == []
        assert o["deliveries_today"] == 3 and o["delivered_share_today"] == 1.0
        assert o["latency_p50_seconds"] is not None
        assert 0 <= o["latency_p50_seconds"] <= o["latency_p99_seconds"] < 30
        spec = await (await client.get("/api/openapi.json")).json()
        assert "/api/overview" in spec["paths"] and "/api/statistics" in spec["paths"]
    finally:
        await client.close()


async def test_rules_read_metrics_the_broker_serves(hub: Hub) -> None:
    # lt.router.in and lt.unroutable exist on this throwaway vhost: the detailed endpoint
    # lists them with the families the scrape job asks for (deploy/prometheus/prometheus.yml)
    exprs = "\n".join(re.findall(r"expr: (.*(?:\n {10,}.*)*)", RULES.read_text("utf-8")))
    used = set(re.findall(r"\brabbitmq_[a-z_]+\b", exprs))
    assert {"rabbitmq_detailed_queue_consumers", "rabbitmq_detailed_queue_messages",
            "rabbitmq_alarms_memory_used_watermark"} <= used
    params = [("vhost", hub.settings.vhost), ("family", "queue_coarse_metrics"),
              ("family", "queue_consumer_count")]
    async with aiohttp.ClientSession() as http:

        async def scrape(path: str, query: list[tuple[str, str]]) -> str:
            async with http.get(f"http://127.0.0.1:15692{path}", params=query) as resp:
                assert resp.status == 200
                return await resp.text()

        aggregated = await scrape("/metrics", [])

        async def listed() -> str | None:
            # the broker collects queue metrics every few seconds: a new vhost shows later
            text = await scrape("/metrics/detailed", params)
            return text if all(f'queue="{q}"' in text
                               for q in (topology.ROUTER_IN, topology.UNROUTABLE)) else None

        detailed = await eventually(listed, timeout=30, interval=1.0,
                                    what="the hub's queues in /metrics/detailed")
    served = set(re.findall(r"^(rabbitmq_[a-z_]+)", aggregated + detailed, re.M))
    assert used <= served, used - served


def _gauge_states() -> dict[str, float]:
    return {s.labels["state"]: s.value
            for s in next(iter(metrics.DELIVERIES.collect())).samples}


async def test_delivery_gauges_follow_the_ledger_without_counting_it(hub: Hub) -> None:
    """The per-state gauge comes from trigger-kept counts: after inserts, updates and
    deletes in many statements it equals a full count (which the refresh never runs)."""
    await hub.add_gateway("all", serves=["#.G22", "#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    refresher = GaugeRefresher(hub.pool, QueueSnapshot(hub.admin, hub.settings.vhost, ttl=0))
    fill = """
        WITH d AS (
            INSERT INTO documents (hub_id, kind, dedup_key, sender_agency_id, sender_code,
                sender_gateway_id, content_sha256, size_bytes, body)
            SELECT gen_random_uuid(), 'edoc', gen_random_uuid()::text, a.id, a.code, 'all',
                   '\\x00', 1, '\\x00'
            FROM generate_series(1, $1) g, agencies a WHERE a.code = '000.00.00.G22'
            RETURNING hub_id)
        INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code, gateway_id,
            copy_id, state)
        SELECT gen_random_uuid(), d.hub_id, a.id, a.code, 'all', gen_random_uuid(), 'queued'
        FROM d, agencies a WHERE a.code = '000.00.00.H41'"""
    await hub.pool.execute(fill, 50)
    await refresher.refresh()
    assert _gauge_states()["queued"] == 50
    await hub.pool.execute(fill, 30)
    await hub.pool.execute("UPDATE deliveries SET state = 'arrived' WHERE id IN "
                           "(SELECT id FROM deliveries ORDER BY id LIMIT 20)")
    await hub.pool.execute("UPDATE deliveries SET updated_at = now()")  # no state change
    await hub.pool.execute("UPDATE deliveries SET state = 'done' WHERE id IN "
                           "(SELECT id FROM deliveries WHERE state = 'arrived' LIMIT 5)")
    await hub.pool.execute("DELETE FROM status_events")
    await hub.pool.execute("DELETE FROM deliveries WHERE id IN "
                           "(SELECT id FROM deliveries WHERE state = 'queued' LIMIT 7)")
    await refresher.refresh()
    truth = {r["state"]: r["n"] for r in await hub.pool.fetch(
        "SELECT state, count(*) AS n FROM deliveries GROUP BY state")}
    assert truth == {"queued": 53, "arrived": 15, "done": 5}
    gauges = _gauge_states()
    assert {s: gauges.get(s) for s in truth} == truth
    assert gauges["submitted"] == 0
    # every delta was folded once: a second refresh changes nothing
    assert await hub.pool.fetchval("SELECT count(*) FROM delivery_state_deltas") == 0
    await refresher.refresh()
    assert {s: _gauge_states().get(s) for s in truth} == truth
