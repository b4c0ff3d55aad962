"""The audit log in the ops service: ``GET /api/audit`` (filtered rows, newest first),
``GET /api/audit/anchors`` (the signed heads published to the gateways), and the
``ops.tokens_loaded`` row appended when the service starts (names, roles and a short
fingerprint of each token; never a token)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from router.ledger import Conn
from router.ops.auth import TokenStore
from router.ops.context import CTX
from router.ops.errors import error_response
from router.security import anchors, audit
from schemas.reasons import Reason

__all__ = ["AUDIT_PATHS", "add_audit_routes", "record_tokens_loaded", "token_fingerprints"]


def token_fingerprints(tokens: TokenStore) -> dict[str, dict[str, str]]:
    """name -> {role, fingerprint}: the fingerprint (12 hex digits of a hash of the token's
    SHA-256) tells a changed token from the same one, and nothing about the token."""
    return {
        p.name: {"role": p.role,
                 "fingerprint": hashlib.sha256(b"lienthong-ops-token:" + d).hexdigest()[:12]}
        for d, p in sorted(tokens.digests(), key=lambda e: e[1].name)
    }


async def record_tokens_loaded(conn: Conn, tokens: TokenStore) -> None:
    """Append ``ops.tokens_loaded`` with the tokens before (the last start) and now."""
    after = token_fingerprints(tokens)
    prev = await audit.last_details(conn, "ops.tokens_loaded")
    before: dict[str, Any] | None = prev.get("after") if prev else None
    old = before or {}
    await audit.append(
        conn, "ops", "ops.tokens_loaded", "ops",
        {"before": before, "after": after,
         "added": sorted(set(after) - set(old)),
         "removed": sorted(set(old) - set(after)),
         "changed": sorted(n for n in set(after) & set(old) if after[n] != old[n])},
    )


def _bad(en: str, vi: str) -> web.Response:
    return error_response(Reason.OPS_BAD_PARAMETER, f"{en} / {vi}")


async def audit_list(request: web.Request) -> web.Response:
    q = request.query
    try:
        since = None
        if q.get("since"):
            since = datetime.fromisoformat(q["since"].replace("Z", "+00:00"))
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
        limit = int(q.get("limit") or 100)
        before_id = int(q["before_id"]) if q.get("before_id") else None
    except ValueError:
        return _bad("since is ISO 8601, limit and before_id are integers",
                    "since theo ISO 8601, limit và before_id là số nguyên")
    async with request.app[CTX].conn() as conn:
        rows = await audit.list_entries(
            conn, since=since, actor=q.get("actor") or None, action=q.get("action") or None,
            limit=max(1, min(limit, 1000)), before_id=before_id,
        )
    return web.json_response({"entries": [r.as_dict() for r in rows]},
                             dumps=lambda x: json.dumps(x, ensure_ascii=False))


async def anchors_list(request: web.Request) -> web.Response:
    async with request.app[CTX].conn() as conn:
        rows = await anchors.recent(conn)
    return web.json_response(
        {"anchors": [{"anchor": json.loads(r["body"]), "gateways": r["gateways"]}
                     for r in rows]},
        dumps=lambda x: json.dumps(x, ensure_ascii=False),
    )


def add_audit_routes(app: web.Application) -> None:
    app.router.add_get("/api/audit", audit_list)
    app.router.add_get("/api/audit/anchors", anchors_list)


_OBJ = {"type": "object", "additionalProperties": True}


def _q(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": kind}}


def _resp(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _OBJ}}}


AUDIT_PATHS: dict[str, Any] = {
    "/api/audit": {
        "get": {
            "summary": "Audit log rows, newest first: who changed what, before and after",
            "parameters": [
                _q("since", "ISO 8601 time: rows at or after it"),
                _q("actor", "cli:alice, api:bob, router, ...; a trailing * is a prefix"),
                _q("action", "gateway.added, agencies.imported, ...; a trailing . or * is "
                             "a prefix (gateway. = every gateway change)"),
                _q("limit", "at most this many rows (1..1000, default 100)", "integer"),
                _q("before_id", "rows with a smaller id (the next page)", "integer"),
            ],
            "responses": {"200": _resp("{entries: [...]}"), "400": _resp("bad filter"),
                          "401": _resp("no token")},
        }
    },
    "/api/audit/anchors": {
        "get": {
            "summary": "The last 100 signed audit heads sent to the gateways",
            "responses": {"200": _resp("{anchors: [...]}"), "401": _resp("no token")},
        }
    },
}
