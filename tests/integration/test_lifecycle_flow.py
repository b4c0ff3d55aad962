"""Status lifecycle, business flows, deadlines and statistics through RabbitMQ and the ledger."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

from prometheus_client import REGISTRY

from adapters import GatewayClient
from router.directory.registry import AgencyRow
from router.recovery import deadlines
from router.reporting import statistics
from router.routing import decide
from router.routing.batch import BatchPlan, BatchRouter, Incoming
from router.routing.lookup import look_up
from router.routing.record import record
from router.security.signature_gate import SignatureGate
from schemas import BusinessDocType, ParseLimits, StatusCode, parse_package
from schemas.receipt import Receipt
from tests.factory import edoc, status
from tests.hub import Hub

C = StatusCode


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_gateway("bo-tai-chinh", serves=["000.00.00.G12"], kind="ministry")
    await hub.add_agencies(
        [
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An"),
            AgencyRow("000.00.00.G12", "Bộ Tài chính"),
        ]
    )
    await hub.start_router()


async def _send(client: GatewayClient, body: bytes) -> Receipt:
    r = await client.send(body)
    assert r is not None
    return r


async def _state(hub: Hub, recipient: str, hub_id: str | None = None) -> tuple[str, str | None]:
    row = await hub.pool.fetchrow(
        "SELECT state, recall_state FROM deliveries d JOIN documents doc USING (hub_id) "
        "WHERE d.recipient_code = $1 AND doc.kind = 'edoc' "
        "AND ($2::uuid IS NULL OR d.hub_id = $2::uuid) ORDER BY d.created_at DESC LIMIT 1",
        recipient, hub_id,
    )
    assert row is not None
    return row["state"], row["recall_state"]


async def test_out_of_order_duplicate_and_illegal_statuses(hub: Hub) -> None:
    await _setup(hub)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"])
    async with hub.client("vpcp") as vpcp, hub.client("lgsp-nghean") as na, \
            hub.client("bo-tai-chinh") as btc:
        accepted = await _send(vpcp, body)
        assert accepted.type == "accepted"
        # 05 before 03 (a buggy gateway): state = furthest progress, the 03 is flagged
        assert (await _send(na, status("000.00.00.H41", doc, C.PROCESSING)[1])).type == "accepted"
        late = status("000.00.00.H41", doc, C.ACCEPTED)[1]
        assert (await _send(na, late)).type == "accepted"
        assert await _state(hub, "000.00.00.H41") == ("processing", None)
        flags = await hub.pool.fetchval(
            "SELECT flags FROM status_events WHERE status_code = '03'")
        assert flags == ["out_of_order"]
        # the very same status package again: a duplicate, recorded once
        again = await _send(na, late)
        assert again.type == "duplicate"
        assert await hub.pool.fetchval(
            "SELECT count(*) FROM status_events WHERE status_code = '03'") == 1
        # 06 then 02: illegal, refused with a reason and recorded
        assert (await _send(na, status("000.00.00.H41", doc, C.DONE)[1])).type == "accepted"
        bad = await _send(na, status("000.00.00.H41", doc, C.REFUSED, description="Sai")[1])
        assert bad.type == "rejected"
        assert bad.reason and bad.reason["reason"] == "ILLEGAL_TRANSITION"
        assert await hub.pool.fetchval(
            "SELECT count(*) FROM rejections WHERE reason = 'ILLEGAL_TRANSITION'") == 1
        # a recall answer with no recall
        r = await _send(btc, status("000.00.00.G12", doc, C.RECALL_AGREED)[1])
        assert r.reason and r.reason["reason"] == "RECALL_ANSWER_WITHOUT_RECALL"
        # a status from an agency that is not a recipient (VPCP itself answering 01)
        other, obody = edoc("000.00.00.G12", ["000.00.00.H41"])
        assert (await _send(btc, obody)).type == "accepted"
        r = await _send(vpcp, status("000.00.00.G22", other, C.ARRIVED, to="000.00.00.G12")[1])
        assert r.reason and r.reason["reason"] == "STATUS_ISSUER_NOT_RECIPIENT"
    assert await _state(hub, "000.00.00.H41", accepted.hub_id) == ("done", None)


async def test_one_batch_with_a_refused_and_an_accepted_status(hub: Hub) -> None:
    """Statuses for two deliveries routed in the same batch: the illegal one is refused,
    the other is applied; neither takes the other down."""
    await _setup(hub)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"])
    async with hub.client("vpcp") as vpcp, hub.client("lgsp-nghean") as na:
        assert (await _send(vpcp, body)).type == "accepted"
        assert (await _send(na, status("000.00.00.H41", doc, C.DONE)[1])).type == "accepted"
    await hub.stop_routers()

    def incoming(gateway: str, agency: str, code: StatusCode) -> Incoming:
        return Incoming(body=status(agency, doc, code)[1],
                        amqp_user=hub.credentials[gateway].user, routing_key=agency,
                        message_id=f"{gateway}-{code.value}", declared_type="status")

    batch = [incoming("lgsp-nghean", "000.00.00.H41", C.REFUSED),  # 02 after 06: illegal
             incoming("bo-tai-chinh", "000.00.00.G12", C.ARRIVED)]
    plan = await BatchRouter(hub.pool, limits=ParseLimits()).route(batch)
    assert plan.outcomes == ["rejected", "accepted"]
    assert plan.rejection_reasons == ["ILLEGAL_TRANSITION"]
    assert await _state(hub, "000.00.00.H41") == ("done", None)
    assert await _state(hub, "000.00.00.G12") == ("arrived", None)


async def test_a_status_routed_again_after_a_crash_tells_the_sender_again(hub: Hub) -> None:
    """A router that committed a status and died before its ack routes it again: the
    sender's state-change event is sent again with the same receipt id (the first may
    never have left); a status that changed nothing still sends none."""
    await _setup(hub)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp") as vpcp:
        assert (await _send(vpcp, body)).type == "accepted"
    await hub.stop_routers()
    router = BatchRouter(hub.pool, limits=ParseLimits())

    def incoming(code: StatusCode) -> Incoming:
        return Incoming(body=status("000.00.00.H41", doc, code)[1],
                        amqp_user=hub.credentials["lgsp-nghean"].user,
                        routing_key="000.00.00.H41", message_id=f"na-{code.value}",
                        declared_type="status", redelivered=True)

    def events(plan: BatchPlan) -> list[tuple[str, str | None, str | None]]:
        return [(r.receipt.receipt_id, r.receipt.state, r.receipt.status_code)
                for r in plan.receipts if r.receipt.type == "delivery"]

    first = await router.route([incoming(C.ACCEPTED)])
    again = await router.route([incoming(C.ACCEPTED)])
    assert first.outcomes == ["accepted"] and again.outcomes == ["resumed"]
    assert len(events(first)) == 1 and events(again) == events(first)
    assert events(first)[0][1:] == ("accepted", "03")
    # 01 after 03 changes nothing (flag out_of_order): no event, neither time
    late = await router.route([incoming(C.ARRIVED)])
    late_again = await router.route([incoming(C.ARRIVED)])
    assert late.outcomes == ["accepted"] and late_again.outcomes == ["resumed"]
    assert events(late) == [] and events(late_again) == []


async def test_recall_after_done_is_forwarded_and_settled(hub: Hub) -> None:
    await _setup(hub)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp") as vpcp, hub.client("lgsp-nghean") as na:
        await _send(vpcp, body)
        await _send(na, status("000.00.00.H41", doc, C.DONE)[1])
        recall = await _send(vpcp, status("000.00.00.G22", doc, C.RECALL_REQUESTED,
                                          to="000.00.00.H41", description="Lấy lại")[1])
        assert recall.type == "accepted"
        assert await _state(hub, "000.00.00.H41") == ("done", "requested")
        # the recipient's gateway gets the document and then the recall
        kinds = []
        async for m in na.inbox(timeout=2):
            async with m.process():
                kinds.append((m.kind, m.status_code))
        assert kinds == [("edoc", None), ("status", "13")]
        await _send(na, status("000.00.00.H41", doc, C.RECALL_AGREED)[1])
        assert await _state(hub, "000.00.00.H41") == ("recalled", "agreed")
        # the sender was told each change without asking
        events = []
        it = vpcp.receipts()
        while len(events) < 3:
            e = await asyncio.wait_for(it.__anext__(), 10)
            if e.type == "delivery":
                events.append((e.status_code, e.state))
        assert events == [("06", "done"), ("13", "done"), ("15", "recalled")]


async def test_revoke_update_replace(hub: Hub) -> None:
    await _setup(hub)
    async with hub.client("vpcp") as vpcp, hub.client("bo-tai-chinh") as btc:
        first, b1 = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"], number="100")
        r1 = await _send(vpcp, b1)
        second, b2 = edoc("000.00.00.G22", ["000.00.00.H41"], number="200")
        r2 = await _send(vpcp, b2)
        # update (2) links to its target, changes nothing of the target's deliveries
        _, upd = edoc("000.00.00.G22", ["000.00.00.H41"], number="101",
                      business=BusinessDocType.UPDATE, target=first.document_id)
        ru = await _send(vpcp, upd)
        assert ru.type == "accepted"
        assert await hub.pool.fetchval(
            "SELECT target_hub_id::text FROM documents WHERE hub_id = $1::uuid", ru.hub_id
        ) == r1.hub_id
        # revoke (1): the target's deliveries are revoked; the revocation is delivered
        _, rev = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"], number="102",
                      business=BusinessDocType.REVOKE, target=first.document_id)
        assert (await _send(vpcp, rev)).type == "accepted"
        assert await _state(hub, "000.00.00.G12", r1.hub_id) == ("revoked", None)
        assert await _state(hub, "000.00.00.H41", r1.hub_id) == ("revoked", None)
        # replace (3): the old deliveries are replaced
        _, rep = edoc("000.00.00.G22", ["000.00.00.H41"], number="201",
                      business=BusinessDocType.REPLACE, target=second.document_id)
        assert (await _send(vpcp, rep)).type == "accepted"
        assert await _state(hub, "000.00.00.H41", r2.hub_id) == ("replaced", None)
        # the target must exist and belong to the same sender
        _, unknown = edoc("000.00.00.G22", ["000.00.00.H41"], number="103",
                          business=BusinessDocType.REVOKE, target="000.00.00.G22,2020/01/01,1/X")
        r = await _send(vpcp, unknown)
        assert r.reason and r.reason["reason"] == "DOCUMENT_UNKNOWN"
        _, foreign = edoc("000.00.00.G12", ["000.00.00.H41"], number="104",
                          business=BusinessDocType.REVOKE, target=second.document_id)
        r = await _send(btc, foreign)
        assert r.reason and r.reason["reason"] == "TARGET_NOT_SAME_SENDER"
    revoked_copies = await hub.pool.fetchval(
        "SELECT count(*) FROM deliveries d JOIN documents doc USING (hub_id) "
        "WHERE doc.business_type = 1 AND d.state = 'queued'")
    assert revoked_copies == 2


async def test_deadlines_with_a_controlled_clock_and_the_report(hub: Hub) -> None:
    hub.settings = hub.settings.with_(sweep_seconds=0)
    await _setup(hub)
    # a due date ahead of today's (Vietnam) date: a fixed date turns into "overdue" by itself
    due = (datetime.now(UTC) + timedelta(hours=7)).date() + timedelta(days=10)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"], due=due)
    async with hub.client("vpcp") as vpcp, hub.client("bo-tai-chinh") as btc:
        r = await _send(vpcp, body)
        # Bộ Tài chính answers at once; Nghệ An never does
        for code in (C.ARRIVED, C.ACCEPTED, C.DONE):
            await _send(btc, status("000.00.00.G12", doc, code)[1])
    now = datetime.now(UTC)
    async with hub.pool.acquire() as conn:
        early = await deadlines.sweep(conn, now=now + timedelta(minutes=14))
        assert (early.not_arrived, early.overdue) == (0, 0)
        late = await deadlines.sweep(conn, now=now + timedelta(minutes=16))
        assert (late.not_arrived, late.overdue) == (1, 0)
        assert late.receipts[0].gateway_id == "vpcp"
        assert late.receipts[0].receipt.state == "not_arrived"
        assert late.receipts[0].receipt.recipients[0].agency == "000.00.00.H41"
        again = await deadlines.sweep(conn, now=now + timedelta(minutes=30))
        assert again.not_arrived == 0  # flagged once
        # 01:00 on the day after DueDate in Vietnam (UTC+7)
        after_due = datetime.combine(due, time(18, 0), tzinfo=UTC)
        overdue = await deadlines.sweep(conn, now=after_due)
        assert overdue.overdue == 1  # Bộ Tài chính finished; only Nghệ An is overdue
        rows = {
            s.agency: s
            for s in await statistics.agency_report(
                conn, start=now - timedelta(hours=1), end=now + timedelta(hours=1))
        }
    assert r.hub_id
    g22, h41, g12 = rows["000.00.00.G22"], rows["000.00.00.H41"], rows["000.00.00.G12"]
    assert (g22.sent, g22.received) == (1, 0)
    assert (h41.received, h41.accepted, h41.done, h41.not_arrived, h41.overdue) == (1, 0, 0, 1, 1)
    assert (g12.received, g12.accepted, g12.done, g12.overdue) == (1, 1, 1, 0)
    assert g12.to_01_median_s is not None and g12.to_01_median_s < 30
    assert g12.to_06_median_s is not None and g12.to_06_median_s >= g12.to_01_median_s
    assert h41.to_01_median_s is None


async def test_a_status_decided_on_a_state_that_moved_is_decided_again_under_locks(
        hub: Hub) -> None:
    """A batch is written in one statement only if the deliveries its statuses act on are
    still as the look-up read them. Here another router moves the delivery to ``done``
    between this batch's look-up and its write: the one statement writes nothing, and the
    batch is decided again under locks, where its 02 comes after a 06 and is refused."""
    await _setup(hub)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp") as vpcp:
        assert (await _send(vpcp, body)).type == "accepted"
    await hub.stop_routers()
    limits = ParseLimits()

    def incoming(code: StatusCode) -> Incoming:
        return Incoming(body=status("000.00.00.H41", doc, code)[1],
                        amqp_user=hub.credentials["lgsp-nghean"].user,
                        routing_key="000.00.00.H41", message_id=f"na-{code.value}",
                        declared_type="status")

    def writes(how: str) -> float:
        return REGISTRY.get_sample_value("lienthong_batch_writes_total", {"how": how}) or 0.0

    batch = [incoming(C.REFUSED)]
    parsed = [parse_package(m.body, limits=limits) for m in batch]
    gate = SignatureGate(hub.pool)
    async with hub.pool.acquire() as conn:
        facts = await look_up(conn, decide.wanted(batch, parsed), datetime.now(UTC))
        await gate.refresh_if_stale([g.id for g in facts.gateways.values()], conn=conn)
        decisions = decide.decide(batch, parsed, facts, gate.check)
        assert [s.state for s in facts.deliveries.values()] == ["queued"]
        # meanwhile another router applies the recipient's 06
        other = await BatchRouter(hub.pool, limits=limits).route([incoming(C.DONE)])
        assert other.outcomes == ["accepted"]
        before = writes("transaction"), writes("one_statement")
        plan = BatchPlan(outcomes=[""])
        done = await record(conn, batch, decisions, plan, max_body_bytes=limits.max_bytes,
                            known=facts.deliveries)
    assert (writes("transaction"), writes("one_statement")) == (before[0] + 1, before[1])
    assert done.accepted == []
    assert plan.outcomes == ["rejected"]
    assert plan.rejection_reasons == ["ILLEGAL_TRANSITION"]
    assert [r.receipt.type for r in plan.receipts] == ["rejected"]
    assert await _state(hub, "000.00.00.H41") == ("done", None)
    # nothing of the first attempt stayed: no 02 event or document, one audit row for it
    assert await hub.pool.fetchval(
        "SELECT count(*) FROM status_events WHERE status_code = '02'") == 0
    assert await hub.pool.fetchval(
        "SELECT count(*) FROM documents WHERE status_code = '02'") == 0
    assert await hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'package.rejected'") == 1


async def test_a_batch_of_statuses_is_written_in_one_statement(hub: Hub) -> None:
    """The common case: statuses on deliveries nobody else moved are written at once, with
    the same rows as under locks (events, states, the sender's delivery events)."""
    await _setup(hub)
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41", "000.00.00.G12"])
    async with hub.client("vpcp") as vpcp:
        assert (await _send(vpcp, body)).type == "accepted"
    await hub.stop_routers()
    before = REGISTRY.get_sample_value("lienthong_batch_writes_total",
                                       {"how": "one_statement"}) or 0.0
    batch = [Incoming(body=status(agency, doc, code)[1],
                      amqp_user=hub.credentials[gateway].user, routing_key=agency,
                      message_id=f"{gateway}-{code.value}", declared_type="status")
             for gateway, agency, code in (("lgsp-nghean", "000.00.00.H41", C.ARRIVED),
                                           ("lgsp-nghean", "000.00.00.H41", C.ACCEPTED),
                                           ("bo-tai-chinh", "000.00.00.G12", C.DONE))]
    plan = await BatchRouter(hub.pool, limits=ParseLimits()).route(batch)
    assert plan.outcomes == ["accepted"] * 3
    assert REGISTRY.get_sample_value("lienthong_batch_writes_total",
                                     {"how": "one_statement"}) == before + 1
    assert await _state(hub, "000.00.00.H41") == ("accepted", None)
    assert await _state(hub, "000.00.00.G12") == ("done", None)
    codes = await hub.pool.fetch(
        "SELECT d.recipient_code, array_agg(e.status_code ORDER BY e.id) AS codes "
        "FROM status_events e JOIN deliveries d ON d.id = e.delivery_id "
        "WHERE e.status_code IS NOT NULL GROUP BY 1 ORDER BY 1")
    assert [(r["recipient_code"], r["codes"]) for r in codes] == [
        ("000.00.00.G12", ["06"]), ("000.00.00.H41", ["01", "03"])]
    # the document's sender hears of each change: arrived, accepted, done
    assert sorted(r.receipt.state or "" for r in plan.receipts
                  if r.receipt.type == "delivery") == ["accepted", "arrived", "done"]
    done_at = await hub.pool.fetchval(
        "SELECT done_at FROM deliveries WHERE recipient_code = '000.00.00.G12'")
    assert done_at is not None
    assert await hub.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'status.accepted'") == 3
