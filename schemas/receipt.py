"""The hub's receipts: JSON messages the hub sends to a gateway's receipts queue.

A receipt answers one submitted message (``accepted``, ``duplicate``, ``rejected``) or tells
the sender about a delivery (``delivery``: a recipient's state changed). Every receipt has
its own ``receipt_id``; a gateway that sees the same ``receipt_id`` twice drops the second.

Example (accepted)::

    {"version": 1, "receipt_id": "0b9c…", "type": "accepted", "at": "2026-11-21T04:40:00.123Z",
     "hub_id": "5f0e…", "message_id": "my-42", "kind": "edoc",
     "document_id": "000.00.00.G22,2026/11/21,12/VPCP-TTĐT", "sender": "000.00.00.G22",
     "recipients": [{"code": "000.00.00.H41", "agency": "000.00.00.H41",
                     "gateway": "nghe-an", "delivery_id": "c1d2…", "state": "queued"}],
     "warnings": [], "reason": null}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "RECEIPT_CONTENT_TYPE",
    "Receipt",
    "ReceiptSignatureError",
    "ReceiptType",
    "RecipientOutcome",
    "canonical_receipt_bytes",
    "receipt_key_id",
    "verify_receipt",
]

RECEIPT_CONTENT_TYPE = "application/vnd.lienthong.receipt+json"

ReceiptType = Literal["accepted", "duplicate", "rejected", "delivery"]


@dataclass(frozen=True, slots=True)
class RecipientOutcome:
    code: str  # as written in the package
    agency: str | None  # canonical agency code the hub resolved it to
    gateway: str | None
    delivery_id: str | None
    state: str  # queued, undeliverable, arrived, ...

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "agency": self.agency,
            "gateway": self.gateway,
            "delivery_id": self.delivery_id,
            "state": self.state,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Receipt:
    receipt_id: str
    type: ReceiptType
    hub_id: str | None = None
    message_id: str | None = None
    kind: str | None = None
    document_id: str | None = None
    sender: str | None = None
    recipients: tuple[RecipientOutcome, ...] = ()
    warnings: tuple[dict[str, str], ...] = ()
    reason: dict[str, Any] | None = None
    status_code: str | None = None  # for delivery events caused by a status package
    state: str | None = None  # for delivery events: the delivery's new state
    at: str = field(default_factory=_now)
    # True when the hub had already recorded this message (a gateway's re-send with the same
    # message_id, or a re-delivery after a hub crash): the outcome, and the receipt_id of an
    # accepted one, are the first answer's. Wait for a message_id's answer by message_id.
    repeat: bool = False
    # the hub's Ed25519 signature over canonical_receipt_bytes (router.outbox.signing)
    signature: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = self.unsigned_dict()
        if self.signature is not None:
            out["signature"] = dict(self.signature)
        return out

    def unsigned_dict(self) -> dict[str, Any]:
        """The receipt as JSON data, without its signature."""
        return {
            "version": 1,
            "receipt_id": self.receipt_id,
            "type": self.type,
            "at": self.at,
            "hub_id": self.hub_id,
            "message_id": self.message_id,
            "kind": self.kind,
            "document_id": self.document_id,
            "sender": self.sender,
            "recipients": [r.as_dict() for r in self.recipients],
            "warnings": list(self.warnings),
            "reason": self.reason,
            "status_code": self.status_code,
            "state": self.state,
            "repeat": self.repeat,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Receipt:
        d = json.loads(data)
        return cls(
            receipt_id=d["receipt_id"],
            type=d["type"],
            hub_id=d.get("hub_id"),
            message_id=d.get("message_id"),
            kind=d.get("kind"),
            document_id=d.get("document_id"),
            sender=d.get("sender"),
            recipients=tuple(RecipientOutcome(**r) for r in d.get("recipients") or ()),
            warnings=tuple(d.get("warnings") or ()),
            reason=d.get("reason"),
            status_code=d.get("status_code"),
            state=d.get("state"),
            repeat=d.get("repeat") is True,
            at=d.get("at") or _now(),
            signature=d.get("signature"),
        )

    def canonical_bytes(self) -> bytes:
        """What the hub signs: see :func:`canonical_receipt_bytes`."""
        return canonical_receipt_bytes(self.unsigned_dict())


def canonical_receipt_bytes(data: dict[str, Any]) -> bytes:
    """The canonical form of a receipt's JSON object, the bytes its signature covers:
    UTF-8 JSON with keys sorted, no whitespace, non-ASCII written as is, and without the
    ``signature`` member. Computed on the received JSON object (not on a re-built
    :class:`Receipt`), so members a verifier does not know are covered too."""
    unsigned = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(
        unsigned, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode()


class ReceiptSignatureError(ValueError):
    """A receipt's signature is missing, from another key, or does not verify."""


def receipt_key_id(public_raw: bytes) -> str:
    """The ``kid`` of a hub key: the first 16 hex digits of SHA-256 of the raw public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def verify_receipt(data: bytes | str | dict[str, Any], public_key_pem: bytes) -> dict[str, Any]:
    """Check a receipt's Ed25519 signature with the hub's public key (PEM).

    Returns the receipt's JSON object; raises ReceiptSignatureError (a ValueError) saying
    why when the receipt is unsigned, signed by another key or altered.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    obj = data if isinstance(data, dict) else json.loads(data)
    if not isinstance(obj, dict):
        raise ReceiptSignatureError("a receipt is a JSON object")
    sig = obj.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("value"), str):
        raise ReceiptSignatureError("the receipt is not signed")
    if sig.get("alg") != "Ed25519":
        raise ReceiptSignatureError(f"unsupported signature algorithm {sig.get('alg')!r}")
    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptSignatureError("the hub's public key must be an Ed25519 key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = receipt_key_id(raw)
    if sig.get("kid") not in (None, kid):
        raise ReceiptSignatureError(f"signed by hub key {sig.get('kid')}, this public key is {kid}")
    try:
        value = base64.b64decode(sig["value"], validate=True)
        key.verify(value, canonical_receipt_bytes(obj))
    except (binascii.Error, ValueError, InvalidSignature):
        raise ReceiptSignatureError(
            "the receipt signature does not verify: altered or forged"
        ) from None
    return obj
