"""Routing one batch of submitted messages: validate, authorise, resolve, record.

:class:`BatchRouter` turns a batch of :class:`Incoming` messages into a :class:`BatchPlan`:
the copies to publish to recipient gateways and the receipts to send back, after writing
everything to the ledger in one transaction. It does no AMQP I/O: ``router.routing.intake`` does.

Idempotency: hub ids, delivery ids, copy ids and receipt ids are either stored (hub ids)
or derived deterministically from stored ids, so processing the same message twice (a
crash before the ack) republishes the same copies with the same ids, and gateways drop
the second one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg

from router.ledger import Conn
from router.routing import lifecycle
from router.routing.lifecycle import apply_status
from router.security.signature_gate import SignatureGate
from schemas import (
    BusinessDocType,
    EdocPackage,
    ParsedPackage,
    ParseLimits,
    StatusPackage,
    parse_package,
)
from schemas.agency_code import normalize
from schemas.reasons import PackageRejected, Reason, ValidationWarning, WarningCode
from schemas.receipt import Receipt, RecipientOutcome

__all__ = ["BatchPlan", "BatchRouter", "Copy", "Incoming", "OutgoingReceipt"]

_NS = uuid.UUID("6c69656e-7468-6f6e-672d-687562000001")  # lienthong hub namespace


def derive_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_NS, "|".join(str(p) for p in parts))


@dataclass(slots=True)
class Incoming:
    """One message taken from ``lt.router.in``."""

    body: bytes
    amqp_user: str | None
    routing_key: str
    message_id: str | None
    declared_type: str | None = None
    redelivered: bool = False
    sha256: bytes = b""
    sent_at: float | None = None  # epoch seconds the gateway stamped (lt-sent-at), if any
    # where the sender's client waits for its receipt (RabbitMQ direct reply-to), if any
    reply_to: str | None = None

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.body).digest()

    @property
    def key(self) -> str:
        """Identifies the message across redeliveries."""
        return f"{self.amqp_user}|{self.message_id}|{self.sha256.hex()}"


@dataclass(slots=True)
class Copy:
    """One copy of a package for one recipient gateway."""

    gateway_id: str
    copy_id: uuid.UUID
    hub_id: uuid.UUID
    kind: str
    body: bytes
    sender: str
    document_id: str | None
    status_code: str | None
    delivery_ids: list[uuid.UUID] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OutgoingReceipt:
    gateway_id: str
    receipt: Receipt
    # also answer the submitting client directly (the receipt still goes to the queue)
    reply_to: str | None = None


@dataclass(slots=True)
class BatchPlan:
    copies: list[Copy] = field(default_factory=list)
    receipts: list[OutgoingReceipt] = field(default_factory=list)
    # per incoming message, in order: "accepted", "duplicate", "rejected", "resumed"
    outcomes: list[str] = field(default_factory=list)
    # receipts that must wait for the copies' fate (accepted packages)
    pending: list[_PendingReceipt] = field(default_factory=list)
    # per incoming message: its kind ("unknown" when it could not be parsed)
    kinds: list[str] = field(default_factory=list)
    # one reason name per rejection
    rejection_reasons: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _PendingReceipt:
    gateway_id: str
    receipt_id: uuid.UUID
    type: str
    hub_id: uuid.UUID
    message_id: str | None
    kind: str
    document_id: str | None
    sender: str
    recipients: list[tuple[str, str, str, uuid.UUID]]  # code, agency, gateway, delivery id
    warnings: tuple[ValidationWarning, ...]
    reply_to: str | None = None


@dataclass(slots=True)
class _Gateway:
    id: str
    amqp_user: str
    status: str


@dataclass(slots=True)
class _Agency:
    id: int
    code: str
    gateway_id: str | None
    status: str


@dataclass(slots=True)
class _Target:
    hub_id: uuid.UUID
    sender_agency_id: int
    sender_gateway_id: str
    sender_code: str
    edxml_document_id: str


@dataclass(slots=True)
class _Plan:
    """What an accepted message will write."""

    index: int
    msg: Incoming
    parsed: ParsedPackage
    gateway_id: str
    sender: _Agency
    hub_id: uuid.UUID
    dedup_key: str
    recipients: list[tuple[str, _Agency]]  # (code as written, agency)
    warnings: list[ValidationWarning]
    target: _Target | None = None
    status_delivery: uuid.UUID | None = None  # delivery a status package acts on
    targets_closed: list[uuid.UUID] = field(default_factory=list)  # revoke/replace


class _Reject(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(reason.name)
        self.reason = reason
        self.detail = detail


def _json_warnings(ws: Sequence[ValidationWarning]) -> str:
    return json.dumps([w.as_dict() for w in ws], ensure_ascii=False)


_LOOKUPS_SQL = """
SELECT
  (SELECT coalesce(json_agg(json_build_array(g.id, g.amqp_user, g.status)), '[]')
     FROM gateways g WHERE g.amqp_user = ANY($1::text[])) AS gateways,
  (SELECT coalesce(json_agg(json_build_array(al.alias, a.id, a.code, a.gateway_id, a.status)),
                   '[]')
     FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
     WHERE al.alias = ANY($2::text[])) AS agencies,
  (SELECT coalesce(json_agg(json_build_array(d.hub_id, d.sender_agency_id, d.sender_gateway_id,
                                             d.sender_code, d.edxml_document_id)
                            ORDER BY d.received_at DESC), '[]')
     FROM documents d
     WHERE d.kind = 'edoc' AND d.edxml_document_id = ANY($3::text[])) AS targets
"""


class BatchRouter:
    """Validates, authorises and records a batch; returns what to publish."""

    def __init__(self, pool: asyncpg.Pool, *, limits: ParseLimits) -> None:
        self._pool = pool
        self._limits = limits
        self._gate = SignatureGate(pool)
        self._now = datetime.now(UTC)

    async def route(self, batch: Sequence[Incoming]) -> BatchPlan:
        plan = BatchPlan(outcomes=[""] * len(batch))
        parsed: list[ParsedPackage | PackageRejected] = [self._parse(m) for m in batch]
        plan.kinds = [
            "unknown" if isinstance(p, PackageRejected) else p.package.kind for p in parsed
        ]

        async with self._pool.acquire() as conn:
            gateways, agencies, targets = await self._lookups(conn, batch, parsed)
            await self._gate.refresh_if_stale([g.id for g in gateways.values()], conn=conn)
            self._now = datetime.now(UTC)

            plans: list[_Plan] = []
            rejects: list[tuple[int, Reason, str, tuple[ValidationWarning, ...]]] = []
            for i, (msg, parsed_one) in enumerate(zip(batch, parsed, strict=True)):
                if isinstance(parsed_one, PackageRejected):
                    rejects.append(
                        (i, parsed_one.reason, parsed_one.detail, parsed_one.warnings)
                    )
                    continue
                try:
                    plans.append(self._decide(i, msg, parsed_one, gateways, agencies, targets))
                except _Reject as r:
                    rejects.append((i, r.reason, r.detail, parsed_one.warnings))

            async with conn.transaction():
                plans, locked = await self._check_status_deliveries(conn, plans, rejects)
                accepted, duplicates = await self._insert_documents(conn, plans, rejects)
                await self._insert_deliveries(conn, accepted, plan)
                await self._apply_statuses(conn, accepted, plan, locked)
                await self._apply_business(conn, accepted, plan)
                await self._insert_rejections(conn, batch, gateways, rejects, plan)
                resumed = await self._resume(conn, duplicates, plan)
                await self._audit(conn, accepted, rejects, batch)

        for p in accepted:
            plan.outcomes[p.index] = "accepted"
            self._plan_copies(p, plan)
        for p, existing_hub, is_resume in duplicates:
            plan.outcomes[p.index] = "resumed" if is_resume else "duplicate"
            if is_resume:
                continue  # handled by _resume: same receipt id as the first time
            plan.receipts.append(
                OutgoingReceipt(
                    p.gateway_id,
                    Receipt(
                        receipt_id=str(derive_id("dup", p.msg.key)),
                        type="duplicate",
                        hub_id=str(existing_hub),
                        message_id=p.msg.message_id,
                        kind=p.parsed.package.kind,
                        document_id=_document_id(p.parsed),
                        sender=p.sender.code,
                        warnings=tuple(w.as_dict() for w in p.warnings),
                    ),
                    p.msg.reply_to,
                )
            )
        plan.pending.extend(resumed)
        return plan

    # parsing -------------------------------------------------------------------------
    def _parse(self, msg: Incoming) -> ParsedPackage | PackageRejected:
        try:
            parsed = parse_package(msg.body, limits=self._limits)
        except PackageRejected as exc:
            # kept as data, without tracebacks: their frames hold the batch (and every body
            # in it) in a reference cycle, freed only by a later garbage collection
            exc.__cause__ = exc.__context__ = None
            return exc.with_traceback(None)
        if msg.declared_type and msg.declared_type != parsed.package.kind:
            return PackageRejected(
                Reason.KIND_MISMATCH,
                f"AMQP type {msg.declared_type!r}, package is {parsed.package.kind!r}",
                warnings=parsed.warnings,
            )
        return parsed

    # lookups -------------------------------------------------------------------------
    @staticmethod
    async def _lookups(
        conn: Conn,
        batch: Sequence[Incoming],
        parsed: Sequence[ParsedPackage | PackageRejected],
    ) -> tuple[dict[str, _Gateway], dict[str, _Agency], dict[str, list[_Target]]]:
        """The sending gateways, every agency code the batch names (by any alias) and
        the documents its statuses and business packages refer to: one round trip."""
        users = sorted({m.amqp_user for m in batch if m.amqp_user})
        codes: set[str] = set()
        ids: set[str] = set()
        for msg, p in zip(batch, parsed, strict=True):
            if isinstance(p, PackageRejected):
                continue
            codes.add(normalize(msg.routing_key))
            pkg = p.package
            codes.add(normalize(pkg.sender.organ_id))
            if isinstance(pkg, EdocPackage):
                codes.update(normalize(r.organ_id) for r in pkg.recipients)
                ids.update(pkg.target_document_ids)
            else:
                if pkg.response_for.organ_id:
                    codes.add(normalize(pkg.response_for.organ_id))
                if pkg.response_for.document_id:
                    ids.add(pkg.response_for.document_id)
        row = await conn.fetchrow(_LOOKUPS_SQL, users, sorted(codes), sorted(ids))
        assert row is not None
        gateways = {u: _Gateway(g, u, st) for g, u, st in json.loads(row["gateways"])}
        agencies = {
            alias: _Agency(aid, code, gw, st)
            for alias, aid, code, gw, st in json.loads(row["agencies"])
        }
        targets: dict[str, list[_Target]] = {}
        for hub, agency, gw, code, doc in json.loads(row["targets"]):  # newest first
            targets.setdefault(doc, []).append(_Target(uuid.UUID(hub), agency, gw, code, doc))
        return gateways, agencies, targets

    # decisions -----------------------------------------------------------------------
    def _decide(
        self,
        index: int,
        msg: Incoming,
        parsed: ParsedPackage,
        gateways: dict[str, _Gateway],
        agencies: dict[str, _Agency],
        targets: dict[str, list[_Target]],
    ) -> _Plan:
        gw = gateways.get(msg.amqp_user or "")
        if gw is None:
            raise _Reject(
                Reason.GATEWAY_UNKNOWN,
                "the AMQP user_id property is missing"
                if not msg.amqp_user
                else f"no gateway for AMQP user {msg.amqp_user}",
            )
        if gw.status != "active":
            raise _Reject(Reason.GATEWAY_SUSPENDED, gw.id)
        pkg = parsed.package
        sender_code = normalize(pkg.sender.organ_id)
        sender = agencies.get(sender_code)
        if sender is None:
            raise _Reject(Reason.SENDER_NOT_REGISTERED, sender_code)
        if sender.gateway_id != gw.id:
            raise _Reject(Reason.SENDER_NOT_SERVED, f"{sender_code} is not served by {gw.id}")
        key_agency = agencies.get(normalize(msg.routing_key))
        if key_agency is None or key_agency.id != sender.id:
            raise _Reject(
                Reason.SENDER_NOT_SERVED,
                f"routing key {msg.routing_key!r} does not name the sender {sender_code}",
            )
        warnings = list(parsed.warnings)
        try:
            warnings += self._gate.check(gw.id, msg.body, pkg.has_signature, self._now)
        except PackageRejected as exc:
            raise _Reject(exc.reason, exc.detail) from None
        if isinstance(pkg, EdocPackage):
            return self._decide_edoc(index, msg, parsed, pkg, gw.id, sender, agencies,
                                     targets, warnings)
        return self._decide_status(index, msg, parsed, pkg, gw.id, sender, agencies,
                                   targets, warnings)

    def _decide_edoc(
        self,
        index: int,
        msg: Incoming,
        parsed: ParsedPackage,
        pkg: EdocPackage,
        gateway_id: str,
        sender: _Agency,
        agencies: dict[str, _Agency],
        targets: dict[str, list[_Target]],
        warnings: list[ValidationWarning],
    ) -> _Plan:
        recipients: list[tuple[str, _Agency]] = []
        seen: dict[int, str] = {}
        for org in pkg.recipients:
            code = normalize(org.organ_id)
            agency = agencies.get(code)
            if agency is None:
                raise _Reject(Reason.RECIPIENT_UNKNOWN, code)
            if agency.status != "active":
                raise _Reject(Reason.RECIPIENT_LOCKED, code)
            if agency.gateway_id is None:
                raise _Reject(Reason.RECIPIENT_NO_GATEWAY, code)
            if agency.id in seen:
                warnings.append(
                    ValidationWarning(
                        WarningCode.DUPLICATE_RECIPIENT_ALIAS,
                        f"{seen[agency.id]} and {code} are both {agency.code}",
                    )
                )
                continue
            seen[agency.id] = code
            recipients.append((code, agency))
        closed: list[uuid.UUID] = []
        target: _Target | None = None
        bt = pkg.business_type
        for doc_id in pkg.target_document_ids:
            found = targets.get(doc_id, [])
            mine = [t for t in found if t.sender_agency_id == sender.id]
            if not found:
                raise _Reject(Reason.DOCUMENT_UNKNOWN, doc_id)
            if not mine:
                raise _Reject(Reason.TARGET_NOT_SAME_SENDER, doc_id)
            target = target or mine[0]
            if bt in (BusinessDocType.REVOKE, BusinessDocType.REPLACE):
                closed.append(mine[0].hub_id)
        doc_key = pkg.document_id or f"sha:{msg.sha256.hex()}"
        return _Plan(
            index=index,
            msg=msg,
            parsed=parsed,
            gateway_id=gateway_id,
            sender=sender,
            hub_id=uuid.uuid4(),
            dedup_key=f"edoc|{sender.id}|{int(bt)}|{doc_key}",
            recipients=recipients,
            warnings=warnings,
            target=target,
            targets_closed=closed,
        )

    def _decide_status(
        self,
        index: int,
        msg: Incoming,
        parsed: ParsedPackage,
        pkg: StatusPackage,
        gateway_id: str,
        sender: _Agency,
        agencies: dict[str, _Agency],
        targets: dict[str, list[_Target]],
        warnings: list[ValidationWarning],
    ) -> _Plan:
        rf = pkg.response_for
        addressee = agencies.get(normalize(rf.organ_id or ""))
        if addressee is None:
            raise _Reject(Reason.RECIPIENT_UNKNOWN, rf.organ_id or "")
        if addressee.gateway_id is None:
            raise _Reject(Reason.RECIPIENT_NO_GATEWAY, addressee.code)
        found = targets.get(rf.document_id or "", [])
        if not found:
            raise _Reject(Reason.DOCUMENT_UNKNOWN, rf.document_id or "")
        by_sender = pkg.status_code.sent_by_sender
        doc_owner = sender if by_sender else addressee
        mine = [t for t in found if t.sender_agency_id == doc_owner.id]
        if not mine:
            raise _Reject(
                Reason.STATUS_WRONG_ADDRESSEE,
                f"{rf.document_id} was not sent by {doc_owner.code}",
            )
        # the delivery the status acts on: (document, recipient agency)
        recipient_agency = addressee if by_sender else sender
        return _Plan(
            index=index,
            msg=msg,
            parsed=parsed,
            gateway_id=gateway_id,
            sender=sender,
            hub_id=uuid.uuid4(),
            dedup_key=f"status|{sender.id}|sha:{msg.sha256.hex()}",
            recipients=[(normalize(rf.organ_id or ""), addressee)],
            warnings=warnings,
            target=mine[0],
            status_delivery=derive_id("delivery", mine[0].hub_id, recipient_agency.id),
        )

    # the transaction -----------------------------------------------------------------
    async def _check_status_deliveries(
        self,
        conn: Conn,
        plans: list[_Plan],
        rejects: list[tuple[int, Reason, str, tuple[ValidationWarning, ...]]],
    ) -> tuple[list[_Plan], dict[uuid.UUID, asyncpg.Record]]:
        """Lock the deliveries status packages act on; refuse illegal transitions.
        Returns the plans kept and the locked deliveries as they were read."""
        ids = [p.status_delivery for p in plans if p.status_delivery is not None]
        if not ids:
            return plans, {}
        rows = await conn.fetch(
            """SELECT d.id, d.state, d.recall_state, d.recipient_code, a.code AS agency
               FROM deliveries d JOIN agencies a ON a.id = d.recipient_agency_id
               WHERE d.id = ANY($1) ORDER BY d.id FOR UPDATE OF d""",
            ids,
        )
        locked = {r["id"]: r for r in rows}
        current = {r["id"]: (r["state"], r["recall_state"]) for r in rows}
        kept: list[_Plan] = []
        for p in plans:
            if p.status_delivery is None:
                kept.append(p)
                continue
            pkg = p.parsed.package
            assert isinstance(pkg, StatusPackage)
            if p.status_delivery not in current:
                reject_reason = (
                    Reason.STATUS_ISSUER_NOT_RECIPIENT
                    if not pkg.status_code.sent_by_sender
                    else Reason.RECIPIENT_UNKNOWN
                )
                rejects.append((p.index, reject_reason, p.sender.code, tuple(p.warnings)))
                continue
            state, recall = current[p.status_delivery]
            t = apply_status(state, recall, pkg.status_code)
            if not t.ok:
                assert t.reason is not None
                rejects.append(
                    (p.index, t.reason, f"{state} + {pkg.status_code.value}", tuple(p.warnings))
                )
                continue
            current[p.status_delivery] = (t.state, t.recall_state)
            kept.append(p)
        return kept, locked

    async def _insert_documents(
        self,
        conn: Conn,
        plans: list[_Plan],
        rejects: list[tuple[int, Reason, str, tuple[ValidationWarning, ...]]],
    ) -> tuple[list[_Plan], list[tuple[_Plan, uuid.UUID, bool]]]:
        if not plans:
            return [], []
        # the same dedup key twice in one batch: the later ones are duplicates
        first: dict[str, _Plan] = {}
        unique: list[_Plan] = []
        later: list[_Plan] = []
        for p in plans:
            if p.dedup_key in first:
                later.append(p)
            else:
                first[p.dedup_key] = p
                unique.append(p)
        cols: dict[str, list[Any]] = {k: [] for k in (
            "hub", "kind", "key", "docid", "sender", "scode", "gw", "bt", "status", "target",
            "sha", "size", "code", "subject", "pdate", "due", "mid", "warn", "body")}
        for p in unique:
            pkg = p.parsed.package
            cols["hub"].append(p.hub_id)
            cols["kind"].append(pkg.kind)
            cols["key"].append(p.dedup_key)
            cols["sender"].append(p.sender.id)
            cols["scode"].append(pkg.sender.organ_id)
            cols["gw"].append(p.gateway_id)
            cols["target"].append(p.target.hub_id if p.target else None)
            cols["sha"].append(p.msg.sha256)
            cols["size"].append(len(p.msg.body))
            cols["mid"].append(p.msg.message_id)
            cols["warn"].append(_json_warnings(p.warnings))
            cols["body"].append(p.msg.body)
            if isinstance(pkg, EdocPackage):
                cols["docid"].append(pkg.document_id)
                cols["bt"].append(int(pkg.business_type))
                cols["status"].append(None)
                cols["code"].append(str(pkg.code) or None)
                cols["subject"].append(pkg.subject)
                cols["pdate"].append(pkg.promulgation.promulgation_date)
                cols["due"].append(pkg.due_date)
            else:
                cols["docid"].append(pkg.response_for.document_id)
                cols["bt"].append(None)
                cols["status"].append(pkg.status_code.value)
                cols["code"].append(pkg.response_for.code)
                cols["subject"].append(pkg.description)
                cols["pdate"].append(None)
                cols["due"].append(None)
        rows = await conn.fetch(
            """INSERT INTO documents (hub_id, kind, dedup_key, edxml_document_id,
                   sender_agency_id, sender_code, sender_gateway_id, business_type,
                   status_code, target_hub_id, content_sha256, size_bytes, code_text,
                   subject, promulgation_date, due_date, message_id, warnings, body)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                   $5::bigint[], $6::text[], $7::text[], $8::smallint[], $9::text[],
                   $10::uuid[], $11::bytea[], $12::int[], $13::text[], $14::text[],
                   $15::date[], $16::date[], $17::text[], $18::jsonb[], $19::bytea[])
               ON CONFLICT (dedup_key) DO NOTHING
               RETURNING dedup_key""",
            *cols.values(),
        )
        inserted = {r["dedup_key"] for r in rows}
        accepted = [p for p in unique if p.dedup_key in inserted]
        clashes = [p for p in unique if p.dedup_key not in inserted] + later
        duplicates: list[tuple[_Plan, uuid.UUID, bool]] = []
        if clashes:
            existing = await conn.fetch(
                """SELECT dedup_key, hub_id, content_sha256, message_id, sender_gateway_id
                   FROM documents WHERE dedup_key = ANY($1)""",
                sorted({p.dedup_key for p in clashes}),
            )
            by_key = {r["dedup_key"]: r for r in existing}
            for p in clashes:
                if p.dedup_key not in by_key:  # an in-batch duplicate of a rejected one
                    first_p = first[p.dedup_key]
                    by_key[p.dedup_key] = {
                        "hub_id": first_p.hub_id,
                        "content_sha256": first_p.msg.sha256,
                        "message_id": first_p.msg.message_id,
                        "sender_gateway_id": first_p.gateway_id,
                    }
                ex = by_key[p.dedup_key]
                if bytes(ex["content_sha256"]) != p.msg.sha256:
                    rejects.append(
                        (p.index, Reason.DOCUMENT_ID_CONFLICT, p.dedup_key.split("|", 3)[-1],
                         tuple(p.warnings))
                    )
                    continue
                is_resume = (
                    p not in later
                    and ex["message_id"] == p.msg.message_id
                    and ex["sender_gateway_id"] == p.gateway_id
                )
                duplicates.append((p, ex["hub_id"], is_resume))
        return accepted, duplicates

    @staticmethod
    async def _insert_deliveries(
        conn: Conn, accepted: list[_Plan], plan: BatchPlan
    ) -> None:
        ids: list[uuid.UUID] = []
        hubs: list[uuid.UUID] = []
        agencies: list[int] = []
        codes: list[str] = []
        gws: list[str] = []
        copies: list[uuid.UUID] = []
        dues: list[Any] = []
        kinds: list[str] = []
        for p in accepted:
            pkg = p.parsed.package
            due = pkg.due_date if isinstance(pkg, EdocPackage) else None
            for code, agency in p.recipients:
                dues.append(due)
                kinds.append(pkg.kind)
                assert agency.gateway_id is not None
                ids.append(derive_id("delivery", p.hub_id, agency.id))
                hubs.append(p.hub_id)
                agencies.append(agency.id)
                codes.append(code)
                gws.append(agency.gateway_id)
                copies.append(derive_id("copy", p.hub_id, agency.gateway_id))
        if not ids:
            return
        await conn.execute(
            """WITH d AS (
                   INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code,
                       gateway_id, copy_id, state, due_at, kind)
                   SELECT i, h, a, c, g, cp, 'submitted', du, k
                   FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[],
                               $6::uuid[], $7::date[], $8::text[]) AS t(i, h, a, c, g, cp, du, k)
                   ON CONFLICT DO NOTHING RETURNING id)
               INSERT INTO status_events (delivery_id, state) SELECT id, 'submitted' FROM d""",
            ids, hubs, agencies, codes, gws, copies, dues, kinds,
        )

    @staticmethod
    async def _apply_statuses(
        conn: Conn,
        accepted: list[_Plan],
        plan: BatchPlan,
        current: dict[uuid.UUID, asyncpg.Record],
    ) -> None:
        """Record every status as an event and move its delivery on. ``current``: the
        deliveries as locked by ``_check_status_deliveries`` in this transaction."""
        todo = [p for p in accepted if p.status_delivery is not None]
        if not todo:
            return
        # only the deliveries of accepted statuses (``current`` also holds those of the
        # batch's refused and duplicate ones)
        state = {
            p.status_delivery: (current[p.status_delivery]["state"],
                                current[p.status_delivery]["recall_state"])
            for p in todo
            if p.status_delivery is not None
        }
        ev: dict[str, list[Any]] = {k: [] for k in
                                    ("d", "hub", "code", "state", "issuer", "desc", "t", "f")}
        for p in todo:
            pkg = p.parsed.package
            assert isinstance(pkg, StatusPackage) and p.status_delivery and p.target
            st, rc = state[p.status_delivery]
            t = apply_status(st, rc, pkg.status_code)
            state[p.status_delivery] = (t.state, t.recall_state)
            ev["d"].append(p.status_delivery)
            ev["hub"].append(p.hub_id)
            ev["code"].append(pkg.status_code.value)
            ev["state"].append(t.state)
            ev["issuer"].append(p.sender.code)
            ev["desc"].append(pkg.description)
            ev["t"].append(_aware(pkg.timestamp))
            ev["f"].append(list(t.flags))
            if t.state != st or t.recall_state != rc:
                row = current[p.status_delivery]
                plan.receipts.append(
                    _status_event(p, p.hub_id, row["recipient_code"], row["agency"], t.state))
        final = dict(state)
        codes: dict[uuid.UUID, list[str]] = {}
        for p in todo:
            assert p.status_delivery is not None
            pkg = p.parsed.package
            assert isinstance(pkg, StatusPackage)
            codes.setdefault(p.status_delivery, []).append(pkg.status_code.value)
        # the events and the deliveries' new state in one statement
        await conn.execute(
            """WITH e AS (
                   INSERT INTO status_events (delivery_id, status_hub_id, status_code, state,
                       issuer_code, description, event_time, flags)
                   SELECT d, h, c, s, i, x, t, COALESCE(string_to_array(f, ','), '{}')
                   FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                               $6::text[], $7::timestamptz[], $8::text[])
                        AS u(d, h, c, s, i, x, t, f))
               UPDATE deliveries d SET state = u.s, recall_state = u.r,
                   last_status_code = u.c, updated_at = now(),
                   arrived_at = CASE WHEN x.cs && '{01,03,04,05,06}'::text[]
                                     THEN COALESCE(d.arrived_at, now()) ELSE d.arrived_at END,
                   accepted_at = CASE WHEN x.cs && '{03,04,05,06}'::text[]
                                      THEN COALESCE(d.accepted_at, now()) ELSE d.accepted_at END,
                   refused_at = CASE WHEN '02' = ANY(x.cs) AND u.s = 'refused'
                                     THEN COALESCE(d.refused_at, now()) ELSE d.refused_at END,
                   done_at = CASE WHEN '06' = ANY(x.cs)
                                  THEN COALESCE(d.done_at, now()) ELSE d.done_at END
               FROM unnest($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[])
                    AS u(i, s, r, c, cl), LATERAL string_to_array(u.cl, ',') AS x(cs)
               WHERE d.id = u.i""",
            ev["d"], ev["hub"], ev["code"], ev["state"], ev["issuer"], ev["desc"], ev["t"],
            [",".join(f) if f else None for f in ev["f"]],
            list(final),
            [v[0] for v in final.values()],
            [v[1] for v in final.values()],
            [codes[k][-1] for k in final],
            [",".join(codes[k]) for k in final],
        )

    @staticmethod
    async def _apply_business(
        conn: Conn, accepted: list[_Plan], plan: BatchPlan
    ) -> None:
        """Revoke (1) and replace (3) close the target document's deliveries."""
        hubs: list[uuid.UUID] = []
        states: list[str] = []
        for p in accepted:
            pkg = p.parsed.package
            if not isinstance(pkg, EdocPackage) or not p.targets_closed:
                continue
            new = (
                lifecycle.REVOKED
                if pkg.business_type is BusinessDocType.REVOKE
                else lifecycle.REPLACED
            )
            for h in p.targets_closed:
                hubs.append(h)
                states.append(new)
        if not hubs:
            return
        rows = await conn.fetch(
            """WITH u AS (
                   UPDATE deliveries d SET state = x.s, updated_at = now()
                   FROM unnest($1::uuid[], $2::text[]) AS x(h, s)
                   WHERE d.hub_id = x.h AND d.state NOT IN ('revoked', 'replaced', 'recalled')
                   RETURNING d.id, d.state),
               e AS (INSERT INTO status_events (delivery_id, state)
                     SELECT id, state FROM u)
               SELECT id FROM u""",
            hubs,
            states,
        )
        from router.outbox.events import delivery_events

        plan.receipts += await delivery_events(conn, [r["id"] for r in rows], cause="closed")

    async def _insert_rejections(
        self,
        conn: Conn,
        batch: Sequence[Incoming],
        gateways: dict[str, _Gateway],
        rejects: list[tuple[int, Reason, str, tuple[ValidationWarning, ...]]],
        plan: BatchPlan,
    ) -> None:
        if not rejects:
            return
        cols: dict[str, list[Any]] = {k: [] for k in (
            "id", "user", "gw", "mid", "rk", "reason", "code", "detail", "size", "sha", "body")}
        for index, reason, detail, warnings in rejects:
            msg = batch[index]
            gw = gateways.get(msg.amqp_user or "")
            rid = derive_id("rejection", msg.key)
            cols["id"].append(rid)
            cols["user"].append(msg.amqp_user)
            cols["gw"].append(gw.id if gw else None)
            cols["mid"].append(msg.message_id)
            cols["rk"].append(msg.routing_key)
            cols["reason"].append(reason.name)
            cols["code"].append(reason.code)
            cols["detail"].append(detail[:2000])
            cols["size"].append(len(msg.body))
            cols["sha"].append(msg.sha256)
            cols["body"].append(msg.body if len(msg.body) <= self._limits.max_bytes else None)
            plan.outcomes[index] = "rejected"
            plan.rejection_reasons.append(reason.name)
            if gw is not None:
                plan.receipts.append(
                    OutgoingReceipt(
                        gw.id,
                        Receipt(
                            receipt_id=str(derive_id("receipt", rid)),
                            type="rejected",
                            message_id=msg.message_id,
                            kind=msg.declared_type,
                            sender=msg.routing_key,
                            reason=reason.as_dict(detail or None),
                            warnings=tuple(w.as_dict() for w in warnings),
                        ),
                        msg.reply_to,
                    )
                )
        await conn.execute(
            """INSERT INTO rejections (id, amqp_user, gateway_id, message_id, routing_key,
                   reason, reason_code, detail, size_bytes, content_sha256, body)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                   $6::text[], $7::int[], $8::text[], $9::int[], $10::bytea[], $11::bytea[])
               ON CONFLICT (id) DO NOTHING""",
            *cols.values(),
        )

    @staticmethod
    async def _resume(
        conn: Conn,
        duplicates: list[tuple[_Plan, uuid.UUID, bool]],
        plan: BatchPlan,
    ) -> list[_PendingReceipt]:
        """The same message again (a crash before the ack): finish what was left."""
        resumed = [(p, hub) for p, hub, is_resume in duplicates if is_resume]
        if not resumed:
            return []
        rows = await conn.fetch(
            """SELECT d.id, d.hub_id, d.recipient_code, d.gateway_id, d.copy_id, d.state,
                      a.code AS agency
               FROM deliveries d JOIN agencies a ON a.id = d.recipient_agency_id
               WHERE d.hub_id = ANY($1) ORDER BY d.created_at, d.id""",
            [hub for _, hub in resumed],
        )
        by_hub: dict[uuid.UUID, list[asyncpg.Record]] = {}
        for r in rows:
            by_hub.setdefault(r["hub_id"], []).append(r)
        out: list[_PendingReceipt] = []
        for p, hub in resumed:
            pkg = p.parsed.package
            copies: dict[str, Copy] = {}
            for r in by_hub.get(hub, []):
                if r["state"] == "submitted":
                    c = copies.get(r["gateway_id"])
                    if c is None:
                        c = copies[r["gateway_id"]] = Copy(
                            gateway_id=r["gateway_id"],
                            copy_id=r["copy_id"],
                            hub_id=hub,
                            kind=pkg.kind,
                            body=p.msg.body,
                            sender=p.sender.code,
                            document_id=_document_id(p.parsed),
                            status_code=_status_code(p.parsed),
                        )
                    c.delivery_ids.append(r["id"])
                    c.recipients.append(r["agency"])
            plan.copies.extend(copies.values())
            out.append(
                _PendingReceipt(
                    gateway_id=p.gateway_id,
                    receipt_id=derive_id("accepted", hub),
                    type="accepted",
                    hub_id=hub,
                    message_id=p.msg.message_id,
                    kind=pkg.kind,
                    document_id=_document_id(p.parsed),
                    sender=p.sender.code,
                    recipients=[
                        (r["recipient_code"], r["agency"], r["gateway_id"], r["id"])
                        for r in by_hub.get(hub, [])
                    ],
                    warnings=tuple(p.warnings),
                    reply_to=p.msg.reply_to,
                )
            )
        # a resumed status package also tells the document's sender again what it changed
        # (an event with the same receipt id: a sender that has it drops it); a status that
        # changed nothing was recorded with a flag and sent no event the first time either
        statuses = [p for p, _ in resumed if p.status_delivery is not None]
        if statuses:
            events = await conn.fetch(
                """SELECT e.status_hub_id, e.state, d.recipient_code, a.code AS agency
                   FROM status_events e
                   JOIN deliveries d ON d.id = e.delivery_id
                   JOIN agencies a ON a.id = d.recipient_agency_id
                   WHERE e.delivery_id = ANY($1) AND e.status_hub_id = ANY($2)
                     AND cardinality(e.flags) = 0""",
                [p.status_delivery for p in statuses],
                [hub for p, hub in resumed if p.status_delivery is not None],
            )
            by_status = {r["status_hub_id"]: r for r in events}
            for p, hub in resumed:
                r = by_status.get(hub)
                if r is not None:
                    plan.receipts.append(
                        _status_event(p, hub, r["recipient_code"], r["agency"], r["state"]))
        return out

    @staticmethod
    async def _audit(
        conn: Conn,
        accepted: list[_Plan],
        rejects: list[tuple[int, Reason, str, tuple[ValidationWarning, ...]]],
        batch: Sequence[Incoming],
    ) -> None:
        actors: list[str] = []
        actions: list[str] = []
        subjects: list[str] = []
        details: list[str] = []
        for p in accepted:
            actors.append(f"gateway:{p.gateway_id}")
            actions.append(f"{p.parsed.package.kind}.accepted")
            subjects.append(str(p.hub_id))
            details.append(
                json.dumps(
                    {
                        "sha256": p.msg.sha256.hex(),
                        "sender": p.sender.code,
                        "recipients": [a.code for _, a in p.recipients],
                        "document_id": _document_id(p.parsed),
                        "status_code": _status_code(p.parsed),
                    },
                    ensure_ascii=False,
                )
            )
        for index, reason, detail, _ in rejects:
            msg = batch[index]
            actors.append(f"amqp:{msg.amqp_user}")
            actions.append("package.rejected")
            subjects.append(str(derive_id("rejection", msg.key)))
            details.append(
                json.dumps({"reason": reason.name, "sha256": msg.sha256.hex(),
                            "detail": detail[:300]}, ensure_ascii=False)
            )
        if actors:
            await conn.execute(
                """INSERT INTO audit_log (actor, action, subject, details)
                   SELECT a, b, c, d::jsonb
                   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(a, b, c, d)""",
                actors, actions, subjects, details,
            )

    # after the transaction ------------------------------------------------------------
    @staticmethod
    def _plan_copies(p: _Plan, plan: BatchPlan) -> None:
        pkg = p.parsed.package
        copies: dict[str, Copy] = {}
        listed: list[tuple[str, str, str, uuid.UUID]] = []
        for code, agency in p.recipients:
            assert agency.gateway_id is not None
            c = copies.get(agency.gateway_id)
            if c is None:
                c = copies[agency.gateway_id] = Copy(
                    gateway_id=agency.gateway_id,
                    copy_id=derive_id("copy", p.hub_id, agency.gateway_id),
                    hub_id=p.hub_id,
                    kind=pkg.kind,
                    body=p.msg.body,
                    sender=p.sender.code,
                    document_id=_document_id(p.parsed),
                    status_code=_status_code(p.parsed),
                )
            did = derive_id("delivery", p.hub_id, agency.id)
            c.delivery_ids.append(did)
            c.recipients.append(agency.code)
            listed.append((code, agency.code, agency.gateway_id, did))
        plan.copies.extend(copies.values())
        plan.pending.append(
            _PendingReceipt(
                gateway_id=p.gateway_id,
                receipt_id=derive_id("accepted", p.hub_id),
                type="accepted",
                hub_id=p.hub_id,
                message_id=p.msg.message_id,
                kind=pkg.kind,
                document_id=_document_id(p.parsed),
                sender=p.sender.code,
                recipients=listed,
                warnings=tuple(p.warnings),
                reply_to=p.msg.reply_to,
            )
        )

    @staticmethod
    def receipts_for(plan: BatchPlan, states: dict[uuid.UUID, str]) -> list[OutgoingReceipt]:
        """Every receipt of the batch once its copies' fate is known: the ready ones and
        the accepted packages' (which name each copy's state). Leaves ``plan`` as it is."""
        receipts = list(plan.receipts)
        for pr in plan.pending:
            receipts.append(
                OutgoingReceipt(
                    pr.gateway_id,
                    Receipt(
                        receipt_id=str(pr.receipt_id),
                        type="accepted",
                        hub_id=str(pr.hub_id),
                        message_id=pr.message_id,
                        kind=pr.kind,
                        document_id=pr.document_id,
                        sender=pr.sender,
                        recipients=tuple(
                            RecipientOutcome(code, agency, gw, str(did), states.get(did, "queued"))
                            for code, agency, gw, did in pr.recipients
                        ),
                        warnings=tuple(w.as_dict() for w in pr.warnings),
                    ),
                    pr.reply_to,
                )
            )
        return receipts


def _status_event(
    p: _Plan, status_hub_id: uuid.UUID, recipient_code: str, agency: str, state: str
) -> OutgoingReceipt:
    """The event telling a document's sender that status package ``p`` (hub id
    ``status_hub_id``) moved one of its deliveries on; the same receipt id whenever it is
    built again."""
    pkg = p.parsed.package
    assert isinstance(pkg, StatusPackage) and p.target is not None
    return OutgoingReceipt(
        p.target.sender_gateway_id,
        Receipt(
            receipt_id=str(derive_id("event", status_hub_id)),
            type="delivery",
            hub_id=str(p.target.hub_id),
            kind="edoc",
            document_id=p.target.edxml_document_id,
            sender=p.target.sender_code,
            recipients=(
                RecipientOutcome(
                    code=recipient_code,
                    agency=agency,
                    gateway=None,
                    delivery_id=str(p.status_delivery),
                    state=state,
                ),
            ),
            status_code=pkg.status_code.value,
            state=state,
        ),
    )


def _document_id(parsed: ParsedPackage) -> str | None:
    pkg = parsed.package
    if isinstance(pkg, EdocPackage):
        return pkg.document_id
    return pkg.response_for.document_id


def _status_code(parsed: ParsedPackage) -> str | None:
    pkg = parsed.package
    return pkg.status_code.value if isinstance(pkg, StatusPackage) else None


_VIETNAM = timezone(timedelta(hours=7))


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    # edXML timestamps carry no zone: they are Vietnam time (UTC+7)
    if ts.tzinfo is None:
        return ts.replace(tzinfo=_VIETNAM)
    return ts.astimezone(UTC)
