"""The decision step: which messages of a batch are accepted, and why the others are not.

Pure: no I/O, no database, no broker. It takes what the batch carries (each message's AMQP
envelope and its parsed package, or the parser's refusal) and the facts looked up for it
(:class:`Facts`: gateways, agencies, referenced documents; later the locked deliveries'
states and the documents already stored under a dedup key) and returns decisions.
**Every rejection rule of routing lives here**; ``router.routing.record`` only writes what
was decided and ``router.routing.batch`` only moves data between the steps.

The reasons this module decides are :data:`ROUTING_REASONS`; the parser's reasons (1xxx)
and the signature gate's (4xxx) pass through unchanged.

Who hears of a rejection (:attr:`Rejection.answer_gateway`): the gateway whose AMQP user
sent the message (RabbitMQ checks ``user_id``). A message without ``user_id`` names no
sender the broker vouches for; its receipt goes to the gateway that sent it only when that
gateway is the **only** active one whose topic permission admits the routing key (then no
other gateway could have published it), else to no gateway's queue. Either way the
submitting client's direct reply-to address, if any, gets it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from router.routing.lifecycle import apply_status
from schemas import (
    BusinessDocType,
    EdocPackage,
    ParsedPackage,
    StatusPackage,
)
from schemas.agency_code import normalize
from schemas.reasons import PackageRejected, Reason, ValidationWarning, WarningCode

__all__ = [
    "ROUTING_REASONS",
    "Agency",
    "Clash",
    "Decisions",
    "Facts",
    "Gateway",
    "Incoming",
    "Plan",
    "Rejection",
    "SignatureCheck",
    "Stored",
    "Target",
    "check_transitions",
    "decide",
    "derive_id",
    "settle_clashes",
    "wanted",
]

_NS = uuid.UUID("6c69656e-7468-6f6e-672d-687562000001")  # lienthong hub namespace

# every reason this module decides (a unit test holds one case for each)
ROUTING_REASONS: frozenset[Reason] = frozenset(
    {
        Reason.BAD_MESSAGE_PROPERTIES,
        Reason.TYPE_MISSING,
        Reason.KIND_MISMATCH,
        Reason.GATEWAY_UNKNOWN,
        Reason.GATEWAY_SUSPENDED,
        Reason.SENDER_NOT_REGISTERED,
        Reason.SENDER_NOT_SERVED,
        Reason.RECIPIENT_UNKNOWN,
        Reason.RECIPIENT_LOCKED,
        Reason.RECIPIENT_NO_GATEWAY,
        Reason.DOCUMENT_UNKNOWN,
        Reason.TARGET_NOT_SAME_SENDER,
        Reason.STATUS_WRONG_ADDRESSEE,
        Reason.STATUS_ISSUER_NOT_RECIPIENT,
        Reason.ILLEGAL_TRANSITION,
        Reason.RECALL_ANSWER_WITHOUT_RECALL,
        Reason.DOCUMENT_ID_CONFLICT,
    }
)


def derive_id(*parts: object) -> uuid.UUID:
    """A stable id from stable parts: the same message yields the same ids every time."""
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
    # the envelope could not be read (undecodable routing key, properties or headers)
    wire_error: str | None = None
    # a large package's claim (header lt-upload-id): router.transfer.claims puts the
    # package it stands for in ``parsed`` (or why not) before routing
    upload_id: str | None = None
    parsed: ParsedPackage | PackageRejected | None = None

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.body).digest()

    @property
    def key(self) -> str:
        """Identifies the message across redeliveries."""
        return f"{self.amqp_user}|{self.message_id}|{self.sha256.hex()}"


@dataclass(frozen=True, slots=True)
class Gateway:
    id: str
    amqp_user: str
    status: str


@dataclass(frozen=True, slots=True)
class Agency:
    id: int
    code: str
    gateway_id: str | None
    status: str


@dataclass(frozen=True, slots=True)
class Target:
    """A stored document that a status or a business package refers to."""

    hub_id: uuid.UUID
    sender_agency_id: int
    sender_gateway_id: str
    sender_code: str
    edxml_document_id: str


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """A delivery a status package may act on, as read (or locked) from the ledger."""

    state: str
    recall_state: str | None
    recipient_code: str  # as written in the document's To
    agency: str  # the recipient agency's canonical code


@dataclass(slots=True)
class Facts:
    """What the ledger knows that the decision needs, looked up once per batch."""

    now: datetime
    gateways: Mapping[str, Gateway] = field(default_factory=dict)  # by AMQP user
    agencies: Mapping[str, Agency] = field(default_factory=dict)  # by any alias
    targets: Mapping[str, Sequence[Target]] = field(default_factory=dict)  # by DocumentId,
    # newest first
    # routing key -> the active gateways whose topic permission admits it (looked up only
    # for messages without user_id)
    admitted_by: Mapping[str, Sequence[str]] = field(default_factory=dict)
    # the deliveries of ``targets`` to the batch's agencies, by id, as read without a lock:
    # what the batch's statuses act on, so that the batch can be written in one statement
    # that checks them unchanged (``router.routing.record``)
    deliveries: Mapping[uuid.UUID, DeliveryState] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Wanted:
    """What :class:`Facts` must cover for a batch."""

    users: list[str]
    codes: list[str]
    document_ids: list[str]
    keys_without_user: list[str]
    # (DocumentId, agency code) of each delivery a status may act on: to the agency the
    # status comes from, or to the one it answers for (a sender's own status)
    deliveries: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Plan:
    """An accepted-so-far message and what it will write."""

    index: int
    msg: Incoming
    parsed: ParsedPackage
    gateway_id: str
    sender: Agency
    hub_id: uuid.UUID
    dedup_key: str
    recipients: list[tuple[str, Agency]]  # (code as written, agency)
    warnings: list[ValidationWarning]
    target: Target | None = None
    status_delivery: uuid.UUID | None = None  # delivery a status package acts on
    targets_closed: list[uuid.UUID] = field(default_factory=list)  # revoke/replace


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    reason: Reason
    detail: str
    warnings: tuple[ValidationWarning, ...]
    answer_gateway: str | None  # whose receipts queue gets the receipt (None: nobody's)


@dataclass(slots=True)
class Decisions:
    plans: list[Plan] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


# (gateway id, package body, has_signature, now) -> warnings; raises PackageRejected
SignatureCheck = Callable[[str, bytes, bool, datetime], Sequence[ValidationWarning]]


class _Refuse(Exception):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(reason.name)
        self.reason = reason
        self.detail = detail


def wanted(
    batch: Sequence[Incoming], parsed: Sequence[ParsedPackage | PackageRejected]
) -> Wanted:
    """The users, agency codes and DocumentIds the batch's decisions depend on."""
    users = sorted({m.amqp_user for m in batch if m.amqp_user})
    keys = sorted({m.routing_key for m in batch if not m.amqp_user and not m.wire_error})
    codes: set[str] = set()
    ids: set[str] = set()
    deliveries: set[tuple[str, str]] = set()
    for msg, p in zip(batch, parsed, strict=True):
        if isinstance(p, PackageRejected) or msg.wire_error:
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
                deliveries.update(
                    (pkg.response_for.document_id, normalize(code))
                    for code in (pkg.sender.organ_id, pkg.response_for.organ_id) if code)
    return Wanted(users, sorted(codes), sorted(ids), keys, sorted(deliveries))


def answer_gateway(msg: Incoming, facts: Facts) -> str | None:
    """The gateway whose receipts queue hears about ``msg`` (see the module's text)."""
    if msg.amqp_user:
        gw = facts.gateways.get(msg.amqp_user)
        return gw.id if gw is not None else None
    if msg.wire_error:
        return None
    admitted = facts.admitted_by.get(msg.routing_key, ())
    return admitted[0] if len(admitted) == 1 else None


def decide(
    batch: Sequence[Incoming],
    parsed: Sequence[ParsedPackage | PackageRejected],
    facts: Facts,
    check_signature: SignatureCheck,
    *,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Decisions:
    """Accept or refuse every message of the batch, in order."""
    out = Decisions()
    for i, (msg, p) in enumerate(zip(batch, parsed, strict=True)):
        try:
            out.plans.append(_decide_one(i, msg, p, facts, check_signature, new_id))
        except _Refuse as r:
            out.rejections.append(
                Rejection(i, r.reason, r.detail, tuple(p.warnings), answer_gateway(msg, facts))
            )
    return out


def _decide_one(
    index: int,
    msg: Incoming,
    parsed: ParsedPackage | PackageRejected,
    facts: Facts,
    check_signature: SignatureCheck,
    new_id: Callable[[], uuid.UUID],
) -> Plan:
    # the envelope first: what the broker handed over must be readable and complete
    if msg.wire_error:
        raise _Refuse(Reason.BAD_MESSAGE_PROPERTIES, msg.wire_error)
    if not msg.declared_type:
        raise _Refuse(Reason.TYPE_MISSING, "the AMQP type property must be edoc or status")
    if isinstance(parsed, PackageRejected):
        raise _Refuse(parsed.reason, parsed.detail)
    pkg = parsed.package
    if msg.declared_type != pkg.kind:
        raise _Refuse(
            Reason.KIND_MISMATCH, f"AMQP type {msg.declared_type!r}, package is {pkg.kind!r}"
        )
    gw = facts.gateways.get(msg.amqp_user or "")
    if gw is None:
        raise _Refuse(
            Reason.GATEWAY_UNKNOWN,
            "the AMQP user_id property is missing"
            if not msg.amqp_user
            else f"no gateway for AMQP user {msg.amqp_user}",
        )
    if gw.status != "active":
        raise _Refuse(Reason.GATEWAY_SUSPENDED, gw.id)
    sender_code = normalize(pkg.sender.organ_id)
    sender = facts.agencies.get(sender_code)
    if sender is None:
        raise _Refuse(Reason.SENDER_NOT_REGISTERED, sender_code)
    if sender.gateway_id != gw.id:
        raise _Refuse(Reason.SENDER_NOT_SERVED, f"{sender_code} is not served by {gw.id}")
    key_agency = facts.agencies.get(normalize(msg.routing_key))
    if key_agency is None or key_agency.id != sender.id:
        raise _Refuse(
            Reason.SENDER_NOT_SERVED,
            f"routing key {msg.routing_key!r} does not name the sender {sender_code}",
        )
    warnings = list(parsed.warnings)
    try:
        warnings += check_signature(gw.id, msg.body, pkg.has_signature, facts.now)
    except PackageRejected as exc:
        raise _Refuse(exc.reason, exc.detail) from None
    plan = Plan(
        index=index,
        msg=msg,
        parsed=parsed,
        gateway_id=gw.id,
        sender=sender,
        hub_id=new_id(),
        dedup_key="",
        recipients=[],
        warnings=warnings,
    )
    if isinstance(pkg, EdocPackage):
        _decide_edoc(plan, pkg, facts)
    else:
        _decide_status(plan, pkg, facts)
    return plan


def _decide_edoc(plan: Plan, pkg: EdocPackage, facts: Facts) -> None:
    seen: dict[int, str] = {}
    for org in pkg.recipients:
        code = normalize(org.organ_id)
        agency = facts.agencies.get(code)
        if agency is None:
            raise _Refuse(Reason.RECIPIENT_UNKNOWN, code)
        if agency.status != "active":
            raise _Refuse(Reason.RECIPIENT_LOCKED, code)
        if agency.gateway_id is None:
            raise _Refuse(Reason.RECIPIENT_NO_GATEWAY, code)
        if agency.id in seen:
            plan.warnings.append(
                ValidationWarning(
                    WarningCode.DUPLICATE_RECIPIENT_ALIAS,
                    f"{seen[agency.id]} and {code} are both {agency.code}",
                )
            )
            continue
        seen[agency.id] = code
        plan.recipients.append((code, agency))
    bt = pkg.business_type
    for doc_id in pkg.target_document_ids:
        found = facts.targets.get(doc_id, ())
        mine = [t for t in found if t.sender_agency_id == plan.sender.id]
        if not found:
            raise _Refuse(Reason.DOCUMENT_UNKNOWN, doc_id)
        if not mine:
            raise _Refuse(Reason.TARGET_NOT_SAME_SENDER, doc_id)
        plan.target = plan.target or mine[0]
        if bt in (BusinessDocType.REVOKE, BusinessDocType.REPLACE):
            plan.targets_closed.append(mine[0].hub_id)
    doc_key = pkg.document_id or f"sha:{plan.msg.sha256.hex()}"
    plan.dedup_key = f"edoc|{plan.sender.id}|{int(bt)}|{doc_key}"


def _decide_status(plan: Plan, pkg: StatusPackage, facts: Facts) -> None:
    rf = pkg.response_for
    addressee = facts.agencies.get(normalize(rf.organ_id or ""))
    if addressee is None:
        raise _Refuse(Reason.RECIPIENT_UNKNOWN, rf.organ_id or "")
    if addressee.gateway_id is None:
        raise _Refuse(Reason.RECIPIENT_NO_GATEWAY, addressee.code)
    found = facts.targets.get(rf.document_id or "", ())
    if not found:
        raise _Refuse(Reason.DOCUMENT_UNKNOWN, rf.document_id or "")
    by_sender = pkg.status_code.sent_by_sender
    doc_owner = plan.sender if by_sender else addressee
    mine = [t for t in found if t.sender_agency_id == doc_owner.id]
    if not mine:
        raise _Refuse(
            Reason.STATUS_WRONG_ADDRESSEE, f"{rf.document_id} was not sent by {doc_owner.code}"
        )
    # the delivery the status acts on: (document, recipient agency)
    recipient_agency = addressee if by_sender else plan.sender
    plan.dedup_key = f"status|{plan.sender.id}|sha:{plan.msg.sha256.hex()}"
    plan.recipients = [(normalize(rf.organ_id or ""), addressee)]
    plan.target = mine[0]
    plan.status_delivery = derive_id("delivery", mine[0].hub_id, recipient_agency.id)


# decided inside the transaction, on rows it has locked or found -----------------------------


def check_transitions(
    plans: Sequence[Plan], states: Mapping[uuid.UUID, tuple[str, str | None]]
) -> tuple[list[Plan], list[Rejection]]:
    """Status packages against the current state of the deliveries they act on (``states``:
    delivery id -> (state, recall state), as locked in the transaction). The batch's own
    statuses apply in order. Returns the plans kept and the statuses refused."""
    current = dict(states)
    kept: list[Plan] = []
    refused: list[Rejection] = []
    for p in plans:
        if p.status_delivery is None:
            kept.append(p)
            continue
        pkg = p.parsed.package
        assert isinstance(pkg, StatusPackage)
        if p.status_delivery not in current:
            # the document never went to this agency
            reason = (
                Reason.RECIPIENT_UNKNOWN
                if pkg.status_code.sent_by_sender
                else Reason.STATUS_ISSUER_NOT_RECIPIENT
            )
            refused.append(Rejection(p.index, reason, p.sender.code, tuple(p.warnings),
                                     p.gateway_id))
            continue
        state, recall = current[p.status_delivery]
        t = apply_status(state, recall, pkg.status_code)
        if t.reason is not None:
            refused.append(Rejection(p.index, t.reason, f"{state} + {pkg.status_code.value}",
                                     tuple(p.warnings), p.gateway_id))
            continue
        current[p.status_delivery] = (t.state, t.recall_state)
        kept.append(p)
    return kept, refused


@dataclass(frozen=True, slots=True)
class Stored:
    """The document already stored under a dedup key."""

    hub_id: uuid.UUID
    content_sha256: bytes
    message_id: str | None
    sender_gateway_id: str


@dataclass(frozen=True, slots=True)
class Clash:
    """A plan whose dedup key was taken: a duplicate (or a resume) of ``hub_id``."""

    plan: Plan
    hub_id: uuid.UUID
    is_resume: bool
    # the same message (gateway and message_id) as the stored one: a re-send
    same_message: bool = False


def settle_clashes(
    clashes: Sequence[Plan],
    stored: Mapping[str, Stored],
    first_in_batch: Mapping[str, Plan],
    later_in_batch: Sequence[Plan],
) -> tuple[list[Clash], list[Rejection]]:
    """Plans whose dedup key is already taken, by a stored document or by an earlier
    message of the same batch: the same content is a duplicate (a resume when the same
    message comes again from the same gateway); other content under the same
    DocumentId is refused."""
    duplicates: list[Clash] = []
    refused: list[Rejection] = []
    later = {id(p) for p in later_in_batch}
    for p in clashes:
        ex = stored.get(p.dedup_key)
        if ex is None:  # an in-batch duplicate of one that was refused
            f = first_in_batch[p.dedup_key]
            ex = Stored(f.hub_id, f.msg.sha256, f.msg.message_id, f.gateway_id)
        if ex.content_sha256 != p.msg.sha256:
            refused.append(Rejection(p.index, Reason.DOCUMENT_ID_CONFLICT,
                                     p.dedup_key.split("|", 3)[-1], tuple(p.warnings),
                                     p.gateway_id))
            continue
        same_message = (
            ex.message_id == p.msg.message_id and ex.sender_gateway_id == p.gateway_id
        )
        is_resume = id(p) not in later and same_message
        duplicates.append(Clash(p, ex.hub_id, is_resume, same_message))
    return duplicates, refused
