"""Every hub connection carries a name operators can read in RabbitMQ's management UI."""

from __future__ import annotations

import asyncio
import os
import time

from router import amqp
from tests.hub import Hub


async def test_hub_connections_are_named_for_their_role(hub: Hub) -> None:
    want = f"lienthong redeliver {os.getpid()}"
    async with await amqp.connect(hub.settings, "redeliver", robust=False):
        deadline = time.monotonic() + 30
        while True:  # the management API lists a new connection after a few seconds
            conns = await hub.admin.request("GET", "/connections") or []
            names = [c.get("client_properties", {}).get("connection_name")
                     for c in conns if c.get("vhost") == hub.settings.vhost]
            if want in names:
                break
            assert time.monotonic() < deadline, f"{want!r} not among {names}"
            await asyncio.sleep(0.5)
