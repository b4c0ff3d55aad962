"""Checking a request signed the way the vendor SDK (``SDKVXP``) signs it. Pure logic.

Every parameter travels as an ``XroadVnpt-<name>`` header. The SDK puts the parameters it
signs in ``XroadVnpt-sign-header`` (compact JSON, ``{"XroadVnpt-<name>": value, ...}``) and
the lowercase hex HMAC-SHA256 of that JSON text, keyed with the system's secret, in
``XroadVnpt-hash-header``. So:

1. the HMAC is verified over the ``sign-header`` text exactly as received (never
   re-serialised: key order and spacing are the client's);
2. the JSON is parsed and each signed value must equal the header actually sent (header
   names compared case-insensitively; proxies change their case);
3. a parameter the façade uses (``docId``, ``status``, ``hash-file``...) that is sent but
   not signed is refused, so nobody can add one to a captured request;
4. the body is bound through ``hash-file``: SHA-256 hex, zero-padded or, as the SDK writes
   it, each byte without padding.

The SDK sets its timestamp once per service object: in compatible mode (the default) any
timestamp is accepted. Strict mode (per system) wants a fresh, signed timestamp; the
replay cache (the façade's store) refuses the same signature twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from adapters.vxp.envelope import VxpFailure
from schemas.reasons import Reason

__all__ = [
    "PREFIX",
    "SignedRequest",
    "file_hash_matches",
    "lower_headers",
    "parse_timestamp",
    "read_signed",
    "sdk_file_hash",
    "verify",
]

PREFIX = "xroadvnpt-"
VIETNAM = timezone(timedelta(hours=7))

# parameters the façade reads: each must be covered by the signature when it is sent
USED = frozenset(
    {
        "systemid", "timestamp", "from", "to", "servicetype", "messagetype", "hash-file",
        "docid", "status", "fromdate", "todate", "pagesize", "pageindex", "level",
        "agencycode",
    }
)
_TIMESTAMP = re.compile(r"^(\d{2})(\d{2})(\d{4})T(\d{2})(\d{2})(\d{2})(?:\+(\d{1,4}))?$")


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a request claims, before the secret is known."""

    system_id: str
    sign_header: str
    mac: str


def lower_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header name (lowercased) -> first value."""
    out: dict[str, str] = {}
    for name, value in items:
        out.setdefault(name.lower(), value)
    return out


def read_signed(headers: dict[str, str]) -> SignedRequest:
    """The authentication headers of a request (``headers`` from :func:`lower_headers`)."""
    system_id = headers.get(PREFIX + "systemid", "").strip()
    sign_header = headers.get(PREFIX + "sign-header", "")
    mac = headers.get(PREFIX + "hash-header", "").strip()
    if not system_id or not sign_header or not mac:
        missing = [n for n, v in (("systemid", system_id), ("sign-header", sign_header),
                                  ("hash-header", mac)) if not v]
        raise VxpFailure(Reason.VXP_UNSIGNED, "missing: " + ", ".join(missing))
    return SignedRequest(system_id, sign_header, mac)


def verify(signed: SignedRequest, secret: str, headers: dict[str, str]) -> dict[str, str]:
    """Check the signature and that it covers what was sent. Returns the verified
    parameters: lowercased name without the prefix -> value."""
    expected = hmac.new(
        secret.encode("utf-8"),
        signed.sign_header.encode("utf-8", "surrogateescape"),
        hashlib.sha256,
    ).hexdigest()
    if not hmac.compare_digest(expected, signed.mac.lower()):
        raise VxpFailure(Reason.VXP_BAD_SIGNATURE)
    try:
        claimed = json.loads(signed.sign_header)
    except ValueError:
        raise VxpFailure(Reason.VXP_SIGN_HEADER_MISMATCH, "sign-header is not JSON") from None
    if not isinstance(claimed, dict):
        raise VxpFailure(Reason.VXP_SIGN_HEADER_MISMATCH, "sign-header is not a JSON object")
    params: dict[str, str] = {}
    for key, value in claimed.items():
        lkey = str(key).lower()
        if not lkey.startswith(PREFIX) or not isinstance(value, str):
            raise VxpFailure(Reason.VXP_SIGN_HEADER_MISMATCH, f"unexpected entry {key!r}")
        name = lkey[len(PREFIX):]
        sent = headers.get(lkey)
        if sent is None and name == "content-type":
            continue  # the SDK also sends it as the real Content-Type; not a parameter
        if sent != value:
            raise VxpFailure(Reason.VXP_SIGN_HEADER_MISMATCH, f"{key} differs from the header sent")
        params[name] = value
    if params.get("systemid") != signed.system_id:
        raise VxpFailure(Reason.VXP_SIGN_HEADER_MISMATCH, "systemid is not signed")
    for lkey in headers:
        name = lkey[len(PREFIX):]
        if lkey.startswith(PREFIX) and name in USED and name not in params:
            raise VxpFailure(Reason.VXP_SIGN_HEADER_MISMATCH, f"XroadVnpt-{name} is not signed")
    return params


def parse_timestamp(text: str) -> datetime:
    """``ddMMyyyy'T'HHmmss+SSSS`` (the SDK's local time, Vietnam) -> an aware datetime."""
    m = _TIMESTAMP.match(text.strip())
    if m is None:
        raise ValueError(f"not a VXP timestamp: {text!r}")
    day, month, year, hh, mm, ss, ms = (int(g or 0) for g in m.groups())
    return datetime(year, month, day, hh, mm, ss, min(ms, 999) * 1000, tzinfo=VIETNAM)


def check_fresh(params: dict[str, str], now: datetime, window_seconds: float) -> None:
    """Strict mode: a signed timestamp within ``window_seconds`` of ``now``."""
    text = params.get("timestamp")
    if text is None:
        raise VxpFailure(Reason.VXP_STALE_TIMESTAMP, "XroadVnpt-timestamp is not signed")
    try:
        at = parse_timestamp(text)
    except ValueError as exc:
        raise VxpFailure(Reason.VXP_STALE_TIMESTAMP, str(exc)) from None
    if abs((now.astimezone(UTC) - at).total_seconds()) > window_seconds:
        raise VxpFailure(
            Reason.VXP_STALE_TIMESTAMP, f"{text} is more than {window_seconds:g} s from now"
        )


def sdk_file_hash(digest: bytes) -> str:
    """The SDK's spelling of a hash: each byte ``Integer.toHexString`` (no zero padding)."""
    return "".join(format(b, "x") for b in digest)


def file_hash_matches(claimed: str, digest: bytes) -> bool:
    """``claimed`` (hex, padded or the SDK's unpadded form) names ``digest``."""
    c = claimed.strip().lower()
    return hmac.compare_digest(c, digest.hex()) or hmac.compare_digest(c, sdk_file_hash(digest))
