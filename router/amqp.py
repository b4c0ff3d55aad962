"""Transport security: AMQPS with client certificates (mutual TLS).

Set ``LIENTHONG_AMQP_URL=amqps://user:password@host:5671/lienthong`` and

===================  =====================================================================
LIENTHONG_TLS_CA     CA bundle (PEM) that signed the broker's certificate
LIENTHONG_TLS_CERT   this process's client certificate (PEM), for mutual TLS
LIENTHONG_TLS_KEY    its private key (PEM)
===================  =====================================================================

and pass ``ssl_context_from_env()`` to ``aio_pika.connect_robust(url, ssl_context=...)``.
The context verifies the broker's certificate and host name and refuses anything below
TLS 1.2.

Gateways using the SDK need no code: aiormq reads ``cafile``, ``certfile`` and ``keyfile``
from the URL, e.g. ``amqps://vpcp:SECRET@axis.example:5671/lienthong?cafile=/etc/lt/ca.pem
&certfile=/etc/lt/vpcp.pem&keyfile=/etc/lt/vpcp.key``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping

from aio_pika.abc import AbstractConnection, AbstractRobustConnection

from adapters.endpoints import connect_failover, connect_first

__all__ = ["TLS_CA_ENV", "TLS_CERT_ENV", "TLS_KEY_ENV", "client_ssl_context", "connect",
           "connect_once", "ssl_context_from_env"]

TLS_CA_ENV = "LIENTHONG_TLS_CA"
TLS_CERT_ENV = "LIENTHONG_TLS_CERT"
TLS_KEY_ENV = "LIENTHONG_TLS_KEY"


def client_ssl_context(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client context: verify the broker against ``ca`` (the system store when None),
    present ``cert``/``key`` when given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    elif key:
        raise ValueError(f"{TLS_KEY_ENV} is set without {TLS_CERT_ENV}")
    return ctx


def ssl_context_from_env(environ: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """The client context described by ``LIENTHONG_TLS_*``; None when none is set (then an
    ``amqps://`` URL still uses TLS with the system's CA store, without a client cert)."""
    env = os.environ if environ is None else environ
    ca, cert, key = (env.get(n) or None for n in (TLS_CA_ENV, TLS_CERT_ENV, TLS_KEY_ENV))
    if not (ca or cert or key):
        return None
    return client_ssl_context(ca, cert, key)


async def connect(url: str) -> AbstractRobustConnection:
    """The hub's robust AMQP connection: TLS from ``LIENTHONG_TLS_*``, and failover between
    the hosts of a multi-host URL (``amqp://u:p@h1:5672,h2:5672/vhost``; see
    ``adapters.endpoints``)."""
    return await connect_failover(url, ssl_context=ssl_context_from_env())


async def connect_once(url: str) -> AbstractConnection:
    """A short-lived connection (a CLI command, provisioning) to the first host answering."""
    return await connect_first(url, ssl_context=ssl_context_from_env())
