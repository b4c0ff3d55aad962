"""What every ops request handler shares: the ledger pool, the management API snapshot,
the AMQP connection (opened on first need), the token store and the running jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote, urlsplit

import asyncpg
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiohttp import web

from router import amqp
from router.broker_admin import BrokerAdmin
from router.ops.auth import TokenStore
from router.ops.queue_health import HealthThresholds, QueueSnapshot
from router.outbox.outbox import Outbox
from router.settings import Settings

__all__ = ["CTX", "OpsContext", "thresholds_from_env"]


def thresholds_from_env(settings: Settings | None = None) -> HealthThresholds:
    s = Settings.from_env() if settings is None else settings
    return HealthThresholds(backlog=s.ops_backlog, stale_seconds=s.ops_stale_seconds)


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
    _outbox: Outbox | None = None
    _amqp_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.snapshot = QueueSnapshot(self.admin, self.settings.vhost, ttl=self.snapshot_ttl)

    @property
    def hub_user(self) -> str:
        """The AMQP user :meth:`channel` connects as: what RabbitMQ accepts as ``user_id``
        on its publishes (a re-submitted parked package)."""
        return unquote(urlsplit(self.settings.amqp_url).username or "guest")

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
                    amqp.connect(self.settings, "ops", connect_timeout=connect_timeout),
                    connect_timeout,
                )
                self._channel = None
            if self._channel is None or self._channel.is_closed:
                self._channel = await self._amqp.channel(publisher_confirms=True)
                self._outbox = None
            return self._channel

    async def outbox(self) -> Outbox:
        """Where the service's copies and (signed) receipts leave, on :meth:`channel`."""
        channel = await self.channel()
        if self._outbox is None:
            self._outbox = await Outbox.open(channel, self.settings)
        return self._outbox

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
