"""Names an operator types (a gateway id, an agency code in any spelling) checked against
the directory: a typo is refused with a reason instead of silently matching nothing."""

from __future__ import annotations

from router.ledger import Conn
from schemas.agency_code import normalize
from schemas.reasons import OperationRefused, Reason

__all__ = ["require_agency", "require_gateway"]


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
