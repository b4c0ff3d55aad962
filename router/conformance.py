"""Is a gateway fit to connect? ``lienthong conformance --gateway G`` drives a scripted
scenario against gateway G through the hub and checks what G does with it.

The hub side of the scenario is played by a test sender gateway (``--sender``, provisioned
by the operator like any other, serving ``--sender-agency``), through the SDK. To one
agency G serves (``--agency``) it sends documents of every business type (new, update,
replace, revoke), a copy of a document again with the same copy id (as after a hub
crash), and a recall (13). Then it reads the ledger and the broker:

==================  ==========================================================  =========
check               passes when                                                 evidence
==================  ==========================================================  =========
acks_every_copy     G's inbox ends empty (nothing ready or unacked) and none    depth,
                    of G's copies was parked                                    parked
answers_arrived     every document reached ``arrived`` (01) or later within     seconds
                    ``answer_within`` seconds                                   per doc
drops_duplicates    the copy delivered twice was answered once (no status of    events
                    G on it flagged ``repeated``)
legal_transitions   none of G's status packages was refused during the run      reasons
answers_recall      the recall was answered (15 or 16) within the limit         state
==================  ==========================================================  =========

The report (text or JSON) lists each check with PASS/FAIL and its evidence; the command
exits 1 when a check fails. :func:`evaluate` is pure: it turns observations into results.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from adapters import GatewayClient
from router import amqp, topology
from router.broker_admin import BrokerAdmin
from router.outbox.publish import publish_copies
from router.routing.batch import Copy
from router.settings import Settings
from schemas import EdocPackage, StatusPackage, build_package
from schemas.spec import package_from_spec

__all__ = ["CheckResult", "Observations", "Scenario", "evaluate", "run_conformance"]

BUSINESS_TYPES = ("new", "update", "replace", "revoke")


@dataclass(frozen=True, slots=True)
class Scenario:
    gateway: str  # the gateway under test
    agency: str  # an agency it serves
    sender_url: str  # AMQP URL of the test sender gateway
    sender_gateway: str
    sender_agency: str
    answer_within: float = 60.0


@dataclass(slots=True)
class Observations:
    """What the run saw, the input of :func:`evaluate`."""

    # per document label: seconds from queued to arrived (01 or later); None: never
    arrived_after: dict[str, float | None] = field(default_factory=dict)
    inbox_messages: int | None = None  # ready + unacked at the end; None: unknown
    parked: int = 0
    duplicate_flags: list[str] = field(default_factory=list)  # flags of G's statuses on it
    refused_statuses: list[str] = field(default_factory=list)  # reason names
    recall_state: str | None = None
    recall_after: float | None = None
    sent: dict[str, str] = field(default_factory=dict)  # label -> accepted or the reason


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    passed: bool
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "passed": self.passed, "evidence": self.evidence}


def evaluate(obs: Observations, answer_within: float) -> list[CheckResult]:
    """The checks' results from what was observed (pure)."""
    late = {k: v for k, v in obs.arrived_after.items() if v is None or v > answer_within}
    timings = ", ".join(f"{k}: {'never' if v is None else f'{v:.1f} s'}"
                        for k, v in obs.arrived_after.items())
    repeated = [f for f in obs.duplicate_flags if "repeated" in f]
    return [
        CheckResult("acks_every_copy", obs.inbox_messages == 0 and obs.parked == 0,
                    f"inbox messages left: {obs.inbox_messages}, copies parked: {obs.parked}"),
        CheckResult("answers_arrived", bool(obs.arrived_after) and not late,
                    f"limit {answer_within:g} s; {timings or 'no document sent'}"),
        CheckResult("drops_duplicates", not repeated,
                    f"statuses on the copy delivered twice: {len(obs.duplicate_flags)}, "
                    f"flagged repeated: {len(repeated)}"),
        CheckResult("legal_transitions", not obs.refused_statuses,
                    "statuses refused: " + (", ".join(obs.refused_statuses) or "none")),
        CheckResult("answers_recall", obs.recall_state in ("agreed", "refused")
                    and obs.recall_after is not None and obs.recall_after <= answer_within,
                    f"recall state: {obs.recall_state}, after "
                    f"{'-' if obs.recall_after is None else f'{obs.recall_after:.1f} s'}"),
    ]


def report_text(scenario: Scenario, results: Sequence[CheckResult]) -> str:
    passed = all(r.passed for r in results)
    lines = [f"lienthong conformance: gateway {scenario.gateway} (agency {scenario.agency}) — "
             f"{'ĐẠT / PASS' if passed else 'KHÔNG ĐẠT / FAIL'}",
             f"at {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}, sender {scenario.sender_gateway}"]
    lines += [f"  {'PASS' if r.passed else 'FAIL'}  {r.name:18} {r.evidence}" for r in results]
    return "\n".join(lines)


def _org(code: str) -> dict[str, str]:
    return {"organ_id": code, "organ_name": f"Conformance {code}"}


def _document(sc: Scenario, label: str, business: Mapping[str, Any] | None = None,
              response_for: Sequence[Mapping[str, str]] = ()) -> EdocPackage:
    number = f"{label[:6]}{uuid.uuid4().hex[:8]}"
    spec: dict[str, Any] = {
        "from": _org(sc.sender_agency), "to": [_org(sc.agency)],
        "code": f"{number}/CONF", "promulgation_date": f"{datetime.now(UTC):%Y/%m/%d}",
        "subject": f"lienthong conformance: {label}",
    }
    if business:
        spec["business"] = dict(business)
    if response_for:
        spec["response_for"] = [dict(r) for r in response_for]
    pkg = package_from_spec(spec)
    assert isinstance(pkg, EdocPackage)
    return pkg


def _recall(sc: Scenario, doc: EdocPackage) -> StatusPackage:
    pkg = package_from_spec({
        "kind": "status", "from": _org(sc.sender_agency),
        "response_for": {"organ_id": sc.agency, "code": str(doc.code),
                         "promulgation_date": f"{doc.promulgation.promulgation_date:%Y/%m/%d}",
                         "document_id": doc.document_id},
        "status_code": "13", "description": "Lấy lại để kiểm tra / recall (conformance)",
    })
    assert isinstance(pkg, StatusPackage)
    return pkg


async def _delivery(pool: asyncpg.Pool, hub_id: str, gateway: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        """SELECT id, copy_id, state, recall_state, queued_at, arrived_at, updated_at
           FROM deliveries WHERE hub_id = $1::uuid AND gateway_id = $2""", hub_id, gateway)
    return row


async def _until(deadline: float, check: Any) -> Any:
    """Poll ``check`` (async, returns a value or None) until it gives a value or the
    deadline passes; the last value (None) then."""
    while True:
        value = await check()
        if value is not None or time.monotonic() >= deadline:
            return value
        await asyncio.sleep(0.2)


async def run_conformance(settings: Settings, pool: asyncpg.Pool,
                          sc: Scenario) -> tuple[Observations, list[CheckResult]]:
    obs = Observations()
    started = datetime.now(UTC)
    docs: dict[str, EdocPackage] = {}
    bodies: dict[str, bytes] = {}
    hub_ids: dict[str, str] = {}
    async with GatewayClient(sc.sender_url, gateway_id=sc.sender_gateway,
                             connection_name=f"lienthong conformance {sc.gateway}") as sender:

        async def send(label: str, pkg: EdocPackage | StatusPackage) -> None:
            body = build_package(pkg)
            receipt = await sender.send(body)
            assert receipt is not None
            obs.sent[label] = receipt.type if receipt.reason is None else str(
                receipt.reason.get("reason"))
            if receipt.type == "accepted" and receipt.hub_id and isinstance(pkg, EdocPackage):
                hub_ids[label] = receipt.hub_id
                docs[label], bodies[label] = pkg, body

        for label in ("new", "recalled", "revoked", "replaced"):
            await send(label, _document(sc, label))
        target = docs["new"].document_id or ""
        await send("update", _document(sc, "update", {"type": "update", "document_id": target,
                                                      "reason": "Cập nhật / update"}))
        await send("replace", _document(sc, "replace", {
            "type": "replace", "reason": "Thay thế / replace",
            "replacements": [{"document_id": docs["replaced"].document_id,
                              "organ_ids": [sc.agency]}]}))
        await send("revoke", _document(
            sc, "revoke", {"type": "revoke", "reason": "Thu hồi / revoke"},
            [{"organ_id": sc.sender_agency, "document_id": docs["revoked"].document_id or ""}]))
        deadline = time.monotonic() + sc.answer_within

        async def arrived(label: str) -> float | None:
            async def check() -> float | None:
                row = await _delivery(pool, hub_ids[label], sc.gateway)
                if row is None or row["arrived_at"] is None:
                    return None
                start = row["queued_at"] or row["arrived_at"]
                return max(float((row["arrived_at"] - start).total_seconds()), 0.0)
            value: float | None = await _until(deadline, check)
            return value

        for label in ("new", "recalled", "update", "replace", "revoke"):
            if label in hub_ids:
                obs.arrived_after[label] = await arrived(label)

        # the "new" document's copy once more, same copy id (as after a hub crash)
        row = await _delivery(pool, hub_ids["new"], sc.gateway)
        if row is not None:
            await _redeliver(settings, sc, row, docs["new"], bodies["new"], hub_ids["new"])
            await send("after-duplicate", _document(sc, "after-duplicate"))
            if "after-duplicate" in hub_ids:  # G reads its inbox in order: then it saw the copy
                deadline = time.monotonic() + sc.answer_within
                obs.arrived_after["after-duplicate"] = await arrived("after-duplicate")
            obs.duplicate_flags = [",".join(r["flags"]) for r in await pool.fetch(
                "SELECT flags FROM status_events WHERE delivery_id = $1 "
                "AND status_code IS NOT NULL", row["id"])]

        # a recall: the gateway must answer 15 or 16
        recall_sent = time.monotonic()
        await send("recall", _recall(sc, docs["recalled"]))
        deadline = recall_sent + sc.answer_within

        async def answered() -> str | None:
            r = await _delivery(pool, hub_ids["recalled"], sc.gateway)
            state = None if r is None else r["recall_state"]
            return state if state in ("agreed", "refused") else None
        obs.recall_state = await _until(deadline, answered)
        if obs.recall_state is not None:
            obs.recall_after = time.monotonic() - recall_sent
        else:
            r = await _delivery(pool, hub_ids["recalled"], sc.gateway)
            obs.recall_state = None if r is None else r["recall_state"]

    obs.refused_statuses = [r["reason"] for r in await pool.fetch(
        "SELECT reason FROM rejections WHERE gateway_id = $1 AND received_at >= $2 "
        "ORDER BY received_at", sc.gateway, started)]
    obs.parked = int(await pool.fetchval(
        "SELECT count(*) FROM parked_messages WHERE gateway_id = $1 AND parked_at >= $2",
        sc.gateway, started) or 0)
    obs.inbox_messages = await _inbox_left(settings, sc, time.monotonic() + 30)
    return obs, evaluate(obs, sc.answer_within)


async def _redeliver(settings: Settings, sc: Scenario, row: asyncpg.Record,
                     doc: EdocPackage, body: bytes, hub_id: str) -> None:
    copy = Copy(gateway_id=sc.gateway, copy_id=row["copy_id"], hub_id=uuid.UUID(hub_id),
                kind="edoc", body=body, sender=sc.sender_agency,
                document_id=doc.document_id, status_code=None)
    copy.delivery_ids.append(row["id"])
    copy.recipients.append(sc.agency)
    connection = await amqp.connect(settings, "conformance", robust=False)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        deliver = await channel.get_exchange(topology.DELIVER, ensure=False)
        await publish_copies(deliver, [copy])


async def _inbox_left(settings: Settings, sc: Scenario, deadline: float) -> int | None:
    """Messages in G's inbox, ready or unacked, polled until 0 (the management API's
    numbers lag by seconds) or the deadline."""
    async with BrokerAdmin(settings.management_url) as admin:
        async def empty() -> int | None:
            q = await admin.get_queue(settings.vhost, topology.inbox_queue(sc.gateway))
            n = None if q is None else q.get("messages")
            return 0 if n == 0 else None
        left: int | None = await _until(deadline, empty)
        if left is None:
            q = await admin.get_queue(settings.vhost, topology.inbox_queue(sc.gateway))
            left = None if q is None else int(q.get("messages") or 0)
        return left

