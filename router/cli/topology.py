"""``lienthong topology apply``: declare the vhost, exchanges and queues."""

from __future__ import annotations

import click

from router import quorum
from router import topology as topo
from router.broker_admin import BrokerAdmin
from router.cli._services import connect_db, run_async
from router.directory import lookup
from router.directory.provision import reconcile_intake
from router.directory.registry import sync_gateway_permissions
from router.settings import Settings


@click.group()
def topology() -> None:
    """The AMQP topology."""


@topology.command("apply")
def apply_cmd() -> None:
    """Declare the vhost, the hub's exchanges and queues, and every gateway's queues, and
    bring every gateway's permissions up to date. Idempotent."""

    async def go(settings: Settings) -> None:
        async with BrokerAdmin(settings.management_url) as admin:
            await admin.put_vhost(settings.vhost)
            user = settings.amqp_url.split("//", 1)[1].split(":", 1)[0]
            await admin.set_permissions(settings.vhost, user, configure=".*", write=".*",
                                        read=".*")
            await topo.apply_policies(admin, settings.vhost,
                                      delivery_limit=settings.delivery_limit,
                                      receipts_max_length=settings.receipts_max_length,
                                      receipts_max_bytes=settings.receipts_max_bytes)
        conn = await connect_db(settings)
        try:
            ids = await lookup.gateway_ids(conn)
            # every gateway's permissions as this version grants them (topic regexes that
            # admit only agency-code characters, write to lt.replay)
            async with BrokerAdmin(settings.management_url) as admin:
                for gid in ids:
                    await sync_gateway_permissions(conn, admin, settings.vhost, gid)
            await topo.apply(settings, ids)
            # gateways' intake queues bound with the keys their permissions admit
            await reconcile_intake(settings, conn)
        finally:
            await conn.close()
        click.echo(f"topology applied in vhost {settings.vhost!r}: core + {len(ids)} gateways; "
                   f"delivery limit of {topo.ROUTER_IN}: {settings.delivery_limit} "
                   f"(policy lt-router-in); receipts queues keep at most "
                   f"{settings.receipts_max_length} receipts / {settings.receipts_max_bytes} "
                   f"bytes, oldest dropped (policy lt-gateway-receipts)")
        async with BrokerAdmin(settings.management_url) as admin:
            report = await quorum.check(admin, settings.vhost)
        for line in report.lines(settings.vhost):
            click.echo(f"cluster: {line}")

    run_async(go)
