"""Test harness: a throwaway hub (vhost + database) on the real RabbitMQ and PostgreSQL.

Every test environment gets its own vhost, database and AMQP user prefix, all removed
afterwards: tests never touch anybody's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote

import asyncpg
import pytest

from adapters import GatewayClient
from router import migrate
from router.broker_admin import BrokerAdmin
from router.directory.provision import ensure_core, provision_gateway
from router.directory.registry import AgencyRow, GatewayCredentials, import_agencies
from router.routing.intake import RouterWorker
from router.settings import Settings

AMQP_HOST = os.environ.get("LIENTHONG_TEST_AMQP_HOST", "127.0.0.1")
PG_URL = os.environ.get("LIENTHONG_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
MGMT_URL = os.environ.get("LIENTHONG_TEST_MANAGEMENT", "http://guest:guest@127.0.0.1:15672")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def require_services() -> None:
    """Integration tests need the real services: a missing one is a failure, never a skip."""
    missing = []
    if not _port_open(AMQP_HOST, 5672):
        missing.append("RabbitMQ on 5672 (start it: rabbitmq-server -detached)")
    if not _port_open(AMQP_HOST, 15672):
        missing.append(
            "RabbitMQ management API on 15672 (rabbitmq-plugins enable rabbitmq_management)"
        )
    if not _port_open("127.0.0.1", 5432):
        missing.append(
            "PostgreSQL on 5432 (pg_ctlcluster --skip-systemctl-redirect <ver> main start)"
        )
    if missing:
        pytest.fail("integration tests need: " + "; ".join(missing) + " — or run `make setup`")


RUN_ID = uuid.uuid4().hex[:8]


def db_url(name: str, pg_url: str = PG_URL, query: str = "") -> str:
    """``pg_url`` (no path; may list several hosts) + ``/name`` (+ ``?query``)."""
    return f"{pg_url}/{name}" + (f"?{query}" if query else "")


async def _connect_new(url: str) -> asyncpg.Connection:
    """Connect to a database just created. With several hosts the driver may ask a standby
    first, which replays the CREATE DATABASE a moment after the primary committed it (a
    synchronous standby has the WAL, not yet applied): wait for it rather than fail."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            return await asyncpg.connect(url)
        except asyncpg.InvalidCatalogNameError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def create_template(pg_url: str = PG_URL, query: str = "") -> str:
    name = f"lt_test_{RUN_ID}_tmpl"
    conn = await asyncpg.connect(db_url("postgres", pg_url, query))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await _connect_new(db_url(name, pg_url, query))
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    return name


async def drop_database(name: str, pg_url: str = PG_URL, query: str = "") -> None:
    conn = await asyncpg.connect(db_url("postgres", pg_url, query))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Hub:
    """One throwaway hub."""

    settings: Settings
    pool: asyncpg.Pool
    admin: BrokerAdmin
    amqp_hosts: str = f"{AMQP_HOST}:5672"  # host:port[,host:port...] gateways connect to
    credentials: dict[str, GatewayCredentials] = field(default_factory=dict)
    _workers: list[tuple[asyncio.Task[None], asyncio.Event, RouterWorker]] = field(
        default_factory=list
    )

    async def add_gateway(
        self, gateway_id: str, *, serves: Sequence[str] = (), kind: str = "agency",
        name: str | None = None,
    ) -> GatewayCredentials:
        async with self.pool.acquire() as conn:
            creds = await provision_gateway(
                self.settings, conn, self.admin, gateway_id, name=name or gateway_id,
                kind=kind, serves=serves,
            )
        self.credentials[gateway_id] = creds
        return creds

    async def add_agencies(self, rows: Sequence[AgencyRow]) -> None:
        async with self.pool.acquire() as conn:
            await import_agencies(conn, rows)
            from router.directory.registry import sync_gateway_permissions

            for gid in self.credentials:
                await sync_gateway_permissions(conn, self.admin, self.settings.vhost, gid)

    def gateway_url(self, gateway_id: str) -> str:
        c = self.credentials[gateway_id]
        return (f"amqp://{quote(c.user, safe='')}:{quote(c.password, safe='')}@{self.amqp_hosts}/"
                f"{quote(self.settings.vhost, safe='')}")

    def client(self, gateway_id: str, **kw: object) -> GatewayClient:
        return GatewayClient(self.gateway_url(gateway_id), gateway_id=gateway_id, **kw)  # type: ignore[arg-type]

    async def start_router(self, n: int = 1) -> list[RouterWorker]:
        started = []
        for _ in range(n):
            stop = asyncio.Event()
            worker = RouterWorker(self.settings, self.pool)
            task = asyncio.create_task(worker.run(stop))
            self._workers.append((task, stop, worker))
            started.append(worker)
        from router import topology
        from tests.polling import eventually

        async def consuming() -> bool:
            for task, _, _ in self._workers:
                if task.done():  # a worker that died on start: its error, not a time-out
                    task.result()
            return await consumers(self, topology.ROUTER_IN) >= len(self._workers)

        await eventually(consuming, timeout=30, what="routers consuming lt.router.in")
        return started

    async def stop_routers(self) -> None:
        for _, stop, _ in self._workers:
            stop.set()
        for task, _, _ in self._workers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
        self._workers.clear()


_counter = 0


@contextlib.asynccontextmanager
async def throwaway_hub(
    template: str, *, amqp_hosts: str = f"{AMQP_HOST}:5672", pg_url: str = PG_URL,
    pg_query: str = "", mgmt_url: str = MGMT_URL, **overrides: object,
) -> AsyncIterator[Hub]:
    """A hub on the default services, or on others (the cluster tests: several AMQP hosts,
    a multi-host PostgreSQL URL with ``pg_query="target_session_attrs=read-write"``)."""
    global _counter
    _counter += 1
    name = f"lt_test_{RUN_ID}_{_counter}"
    conn = await asyncpg.connect(db_url("postgres", pg_url, pg_query))
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    settings = Settings(
        amqp_url=f"amqp://guest:guest@{amqp_hosts}/{quote(name, safe='')}",
        database_url=db_url(name, pg_url, pg_query),
        management_url=mgmt_url,
        amqp_user_prefix=f"{name}.",
        batch_wait_ms=5,
    ).with_(**overrides)
    admin = BrokerAdmin(mgmt_url)
    await (await _connect_new(settings.database_url)).close()
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=6)
    hub = Hub(settings=settings, pool=pool, admin=admin, amqp_hosts=amqp_hosts)
    try:
        await admin.put_vhost(name)
        await admin.set_permissions(name, "guest", configure=".*", write=".*", read=".*")
        await ensure_core(settings, admin)
        yield hub
    finally:
        await hub.stop_routers()
        await pool.close()
        await _retrying(lambda: _remove_broker_side(admin, name, hub))
        await admin.close()
        await _retrying(lambda: drop_database(name, pg_url, pg_query))


async def _remove_broker_side(admin: BrokerAdmin, vhost: str, hub: Hub) -> None:
    for creds in hub.credentials.values():
        await admin.delete_user(creds.user)
    await admin.delete_vhost(vhost)


async def _retrying(step: Callable[[], Awaitable[None]], seconds: float = 90.0) -> None:
    """Clean-up outlasts a service a chaos test has just restarted."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        try:
            await step()
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(1.0)
        else:
            return


async def queue_depth(hub: Hub, name: str) -> int:
    """Messages ready in a queue, read from the broker itself (the management API's
    numbers lag by seconds)."""
    from adapters.endpoints import connect_first

    connection = await connect_first(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(name, passive=True)
        return int(q.declaration_result.message_count or 0)


async def consumers(hub: Hub, name: str) -> int:
    """Consumers of a queue, read from the broker itself."""
    from adapters.endpoints import connect_first

    connection = await connect_first(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(name, passive=True)
        return int(q.declaration_result.consumer_count or 0)
