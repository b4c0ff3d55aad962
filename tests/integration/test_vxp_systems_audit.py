"""Issue #20: the VXP façade's systems live in its own database, yet every change to one —
added, secret rotated, mode changed, removed — is in the hub's audit log exactly once,
asked as the system's gateway, with who ran the command and the values before and after,
never a secret. When the hub does not record a change, the command fails (exit 69, a
bilingual message) and nothing changes. Real RabbitMQ + PostgreSQL, the CLI as an
operator runs it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result

from adapters.vxp.sealing import new_key
from router.cli import main as cli
from router.security.audit import verify_chain
from schemas.gateway_change import fingerprint
from tests.hub import PG_URL, RUN_ID, Hub, drop_database

VPCP = "000.00.00.G22"
SYSTEM = "vxp.saas.03"


@dataclass
class Operator:
    """A hub with gateway vpcp and a router; the façade's own database; the CLI."""

    hub: Hub
    facade_db: str
    env: dict[str, str]

    async def run(self, *args: str, hub_timeout: str = "15") -> Result:
        """``lienthong vxp systems --hub-timeout T ARGS``; ``audit ...`` as it is."""
        argv = (list(args) if args[0] == "audit"
                else ["vxp", "systems", "--hub-timeout", hub_timeout, *args])
        return await asyncio.to_thread(CliRunner().invoke, cli, argv, env=self.env)


@pytest.fixture
async def operator(hub: Hub) -> AsyncIterator[Operator]:
    name = f"lt_test_{RUN_ID}_vxpcli"
    await drop_database(name)
    await hub.add_gateway("vpcp", serves=[VPCP])
    await hub.start_router()
    facade_db = f"{PG_URL}/{name}"
    env = {**os.environ, "LIENTHONG_DATABASE_URL": hub.settings.database_url,
           "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
           "LIENTHONG_VXP_DATABASE_URL": facade_db, "LIENTHONG_VXP_SECRET_KEY": new_key(),
           "LIENTHONG_LOG_LEVEL": "WARNING"}
    yield Operator(hub, facade_db, env)
    await drop_database(name)


async def _systems(facade_db: str) -> list[str]:
    conn = await asyncpg.connect(facade_db)
    try:
        return [r["system_id"] for r in await conn.fetch(
            "SELECT system_id FROM vxp.systems ORDER BY 1")]
    finally:
        await conn.close()


async def _rows(hub: Hub) -> list[dict[str, Any]]:
    rows = await hub.pool.fetch(
        "SELECT actor, action, subject, details::text AS d FROM audit_log "
        "WHERE action LIKE 'vxp.%' ORDER BY id")
    return [{"actor": r["actor"], "action": r["action"], "subject": r["subject"],
             **json.loads(r["d"])} for r in rows]


async def test_every_system_change_is_audited_once_without_its_secret(
    operator: Operator,
) -> None:
    hub, facade_db, run = operator.hub, operator.facade_db, operator.run
    url = hub.gateway_url("vpcp")

    added = await run("add", SYSTEM, "--gateway", "vpcp", "--amqp-url", url, "--json")
    assert added.exit_code == 0, added.output
    first = json.loads(added.stdout)["secret"]
    taken = await run("add", SYSTEM, "--gateway", "vpcp")  # taken: nothing to record
    assert taken.exit_code == 1 and "exists" in taken.output
    rotated = await run("rotate-secret", SYSTEM, "--json")
    assert rotated.exit_code == 0, rotated.output
    second = json.loads(rotated.stdout)["secret"]
    strict = await run("mode", SYSTEM, "strict")
    assert strict.exit_code == 0, strict.output
    again = await run("mode", SYSTEM, "strict")  # no change: nothing to record
    assert again.exit_code == 0 and "unchanged" in again.output
    removed = await run("remove", SYSTEM)
    assert removed.exit_code == 0, removed.output
    assert await _systems(facade_db) == []

    rows = await _rows(hub)
    who = f"gateway:vpcp/cli:{getpass.getuser()}"
    assert [(r["action"], r["subject"], r["actor"]) for r in rows] == [
        ("vxp.system.added", SYSTEM, who),
        ("vxp.system.secret_rotated", SYSTEM, who),
        ("vxp.system.mode_changed", SYSTEM, who),
        ("vxp.system.removed", SYSTEM, who),
    ]
    add, rotate, mode, remove = rows
    assert add["before"] is None
    assert add["after"]["gateway"] == "vpcp" and add["after"]["strict"] is False
    assert add["after"]["secret_fingerprint"] == fingerprint(first)
    assert add["after"]["amqp_url"].startswith("amqp://") and "@" in add["after"]["amqp_url"]
    assert (rotate["before"]["secret_fingerprint"], rotate["after"]["secret_fingerprint"]) == (
        fingerprint(first), fingerprint(second))
    assert (mode["before"]["strict"], mode["after"]["strict"]) == (False, True)
    assert remove["before"]["secret_fingerprint"] == fingerprint(second)
    assert remove["after"] is None
    assert len({r["change_id"] for r in rows}) == 4
    # never a secret, nor the gateway's AMQP password
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    for secret in (first, second, hub.credentials["vpcp"].password):
        assert secret not in text
    # the operator finds them, and the chain covers them
    listed = await run("audit", "list", "--action", "vxp.", "--json")
    assert listed.exit_code == 0, listed.output
    assert len([ln for ln in listed.stdout.splitlines() if ln.strip()]) == 4
    async with hub.pool.acquire() as conn:
        assert (await verify_chain(conn)).ok


async def test_without_the_hub_a_system_change_fails_and_changes_nothing(
    operator: Operator,
) -> None:
    hub, facade_db = operator.hub, operator.facade_db
    url = hub.gateway_url("vpcp")

    async def run(*args: str, hub_timeout: str = "2") -> Result:
        return await operator.run(*args, hub_timeout=hub_timeout)

    assert (await run("add", SYSTEM, "--gateway", "vpcp", "--amqp-url", url)).exit_code == 0
    before = await hub.pool.fetchval("SELECT count(*) FROM audit_log")

    # no broker where the URL says: not even the gateway's URL is kept
    dead = url.replace(":5672/", ":1/")
    result = await run("add", "other", "--gateway", "vpcp", "--amqp-url", dead, "--no-check")
    assert result.exit_code == 69, result.output
    assert "GATEWAY_CHANGE_NOT_AUDITED" in result.output
    assert "nhật ký kiểm toán" in result.output and "audit log" in result.output
    assert await _systems(facade_db) == [SYSTEM]

    # the broker is there, no router answers: the secret is not rotated, not removed
    await hub.stop_routers()
    rotated = await run("rotate-secret", SYSTEM)
    assert rotated.exit_code == 69, rotated.output
    assert "GATEWAY_CHANGE_NOT_AUDITED" in rotated.output
    removed = await run("remove", SYSTEM)
    assert removed.exit_code == 69, removed.output
    assert await _systems(facade_db) == [SYSTEM]
    assert await hub.pool.fetchval("SELECT count(*) FROM audit_log") == before

    # a router again: the requests the CLI gave up on expired unanswered (never recorded
    # later for changes that did not happen); a new change is recorded, alone
    await hub.start_router()
    mode = await run("mode", SYSTEM, "strict", hub_timeout="15")
    assert mode.exit_code == 0, mode.output
    actions = [r["action"] for r in await _rows(hub)]
    assert actions == ["vxp.system.added", "vxp.system.mode_changed"]


async def test_system_commands_leave_the_gateways_receipts_to_the_facade(
    operator: Operator,
) -> None:
    """Logging in as the gateway (the --amqp-url check, the audit request) must not take
    receipts from its queue: they are the façade's (getSentEdocList), and a receipt taken
    and acknowledged by a command is gone for it."""
    import aio_pika

    from router.topology import RECEIPTS, receipts_queue
    from tests.hub import queue_depth
    from tests.polling import eventually

    hub = operator.hub
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:  # three receipts wait while the façade is stopped
        channel = await connection.channel()
        exchange = await channel.get_exchange(RECEIPTS)
        for n in range(3):
            await exchange.publish(aio_pika.Message(
                json.dumps({"receipt_id": f"r{n}", "type": "delivery"}).encode(),
                type="receipt.delivery"), routing_key="vpcp")
    queue = receipts_queue("vpcp")

    async def three() -> bool:
        return await queue_depth(hub, queue) == 3

    await eventually(three, timeout=10, what="three receipts waiting")
    added = await operator.run("add", SYSTEM, "--gateway", "vpcp", "--amqp-url",
                               hub.gateway_url("vpcp"))
    assert added.exit_code == 0, added.output
    rotated = await operator.run("rotate-secret", SYSTEM)
    assert rotated.exit_code == 0, rotated.output
    assert await queue_depth(hub, queue) == 3
