"""Running the façade: its database, its gateway links, its HTTP listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
from aiohttp import web

from adapters.vxp.app import VxpConfig, build_app
from adapters.vxp.mailbox import GatewayLinks, Limits
from adapters.vxp.sealing import Sealer
from adapters.vxp.store import Store, ensure_schema

__all__ = ["open_store", "serve"]


async def _ensure_database(database_url: str) -> None:
    """Create the façade's database on first use (it is the façade's, not the hub's)."""
    try:
        conn = await asyncpg.connect(database_url)
    except asyncpg.InvalidCatalogNameError:
        parts = urlsplit(database_url)
        name = unquote(parts.path.lstrip("/"))
        admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
        try:
            quoted = '"' + name.replace('"', '""') + '"'
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f"CREATE DATABASE {quoted}")
        finally:
            await admin.close()
    else:
        await conn.close()


@contextlib.asynccontextmanager
async def open_store(database_url: str, secret_key: str) -> AsyncIterator[Store]:
    """The façade's store on its own database (database and tables created if missing)."""
    sealer = Sealer(secret_key)
    await _ensure_database(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    try:
        await ensure_schema(pool)
        yield Store(pool, sealer)
    finally:
        await pool.close()


async def serve(database_url: str, secret_key: str, host: str, port: int,
                config: VxpConfig, stop: asyncio.Event, *,
                receipt_timeout: float = 30.0) -> None:
    """Serve until ``stop`` is set."""
    async with open_store(database_url, secret_key) as store:
        links = GatewayLinks(store, receipt_timeout=receipt_timeout, limits=Limits(
            max_package_bytes=config.max_package_bytes,
            large_threshold=config.large_threshold, max_large_bytes=config.max_large_bytes))
        runner = web.AppRunner(build_app(store, links, config), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await stop.wait()
        finally:
            await runner.cleanup()
