"""Rotating a gateway's AMQP credentials, keeping RabbitMQ and the ledger in step.

``lienthong gateways rotate-credentials GW``: a new random password is set on the
gateway's AMQP user, every open connection of that user is closed (sessions opened with
the old password end at once; the SDK reconnects and must then use the new one), the
least-privilege permissions are re-applied from the ledger and the rotation is written to
the audit log. The password is returned once and stored nowhere by the hub.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

import asyncpg

from router.broker_admin import BrokerAdmin
from router.directory.registry import GatewayCredentials, sync_gateway_permissions
from router.security import audit
from schemas.reasons import LienthongError, Reason

__all__ = ["close_user_connections", "rotate_credentials"]


async def close_user_connections(admin: BrokerAdmin, user: str) -> None:
    """Close every AMQP connection of ``user`` on the broker, at once.

    Uses ``DELETE /api/connections/username/{user}``, which asks the broker itself rather
    than the management statistics (those lag a few seconds behind new connections).
    """
    await admin.request("DELETE", f"/connections/username/{quote(user, safe='')}",
                        ok_missing=True)


async def rotate_credentials(
    conn: asyncpg.Connection,
    admin: BrokerAdmin,
    vhost: str,
    gateway_id: str,
    *,
    password: str | None = None,
    actor: str = "operator",
) -> GatewayCredentials:
    """Give ``gateway_id`` a new AMQP password. Raises LienthongError(GATEWAY_UNKNOWN)."""
    rec = await conn.fetchrow(
        "SELECT amqp_user, status FROM gateways WHERE id = $1", gateway_id
    )
    if rec is None:
        raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
    user: str = rec["amqp_user"]
    password = password or secrets.token_urlsafe(24)
    await admin.put_user(user, password)
    await close_user_connections(admin, user)
    await sync_gateway_permissions(conn, admin, vhost, gateway_id)
    async with conn.transaction():
        await conn.execute("UPDATE gateways SET updated_at = now() WHERE id = $1", gateway_id)
        await audit.append(
            conn, actor, "gateway.credentials_rotated", gateway_id,
            {"amqp_user": user, "status": rec["status"],
             "before": {"credentials": "previous password (not recorded)"},
             "after": {"credentials": "new password (not recorded)",
                       "connections": "closed"}},
        )
    return GatewayCredentials(gateway_id=gateway_id, user=user, password=password)
