"""Provisioning a gateway end to end: ledger row, AMQP user and permissions, queues."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aio_pika
import asyncpg

from router import amqp, topology
from router.broker_admin import BrokerAdmin
from router.directory import intake_queues
from router.directory import registry as directory
from router.directory.registry import GatewayCredentials
from router.ledger import Conn
from router.settings import Settings

__all__ = ["GatewaySpec", "ensure_core", "provision_gateway", "provision_gateways",
           "reconcile_intake"]


async def ensure_core(settings: Settings, admin: BrokerAdmin) -> None:
    """The vhost, its policies and the hub's own exchanges and queues (policies first,
    so that every queue has its delivery limit from the moment it exists)."""
    await admin.put_vhost(settings.vhost)
    await topology.apply_policies(admin, settings.vhost, delivery_limit=settings.delivery_limit,
                                  receipts_max_length=settings.receipts_max_length,
                                  receipts_max_bytes=settings.receipts_max_bytes)
    connection = await amqp.connect(settings, "provision-core", robust=False)
    async with connection:
        channel = await connection.channel()
        await topology.declare_core(channel)


async def provision_gateway(
    settings: Settings,
    conn: asyncpg.Connection,
    admin: BrokerAdmin,
    gateway_id: str,
    *,
    name: str,
    kind: str = "agency",
    serves: Sequence[str] = (),
    password: str | None = None,
    actor: str = "operator",
) -> GatewayCredentials:
    connection = await amqp.connect(settings, "provision-gateway", robust=False)
    async with connection:
        channel = await connection.channel()
        await topology.declare_gateway(channel, gateway_id)
        creds = await directory.add_gateway(
            conn,
            admin,
            settings.vhost,
            gateway_id,
            name=name,
            kind=kind,
            serves=serves,
            password=password,
            user_prefix=settings.amqp_user_prefix,
            actor=actor,
        )
        # its intake queue, if it gets one
        await intake_queues.reconcile(conn, channel, wait=True)
    return creds


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    id: str
    name: str
    kind: str = "agency"
    serves: tuple[str, ...] = ()


async def provision_gateways(
    settings: Settings,
    pool: asyncpg.Pool,
    admin: BrokerAdmin,
    specs: Sequence[GatewaySpec],
    *,
    concurrency: int = 8,
) -> dict[str, GatewayCredentials]:
    """Provision many gateways at once (queues on a few channels in parallel, management
    API calls in parallel): the demo's and the benchmark's ~100 gateways in seconds."""
    sem = asyncio.Semaphore(concurrency)
    connection = await amqp.connect(settings, "provision-gateways", robust=False)
    async with connection:
        # each channel serves one declaration at a time (a failed declaration closes it)
        free: asyncio.Queue[aio_pika.abc.AbstractChannel] = asyncio.Queue()
        for _ in range(concurrency):
            free.put_nowait(await connection.channel())

        async def queues(spec: GatewaySpec) -> None:
            channel = await free.get()
            try:
                await topology.declare_gateway(channel, spec.id)
            finally:
                free.put_nowait(channel)

        await asyncio.gather(*(queues(s) for s in specs))

    async def account(spec: GatewaySpec) -> GatewayCredentials:
        async with sem, pool.acquire() as conn:
            return await directory.add_gateway(
                conn, admin, settings.vhost, spec.id, name=spec.name, kind=spec.kind,
                serves=spec.serves, user_prefix=settings.amqp_user_prefix,
            )

    creds = await asyncio.gather(*(account(s) for s in specs))
    async with pool.acquire() as conn:
        await reconcile_intake(settings, conn)
    return {c.gateway_id: c for c in creds}


async def reconcile_intake(settings: Settings, conn: Conn) -> None:
    """The gateways' intake queues and bindings, in line with the directory now."""
    connection = await amqp.connect(settings, "intake-queues", robust=False)
    async with connection:
        await intake_queues.reconcile(conn, await connection.channel(), wait=True)
