"""What a routed batch turns into: copies to publish and receipts to send.

Pure builders: the ids are derived from stored ids (``derive_id``), so building the same
thing again yields the same copies and receipts.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from router.routing.decide import Incoming, Plan, Rejection, derive_id
from schemas import EdocPackage, ParsedPackage, StatusPackage
from schemas.reasons import ValidationWarning
from schemas.receipt import Receipt, RecipientOutcome

__all__ = [
    "BatchPlan",
    "Copy",
    "OutgoingReceipt",
    "PendingReceipt",
    "accepted_receipt",
    "document_id",
    "duplicate_receipt",
    "new_copy",
    "plan_copies",
    "receipts_for",
    "rejection_receipt",
    "status_code",
    "status_event",
]


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
    # whose receipts queue gets it; None: no gateway's (only ``reply_to``, if any)
    gateway_id: str | None
    receipt: Receipt
    # also answer the submitting client directly (the receipt still goes to the queue)
    reply_to: str | None = None


@dataclass(slots=True)
class PendingReceipt:
    """An accepted package's receipt, sent once its copies' fate is known."""

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
    repeat: bool = False  # a message the hub had recorded before (see Receipt.repeat)


@dataclass(slots=True)
class BatchPlan:
    copies: list[Copy] = field(default_factory=list)
    receipts: list[OutgoingReceipt] = field(default_factory=list)
    # per incoming message, in order: "accepted", "duplicate", "rejected", "resumed"
    outcomes: list[str] = field(default_factory=list)
    # receipts that must wait for the copies' fate (accepted packages)
    pending: list[PendingReceipt] = field(default_factory=list)
    # per incoming message: its kind ("unknown" when it could not be parsed)
    kinds: list[str] = field(default_factory=list)
    # one reason name per rejection
    rejection_reasons: list[str] = field(default_factory=list)


def document_id(parsed: ParsedPackage) -> str | None:
    pkg = parsed.package
    if isinstance(pkg, EdocPackage):
        return pkg.document_id
    return pkg.response_for.document_id


def status_code(parsed: ParsedPackage) -> str | None:
    pkg = parsed.package
    return pkg.status_code.value if isinstance(pkg, StatusPackage) else None


def new_copy(p: Plan, hub_id: uuid.UUID, gateway_id: str, copy_id: uuid.UUID) -> Copy:
    """An empty copy of ``p``'s package (stored as ``hub_id``) for one gateway."""
    return Copy(
        gateway_id=gateway_id,
        copy_id=copy_id,
        hub_id=hub_id,
        kind=p.parsed.package.kind,
        body=p.msg.body,
        sender=p.sender.code,
        document_id=document_id(p.parsed),
        status_code=status_code(p.parsed),
    )


def accepted_receipt(
    p: Plan, hub_id: uuid.UUID, recipients: list[tuple[str, str, str, uuid.UUID]],
    *, repeat: bool = False,
) -> PendingReceipt:
    return PendingReceipt(
        gateway_id=p.gateway_id,
        receipt_id=derive_id("accepted", hub_id),
        type="accepted",
        hub_id=hub_id,
        message_id=p.msg.message_id,
        kind=p.parsed.package.kind,
        document_id=document_id(p.parsed),
        sender=p.sender.code,
        recipients=recipients,
        warnings=tuple(p.warnings),
        reply_to=p.msg.reply_to,
        repeat=repeat,
    )


def plan_copies(p: Plan, plan: BatchPlan) -> None:
    """One copy per recipient gateway of an accepted package, and its pending receipt."""
    copies: dict[str, Copy] = {}
    listed: list[tuple[str, str, str, uuid.UUID]] = []
    for code, agency in p.recipients:
        assert agency.gateway_id is not None
        c = copies.get(agency.gateway_id)
        if c is None:
            c = copies[agency.gateway_id] = new_copy(
                p, p.hub_id, agency.gateway_id, derive_id("copy", p.hub_id, agency.gateway_id)
            )
        did = derive_id("delivery", p.hub_id, agency.id)
        c.delivery_ids.append(did)
        c.recipients.append(agency.code)
        listed.append((code, agency.code, agency.gateway_id, did))
    plan.copies.extend(copies.values())
    plan.pending.append(accepted_receipt(p, p.hub_id, listed))


def duplicate_receipt(
    p: Plan, existing_hub: uuid.UUID, *, repeat: bool = False
) -> OutgoingReceipt:
    return OutgoingReceipt(
        p.gateway_id,
        Receipt(
            receipt_id=str(derive_id("dup", p.msg.key)),
            type="duplicate",
            hub_id=str(existing_hub),
            message_id=p.msg.message_id,
            kind=p.parsed.package.kind,
            document_id=document_id(p.parsed),
            sender=p.sender.code,
            warnings=tuple(w.as_dict() for w in p.warnings),
            repeat=repeat,
        ),
        p.msg.reply_to,
    )


def rejection_receipt(r: Rejection, msg: Incoming, rejection_id: uuid.UUID) -> OutgoingReceipt:
    """The rejected receipt: to ``r.answer_gateway``'s queue (if any) and the client's
    direct reply-to address (if any)."""
    return OutgoingReceipt(
        r.answer_gateway,
        Receipt(
            receipt_id=str(derive_id("receipt", rejection_id)),
            type="rejected",
            message_id=msg.message_id,
            kind=msg.declared_type,
            sender=msg.routing_key,
            reason=r.reason.as_dict(r.detail or None),
            warnings=tuple(w.as_dict() for w in r.warnings),
        ),
        msg.reply_to,
    )


def status_event(
    p: Plan, status_hub_id: uuid.UUID, recipient_code: str, agency: str, state: str
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
                    gateway=p.gateway_id,  # the recipient's gateway sent the status
                    delivery_id=str(p.status_delivery),
                    state=state,
                ),
            ),
            status_code=pkg.status_code.value,
            state=state,
        ),
    )


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
                    repeat=pr.repeat,
                ),
                pr.reply_to,
            )
        )
    return receipts
