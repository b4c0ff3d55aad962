"""AMQPS with client certificates (mutual TLS), against the real RabbitMQ.

The test starts an extra TLS listener on the running broker, on a spare local port, with a
CA, server and client certificates generated here — ``rabbit_networking:
start_ssl_listener/3`` through ``rabbitmqctl eval`` (no restart, nothing written to the
broker's configuration) — and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import aio_pika
import aiormq
import pytest

from router.amqp import ssl_context_from_env
from router.directory.registry import AgencyRow
from tests.factory import edoc
from tests.hub import Hub
from tests.pki import identity


@dataclass
class TlsListener:
    port: int
    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def env(self, client: str = "client") -> dict[str, str]:
        return {"LIENTHONG_TLS_CA": self.path("ca.pem"),
                "LIENTHONG_TLS_CERT": self.path(f"{client}.cert.pem"),
                "LIENTHONG_TLS_KEY": self.path(f"{client}.key.pem")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rabbitmqctl_eval(expr: str) -> str:
    done = subprocess.run(["rabbitmqctl", "eval", expr], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl eval failed: {done.stderr or done.stdout}")
    return done.stdout.strip()


def _make_pki() -> Path:
    """CA, broker and client certificates (and a rogue CA with its own client)."""
    # the broker runs as its own user: the files must be readable by it
    directory = Path(tempfile.mkdtemp(prefix="lt-tls-"))
    directory.chmod(0o755)
    ca = identity("lienthong test CA", "p256", ca=True)
    identity("127.0.0.1", "p256", issuer=ca, server=True).write(directory, "server")
    identity("vpcp", "p256", issuer=ca, client=True).write(directory, "client")
    rogue_ca = identity("rogue CA", "p256", ca=True)
    identity("vpcp", "p256", issuer=rogue_ca, client=True).write(directory, "rogue")
    (directory / "ca.pem").write_bytes(ca.cert_pem)
    (directory / "rogue-ca.pem").write_bytes(rogue_ca.cert_pem)
    for p in directory.iterdir():
        p.chmod(0o644)
    return directory


@pytest.fixture
async def tls_listener() -> AsyncIterator[TlsListener]:
    directory = await asyncio.to_thread(_make_pki)
    port = _free_port()
    listener = f'{{"127.0.0.1", {port}}}'
    opts = (f'[{{cacertfile, "{directory}/ca.pem"}}, '
            f'{{certfile, "{directory}/server.cert.pem"}}, '
            f'{{keyfile, "{directory}/server.key.pem"}}, '
            "{verify, verify_peer}, {fail_if_no_peer_cert, true}, "
            "{versions, ['tlsv1.3', 'tlsv1.2']}]")
    result = await asyncio.to_thread(
        _rabbitmqctl_eval, f"rabbit_networking:start_ssl_listener({listener}, {opts}, 2)."
    )
    assert result == "ok", result
    try:
        yield TlsListener(port, directory)
    finally:
        await asyncio.to_thread(
            _rabbitmqctl_eval, f"rabbit_networking:stop_tcp_listener({listener})."
        )
        shutil.rmtree(directory, ignore_errors=True)


def _url(hub: Hub, gateway_id: str, port: int, **query: str) -> str:
    c = hub.credentials[gateway_id]
    url = (f"amqps://{quote(c.user, safe='')}:{quote(c.password, safe='')}@127.0.0.1:{port}/"
           f"{quote(hub.settings.vhost, safe='')}")
    return f"{url}?{urlencode(query)}" if query else url


async def test_a_gateway_sends_over_mutual_tls_with_the_sdk(
    hub: Hub, tls_listener: TlsListener
) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    # the SDK needs no code for TLS: aiormq reads cafile/certfile/keyfile from the URL
    url = _url(hub, "vpcp", tls_listener.port, cafile=tls_listener.path("ca.pem"),
               certfile=tls_listener.path("client.cert.pem"),
               keyfile=tls_listener.path("client.key.pem"))
    from adapters import GatewayClient

    async with GatewayClient(url, gateway_id="vpcp") as gw:
        receipt = await gw.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
    assert receipt is not None
    assert receipt.type == "accepted", receipt


async def test_the_router_side_context_from_the_environment(
    hub: Hub, tls_listener: TlsListener
) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    ctx = ssl_context_from_env(tls_listener.env())
    assert ctx is not None
    conn = await aio_pika.connect(_url(hub, "vpcp", tls_listener.port), ssl_context=ctx,
                                  timeout=10)
    async with conn:
        channel = await conn.channel()
        queue = await channel.get_queue("lt.gw.vpcp.inbox", ensure=False)
        assert await queue.get(fail=False) is None
    assert ssl_context_from_env({}) is None


@pytest.mark.parametrize(
    ("case", "env"),
    [
        ("no client certificate", {"LIENTHONG_TLS_CA": "ca.pem"}),
        ("client certificate from another CA", {"LIENTHONG_TLS_CA": "ca.pem",
                                                "LIENTHONG_TLS_CERT": "rogue.cert.pem",
                                                "LIENTHONG_TLS_KEY": "rogue.key.pem"}),
        ("broker not trusted by the client", {"LIENTHONG_TLS_CA": "rogue-ca.pem",
                                              "LIENTHONG_TLS_CERT": "client.cert.pem",
                                              "LIENTHONG_TLS_KEY": "client.key.pem"}),
    ],
)
async def test_mutual_tls_refuses(
    hub: Hub, tls_listener: TlsListener, case: str, env: dict[str, str]
) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    ctx = ssl_context_from_env({k: tls_listener.path(v) for k, v in env.items()})
    with pytest.raises((aiormq.exceptions.AMQPConnectionError, ConnectionError, OSError)):
        await _open(_url(hub, "vpcp", tls_listener.port), ctx)


async def _open(url: str, ctx: ssl.SSLContext | None) -> None:
    conn = await aio_pika.connect(url, ssl_context=ctx, timeout=10)
    async with conn:
        await conn.channel()  # TLS 1.3: a refused client cert may surface only here
