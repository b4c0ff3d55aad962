"""The TLS context of an AMQP connection to the hub (``amqps://``): verify the broker,
present a client certificate for mutual TLS. Used by the SDK and by the hub's own
processes (``router.amqp``)."""

from __future__ import annotations

import ssl

__all__ = ["tls_context"]


def tls_context(
    ca: str | None = None, cert: str | None = None, key: str | None = None
) -> ssl.SSLContext:
    """A client context: verify the broker against the CA file ``ca`` (the system store when
    None), TLS 1.2 at least, present ``cert`` (with ``key``, or a key inside ``cert``) when
    given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        ctx.load_cert_chain(cert, key)
    elif key:
        raise ValueError("a TLS key is given without its certificate")
    return ctx
