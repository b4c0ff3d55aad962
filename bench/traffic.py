"""The load generator's AMQP side, kept lean because it shares the CPU with the router.

* Publishing: one AMQP connection per simulated gateway, logged in as that gateway's
  own user (so RabbitMQ checks ``user_id`` and the topic permission on the routing key
  exactly as in production), one channel with publisher confirms each. Publishes are
  pipelined: callers gather the returned confirms, never await them one by one.
* Observing: one connection as the bench's administrative user: queue depths by passive
  ``queue.declare`` (exact, unlike the management API's sampled statistics), purges, and
  ``no_ack`` consumers over every gateway queue for the latency phase.

It talks plain ``aiormq`` (what aio-pika runs on) to spend as little CPU per message as
the load generator can.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiormq
from aiormq.abc import AbstractChannel, AbstractConnection, DeliveredMessage

from adapters.endpoints import amqp_endpoints
from bench.workload import BenchGateway
from router import topology
from router.directory.registry import GatewayCredentials

__all__ = ["Traffic", "gateway_amqp_url"]

_OBSERVER_CHANNELS = 8


def gateway_amqp_url(admin_url: str, creds: GatewayCredentials) -> str:
    """The AMQP URL of the admin URL's host(s) and vhost, logged in as the gateway (a
    cluster's URL keeps its host list)."""
    parts = urlsplit(admin_url)
    hosts = parts.netloc.rpartition("@")[2] or "127.0.0.1"
    netloc = f"{quote(creds.user, safe='')}:{quote(creds.password, safe='')}@{hosts}"
    return urlunsplit((parts.scheme or "amqp", netloc, parts.path, parts.query, ""))


_next_endpoint = itertools.count()


async def _connect(url: str, wait_s: float = 30.0) -> AbstractConnection:
    """A connection to one node of ``url``; with several nodes listed, successive
    connections take them in turn (so the simulated gateways spread over a cluster)."""
    endpoints = amqp_endpoints(url)
    first = next(_next_endpoint)
    last: BaseException | None = None
    for k in range(len(endpoints)):
        try:
            return await asyncio.wait_for(
                aiormq.connect(endpoints[(first + k) % len(endpoints)]), wait_s)
        except TimeoutError:
            raise ConnectionError(
                f"RabbitMQ accepted no AMQP connection in {wait_s:.0f} s. When the TCP "
                "connect works but the handshake hangs, its file-handle budget is used up "
                "(every quorum queue reserves handles): see `rabbitmqctl status` → File "
                "Descriptors, and start RabbitMQ with a higher `ulimit -n`."
            ) from None
        except (OSError, aiormq.exceptions.AMQPConnectionError) as exc:
            last = exc
    raise last if last is not None else ConnectionError("no AMQP endpoint")


class Traffic:
    """Connections of the simulated gateways and of the observer."""

    def __init__(
        self,
        admin_amqp_url: str,
        gateways: Sequence[BenchGateway],
        credentials: dict[str, GatewayCredentials],
    ) -> None:
        self._admin_url = admin_amqp_url
        self.gateways = list(gateways)
        self._credentials = credentials
        self._connections: list[AbstractConnection] = []
        self._publishers: dict[str, tuple[AbstractChannel, str]] = {}
        self._observers: list[AbstractChannel] = []
        self._consumer: AbstractChannel | None = None

    async def connect(self) -> None:
        sem = asyncio.Semaphore(16)

        async def one(gw: BenchGateway) -> None:
            creds = self._credentials[gw.id]
            async with sem:
                conn = await _connect(gateway_amqp_url(self._admin_url, creds))
                self._connections.append(conn)
                channel = await conn.channel(publisher_confirms=True)
            self._publishers[gw.id] = (channel, creds.user)

        await asyncio.gather(*(one(g) for g in self.gateways))
        observer = await _connect(self._admin_url)
        self._connections.append(observer)
        self._observers = [await observer.channel() for _ in range(_OBSERVER_CHANNELS)]

    async def close(self) -> None:
        conns, self._connections = self._connections, []
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    # publishing ------------------------------------------------------------------------
    def publish(
        self,
        gateway: BenchGateway,
        body: bytes,
        *,
        kind: str,
        headers: dict[str, Any] | None = None,
        message_id: str | None = None,
    ) -> Awaitable[Any]:
        """Submit ``body`` as ``gateway``; the awaitable resolves on the broker's confirm."""
        channel, user = self._publishers[gateway.id]
        return channel.basic_publish(
            body,
            exchange=topology.SUBMIT,
            routing_key=gateway.agency,
            properties=aiormq.spec.Basic.Properties(
                content_type="application/xml",
                delivery_mode=2,
                message_id=message_id or str(uuid.uuid4()),
                user_id=user,
                message_type=kind,
                headers=headers,
            ),
        )

    # observing -------------------------------------------------------------------------
    async def _spread(
        self, names: Sequence[str], op: Callable[[AbstractChannel, str], Awaitable[Any]]
    ) -> list[Any]:
        """Run ``op`` for every queue, spread over the observer channels."""
        out: list[Any] = [None] * len(names)

        async def lane(k: int) -> None:
            ch = self._observers[k]
            for i in range(k, len(names), len(self._observers)):
                out[i] = await op(ch, names[i])

        await asyncio.gather(*(lane(k) for k in range(min(len(names), len(self._observers)))))
        return out

    async def depths(self, names: Sequence[str]) -> dict[str, int]:
        """Ready messages per queue (exact, from passive declares)."""
        return await self._declared(names, "message_count")

    async def consumers(self, name: str) -> int:
        ok = await self._observers[0].queue_declare(name, passive=True)
        return int(ok.consumer_count or 0)

    async def consumers_of(self, names: Sequence[str]) -> dict[str, int]:
        """Consumers per queue (from passive declares)."""
        return await self._declared(names, "consumer_count")

    async def _declared(self, names: Sequence[str], count: str) -> dict[str, int]:
        async def declare(ch: AbstractChannel, name: str) -> int:
            ok = await ch.queue_declare(name, passive=True)
            return int(getattr(ok, count) or 0)

        return dict(zip(names, await self._spread(names, declare), strict=True))

    async def purge(self, names: Sequence[str]) -> None:
        async def purge(ch: AbstractChannel, name: str) -> None:
            await ch.queue_purge(name)

        await self._spread(names, purge)

    async def consume(
        self,
        names: Sequence[str],
        callback: Callable[[DeliveredMessage], Coroutine[Any, Any, None]],
    ) -> None:
        """Consume every queue in ``names`` without acks until :meth:`stop_consuming`."""
        assert self._connections, "connect() first"
        observer = self._connections[-1]
        self._consumer = await observer.channel()
        for name in names:
            await self._consumer.basic_consume(name, callback, no_ack=True)

    async def stop_consuming(self) -> None:
        if self._consumer is not None:
            await self._consumer.close()
            self._consumer = None
