"""The ops service on the real RabbitMQ and PostgreSQL: probes, auth, gateway health,
tracking, delivery lists, re-delivery (dry run then confirm), throughput and metrics."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aio_pika
import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.directory.registry import AgencyRow
from router.ops.auth import TokenStore
from router.ops.context import CTX
from router.ops.gauges import GaugeRefresher
from router.ops.server import create_app
from router.recovery import parking
from router.topology import inbox_queue
from tests.factory import edoc
from tests.hub import Hub, queue_depth
from tests.polling import eventually

READ = "read-token-0123456789abcdef"
OPERATOR = "operator-token-0123456789abcdef"
TOKENS = TokenStore.parse(f"viewer:read:{READ},alice:operator:{OPERATOR}")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def ops(hub: Hub) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(hub.settings, tokens=TOKENS, pool=hub.pool, refresh_interval=None)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _directory(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"], name="Văn phòng Chính phủ")
    await hub.add_gateway("btc", serves=["000.00.00.G12"], name="Bộ Tài chính")
    await hub.add_gateway("nghean", serves=["#.H41"], name="LGSP Nghệ An")
    await hub.add_agencies(
        [
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
            AgencyRow("000.00.00.G12", "Bộ Tài chính", aliases=("G12",)),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
        ]
    )


async def test_probes_need_no_token_and_api_does(ops: TestClient[Any, Any]) -> None:
    assert (await ops.get("/healthz")).status == 200
    ready = await ops.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body
    assert body["checks"] == {"postgresql": "ok", "rabbitmq": "ok", "management": "ok"}
    metrics = await ops.get("/metrics")
    assert metrics.status == 200
    assert "lienthong_packages_total" in await metrics.text()
    spec = await ops.get("/api/openapi.json")
    assert spec.status == 200
    assert "/api/gateways" in (await spec.json())["paths"]
    assert (await ops.get("/")).status == 200
    assert (await ops.get("/static/app.js")).status == 200

    refused = await ops.get("/api/gateways")
    assert refused.status == 401
    err = await refused.json()
    assert err["message_vi"]
    assert err["message_en"]
    assert (await ops.get("/api/gateways", headers=auth("wrong-token-xxxxxxxxxx"))).status == 401
    ok = await ops.get("/api/gateways", headers=auth(READ))
    assert ok.status == 200
    assert ok.headers["X-Request-Id"]


async def test_readyz_reports_pending_migrations(hub: Hub, ops: TestClient[Any, Any]) -> None:
    await hub.pool.execute("DELETE FROM schema_migrations WHERE version = '0004'")
    resp = await ops.get("/readyz")
    assert resp.status == 503
    assert "0004" in (await resp.json())["checks"]["postgresql"]


async def test_gateway_health_shows_consumers_backlog_and_oldest(
    hub: Hub, ops: TestClient[Any, Any]
) -> None:
    await _directory(hub)
    await hub.start_router()
    # Bộ Tài chính's software is connected and consuming; Nghệ An's is stopped.
    conn = await aio_pika.connect(hub.settings.amqp_url)
    async with conn:
        ch = await conn.channel()
        await ch.set_qos(prefetch_count=0)
        btc_inbox = await ch.get_queue(inbox_queue("btc"), ensure=False)

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()

        await btc_inbox.consume(take)
        _, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"])
        async with hub.client("vpcp") as vpcp:
            receipt = await vpcp.send(body)
        assert receipt is not None
        assert receipt.type == "accepted"

        rows: dict[str, dict[str, Any]] = {}

        async def settled() -> bool:
            resp = await ops.get("/api/gateways", headers=auth(READ))
            assert resp.status == 200
            data = await resp.json()
            rows.clear()
            rows.update({g["gateway_id"]: g for g in data["gateways"]})
            return bool(rows["btc"]["consumers"] == 1 and rows["nghean"]["depth"] == 1)

        await eventually(settled, timeout=20, interval=0.5)
        assert rows["btc"]["health"] == "ok"
        assert rows["btc"]["last_seen"] is not None
        assert rows["nghean"]["health"] == "no_consumer"
        assert rows["nghean"]["health_vi"] == "Không có kết nối nhận"
        assert rows["nghean"]["oldest_waiting_seconds"] is not None
        assert rows["nghean"]["oldest_waiting_seconds"] >= 0
        assert rows["nghean"]["name"] == "LGSP Nghệ An"

        # the ops process's gauge refresh publishes the same picture to Prometheus
        assert ops.app is not None
        ctx = ops.app[CTX]
        # Bộ Tài chính's signing certificate expires in 10 days
        await hub.pool.execute(
            """INSERT INTO certificates (fingerprint, gateway_id, subject, issuer, serial,
                   key_type, not_before, not_after, der)
               VALUES (repeat('a', 64), 'btc', 'CN=BTC', 'CN=CA', '1', 'RSA-2048',
                       now() - interval '1 year', now() + interval '10 days', '\\x00')"""
        )
        await GaugeRefresher(hub.pool, ctx.snapshot).refresh()
        text = await (await ops.get("/metrics")).text()
        assert 'lienthong_gateway_queue_depth{gateway="nghean",queue="inbox"} 1.0' in text
        assert 'lienthong_gateway_consumers{gateway="nghean"} 0.0' in text
        assert 'lienthong_gateway_consumers{gateway="btc"} 1.0' in text
        assert 'lienthong_deliveries{state="queued"}' in text
        def sample(name: str) -> float:
            return float(next(line for line in text.splitlines()
                              if line.startswith(name)).split()[-1])

        # the certificate expires 10 days after the refresh that read it
        expiry = sample('lienthong_certificate_expiry_timestamp_seconds{gateway="btc"}')
        refreshed = sample("lienthong_gauges_refreshed_timestamp_seconds ")
        assert abs(expiry - refreshed - 10 * 86400) < 120, (expiry, refreshed)
        assert "lienthong_build_info{" in text
        # presence was recorded: btc keeps a "last seen" once it goes away
        seen = await hub.pool.fetchval(
            "SELECT last_consumer_at FROM gateway_presence WHERE gateway_id = 'btc'"
        )
        assert seen is not None


async def test_document_timeline_by_document_id_and_hub_id(
    hub: Hub, ops: TestClient[Any, Any]
) -> None:
    await _directory(hub)
    await hub.start_router()
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41", "G12"], subject="Về việc thử nghiệm")
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(body)
    assert receipt is not None
    assert receipt.type == "accepted"

    # DocumentIds hold slashes: the dashboard sends them percent-encoded
    encoded = quote(doc.document_id or "", safe="")
    resp = await ops.get(f"/api/documents/{encoded}", headers=auth(READ))
    assert resp.status == 200
    data = await resp.json()
    (found,) = data["documents"]
    assert found["hub_id"] == str(receipt.hub_id)
    assert found["subject"] == "Về việc thử nghiệm"
    assert found["sender_code"] == "000.00.00.G22"
    recipients = {d["agency_code"]: d for d in found["deliveries"]}
    assert set(recipients) == {"000.00.00.H41", "000.00.00.G12"}
    h41 = recipients["000.00.00.H41"]
    assert h41["agency_name"] == "UBND tỉnh Nghệ An"
    assert h41["gateway_id"] == "nghean"
    assert h41["state"] == "queued"
    assert [e["state"] for e in h41["events"]][:1] == ["submitted"]

    by_hub = await ops.get(f"/api/documents/{receipt.hub_id}", headers=auth(READ))
    assert (await by_hub.json())["documents"][0]["document_id"] == doc.document_id

    missing = await ops.get("/api/documents/khong-co-van-ban-nay", headers=auth(READ))
    assert missing.status == 404
    assert "Không tìm thấy" in (await missing.json())["message_vi"]

    # throughput counts it in the current minute
    series = (await (await ops.get("/api/throughput?minutes=5", headers=auth(READ))).json())[
        "series"
    ]
    assert len(series) == 5
    assert sum(p["edoc"] for p in series) == 1


async def test_failed_list_and_redelivery_dry_run_then_confirm(
    hub: Hub, ops: TestClient[Any, Any]
) -> None:
    await _directory(hub)
    # Bộ Tài chính's inbox is gone: its copy is undeliverable
    await hub.admin.request(
        "DELETE", f"/queues/{hub.settings.vhost}/{inbox_queue('btc')}", ok_missing=True
    )
    await hub.start_router()
    _, body = edoc("000.00.00.G22", ["000.00.00.G12"])
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(body)
    assert receipt is not None

    resp = await ops.get("/api/deliveries?state=failed", headers=auth(READ))
    failed = (await resp.json())["deliveries"]
    assert [(d["recipient_code"], d["state"]) for d in failed] == [
        ("000.00.00.G12", "undeliverable")
    ]
    bad = await ops.get("/api/deliveries?state=lost", headers=auth(READ))
    assert bad.status == 400

    flt = {"states": ["undeliverable"], "gateway": "btc"}
    dry = await ops.post("/api/redeliveries", json={"filter": flt}, headers=auth(READ))
    assert dry.status == 200
    preview = await dry.json()
    assert preview["dry_run"] is True
    assert preview["preview"]["total"] == 1
    fingerprint = preview["confirm"]

    # a read-only token may look but not re-deliver; a changed filter needs a new preview
    forbidden = await ops.post(
        "/api/redeliveries", json={"filter": flt, "confirm": fingerprint}, headers=auth(READ)
    )
    assert forbidden.status == 403
    other = {"states": ["undeliverable"]}
    mismatch = await ops.post(
        "/api/redeliveries", json={"filter": other, "confirm": fingerprint},
        headers=auth(OPERATOR),
    )
    assert mismatch.status == 409

    # the gateway's inbox is back: the operator re-delivers and the copy arrives
    conn = await aio_pika.connect(hub.settings.amqp_url)
    async with conn:
        from router.topology import declare_gateway

        await declare_gateway(await conn.channel(), "btc")
    run = await ops.post(
        "/api/redeliveries", json={"filter": flt, "confirm": fingerprint},
        headers=auth(OPERATOR),
    )
    assert run.status == 200, await run.text()
    job = (await run.json())["job"]
    assert (job["state"], job["done"], job["queued"], job["actor"]) == ("done", 1, 1, "alice")
    state = await hub.pool.fetchval(
        "SELECT state FROM deliveries WHERE hub_id = $1", receipt.hub_id
    )
    assert state == "queued"
    jobs = await (await ops.get("/api/redeliveries", headers=auth(READ))).json()
    assert [j["id"] for j in jobs["jobs"]] == [job["id"]]
    one = await ops.get(f"/api/redeliveries/{job['id']}", headers=auth(READ))
    assert (await one.json())["state"] == "done"
    text = await (await ops.get("/metrics")).text()
    assert "lienthong_redeliveries_total{outcome=\"queued\"}" in text


async def test_parking_is_listed_and_only_operators_drop(
    hub: Hub, ops: TestClient[Any, Any]
) -> None:
    pid = await hub.pool.fetchval(
        """INSERT INTO parked_messages (id, source_queue, reason, reason_code, error, body,
               content_sha256)
           VALUES (gen_random_uuid(), 'lt.router.in', 'POISON', 5003, 'boom', '\\x00',
                   '\\x00') RETURNING id"""
    )
    listed = await (await ops.get("/api/parking", headers=auth(READ))).json()
    assert [p["id"] for p in listed["parked"]] == [str(pid)]
    body = {"ids": [str(pid)], "why": "thử nghiệm / test"}
    denied = await ops.post("/api/parking/drop", json=body, headers=auth(READ))
    assert denied.status == 403
    assert "operator" in (await denied.json())["message_en"]
    no_why = await ops.post(
        "/api/parking/drop", json={"ids": [str(pid)]}, headers=auth(OPERATOR)
    )
    assert no_why.status == 400
    dropped = await ops.post("/api/parking/drop", json=body, headers=auth(OPERATOR))
    assert (await dropped.json()) == {"dropped": 1}
    row = await hub.pool.fetchrow(
        "SELECT state, settled_by FROM parked_messages WHERE id = $1", pid
    )
    assert row is not None
    assert tuple(row) == ("dropped", "alice")


# ---- bad input: a 4xx with a reason, never a 500; one JSON error shape everywhere ----


def _is_error(body: dict[str, Any], reason: str) -> bool:
    return bool(
        body.get("reason") == reason
        and isinstance(body.get("code"), int)
        and 6000 <= body["code"] < 6030
        and body.get("error")
        and body.get("message_vi")
        and body.get("message_en")
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "reason"),
    [
        ("GET", "/api/redeliveries?limit=abc", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/redeliveries?limit=null", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/redeliveries?limit=-3.2e-48", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/redeliveries?limit=5&limit=6", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/deliveries?since=", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/deliveries?since=0001-01-01T00:00:00%2B01:00", None, 400,
         "OPS_BAD_PARAMETER"),
        ("GET", "/api/deliveries?state=lost", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/deliveries?nonsense=1", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/deliveries?recipient=%00", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/throughput?minutes=0", None, 400, "OPS_BAD_PARAMETER"),
        ("GET", "/api/redeliveries/not-a-uuid", None, 400, "OPS_BAD_PARAMETER"),
        ("POST", "/api/redeliveries", {"filter": {"hub_ids": [{}]}}, 400, "OPS_BAD_FILTER"),
        ("POST", "/api/redeliveries", {"filter": {"delivery_ids": [1]}}, 400,
         "OPS_BAD_FILTER"),
        ("POST", "/api/redeliveries", {"filter": {"states": "queued"}}, 400, "OPS_BAD_FILTER"),
        ("POST", "/api/redeliveries", {"filter": {"states": ["arrived"]}}, 400,
         "OPS_BAD_FILTER"),
        ("POST", "/api/redeliveries", {"filter": {"since": "yesterday"}}, 400,
         "OPS_BAD_FILTER"),
        ("POST", "/api/redeliveries", {"filter": {}, "rate": -1}, 400, "OPS_BAD_BODY"),
        ("POST", "/api/redeliveries", [1, 2], 400, "OPS_BAD_BODY"),
        ("POST", "/api/redeliveries", "{not json", 400, "OPS_BAD_BODY"),
        ("POST", "/api/redeliveries", {"filter": {"gateway": "khong-co"}}, 400,
         "OPS_UNKNOWN_GATEWAY"),
        ("POST", "/api/redeliveries", {"filter": {"recipient": "000.00.00.X99"}}, 400,
         "OPS_UNKNOWN_AGENCY"),
        ("GET", "/api/deliveries?gateway=khong-co", None, 400, "OPS_UNKNOWN_GATEWAY"),
        ("POST", "/api/parking/drop", {"ids": [str(uuid.uuid4())], "why": "  "}, 400,
         "OPS_WHY_REQUIRED"),
        ("POST", "/api/parking/requeue", {"ids": ["x"]}, 400, "OPS_BAD_BODY"),
        ("POST", "/api/parking/requeue", None, 400, "OPS_BAD_BODY"),
        ("GET", f"/api/redeliveries/{uuid.UUID(int=7)}", None, 404, "OPS_JOB_NOT_FOUND"),
        ("GET", "/api/documents/khong-co", None, 404, "OPS_DOCUMENT_NOT_FOUND"),
        ("GET", "/api/khong-co", None, 404, "OPS_NOT_FOUND"),
        ("GET", "/khong-co", None, 404, "OPS_NOT_FOUND"),
        ("DELETE", "/api/gateways", None, 405, "OPS_METHOD_NOT_ALLOWED"),
        ("PUT", "/api/redeliveries", None, 405, "OPS_METHOD_NOT_ALLOWED"),
    ],
)
async def test_bad_input_is_refused_with_a_reason_never_a_500(
    hub: Hub, ops: TestClient[Any, Any], method: str, path: str, body: Any, status: int,
    reason: str,
) -> None:
    await _directory(hub)
    kwargs: dict[str, Any] = {"headers": auth(OPERATOR)}
    if isinstance(body, str):
        kwargs["data"] = body.encode()
    elif body is not None:
        kwargs["json"] = body
    resp = await ops.request(method, path, **kwargs)
    assert resp.content_type == "application/json", await resp.text()
    answer = await resp.json()
    assert resp.status == status, answer
    assert _is_error(answer, reason), answer
    if status == 405:
        assert resp.headers["Allow"]


async def test_a_good_filter_is_still_previewed(hub: Hub, ops: TestClient[Any, Any]) -> None:
    await _directory(hub)
    flt = {"states": ["undeliverable", "queued"], "gateway": "btc", "recipient": "g12",
           "since": "2026-01-01T00:00:00Z", "hub_ids": [str(uuid.uuid4())]}
    resp = await ops.post("/api/redeliveries", json={"filter": flt}, headers=auth(READ))
    answer = await resp.json()
    assert resp.status == 200, answer
    assert answer["preview"]["total"] == 0
    assert answer["filter"]["states"] == ["undeliverable", "queued"]


# ---- parking requeue as a real (non-guest) hub user ----


async def test_requeue_with_a_non_guest_hub_user_routes_the_package(hub: Hub) -> None:
    await _directory(hub)
    # the hub's own AMQP user, as production has it: not guest
    hub_user, password = f"{hub.settings.vhost}.hub", uuid.uuid4().hex
    await hub.admin.put_user(hub_user, password)
    try:
        await hub.admin.set_permissions(
            hub.settings.vhost, hub_user, configure=".*", write=".*", read=".*"
        )
        hub.settings = hub.settings.with_(
            amqp_url=f"amqp://{quote(hub_user, safe='')}:{password}@127.0.0.1:5672/"
            f"{quote(hub.settings.vhost, safe='')}"
        )
        await hub.start_router()
        # a submission of Văn phòng Chính phủ that a router parked (what the router
        # records when it parks a package: see RouterWorker._park)
        doc, body = edoc("000.00.00.G22", ["000.00.00.H41"])
        async with hub.pool.acquire() as conn:
            parked = await parking.record_parked(
                conn, body=body,
                headers={"lt-reason": "POISON", "lt-error": "the router died",
                         parking.ORIGINAL_USER_HEADER: hub.credentials["vpcp"].user},
                amqp_user=None, routing_key="000.00.00.G22",
                message_id=str(uuid.uuid4()), message_type="edoc",
            )
        app = create_app(hub.settings, tokens=TOKENS, pool=hub.pool, refresh_interval=None)
        async with TestClient(TestServer(app)) as ops:
            resp = await ops.post("/api/parking/requeue", json={"ids": [str(parked.id)]},
                                  headers=auth(OPERATOR))
            answer = await resp.json()
            assert resp.status == 200, answer
            assert answer == {"requeued": 1}

        async def routed() -> bool:
            row = await hub.pool.fetchrow(
                """SELECT doc.sender_gateway_id, d.state FROM documents doc
                   JOIN deliveries d ON d.hub_id = doc.hub_id
                   WHERE doc.edxml_document_id = $1""",
                doc.document_id,
            )
            return row is not None and tuple(row) == ("vpcp", "queued")

        await eventually(routed)  # accepted on behalf of vpcp, queued for Nghệ An
        assert await queue_depth(hub, inbox_queue("nghean")) == 1
        state = await hub.pool.fetchval(
            "SELECT state FROM parked_messages WHERE id = $1", parked.id
        )
        assert state == "requeued"
    finally:
        await hub.stop_routers()
        await hub.admin.delete_user(hub_user)
