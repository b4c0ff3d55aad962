"""The ledger's connections: the connection type, and the router's pools.

:func:`router_pool` is where a router process opens its PostgreSQL pools. Its connections
are handed back to the pool without asyncpg's default reset query (``SELECT
pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``): one more round trip per
acquire, measured at about a third of the submit-to-inbox latency of a batch at 300
packages/s on a busy 2-core machine. The router keeps no session state to reset: it takes
only transaction-scoped locks (``pg_advisory_xact_lock``) and settings (``SET LOCAL``),
never ``LISTEN`` or a cursor outside a transaction; an open transaction is still rolled
back on release (asyncpg does that before any reset). Code that needs session state uses
a pool of its own with the default reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

__all__ = ["Conn", "router_pool"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = asyncpg.Connection | PoolConnectionProxy[Any]
else:  # the proxy is not subscriptable at run time
    from asyncpg.pool import PoolConnectionProxy

    Conn = asyncpg.Connection | PoolConnectionProxy


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset query: the router holds no session state (see the module's text)."""


async def router_pool(database_url: str, *, min_size: int, max_size: int) -> asyncpg.Pool:
    """A pool for a router process's ledger work, released without a reset round trip."""
    return await asyncpg.create_pool(database_url, min_size=min_size, max_size=max_size,
                                     reset=_keep_session)
