"""The backup drill of deploy/README.md, end to end on the real services: documents flow,
some are answered with 01, the rest wait in the recipient's inbox; `lienthong backup`; the
vhost, the gateways' accounts and the database are destroyed; `lienthong restore`;
`lienthong redeliver --state queued`: every document reaches its recipient, none twice, and
the hub routes new documents with the restored accounts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
from click.testing import CliRunner, Result

from router.cli.backup import backup as backup_cli
from router.cli.backup import restore as restore_cli
from router.cli.recovery import redeliver as redeliver_cli
from router.directory.registry import AgencyRow
from router.security.audit import verify_chain
from schemas import Organization, StatusCode
from tests.factory import edoc
from tests.hub import Hub, drop_database, queue_depth
from tests.polling import eventually

SENT = 20
ANSWERED = 6  # taken by the recipient and answered with 01 before the backup
H41 = "000.00.00.H41"


def _env(hub: Hub) -> dict[str, str]:
    return {"LIENTHONG_AMQP_URL": hub.settings.amqp_url,
            "LIENTHONG_DATABASE_URL": hub.settings.database_url,
            "LIENTHONG_MANAGEMENT_URL": hub.settings.management_url,
            "LIENTHONG_AMQP_USER_PREFIX": hub.settings.amqp_user_prefix}


async def _cli(hub: Hub, command: object, args: list[str]) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, command, args, env=_env(hub))  # type: ignore[arg-type]


async def test_backup_destroy_restore_redeliver_loses_nothing(hub: Hub, tmp_path: Path) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow(H41, "UBND tỉnh Nghệ An")])
    await hub.start_router()
    accepted: set[str] = set()
    async with hub.client("vpcp") as vpcp:
        for _ in range(SENT):
            r = await vpcp.send(edoc("000.00.00.G22", [H41])[1])
            assert r is not None and r.type == "accepted"
            accepted.add(str(r.hub_id))
    # the province takes some documents and answers them with 01 (arrived)
    delivered: list[str] = []
    async with hub.client("lgsp-nghean") as na:
        async for msg in na.inbox(timeout=5):
            async with msg.process():
                await na.send_status(sender=Organization(H41, "UBND tỉnh Nghệ An"), about=msg,
                                     code=StatusCode("01"))
                delivered.append(msg.hub_id)
            if len(delivered) == ANSWERED:
                break

    async def answered() -> bool:
        n = await hub.pool.fetchval("SELECT count(*) FROM deliveries WHERE state <> 'queued'")
        return bool(n == ANSWERED)

    await eventually(answered, timeout=30, what="the 01 statuses recorded")
    assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == SENT - ANSWERED
    await hub.stop_routers()

    # 1. backup
    target = tmp_path / "backup"
    done = await _cli(hub, backup_cli, [str(target), "--actor", "drill"])
    assert done.exit_code == 0, done.output
    manifest = json.loads((target / "manifest.json").read_text("utf-8"))
    # queued: the unanswered documents' copies, and the 01 statuses on their way to vpcp
    queued = SENT - ANSWERED + ANSWERED
    assert manifest["ledger"] == {"documents": SENT + ANSWERED, "deliveries": SENT + ANSWERED,
                                  "deliveries_queued": queued}
    assert manifest["broker"]["users"] == 2  # the two gateways (not the operator's account)
    # a second backup into the same directory is refused, the first one untouched
    again = await _cli(hub, backup_cli, [str(target)])
    assert again.exit_code == 65 and "BACKUP_TARGET_EXISTS" in again.output

    # 2. disaster: the vhost (with every queued copy), the gateways' accounts, the ledger
    await hub.pool.close()
    await hub.admin.delete_vhost(hub.settings.vhost)
    for creds in hub.credentials.values():
        await hub.admin.delete_user(creds.user)
    await drop_database(hub.settings.database_url.rsplit("/", 1)[1])
    assert not await hub.admin.vhost_exists(hub.settings.vhost)

    # 3. restore, then re-deliver what was queued
    done = await _cli(hub, restore_cli, [str(target), "--actor", "drill"])
    assert done.exit_code == 0, done.output
    assert f"{queued} deliveries were queued" in done.output
    hub.pool = await asyncpg.create_pool(hub.settings.database_url, min_size=1, max_size=6)
    try:
        assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == 0  # messages are gone
        assert await hub.pool.fetchval("SELECT count(*) FROM documents") == SENT + ANSWERED
        actions = [r["action"] for r in await hub.pool.fetch(
            "SELECT action FROM audit_log WHERE action LIKE 'backup.%' ORDER BY id")]
        assert actions == ["backup.taken", "backup.restored"]
        async with hub.pool.acquire() as conn:
            assert (await verify_chain(conn)).ok  # the restored audit chain is whole
        # restoring over the restored ledger is refused, nothing changed
        refused = await _cli(hub, restore_cli, [str(target)])
        assert refused.exit_code == 65 and "RESTORE_TARGET_NOT_EMPTY" in refused.output

        resent = await _cli(hub, redeliver_cli, ["--state", "queued", "--yes"])
        assert resent.exit_code == 0, resent.output
        assert await queue_depth(hub, "lt.gw.lgsp-nghean.inbox") == SENT - ANSWERED
        assert await queue_depth(hub, "lt.gw.vpcp.inbox") == ANSWERED  # the 01 statuses

        # the hub works with the restored accounts: one more document
        await hub.start_router()
        async with hub.client("vpcp") as vpcp:
            r = await vpcp.send(edoc("000.00.00.G22", [H41])[1])
            assert r is not None and r.type == "accepted"
            accepted.add(str(r.hub_id))
        async with hub.client("lgsp-nghean") as na:
            async for msg in na.inbox(timeout=3):
                async with msg.process():
                    delivered.append(msg.hub_id)
                if len(delivered) == SENT + 1:
                    break
    finally:
        await hub.stop_routers()
        await hub.pool.close()
    lost = accepted - set(delivered)
    twice = len(delivered) - len(set(delivered))
    print(f"backup drill: sent {SENT + 1}, accepted {len(accepted)}, delivered "
          f"{len(set(delivered))}, lost {len(lost)}, seen twice {twice}")
    assert (len(lost), twice) == (0, 0)
