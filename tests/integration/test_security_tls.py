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
from typing import Any
from urllib.parse import quote, urlencode

import aio_pika
import aiormq
import pytest

from router.amqp import ssl_context
from router.directory.registry import AgencyRow
from router.settings import Settings
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

    def settings(self, client: str = "client") -> Settings:
        return Settings(tls_ca=self.path("ca.pem"), tls_cert=self.path(f"{client}.cert.pem"),
                        tls_key=self.path(f"{client}.key.pem"))


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



async def test_a_gateway_gives_the_sdk_a_tls_context(
    hub: Hub, tls_listener: TlsListener
) -> None:
    """``tls=`` (an ssl.SSLContext from adapters.tls_context) instead of URL parameters;
    a context without the client certificate is refused by the broker."""
    from adapters import GatewayClient, tls_context

    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    url = _url(hub, "vpcp", tls_listener.port)
    ctx = tls_context(tls_listener.path("ca.pem"), tls_listener.path("client.cert.pem"),
                      tls_listener.path("client.key.pem"))
    async with GatewayClient(url, gateway_id="vpcp", tls=ctx) as gw:
        receipt = await gw.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
    assert receipt is not None and receipt.type == "accepted", receipt
    no_cert = GatewayClient(url, gateway_id="vpcp", tls=tls_context(tls_listener.path("ca.pem")))
    with pytest.raises((ConnectionError, aiormq.exceptions.AMQPConnectionError, ssl.SSLError)):
        await asyncio.wait_for(no_cert.connect(), 15)
    await no_cert.close()

async def test_the_router_side_context_from_the_environment(
    hub: Hub, tls_listener: TlsListener
) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    ctx = ssl_context(tls_listener.settings())
    assert ctx is not None
    conn = await aio_pika.connect(_url(hub, "vpcp", tls_listener.port), ssl_context=ctx,
                                  timeout=10)
    async with conn:
        channel = await conn.channel()
        queue = await channel.get_queue("lt.gw.vpcp.inbox", ensure=False)
        assert await queue.get(fail=False) is None
    assert ssl_context(Settings()) is None


@pytest.mark.parametrize(
    ("case", "env"),
    [
        ("no client certificate", {"tls_ca": "ca.pem"}),
        ("client certificate from another CA", {"tls_ca": "ca.pem",
                                                "tls_cert": "rogue.cert.pem",
                                                "tls_key": "rogue.key.pem"}),
        ("broker not trusted by the client", {"tls_ca": "rogue-ca.pem",
                                              "tls_cert": "client.cert.pem",
                                              "tls_key": "client.key.pem"}),
    ],
)
async def test_mutual_tls_refuses(
    hub: Hub, tls_listener: TlsListener, case: str, env: dict[str, str]
) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    ctx = ssl_context(Settings(**{k: tls_listener.path(v) for k, v in env.items()}))
    with pytest.raises((aiormq.exceptions.AMQPConnectionError, ConnectionError, OSError)):
        await _open(_url(hub, "vpcp", tls_listener.port), ctx)


async def _open(url: str, ctx: ssl.SSLContext | None) -> None:
    conn = await aio_pika.connect(url, ssl_context=ctx, timeout=10)
    async with conn:
        await conn.channel()  # TLS 1.3: a refused client cert may surface only here


async def _park_one(hub: Hub) -> str:
    """A parked submission as the router leaves it (operators requeue such rows)."""
    return str(await hub.pool.fetchval(
        """INSERT INTO parked_messages (id, source_queue, reason, reason_code, error, body,
               content_sha256, routing_key)
           VALUES (gen_random_uuid(), 'lt.router.in', 'POISON', 5003, 'boom', '\\x00',
                   '\\x00', '000.00.00.G22') RETURNING id"""
    ))


async def test_operator_commands_and_the_ops_api_connect_under_mutual_tls(
    hub: Hub, tls_listener: TlsListener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lienthong redeliver`, `parking requeue`, `deadlines` and the ops API's requeue open
    their AMQP connection with the TLS settings: a broker that demands a client
    certificate lets them in."""
    from aiohttp.test_utils import TestClient, TestServer
    from click.testing import CliRunner

    from router.cli.recovery import parking as parking_cli
    from router.cli.recovery import redeliver as redeliver_cli
    from router.cli.tracking import deadlines as deadlines_cli
    from router.ops.auth import TokenStore
    from router.ops.server import create_app
    from router.topology import declare_gateway, inbox_queue

    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    # a copy that could not be delivered (the province's inbox is gone), for `redeliver`
    await hub.admin.request(
        "DELETE", f"/queues/{hub.settings.vhost}/{inbox_queue('lgsp-nghean')}",
        ok_missing=True,
    )
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
    assert receipt is not None and receipt.recipients[0].state == "undeliverable"
    conn = await aio_pika.connect(hub.settings.amqp_url)
    async with conn:
        await declare_gateway(await conn.channel(), "lgsp-nghean")

    tls_url = (f"amqps://guest:guest@127.0.0.1:{tls_listener.port}/"
               f"{quote(hub.settings.vhost, safe='')}")
    env = {"LIENTHONG_AMQP_URL": tls_url,
           "LIENTHONG_DATABASE_URL": hub.settings.database_url,
           "LIENTHONG_MANAGEMENT_URL": hub.settings.management_url,
           **tls_listener.env()}
    runner = CliRunner()

    done = await asyncio.to_thread(
        runner.invoke, redeliver_cli, ["--gateway", "lgsp-nghean", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert "1 re-delivered (1 queued" in done.output

    flagged = await asyncio.to_thread(
        runner.invoke, deadlines_cli, ["--not-arrived-after", "0"], env=env)
    assert flagged.exit_code == 0, flagged.output
    assert "flagged 1 not arrived" in flagged.output

    parked = await _park_one(hub)
    requeued = await asyncio.to_thread(
        runner.invoke, parking_cli, ["requeue", parked], env=env)
    assert requeued.exit_code == 0, requeued.output
    assert "requeued 1 message(s)" in requeued.output

    # the ops service, configured from the same environment
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    operator = "operator-token-0123456789abcdef"
    app = create_app(Settings.from_env(), tokens=TokenStore.parse(f"alice:operator:{operator}"),
                     pool=hub.pool, refresh_interval=None)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        resp = await client.post("/api/parking/requeue", json={"ids": [await _park_one(hub)]},
                                 headers={"Authorization": f"Bearer {operator}"})
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"requeued": 1}
    finally:
        await client.close()
