"""Several AMQP endpoints (the nodes of a RabbitMQ cluster) behind one URL.

``LIENTHONG_AMQP_URL`` and the SDK's ``amqp_url`` may name several hosts the way libpq and
the PostgreSQL DSN do, one URL with a host list::

    amqp://user:password@rmq1:5672,rmq2:5672,rmq3:5672/lienthong?heartbeat=10

Credentials, virtual host and options are written once and shared by every host. A host
without a port takes the scheme's default (5672, or 5671 for ``amqps``).

aio-pika connects to one host only. :func:`connect_failover` starts at a host picked at
random (so that the clients of a cluster spread over its nodes), tries the others in the
order written when it does not answer, and on a lost connection (or a failed reconnect)
moves on to the next one, round the list, until the connection is closed on purpose.
Channels, queues and consumers come back by themselves as with any robust connection.
:func:`connect_first` tries the hosts in order for short-lived, non-robust connections.

This is the one implementation: the SDK uses it, and so does the hub (``router.amqp``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from ssl import SSLContext
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractRobustConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL

__all__ = ["FailoverConnection", "amqp_endpoints", "connect_failover", "connect_first",
           "redact"]

log = logging.getLogger(__name__)

# what "this endpoint does not answer" looks like (TimeoutError is an OSError)
_UNREACHABLE = (OSError, aio_pika.exceptions.AMQPConnectionError)

RECONNECT_INTERVAL = 1.0  # seconds between attempts; a dead node refuses at once


def amqp_endpoints(url: str) -> list[str]:
    """The single-host URLs a (possibly multi-host) AMQP URL stands for, in order.

    >>> amqp_endpoints("amqp://u:p@a:5681,b:5682/vh")
    ['amqp://u:p@a:5681/vh', 'amqp://u:p@b:5682/vh']
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"not an AMQP URL (amqp:// or amqps://): {redact(url)!r}")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    names = [h.strip() for h in hosts.split(",")]
    if not names or any(not h for h in names):
        raise ValueError(f"an empty host in the AMQP URL {redact(url)!r}")
    return [
        urlunsplit((parts.scheme, f"{userinfo}{at}{host}", parts.path, parts.query,
                    parts.fragment))
        for host in names
    ]


def redact(url: str) -> str:
    """The URL with its password masked, for logs and errors."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":******"
    return urlunsplit((parts.scheme, f"{userinfo}{at}{hosts}", parts.path, parts.query,
                       parts.fragment))


class FailoverConnection(RobustConnection):
    """A robust connection that moves to the next endpoint whenever one fails.

    aio-pika's :class:`RobustConnection` reconnects to ``self.url`` in a loop; this class
    points ``self.url`` at the current endpoint before every attempt and advances it when
    an attempt fails or an established connection is lost.
    """

    def __init__(self, url: URL | str, *, endpoints: Sequence[str], first: int = 0,
                 **kwargs: Any) -> None:
        if not endpoints:
            raise ValueError("no AMQP endpoint given")
        super().__init__(URL(endpoints[first % len(endpoints)]), **kwargs)
        self.endpoints = [URL(e) for e in endpoints]
        self.current = first % len(self.endpoints)
        self.failovers = 0  # how many times this connection moved on to another endpoint

    def _advance(self, why: str) -> None:
        if len(self.endpoints) < 2:
            return
        before = self.endpoints[self.current]
        self.current = (self.current + 1) % len(self.endpoints)
        self.failovers += 1
        log.warning("AMQP endpoint %s:%s %s; next: %s:%s", before.host, before.port, why,
                    self.endpoints[self.current].host, self.endpoints[self.current].port)

    # RobustConnection's (name-mangled) per-attempt step; pinned aio-pika==10.2.1, and
    # tests/integration/test_endpoints.py fails if a new version stops calling it.
    async def _RobustConnection__connect_transport(self) -> None:
        self.url = self.endpoints[self.current]
        try:
            await super()._RobustConnection__connect_transport()  # type: ignore[misc]
        except BaseException:
            self._advance("refused the connection")
            raise

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed):
            self._advance("lost the connection")
        await super()._on_connection_close(closing)


async def connect_failover(
    url: str,
    *,
    ssl_context: SSLContext | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - per attempt, as aio-pika's own
    reconnect_interval: float = RECONNECT_INTERVAL,
    **kwargs: Any,
) -> AbstractRobustConnection:
    """A robust connection to an endpoint of ``url`` that accepts it (each tried once,
    from one picked at random); it fails over to the others when that one goes away.
    Raises the last endpoint's error when none accepts."""
    endpoints = amqp_endpoints(url)
    last: BaseException | None = None
    start = random.randrange(len(endpoints))
    for i in [(start + k) % len(endpoints) for k in range(len(endpoints))]:
        connection = FailoverConnection(
            endpoints[i], endpoints=endpoints, first=i, ssl_context=ssl_context,
            reconnect_interval=reconnect_interval, **kwargs,
        )
        try:
            await connection.connect(timeout=timeout)
        except _UNREACHABLE as exc:
            last = exc
            log.warning("AMQP endpoint %s did not accept a connection: %r",
                        redact(endpoints[i]), exc)
            await connection.close()
            continue
        return connection
    raise last if last is not None else ConnectionError("no AMQP endpoint")


async def connect_first(
    url: str, *, ssl_context: SSLContext | None = None, timeout: float | None = None,  # noqa: ASYNC109
    **kwargs: Any,
) -> AbstractConnection:
    """A plain (non-robust) connection to the first endpoint of ``url`` that accepts it."""
    endpoints = amqp_endpoints(url)
    last: BaseException | None = None
    for endpoint in endpoints:
        try:
            connection: AbstractConnection = await aio_pika.connect(
                endpoint, ssl_context=ssl_context, timeout=timeout, **kwargs)
        except _UNREACHABLE as exc:
            last = exc
            continue
        return connection
    raise last if last is not None else ConnectionError("no AMQP endpoint")
