"""Audit anchors: the head of the hub's audit chain, signed and sent to every gateway.

At an interval the hub signs the head of its audit log (the last row's id and hash) with
its receipt key and publishes it on the receipts feed (``lt.receipts``, routing key = the
gateway id, AMQP ``type`` ``audit.anchor``). Every gateway then holds a copy the hub's
operator cannot take back: rewriting the audit history afterwards would need every
gateway's copies too. Example::

    {"type": "audit.anchor", "version": 1, "number": 42, "seq": 18211,
     "hash": "9c0e…(64 hex)", "previous": {"number": 41, "seq": 18004, "hash": "5d1a…"},
     "at": "2026-11-21T04:40:00.123Z",
     "signature": {"alg": "Ed25519", "kid": "3f9a0c…", "value": "<base64>"}}

``seq``/``hash``: the audit row the chain had reached; ``number``: the anchor's own
sequence number (one per publication) and ``previous`` the anchor published just before,
so anchors form a chain of their own. The signature covers the same canonical form as a
receipt's (:func:`schemas.receipt.canonical_receipt_bytes`) with the same hub key.

What a gateway can check on its own (:func:`check_extends`): that a later anchor follows an
earlier one (signed by the hub, numbers and ``seq`` never go back, each anchor names the
one before it exactly, and one number never names two heads). What only the hub's ledger
can answer: that the audit rows still lead from an anchor's head to today's head —
``lienthong audit verify --anchor FILE`` with a gateway's copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.receipt import ReceiptSignatureError, verify_receipt

__all__ = [
    "ANCHOR_CONTENT_TYPE",
    "ANCHOR_MESSAGE_TYPE",
    "AnchorGap",
    "AnchorMismatch",
    "AuditAnchor",
    "check_extends",
    "verify_anchor",
]

ANCHOR_MESSAGE_TYPE = "audit.anchor"
ANCHOR_CONTENT_TYPE = "application/vnd.lienthong.audit-anchor+json"


class AnchorMismatch(ValueError):
    """Two anchors that cannot both be true of one audit history, or a broken link."""


class AnchorGap(AnchorMismatch):
    """Anchors in between are missing: the link cannot be checked offline (not a fork)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AuditAnchor:
    number: int
    seq: int
    hash: str  # lowercase hex of audit_log.hash at ``seq``
    previous: tuple[int, int, str] | None = None  # (number, seq, hash) of the anchor before
    at: str = ""
    signature: dict[str, Any] | None = None

    @property
    def head(self) -> tuple[int, bytes]:
        """``(seq, hash)`` as :func:`router.security.audit.verify_chain` takes it."""
        return self.seq, bytes.fromhex(self.hash)

    def unsigned_dict(self) -> dict[str, Any]:
        prev = None
        if self.previous is not None:
            n, s, h = self.previous
            prev = {"number": n, "seq": s, "hash": h}
        return {"type": ANCHOR_MESSAGE_TYPE, "version": 1, "number": self.number,
                "seq": self.seq, "hash": self.hash, "previous": prev, "at": self.at or _now()}

    def as_dict(self) -> dict[str, Any]:
        d = self.unsigned_dict()
        if self.signature is not None:
            d["signature"] = self.signature
        return d

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditAnchor:
        if not isinstance(d, dict) or d.get("type") != ANCHOR_MESSAGE_TYPE:
            raise ValueError("not an audit anchor (type must be audit.anchor)")
        try:
            prev = d.get("previous")
            previous = None
            if prev is not None:
                previous = (int(prev["number"]), int(prev["seq"]), str(prev["hash"]).lower())
            anchor = cls(
                number=int(d["number"]), seq=int(d["seq"]), hash=str(d["hash"]).lower(),
                previous=previous, at=str(d.get("at") or ""), signature=d.get("signature"),
            )
            bytes.fromhex(anchor.hash)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed audit anchor: {exc}") from None
        return anchor

    @classmethod
    def from_json(cls, data: bytes | str) -> AuditAnchor:
        return cls.from_dict(json.loads(data))


def verify_anchor(data: bytes | str | dict[str, Any], public_key_pem: bytes) -> AuditAnchor:
    """An anchor whose signature verifies with the hub's public key (PEM); raises
    ReceiptSignatureError (a ValueError) when it is unsigned, altered or from another key,
    ValueError when it is not an anchor."""
    obj = data if isinstance(data, dict) else json.loads(data)
    anchor = AuditAnchor.from_dict(obj)  # refuse a receipt passed as an anchor
    try:
        verify_receipt(obj, public_key_pem)
    except ReceiptSignatureError as exc:
        raise ReceiptSignatureError(str(exc).replace("receipt", "anchor")) from None
    return anchor


def check_extends(
    earlier: AuditAnchor, later: AuditAnchor, between: Sequence[AuditAnchor] = ()
) -> None:
    """Raise AnchorMismatch unless ``later`` follows ``earlier`` in one anchor chain.

    ``between``: the anchors published in between (numbers ``earlier+1 .. later-1``), when
    the gateway missed none it has them all. Signatures are checked by
    :func:`verify_anchor` beforehand.
    """
    if later.number < earlier.number:
        raise AnchorMismatch(f"anchor {later.number} is older than anchor {earlier.number}")
    if later.number == earlier.number:
        if (later.seq, later.hash) != (earlier.seq, earlier.hash):
            raise AnchorMismatch(f"anchor {later.number} was signed for two different heads: "
                                 "the audit history was forked")
        return
    chain = {a.number: a for a in between if earlier.number < a.number < later.number}
    missing = [n for n in range(earlier.number + 1, later.number) if n not in chain]
    if missing:
        raise AnchorGap(f"anchors {missing[0]}..{missing[-1]} are missing: without them "
                             "only the hub can say (lienthong audit verify --anchor)")
    chain[earlier.number] = earlier
    chain[later.number] = later
    for n in range(earlier.number + 1, later.number + 1):
        before, after = chain[n - 1], chain[n]
        if after.previous != (before.number, before.seq, before.hash):
            raise AnchorMismatch(f"anchor {n} does not name anchor {n - 1} as its previous one")
        if after.seq < before.seq:
            raise AnchorMismatch(f"anchor {n}'s head {after.seq} is behind anchor {n - 1}'s "
                                 f"{before.seq}: the audit log was cut back")
        if after.seq == before.seq and after.hash != before.hash:
            raise AnchorMismatch(f"anchors {n - 1} and {n} sign different hashes for row "
                                 f"{after.seq}: the audit history was rewritten")
