"""A change a gateway makes on its own side (a VXP façade system added, its secret rotated,
its mode changed, removed), as it asks the hub to record it in the audit log.

The gateway side builds it (:func:`change_request`), the hub checks it (:func:`parse`)
before appending it; both from this one definition. Never a secret: values are booleans,
short texts or null, from a closed set of fields; a secret appears at most as its
:func:`fingerprint`, a URL never with a password. No I/O.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from schemas.reasons import LienthongError, Reason

__all__ = ["ACTIONS", "FIELDS", "GatewayChange", "change_request", "fingerprint", "parse"]

ACTIONS = frozenset({
    "vxp.system.added",  # a system may call the VXP API as the gateway
    "vxp.system.secret_rotated",  # a new secret (the old one stops)
    "vxp.system.mode_changed",  # compatible <-> strict
    "vxp.system.removed",
})
# what before/after may hold
FIELDS = frozenset({"gateway", "strict", "secret_fingerprint", "amqp_url"})
_SUBJECT = re.compile(r"^[\w.@:+-]{1,200}$")
_TEXT_MAX = 300


def fingerprint(secret: str) -> str:
    """What the audit log may say of a secret: enough to tell two apart, nothing more."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class GatewayChange:
    change_id: str  # a UUID: the same change asked twice is recorded once
    action: str
    subject: str  # e.g. the system id
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def change_request(action: str, subject: str, before: dict[str, Any] | None,
                   after: dict[str, Any] | None, *, by: str,
                   change_id: str | None = None) -> dict[str, Any]:
    """The request body (``audit.record_gateway_change``), checked as the hub will."""
    body = {"change_id": change_id or str(uuid.uuid4()), "action": action,
            "subject": subject, "before": before, "after": after, "by": by}
    parse(body)
    return body


def _values(name: str, value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise LienthongError(Reason.HUB_REQUEST_BAD, f"{name} is an object or null")
    unknown = sorted(set(value) - FIELDS)
    if unknown:
        raise LienthongError(Reason.HUB_REQUEST_BAD,
                             f"{name} has unknown fields {unknown} (known: {sorted(FIELDS)})")
    for key, v in value.items():
        if not (v is None or isinstance(v, bool) or (isinstance(v, str) and len(v) <= _TEXT_MAX)):
            raise LienthongError(Reason.HUB_REQUEST_BAD,
                                 f"{name}.{key} is a boolean, a short text or null")
        if key == "amqp_url" and isinstance(v, str) and urlsplit(v).password is not None:
            raise LienthongError(Reason.HUB_REQUEST_BAD, f"{name}.amqp_url holds a password")
    return dict(value)


def parse(body: dict[str, Any]) -> GatewayChange:
    """The change in a request body; LienthongError(HUB_REQUEST_BAD) saying what is wrong."""
    change_id = body.get("change_id")
    try:
        change_id = str(uuid.UUID(str(change_id)))
    except ValueError:
        raise LienthongError(Reason.HUB_REQUEST_BAD, "change_id is a UUID") from None
    action = body.get("action")
    if action not in ACTIONS:
        raise LienthongError(Reason.HUB_REQUEST_BAD,
                             f"action {str(action)[:60]!r}: one of {sorted(ACTIONS)}")
    subject = body.get("subject")
    if not isinstance(subject, str) or not _SUBJECT.match(subject):
        raise LienthongError(Reason.HUB_REQUEST_BAD, "subject is an id (at most 200 characters)")
    before = _values("before", body.get("before"))
    after = _values("after", body.get("after"))
    if before is None and after is None:
        raise LienthongError(Reason.HUB_REQUEST_BAD, "before or after is needed")
    return GatewayChange(change_id, str(action), subject, before, after)
