"""The answers of the VXP API: JSON with ``status``, ``ErrorCode`` and ``ErrorDesc`` always.

The vendor SDK reads some answers as US-ASCII and calls ``get("status")``,
``get("ErrorCode")``, ``get("ErrorDesc")`` without null checks, so every answer carries
all three and every non-ASCII character is escaped (``\\uXXXX``): Vietnamese survives.
"""

from __future__ import annotations

import json
from typing import Any

from schemas.reasons import LienthongError, Reason

__all__ = ["VxpFailure", "fail_body", "ok_body"]

CONTENT_TYPE = "application/json"


class VxpFailure(LienthongError):
    """A request the façade refuses; becomes a FAIL envelope.

    ``axis_code`` overrides the reason's own (a hub rejection carries the hub's)."""

    def __init__(
        self, reason: Reason, detail: str = "", *, axis_code: int | None = None,
        message_vi: str | None = None, message_en: str | None = None,
    ) -> None:
        super().__init__(reason, detail)
        self.axis_code = axis_code if axis_code is not None else (reason.axis_code or 21)
        self.message_vi = message_vi or reason.message_vi
        self.message_en = message_en or reason.message_en


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str).encode("ascii")


def ok_body(**fields: Any) -> bytes:
    return _dump({"status": "OK", "ErrorCode": "0", "ErrorDesc": "", **fields})


def fail_body(failure: VxpFailure) -> bytes:
    desc = f"{failure.message_vi} / {failure.message_en}"
    if failure.detail:
        desc += f" ({failure.detail})"
    return _dump(
        {
            "status": "FAIL",
            "ErrorCode": str(failure.axis_code),
            "ErrorDesc": desc,
            "reason": failure.reason.name,
            "reasonCode": failure.reason.code,
        }
    )
