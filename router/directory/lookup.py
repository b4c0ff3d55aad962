"""The directory as operators read it, and the names an operator types (a gateway id, an
agency code in any spelling) checked against it: a typo is refused with a reason instead of
silently matching nothing."""

from __future__ import annotations

from typing import Any

from router.ledger import Conn
from schemas.agency_code import normalize
from schemas.reasons import OperationRefused, Reason

__all__ = ["agency_by_alias", "gateway_ids", "gateway_summaries", "require_agency",
           "require_gateway"]


async def gateway_ids(conn: Conn, *, removed: bool = False) -> list[str]:
    """The gateways' ids, in order; those removed (no AMQP account any more) only when
    asked for."""
    rows = await conn.fetch(
        "SELECT id FROM gateways WHERE $1 OR status <> 'removed' ORDER BY id", removed)
    return [r["id"] for r in rows]


async def gateway_summaries(conn: Conn) -> list[dict[str, Any]]:
    """Gateways with the number of agencies each serves."""
    rows = await conn.fetch(
        """SELECT g.id, g.name, g.kind, g.status, g.serves, g.manage_agencies,
                  count(a.id) AS agencies
           FROM gateways g LEFT JOIN agencies a ON a.gateway_id = g.id
           GROUP BY g.id ORDER BY g.id"""
    )
    return [dict(r) for r in rows]


async def agency_by_alias(conn: Conn, code: str) -> dict[str, Any] | None:
    """The agency known by ``code`` (its code or any alias, any spelling), with its
    aliases; None when no agency is."""
    row = await conn.fetchrow(
        """SELECT a.*, array(SELECT alias FROM agency_aliases x WHERE x.agency_id = a.id
                             ORDER BY alias) AS aliases
           FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
           WHERE al.alias = $1""",
        normalize(code),
    )
    return dict(row) if row is not None else None


async def require_gateway(conn: Conn, gateway_id: str) -> None:
    """Raise :class:`OperationRefused` (OPS_UNKNOWN_GATEWAY) unless the gateway exists."""
    if await conn.fetchval("SELECT 1 FROM gateways WHERE id = $1", gateway_id) is None:
        raise OperationRefused(Reason.OPS_UNKNOWN_GATEWAY, f"gateway {gateway_id!r}")


async def require_agency(conn: Conn, code: str) -> None:
    """Raise :class:`OperationRefused` (OPS_UNKNOWN_AGENCY) unless an agency has ``code``
    as its code or one of its aliases (any spelling)."""
    key = normalize(code)
    found = await conn.fetchval(
        """SELECT 1 FROM agency_aliases WHERE alias = $1
           UNION ALL SELECT 1 FROM agencies WHERE code = $1 LIMIT 1""",
        key,
    )
    if found is None:
        raise OperationRefused(Reason.OPS_UNKNOWN_AGENCY, f"agency {code!r}")
