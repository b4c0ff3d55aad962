"""The ops API's one error shape, and the HTTP status of every operator-facing reason.

Every error the API answers is JSON::

    {"error": "bad_parameter", "reason": "OPS_BAD_PARAMETER", "code": 6001,
     "message_vi": "...", "message_en": "...", "detail": "limit: ..."}

``error`` is the short name of the reason; ``reason`` and ``code`` are the reason's name
and number in :class:`schemas.reasons.Reason` (6xxx: operations). ``detail`` says what in
the request was wrong, when something specific was.
"""

from __future__ import annotations

import json

from aiohttp import web

from schemas.reasons import Reason

__all__ = ["HTTP_REASONS", "STATUS", "error_body", "error_response", "reason_for_status"]

# The HTTP status of each reason the ops API answers with; any other reason (an operator
# request refused by a library function) is a 400.
STATUS: dict[Reason, int] = {
    Reason.OPS_BAD_PARAMETER: 400,
    Reason.OPS_BAD_BODY: 400,
    Reason.OPS_BAD_FILTER: 400,
    Reason.OPS_UNKNOWN_GATEWAY: 400,
    Reason.OPS_UNKNOWN_AGENCY: 400,
    Reason.OPS_WHY_REQUIRED: 400,
    Reason.OPS_UNAUTHORIZED: 401,
    Reason.OPS_FORBIDDEN: 403,
    Reason.OPS_JOB_NOT_FOUND: 404,
    Reason.OPS_DOCUMENT_NOT_FOUND: 404,
    Reason.OPS_NOT_FOUND: 404,
    Reason.OPS_METHOD_NOT_ALLOWED: 405,
    Reason.OPS_PREVIEW_MISMATCH: 409,
    Reason.OPS_BODY_TOO_LARGE: 413,
    Reason.OPS_INTERNAL: 500,
    Reason.OPS_REDELIVERY_FAILED: 500,
    Reason.OPS_UNAVAILABLE: 503,
}

# aiohttp's own refusals (no route, wrong method, body too large, unreadable request).
HTTP_REASONS: dict[int, Reason] = {
    400: Reason.OPS_BAD_PARAMETER,
    404: Reason.OPS_NOT_FOUND,
    405: Reason.OPS_METHOD_NOT_ALLOWED,
    413: Reason.OPS_BODY_TOO_LARGE,
}


def reason_for_status(status: int) -> Reason:
    """The reason an HTTP error aiohttp raised by itself is answered with."""
    if status in HTTP_REASONS:
        return HTTP_REASONS[status]
    return Reason.OPS_INTERNAL if status >= 500 else Reason.OPS_BAD_PARAMETER


def error_body(reason: Reason, detail: str | None = None, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "error": reason.name.lower().removeprefix("ops_"),
        "reason": reason.name,
        "code": reason.code,
        "message_vi": f"{reason.message_vi} ({detail})" if detail else reason.message_vi,
        "message_en": f"{reason.message_en} ({detail})" if detail else reason.message_en,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def error_response(
    reason: Reason, detail: str | None = None, *, status: int | None = None, **extra: object
) -> web.Response:
    """The JSON error answer for ``reason`` (status from :data:`STATUS` unless given)."""
    return web.json_response(
        error_body(reason, detail, **extra),
        status=status or STATUS.get(reason, 400),
        dumps=lambda x: json.dumps(x, ensure_ascii=False),
    )
