"""The sandbox's gateways and faults, against the real broker and ledger (a throwaway hub
stands in for the sandbox's own vhost and database)."""

from __future__ import annotations

import asyncio

from adapters import GatewayClient, InboxMessage
from router import sandbox
from router.directory.registry import GatewayCredentials
from schemas import BusinessDocType, EdocPackage, StatusCode, StatusPackage
from tests.hub import Hub


async def _next(gw: GatewayClient) -> InboxMessage:
    async for msg in gw.inbox(timeout=20):
        await msg.ack()
        return msg
    raise AssertionError("nothing arrived in the developer's inbox")


async def test_the_sandbox_faults_reach_the_developers_gateway(hub: Hub) -> None:
    gateways = await sandbox.populate(hub.settings, hub.pool, hub.admin)
    for g in gateways.values():  # the hub fixture removes these users afterwards
        hub.credentials[g.gateway_id] = GatewayCredentials(g.gateway_id, g.user, g.password)
    assert set(gateways) == {"dev", "ministry", "province"}
    await hub.start_router()

    async def fault(kind: str) -> dict[str, object]:
        return await sandbox.fault(hub.settings, hub.pool, hub.admin, gateways, kind)

    async with GatewayClient(gateways["dev"].url, gateway_id="dev") as dev:
        sent = await fault("document")
        assert sent["receipt"]["type"] == "accepted", sent  # type: ignore[index]
        first = await _next(dev)
        assert isinstance(first.package, EdocPackage) and first.sender == "000.00.00.G22"

        duplicate = await fault("duplicate")
        assert duplicate["copy_id"] == first.copy_id and duplicate["state"] == "queued"
        await fault("recall")
        recall = await _next(dev)  # the duplicate came first and was dropped
        assert dev.duplicates_dropped == 1
        assert isinstance(recall.package, StatusPackage)
        assert recall.package.status_code is StatusCode.RECALL_REQUESTED

        await fault("revoke")
        revocation = await _next(dev)
        assert isinstance(revocation.package, EdocPackage)
        assert revocation.package.business.doc_type is BusinessDocType.REVOKE

        await fault("disconnect")
        await fault("document")  # the SDK reconnects by itself and gets it
        again = await asyncio.wait_for(_next(dev), 60)
        assert isinstance(again.package, EdocPackage) and again.copy_id != first.copy_id
