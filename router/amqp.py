"""The one way the hub opens an AMQP connection: :func:`connect`.

Every connection of the hub (routers, the ops service, operator commands, provisioning)
comes from here, so each one is opened with the same TLS settings, the hub's user from
``LIENTHONG_AMQP_URL`` and a connection name that shows in RabbitMQ's management UI
(``lienthong <role> <pid>``)::

    connection = await amqp.connect(settings, "router")            # robust: reconnects
    connection = await amqp.connect(settings, "redeliver", robust=False)

Transport security: AMQPS with client certificates (mutual TLS). Set
``LIENTHONG_AMQP_URL=amqps://user:password@host:5671/lienthong`` and

===================  =====================================================================
LIENTHONG_TLS_CA     CA bundle (PEM) that signed the broker's certificate
LIENTHONG_TLS_CERT   this process's client certificate (PEM), for mutual TLS
LIENTHONG_TLS_KEY    its private key (PEM)
===================  =====================================================================

(read into :class:`router.settings.Settings`). The context verifies the broker's
certificate and host name and refuses anything below TLS 1.2.

Gateways using the SDK pass ``tls=adapters.tls.tls_context(ca, cert, key)`` (the same
context builder as here), or put ``cafile``, ``certfile`` and ``keyfile`` in the URL
(aiormq reads them), e.g. ``amqps://vpcp:SECRET@axis.example:5671/lienthong?cafile=/etc/lt/ca.pem
&certfile=/etc/lt/vpcp.pem&keyfile=/etc/lt/vpcp.key``.
"""

from __future__ import annotations

import os
import ssl
from typing import Literal, overload
from urllib.parse import unquote, urlsplit

from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from adapters import wire
from adapters.endpoints import connect_failover, connect_first
from adapters.tls import tls_context
from router.settings import Settings

# Every hub process talks AMQP through this module: whatever bytes a gateway publishes,
# decoding a delivered frame must not kill the connection (see adapters.wire).
wire.install()

__all__ = ["client_ssl_context", "connect", "hub_user", "ssl_context"]


def client_ssl_context(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client context: verify the broker against ``ca`` (the system store when None),
    present ``cert``/``key`` when given."""
    if key and not cert:
        raise ValueError("LIENTHONG_TLS_KEY is set without LIENTHONG_TLS_CERT")
    return tls_context(ca, cert, key)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The client context the settings describe; None when no TLS file is set (then an
    ``amqps://`` URL still uses TLS with the system's CA store, without a client cert)."""
    if not (settings.tls_ca or settings.tls_cert or settings.tls_key):
        return None
    return client_ssl_context(settings.tls_ca, settings.tls_cert, settings.tls_key)


def hub_user(settings: Settings) -> str:
    """The hub's own AMQP user (the one in ``LIENTHONG_AMQP_URL``): RabbitMQ checks a
    published ``user_id`` against the connection's user."""
    return unquote(urlsplit(settings.amqp_url).username or "guest")


@overload
async def connect(
    settings: Settings, role: str, *, robust: Literal[True] = ..., connect_timeout: float = ...
) -> AbstractRobustConnection: ...


@overload
async def connect(
    settings: Settings, role: str, *, robust: Literal[False], connect_timeout: float = ...
) -> AbstractConnection: ...


async def connect(
    settings: Settings, role: str, *, robust: bool = True, connect_timeout: float = 10.0
) -> AbstractConnection:
    """Open a connection to the hub's vhost as the hub's user, with the TLS settings.

    ``role`` names the connection in RabbitMQ (``lienthong <role> <pid>``). ``robust``
    connections reconnect and restore their channels by themselves (long-running
    processes); plain ones are for a command that does one thing and ends. Several hosts in the
    URL: tried in turn on connect and on loss.
    """
    # one URL may name several hosts (amqp://u:p@h1:5672,h2:5672/vhost): a robust
    # connection fails over between them, a plain one takes the first that answers
    # (adapters.endpoints)
    opener = connect_failover if robust else connect_first
    return await opener(
        settings.amqp_url,
        ssl_context=ssl_context(settings),
        timeout=connect_timeout,
        client_properties={"connection_name": f"lienthong {role} {os.getpid()}"},
    )
