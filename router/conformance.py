"""``lienthong conformance``: does a gateway behave? A scripted scenario through the hub.

The check acts as a counterpart gateway (an SDK client of another gateway of the same hub)
and sends the gateway under test, G:

1. documents in every business type: three new ones, an update (2) of the first, a
   replacement (3) of the third, a revocation (1) of the replacement;
2. a duplicate: the copy of the first document delivered again with the same copy id;
3. a recall (13) of the second document, which needs a 15 or 16 answer;
4. an out-of-order status: the same recall once more, after G has answered it.

Then it judges G from the ledger (the status events and rejections of what G sent) and the
broker (G's inbox), never from G's own word:

``acks-every-copy``     G's inbox is drained: nothing ready, nothing unacknowledged;
``answers-01``          every copy got a 01 (arrived) from G within ``answer_limit``;
``drops-duplicates``    no copy got a second 01 (the re-delivered copy was dropped);
``legal-transitions``   nothing G sent was refused (illegal transition, recall answer
                        without a recall, ...) or recorded out of order;
``answers-recalls``     the recall got a 15 or 16 within ``answer_limit``.

The report lists each check with its evidence (delivery and copy ids, times) for an
operator to attach to a connection request.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import aio_pika.abc
import asyncpg

from adapters import GatewayClient
from router import amqp
from router.broker_admin import BrokerAdmin
from router.outbox.outbox import Outbox
from router.recovery.redelivery import resend_copies
from router.settings import Settings
from router.topology import inbox_queue
from schemas import (
    Business,
    BusinessDocType,
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    PromulgationInfo,
    ReplacementInfo,
    ResponseFor,
    StatusCode,
)
from schemas.reasons import OperationRefused, Reason

__all__ = ["CHECKS", "Check", "ConformanceReport", "Subject", "find_subject", "run_conformance"]

_VIETNAM = timezone(timedelta(hours=7))
_NAME = "Cổng kiểm tra tuân thủ (lienthong conformance)"

# check name -> (Vietnamese, English) title
CHECKS: dict[str, tuple[str, str]] = {
    "acks-every-copy": ("Nhận (ack) mọi bản sao, hộp thư rỗng",
                        "acks every copy (inbox drained)"),
    "answers-01": ("Trả lời 01 (đã đến) trong thời hạn", "answers 01 (arrived) within the limit"),
    "drops-duplicates": ("Bỏ bản sao trùng (không gửi 01 lần hai)",
                         "drops duplicates (no second 01 for one copy)"),
    "legal-transitions": ("Chỉ gửi trạng thái hợp lệ", "sends legal transitions only"),
    "answers-recalls": ("Trả lời yêu cầu thu hồi (15/16)", "answers recalls (15 or 16)"),
}

Say = Callable[[str], None]


@dataclass
class Check:
    name: str
    passed: bool
    evidence: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        vi, en = CHECKS[self.name]
        return {"check": self.name, "title_vi": vi, "title_en": en, "passed": self.passed,
                "evidence": self.evidence}


@dataclass
class ConformanceReport:
    gateway: str
    agency: str
    counterpart: str
    vhost: str
    started_at: datetime
    finished_at: datetime | None = None
    answer_limit: float = 30.0
    checks: list[Check] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)  # what was sent, when

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.passed]

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway, "agency": self.agency, "counterpart": self.counterpart,
            "vhost": self.vhost, "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "answer_limit_s": self.answer_limit, "passed": self.passed,
            "checks": [c.as_dict() for c in self.checks], "steps": self.steps,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), ensure_ascii=False, indent=2)

    def render(self) -> str:
        """The text report an operator attaches to a connection request."""
        lines = [
            "Báo cáo kiểm tra tuân thủ cổng kết nối / Gateway conformance report",
            f"gateway (cổng): {self.gateway}   agency (cơ quan): {self.agency}",
            f"counterpart (cổng đối tác): {self.counterpart}   hub vhost: {self.vhost}",
            f"started (bắt đầu): {self.started_at.isoformat()}   finished (kết thúc): "
            f"{self.finished_at.isoformat() if self.finished_at else '-'}",
            f"answer limit (thời hạn trả lời): {self.answer_limit:g} s",
            "",
            "scenario (kịch bản):",
            *(f"  {s}" for s in self.steps),
            "",
        ]
        for c in self.checks:
            vi, en = CHECKS[c.name]
            lines.append(f"[{'PASS' if c.passed else 'FAIL'}] {c.name}: {vi} / {en}")
            lines.extend(f"    {e}" for e in c.evidence)
        verdict = ("ĐẠT / PASSED" if self.passed else
                   f"KHÔNG ĐẠT / FAILED: {', '.join(self.failed())}")
        lines += ["", f"result (kết quả): {verdict}"]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Subject:
    """A gateway and the agency it is checked through."""

    gateway: str
    agency: str


async def find_subject(conn: asyncpg.Connection, gateway_id: str) -> Subject:
    """The gateway and the first active agency it serves, or OperationRefused."""
    code = await conn.fetchval(
        "SELECT a.code FROM agencies a JOIN gateways g ON g.id = a.gateway_id "
        "WHERE g.id = $1 AND g.status = 'active' AND a.status = 'active' "
        "ORDER BY a.code LIMIT 1",
        gateway_id,
    )
    if code is None:
        raise OperationRefused(Reason.CONFORMANCE_GATEWAY_UNKNOWN, gateway_id)
    return Subject(gateway_id, str(code))


def _documents(sender: str, to: str, run: str) -> list[tuple[str, EdocPackage]]:
    """(label, package) of the scenario, in sending order."""
    day = (datetime.now(_VIETNAM) - timedelta(days=1)).date()

    def edoc(n: int, subject: str, business: Business,
             response_for: tuple[ResponseFor, ...] = ()) -> EdocPackage:
        return EdocPackage(
            sender=Organization(sender, _NAME),
            recipients=(Organization(to),),
            code=Code(f"{n}{run[:4]}", "KTTT"),
            promulgation=PromulgationInfo("Hà Nội", day),
            document_type=DocumentType("1", "0", "Công văn"),
            subject=subject, content=subject,
            document_id=_doc_id(sender, day, n, run),
            business=business, response_for=response_for,
        )

    new1 = edoc(1, "Kiểm tra tuân thủ: văn bản mới 1", Business(BusinessDocType.NEW))
    new2 = edoc(2, "Kiểm tra tuân thủ: văn bản mới 2 (sẽ bị thu hồi)",
                Business(BusinessDocType.NEW))
    new3 = edoc(3, "Kiểm tra tuân thủ: văn bản mới 3 (sẽ bị thay thế)",
                Business(BusinessDocType.NEW))
    update = edoc(4, "Kiểm tra tuân thủ: cập nhật văn bản 1",
                  Business(BusinessDocType.UPDATE, new1.document_id, "Cập nhật"))
    assert new3.document_id is not None
    replace = edoc(5, "Kiểm tra tuân thủ: thay thế văn bản 3",
                   Business(BusinessDocType.REPLACE, None, "Thay thế",
                            replacements=(ReplacementInfo(new3.document_id, (to,)),)))
    revoke = edoc(6, "Kiểm tra tuân thủ: thu hồi văn bản thay thế",
                  Business(BusinessDocType.REVOKE, None, "Thu hồi"),
                  (ResponseFor(sender, str(replace.code), day, replace.document_id),))
    return [("new (0) #1", new1), ("new (0) #2, to be recalled", new2),
            ("new (0) #3, to be replaced", new3), ("update (2) of #1", update),
            ("replace (3) of #3", replace), ("revoke (1) of the replacement", revoke)]


def _doc_id(sender: str, day: date, n: int, run: str) -> str:
    return f"{sender},{day:%Y/%m/%d},{n}{run[:4]}/KTTT-{run}"


async def run_conformance(
    settings: Settings,
    counterpart: GatewayClient,
    counterpart_agency: str,
    gateway_id: str,
    *,
    answer_limit: float = 30.0,
    settle: float = 3.0,
    say: Say | None = None,
) -> ConformanceReport:
    """Run the scenario against ``gateway_id`` with ``counterpart`` (connected) sending
    as ``counterpart_agency``; the hub's own ``settings`` read the ledger and re-deliver
    the duplicate. ``settle``: seconds to watch for a second 01 after the duplicate."""
    tell = say or (lambda _line: None)
    if counterpart.gateway_id == gateway_id:
        raise OperationRefused(Reason.CONFORMANCE_GATEWAY_UNKNOWN,
                               f"{gateway_id}: the counterpart must be another gateway")
    conn = await asyncpg.connect(settings.database_url)
    connection = await amqp.connect(settings, "conformance", robust=False)
    admin = BrokerAdmin(settings.management_url)
    try:
        subject = await find_subject(conn, gateway_id)
        started = await conn.fetchval("SELECT now()")
        report = ConformanceReport(gateway_id, subject.agency, counterpart.gateway_id,
                                   settings.vhost, started, answer_limit=answer_limit)
        run = uuid.uuid4().hex[:8]
        docs = _documents(counterpart_agency, subject.agency, run)

        def step(text: str) -> None:
            line = f"{datetime.now(UTC).isoformat(timespec='seconds')} {text}"
            report.steps.append(line)
            tell(line)

        hub_ids: list[uuid.UUID] = []
        for label, pkg in docs:
            receipt = await counterpart.send(pkg)
            assert receipt is not None
            if receipt.type not in ("accepted", "duplicate") or not receipt.hub_id:
                why = receipt.reason or {}
                raise OperationRefused(
                    Reason.CONFORMANCE_FAILED,
                    f"the hub refused the scenario's {label}: {why.get('reason')} "
                    f"{why.get('detail', '')}",
                )
            hub_ids.append(uuid.UUID(receipt.hub_id))
            step(f"sent {label}: document {pkg.document_id}, hub id {receipt.hub_id}")

        deliveries = await _deliveries(conn, hub_ids, gateway_id)
        await _until(lambda: _all_arrived(conn, [d["id"] for d in deliveries], gateway_id),
                     answer_limit)

        # the duplicate: the first document's copy once more, same copy id. Status
        # timestamps have whole seconds: a second 01 sent within the same second as the
        # first would be byte-identical, taken by the hub as a harmless duplicate and
        # invisible in the ledger; wait past it so a second answer shows
        await asyncio.sleep(1.1)
        first = next(d for d in deliveries if d["hub_id"] == hub_ids[0])
        channel = await connection.channel(publisher_confirms=True)
        outbox = await Outbox.open(channel, settings)
        await resend_copies(conn, outbox, [first["id"]])
        step(f"re-delivered the copy {first['copy_id']} (delivery {first['id']}) again")
        await _until(lambda: _ready_zero(connection, gateway_id), answer_limit)
        await asyncio.sleep(settle)  # a second 01 would come within this window

        # the recall: 13 on #2, then the same 13 again after G's answer (out of order)
        recalled = next(d for d in deliveries if d["hub_id"] == hub_ids[1])
        new2 = docs[1][1]
        recall_sent = await _recall(counterpart, counterpart_agency, new2, subject.agency,
                                    "Kiểm tra tuân thủ: đề nghị thu hồi")
        step(f"sent a recall (13) of {new2.document_id}: {recall_sent}")
        await _until(lambda: _recall_answered(conn, recalled["id"], gateway_id), answer_limit)
        # other words: not the same bytes, which the hub would take as a duplicate
        again = await _recall(counterpart, counterpart_agency, new2, subject.agency,
                              "Kiểm tra tuân thủ: đề nghị thu hồi (nhắc lại)")
        step(f"sent the same recall (13) again, out of order: {again}")

        await _until(lambda: _inbox_drained(admin, settings.vhost, gateway_id), answer_limit)
        await asyncio.sleep(settle)  # whatever G answers to the late recall

        report.checks = await _judge(conn, admin, connection, settings.vhost, gateway_id,
                                     deliveries, first["id"], recalled["id"], started,
                                     answer_limit)
        report.finished_at = await conn.fetchval("SELECT now()")
        return report
    finally:
        await admin.close()
        await connection.close()
        await conn.close()



async def _recall(counterpart: GatewayClient, agency: str, doc: EdocPackage, to: str,
                  description: str) -> str:
    receipt = await counterpart.send_status(
        sender=Organization(agency, _NAME), about=doc, code=StatusCode.RECALL_REQUESTED,
        description=description, to=to,
    )
    assert receipt is not None
    why = receipt.reason or {}
    return f"{receipt.type} {receipt.hub_id or ''} {why.get('reason') or ''}".strip()


async def _until(done: Callable[[], Any], seconds: float) -> bool:
    """Poll ``done`` (an async predicate) until it holds or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while True:
        if await done():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)


async def _deliveries(
    conn: asyncpg.Connection, hub_ids: Sequence[uuid.UUID], gateway_id: str
) -> list[asyncpg.Record]:
    return list(await conn.fetch(
        """SELECT d.id, d.hub_id, d.copy_id, d.queued_at, d.state, d.recall_state,
                  doc.business_type, doc.edxml_document_id
           FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
           WHERE d.hub_id = ANY($1::uuid[]) AND d.gateway_id = $2
           ORDER BY array_position($1::uuid[], d.hub_id)""",
        list(hub_ids), gateway_id,
    ))


# status events of the statuses G itself sent, on the given deliveries
_G_EVENTS = """
    SELECT e.delivery_id, e.status_code, e.flags, e.recorded_at, s.message_id, e.status_hub_id
    FROM status_events e JOIN documents s ON s.hub_id = e.status_hub_id
    WHERE e.delivery_id = ANY($1::uuid[]) AND s.sender_gateway_id = $2
    ORDER BY e.id"""


async def _all_arrived(conn: asyncpg.Connection, ids: list[uuid.UUID], gw: str) -> bool:
    rows = await conn.fetch(_G_EVENTS, ids, gw)
    return {r["delivery_id"] for r in rows if r["status_code"] == "01"} >= set(ids)


async def _recall_answered(conn: asyncpg.Connection, delivery: uuid.UUID, gw: str) -> bool:
    rows = await conn.fetch(_G_EVENTS, [delivery], gw)
    return any(r["status_code"] in ("15", "16") for r in rows)


async def _ready_zero(amqp: aio_pika.abc.AbstractConnection, gw: str) -> bool:
    channel = await amqp.channel()
    try:
        q = await channel.declare_queue(inbox_queue(gw), passive=True)
        return int(q.declaration_result.message_count or 0) == 0
    finally:
        await channel.close()


async def _inbox_counts(admin: BrokerAdmin, vhost: str, gw: str) -> tuple[int, int]:
    info = await admin.get_queue(vhost, inbox_queue(gw)) or {}
    return int(info.get("messages_ready", 0) or 0), int(
        info.get("messages_unacknowledged", 0) or 0)


async def _inbox_drained(admin: BrokerAdmin, vhost: str, gw: str) -> bool:
    return await _inbox_counts(admin, vhost, gw) == (0, 0)


async def _judge(
    conn: asyncpg.Connection,
    admin: BrokerAdmin,
    amqp: aio_pika.abc.AbstractConnection,
    vhost: str,
    gw: str,
    deliveries: list[asyncpg.Record],
    duplicated: uuid.UUID,
    recalled: uuid.UUID,
    started: datetime,
    limit: float,
) -> list[Check]:
    ids = [d["id"] for d in deliveries]
    events = await conn.fetch(_G_EVENTS, ids, gw)
    checks: list[Check] = []

    # acks every copy
    ready, unacked = await _inbox_counts(admin, vhost, gw)
    ready_now = 0 if await _ready_zero(amqp, gw) else 1
    drained = ready == 0 and unacked == 0 and ready_now == 0
    checks.append(Check("acks-every-copy", drained, [
        f"{len(deliveries)} copies delivered to {inbox_queue(gw)} (+1 duplicate); now "
        f"{ready} ready, {unacked} unacknowledged (RabbitMQ management)",
    ]))

    # answers 01 within the limit
    first_01: dict[uuid.UUID, datetime] = {}
    for e in events:
        if e["status_code"] == "01":
            first_01.setdefault(e["delivery_id"], e["recorded_at"])
    evidence, ok = [], True
    for d in deliveries:
        at = first_01.get(d["id"])
        queued = d["queued_at"]
        if at is None:
            ok = False
            evidence.append(f"delivery {d['id']} copy {d['copy_id']} (document "
                            f"{d['edxml_document_id']}): queued {_t(queued)}, no 01")
            continue
        took = (at - queued).total_seconds() if queued else 0.0
        late = took > limit
        ok = ok and not late
        evidence.append(f"delivery {d['id']} copy {d['copy_id']}: queued {_t(queued)}, 01 at "
                        f"{_t(at)} ({took:.2f} s{', LATE' if late else ''})")
    checks.append(Check("answers-01", ok, evidence))

    # drops duplicates: one 01 per copy
    count_01: dict[uuid.UUID, int] = {}
    for e in events:
        if e["status_code"] == "01":
            count_01[e["delivery_id"]] = count_01.get(e["delivery_id"], 0) + 1
    twice = {k: v for k, v in count_01.items() if v > 1}
    dup_copy = next(d["copy_id"] for d in deliveries if d["id"] == duplicated)
    evidence = [f"copy {dup_copy} (delivery {duplicated}) delivered twice; 01 answers: "
                f"{count_01.get(duplicated, 0)}"]
    evidence += [f"delivery {k}: {v} answers 01" for k, v in twice.items() if k != duplicated]
    checks.append(Check("drops-duplicates", not twice, evidence))

    # legal transitions only: nothing G sent was refused or recorded out of order
    refused = await conn.fetch(
        "SELECT message_id, reason, reason_code, detail, received_at FROM rejections "
        "WHERE gateway_id = $1 AND received_at >= $2 ORDER BY received_at", gw, started)
    disordered = [e for e in events if "out_of_order" in (e["flags"] or [])]
    evidence = [f"{len(events)} status packages of {gw} recorded, {len(refused)} refused, "
                f"{len(disordered)} out of order"]
    evidence += [f"refused message {r['message_id']} at {_t(r['received_at'])}: "
                 f"{r['reason']} ({r['reason_code']}) {r['detail'] or ''}".rstrip()
                 for r in refused]
    evidence += [f"out of order: {e['status_code']} on delivery {e['delivery_id']} at "
                 f"{_t(e['recorded_at'])} (message {e['message_id']})" for e in disordered]
    checks.append(Check("legal-transitions", not refused and not disordered, evidence))

    # answers recalls
    answers = [e for e in events if e["delivery_id"] == recalled
               and e["status_code"] in ("15", "16")]
    asked = await conn.fetchval(
        "SELECT min(recorded_at) FROM status_events WHERE delivery_id = $1 "
        "AND status_code = '13'", recalled)
    if answers and asked is not None:
        took = (answers[0]["recorded_at"] - asked).total_seconds()
        ok = took <= limit
        evidence = [f"recall (13) of delivery {recalled} recorded {_t(asked)}; answer "
                    f"{answers[0]['status_code']} at {_t(answers[0]['recorded_at'])} "
                    f"({took:.2f} s{', LATE' if not ok else ''})"]
    else:
        ok = False
        evidence = [f"recall (13) of delivery {recalled} recorded {_t(asked)}; no 15/16 "
                    f"from {gw}"]
    checks.append(Check("answers-recalls", ok, evidence))
    return checks


def _t(at: datetime | None) -> str:
    return at.isoformat(timespec="milliseconds") if at else "-"
