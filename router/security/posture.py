"""Settings that weaken security, recorded in the audit log when a process starts.

A router or the ops service started with the AMQP link in clear text (``amqp://``) or with
receipts unsigned (no ``LIENTHONG_HUB_KEY``) appends one ``process.weakened`` row naming
what is weak,
with the weaknesses the previous such start of that process had (``before``) and its own
(``after``). A start with nothing weakened appends nothing.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from router.ledger import Conn
from router.security import audit
from router.settings import Settings

__all__ = ["record_start", "weaknesses"]


def weaknesses(settings: Settings, *, receipts_signed: bool | None) -> list[str]:
    """What weakens security in this process's settings (``receipts_signed`` None: the
    process signs nothing, so it is not asked). Fault injection is no longer a setting of
    the product (it lives in the tests), so it cannot weaken a hub."""
    out = []
    if not settings.amqp_url.startswith("amqps://"):
        out.append("amqp_tls_off")
    if receipts_signed is False:
        out.append("receipts_unsigned")
    return out


async def record_start(
    conn: Conn, process: str, settings: Settings, *, receipts_signed: bool | None
) -> list[str]:
    """Append ``process.weakened`` when ``weaknesses`` finds any; returns them."""
    weak = weaknesses(settings, receipts_signed=receipts_signed)
    if not weak:
        return weak
    prev = await audit.last_details(conn, "process.weakened", process)
    before: Any = prev.get("after") if prev else None
    await audit.append(
        conn, process, "process.weakened", process,
        {"before": before, "after": weak, "host": socket.gethostname(), "pid": os.getpid()},
    )
    return weak
