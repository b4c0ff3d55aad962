"""``lienthong topology apply``: declare the vhost, exchanges and queues."""

from __future__ import annotations

import click

from router import quorum
from router import topology as topo
from router.broker_admin import BrokerAdmin
from router.cli._services import connect_db, run_async
from router.settings import Settings


@click.group()
def topology() -> None:
    """The AMQP topology."""


@topology.command("apply")
def apply_cmd() -> None:
    """Declare the vhost, the hub's exchanges and queues, and every gateway's queues.
    Idempotent."""

    async def go(settings: Settings) -> None:
        async with BrokerAdmin(settings.management_url) as admin:
            await admin.put_vhost(settings.vhost)
            user = settings.amqp_url.split("//", 1)[1].split(":", 1)[0]
            await admin.set_permissions(settings.vhost, user, configure=".*", write=".*",
                                        read=".*")
            await topo.apply_policies(admin, settings.vhost,
                                      delivery_limit=settings.delivery_limit)
        conn = await connect_db(settings)
        try:
            ids = [r["id"] for r in await conn.fetch("SELECT id FROM gateways ORDER BY id")]
        finally:
            await conn.close()
        await topo.apply(settings.amqp_url, ids)
        click.echo(f"topology applied in vhost {settings.vhost!r}: core + {len(ids)} gateways; "
                   f"delivery limit of {topo.ROUTER_IN}: {settings.delivery_limit} "
                   f"(policy lt-router-in)")
        async with BrokerAdmin(settings.management_url) as admin:
            report = await quorum.check(admin, settings.vhost)
        for line in report.lines(settings.vhost):
            click.echo(f"cluster: {line}")

    run_async(go)
