"""What every ops request handler shares: the ledger pool, the management API snapshot,
the AMQP connection (opened on first need), the token store and the running jobs."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiohttp import web

from router import amqp
from router.broker_admin import BrokerAdmin
from router.ops.auth import TokenStore
from router.ops.queue_health import HealthThresholds, QueueSnapshot
from router.settings import Settings

__all__ = ["CTX", "OpsContext", "thresholds_from_env"]


def thresholds_from_env() -> HealthThresholds:
    d = HealthThresholds()
    backlog = os.environ.get("LIENTHONG_OPS_BACKLOG")
    stale = os.environ.get("LIENTHONG_OPS_STALE_SECONDS")
    return HealthThresholds(
        backlog=int(backlog) if backlog else d.backlog,
        stale_seconds=float(stale) if stale else d.stale_seconds,
    )


@dataclass
class OpsContext:
    settings: Settings
    pool: asyncpg.Pool
    admin: BrokerAdmin
    tokens: TokenStore
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    snapshot_ttl: float = 2.0  # seconds the queue statistics are reused (tests: 0)
    snapshot: QueueSnapshot = field(init=False)
    jobs: set[asyncio.Task[object]] = field(default_factory=set)
    _amqp: AbstractRobustConnection | None = None
    _channel: AbstractChannel | None = None
    _amqp_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.snapshot = QueueSnapshot(self.admin, self.settings.vhost, ttl=self.snapshot_ttl)

    @contextlib.asynccontextmanager
    async def conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled ledger connection (typed as the connection it proxies)."""
        async with self.pool.acquire() as proxy:
            yield cast(asyncpg.Connection, proxy)

    async def channel(self, *, connect_timeout: float = 5.0) -> AbstractChannel:
        """A publisher-confirm channel on the hub's vhost, opened once and kept."""
        async with self._amqp_lock:
            if self._amqp is None or self._amqp.is_closed:
                self._amqp = await asyncio.wait_for(
                    amqp.connect(self.settings.amqp_url), connect_timeout
                )
                self._channel = None
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._amqp.channel(publisher_confirms=True)
            return self._channel

    async def close(self) -> None:
        for task in list(self.jobs):
            task.cancel()
        for task in list(self.jobs):
            with contextlib.suppress(BaseException):
                await task
        if self._amqp is not None:
            with contextlib.suppress(Exception):
                await self._amqp.close()
            self._amqp = None


CTX = web.AppKey("lienthong_ops", OpsContext)
