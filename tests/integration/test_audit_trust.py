"""Issue #20: every change to who may send as whom is in the audit log exactly once, with
who, what, before and after (never a secret); the chain's head is signed and sent to every
gateway, and a rewrite of the history is caught against a gateway's copy.

Tampering is done as a database superuser would: triggers disabled, rows rewritten in SQL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from router.cli.security import audit as audit_cli
from router.directory.credentials import rotate_credentials
from router.directory.registry import (
    AgencyRow,
    add_gateway,
    import_agencies,
    remove_gateway,
    set_gateway_status,
)
from router.ops.auth import TokenStore
from router.ops.server import create_app
from router.outbox.signing import ReceiptSigner, generate_hub_key
from router.routing.intake import RouterWorker
from router.security import certificates
from router.security.anchors import publish_anchor
from router.security.audit import verify_chain
from router.topology import RECEIPTS, receipts_queue
from schemas.audit_anchor import AuditAnchor, check_extends, verify_anchor
from tests.hub import Hub
from tests.pki import identity

H41, VINH, G22 = "000.00.00.H41", "000.00.01.H41", "000.00.00.G22"


async def _audit(hub: Hub, like: str) -> list[dict[str, Any]]:
    rows = await hub.pool.fetch(
        "SELECT actor, action, subject, details::text AS d FROM audit_log "
        "WHERE action LIKE $1 ORDER BY id", like)
    return [{"actor": r["actor"], "action": r["action"], "subject": r["subject"],
             **json.loads(r["d"])} for r in rows]


async def _all_details(hub: Hub) -> str:
    return "\n".join(r["d"] for r in await hub.pool.fetch(
        "SELECT actor || action || subject || details::text AS d FROM audit_log"))


async def test_every_gateway_change_is_audited_once_with_before_and_after(hub: Hub) -> None:
    await hub.add_agencies([AgencyRow(H41, "UBND tỉnh Nghệ An"),
                            AgencyRow(VINH, "UBND TP Vinh", parent=H41)])
    first = await hub.add_gateway("nghean", serves=[H41], name="LGSP Nghệ An")
    s = hub.settings
    async with hub.pool.acquire() as conn:
        # a wildcard quietly widening what the gateway may speak for
        again = await add_gateway(conn, hub.admin, s.vhost, "nghean", name="LGSP Nghệ An",
                                  serves=["#.H41"], user_prefix=s.amqp_user_prefix,
                                  actor="cli:mallory")
        await set_gateway_status(conn, hub.admin, s.vhost, "nghean", "suspended",
                                 actor="cli:alice")
        await set_gateway_status(conn, hub.admin, s.vhost, "nghean", "active",
                                 actor="cli:alice")
        rotated = await rotate_credentials(conn, hub.admin, s.vhost, "nghean", actor="api:bob")
        freed = await remove_gateway(conn, hub.admin, s.vhost, "nghean", actor="cli:alice")
    assert freed == 2
    assert await hub.admin.get_user(first.user) is None  # removed: it cannot log in

    rows = await _audit(hub, "gateway.%")
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("gateway.added", "operator"),
        ("gateway.updated", "cli:mallory"),
        ("gateway.suspended", "cli:alice"),
        ("gateway.resumed", "cli:alice"),
        ("gateway.credentials_rotated", "api:bob"),
        ("gateway.removed", "cli:alice"),
    ]
    assert {r["subject"] for r in rows} == {"nghean"}
    added, updated, suspended, resumed, _, removed = rows
    assert added["before"] is None and added["after"]["serves"] == [H41]
    assert updated["before"]["serves"] == [H41] and updated["after"]["serves"] == ["#.H41"]
    assert updated["agencies_assigned"] == 1  # Vinh came along with the wildcard
    assert updated["agencies_assigned_sample"] == [VINH]
    assert (suspended["before"], suspended["after"]) == ({"status": "active"},
                                                         {"status": "suspended"})
    assert (resumed["before"], resumed["after"]) == ({"status": "suspended"},
                                                     {"status": "active"})
    assert removed["before"]["serves"] == ["#.H41"] and removed["after"]["status"] == "removed"
    assert removed["agencies_unassigned"] == 2
    text = await _all_details(hub)
    for secret in (first.password, again.password, rotated.password):
        assert secret not in text
    async with hub.pool.acquire() as conn:
        assert (await verify_chain(conn)).ok


async def test_an_agency_import_records_a_summary_and_a_digest(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[G22])
    await hub.add_gateway("nghean", serves=["#.H41"])
    rows = [AgencyRow(G22, "Văn phòng Chính phủ", aliases=("G22",)),
            AgencyRow(H41, "UBND tỉnh Nghệ An", aliases=("H41",))]
    async with hub.pool.acquire() as conn:
        await import_agencies(conn, rows, actor="cli:alice")
        await import_agencies(conn, rows, actor="cli:alice")  # nothing changes
        # the alias G22 quietly moved to Nghệ An: that changes who a package to G22 reaches
        await import_agencies(conn, [AgencyRow(H41, "UBND tỉnh Nghệ An (mới)",
                                               aliases=("H41", "G22"))], actor="cli:mallory")
    imports = await _audit(hub, "agencies.%")
    assert len(imports) == 3
    first, same, moved = imports
    assert (first["created"], first["changed"], first["unchanged"]) == (2, 2, 0)
    assert first["changes"][0]["before"] is None
    assert first["changes"][0]["after"] == {"name": "Văn phòng Chính phủ", "parent": None,
                                            "gateway": "vpcp"}
    assert (same["changed"], same["unchanged"]) == (0, 2)
    assert same["changes_sha256"] != first["changes_sha256"]
    assert moved["actor"] == "cli:mallory" and moved["changed"] == 1
    assert moved["aliases_moved"] == 1
    change = moved["changes"][0]
    assert change["before"]["name"] == "UBND tỉnh Nghệ An"
    assert change["after"]["name"] == "UBND tỉnh Nghệ An (mới)"
    assert change["aliases_moved_from"] == {"G22": G22}
    # the digest is over every change, one canonical JSON line each, in import order
    import hashlib

    digest = hashlib.sha256(b"".join(
        json.dumps(c, ensure_ascii=False, sort_keys=True).encode() + b"\n"
        for c in first["changes"])).hexdigest()
    assert first["changes_sha256"] == digest


async def test_certificates_and_policies_are_audited_with_before_and_after(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[G22])
    who = identity("vpcp-2026", "p256")
    async with hub.pool.acquire() as conn:
        rec = await certificates.add_certificate(conn, "vpcp", who.cert_pem, actor="cli:alice")
        await certificates.set_signature_policy(conn, "vpcp", "required", actor="cli:alice")
        await certificates.revoke_certificate(conn, rec.fingerprint, reason="key compromise",
                                              actor="cli:alice")
    rows = await _audit(hub, "certificate.%")
    policy = await _audit(hub, "gateway.signature_policy")
    assert [r["action"] for r in rows] == ["certificate.added", "certificate.revoked"]
    assert rows[0]["before"] is None and rows[0]["fingerprint"] == rec.fingerprint
    assert rows[1]["before"]["revoked_at"] is None
    assert rows[1]["after"]["revoked_reason"] == "key compromise"
    assert len(policy) == 1
    assert (policy[0]["before"], policy[0]["after"]) == (
        {"signature_policy": "verify-if-present"}, {"signature_policy": "required"})


async def test_the_ops_service_records_its_tokens_and_serves_the_log(hub: Hub) -> None:
    read, op = "read-token-0123456789abcdef", "operator-token-0123456789abcdef"
    tokens = TokenStore.parse(f"viewer:read:{read},alice:operator:{op}")
    await hub.add_gateway("vpcp", serves=[G22])
    app = create_app(hub.settings, tokens=tokens, pool=hub.pool, refresh_interval=None)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert (await client.get("/api/audit")).status == 401
        resp = await client.get("/api/audit", params={"action": "gateway."},
                                headers={"Authorization": f"Bearer {read}"})
        body = await resp.json()
        assert resp.status == 200, body
        assert [e["action"] for e in body["entries"]] == ["gateway.added"]
        resp = await client.get("/api/audit", params={"actor": "ops"},
                                headers={"Authorization": f"Bearer {read}"})
        loaded = [e for e in (await resp.json())["entries"]
                  if e["action"] == "ops.tokens_loaded"]
    finally:
        await client.close()
    assert len(loaded) == 1
    assert set(loaded[0]["details"]["after"]) == {"viewer", "alice"}
    assert loaded[0]["details"]["after"]["alice"]["role"] == "operator"
    text = await _all_details(hub)
    assert read not in text and op not in text
    weakened = await _audit(hub, "process.weakened")
    assert [r["subject"] for r in weakened] == ["ops"]
    assert weakened[0]["after"] == ["amqp_tls_off"]


# -- anchors ----------------------------------------------------------------------------------


@pytest.fixture
def signer(tmp_path: Path) -> ReceiptSigner:
    return generate_hub_key(tmp_path / "hub.key")


async def _take(hub: Hub, gateway_id: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(hub.settings.amqp_url)
    out = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(receipts_queue(gateway_id))
        while (msg := await queue.get(no_ack=True, fail=False)) is not None:
            out.append(msg)
    return out


async def _publish(hub: Hub, signer: ReceiptSigner, **kw: Any) -> AuditAnchor | None:
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(RECEIPTS)
        return await publish_anchor(hub.pool, exchange, signer, **kw)


REHASH = """
DO $$ DECLARE r record; prev bytea; BEGIN
  SELECT hash INTO prev FROM audit_log WHERE id = {start} - 1;
  FOR r IN SELECT id FROM audit_log WHERE id >= {start} ORDER BY id LOOP
    UPDATE audit_log SET prev_hash = prev,
        subject = CASE WHEN id = {start} THEN 'forged' ELSE subject END,
        hash = sha256(prev || convert_to(id::text || '|'
            || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '|' || actor
            || '|' || action || '|' || CASE WHEN id = {start} THEN 'forged' ELSE subject END
            || '|' || details::text, 'UTF8'))
      WHERE id = r.id RETURNING hash INTO prev;
  END LOOP;
  UPDATE audit_head SET hash = prev;
END $$;
"""


async def _tamper(conn: asyncpg.Connection, *statements: str) -> None:
    await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_no_update")
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_no_update")


async def test_anchors_reach_every_gateway_and_catch_a_rewritten_history(
    hub: Hub, signer: ReceiptSigner, tmp_path: Path
) -> None:
    await hub.add_gateway("vpcp", serves=[G22])
    await hub.add_gateway("nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow(G22, "Văn phòng Chính phủ"), AgencyRow(H41, "Nghệ An")])
    a1 = await _publish(hub, signer, interval=300)
    assert a1 is not None and a1.number == 1 and a1.previous is None
    assert await _publish(hub, signer, interval=300) is None  # too soon, head unchanged
    head = await hub.pool.fetchrow("SELECT last_id, hash FROM audit_head")
    assert a1.head == (head["last_id"], bytes(head["hash"]))
    pub = signer.public_key_pem()
    for gid in ("vpcp", "nghean"):
        got = await _take(hub, gid)
        assert [m.type for m in got] == ["audit.anchor"]
        assert verify_anchor(got[0].body, pub) == a1
        copy = tmp_path / "anchor-1.json"
        copy.write_bytes(got[0].body)
    async with hub.pool.acquire() as conn:
        await certificates.set_signature_policy(conn, "vpcp", "required")
    a2 = await _publish(hub, signer, interval=0)
    assert a2 is not None and a2.number == 2
    check_extends(a1, a2)  # what a gateway checks on its own
    copy2 = tmp_path / "anchor-2.json"  # the gateway's own copies
    copy2.write_bytes((await _take(hub, "vpcp"))[0].body)
    pubfile = tmp_path / "hub.pub"
    pubfile.write_bytes(pub)
    env = {"LIENTHONG_DATABASE_URL": hub.settings.database_url}
    runner = CliRunner()

    async def verify(*anchor_files: Path) -> Any:
        args = ["verify", "--json", "--public-key", str(pubfile)]
        for f in anchor_files:
            args += ["--anchor", str(f)]
        return await asyncio.to_thread(runner.invoke, audit_cli, args, env=env)

    ok = await verify(copy, copy2)
    assert ok.exit_code == 0, ok.output
    # a superuser rewrites the history from row 2 on, consistently, head included
    async with hub.pool.acquire() as conn:
        await _tamper(conn, REHASH.format(start=2))
        assert (await verify_chain(conn)).ok  # without an anchor, nothing shows
    bad = await verify(copy, copy2)
    assert bad.exit_code == 65
    assert [p["kind"] for p in json.loads(bad.output)["problems"]] == ["anchor", "anchor"]
    # an anchor file that was altered is refused outright
    forged = json.loads(a1.to_json())
    forged["hash"] = bytes(head["hash"]).hex()[::-1]
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    refused = await verify(tmp_path / "forged.json")
    assert refused.exit_code == 65 and "does not verify" in refused.output


async def test_an_anchor_catches_an_edited_row_and_a_cut_tail(
    hub: Hub, signer: ReceiptSigner
) -> None:
    await hub.add_gateway("vpcp", serves=[G22])
    for i in range(5):
        await hub.pool.execute("INSERT INTO audit_log (actor, action, subject) "
                               "VALUES ('t', 'test.row', $1)", str(i))
    anchor = await _publish(hub, signer, interval=0)
    assert anchor is not None
    async with hub.pool.acquire() as conn:
        await _tamper(conn, "UPDATE audit_log SET subject = 'x' WHERE id = 3")
        kinds = [(p.kind, p.id) for p in (await verify_chain(conn, anchor=anchor.head)).problems]
        assert kinds == [("edited", 3)]
        await _tamper(conn, "UPDATE audit_log SET subject = '1' WHERE id = 3")  # undo
        assert (await verify_chain(conn, anchor=anchor.head)).ok
        # cut the tail, anchored row included, and set the head back consistently
        keep = anchor.seq - 2
        await _tamper(conn, f"DELETE FROM audit_log WHERE id > {keep}",  # noqa: S608
                      f"UPDATE audit_head SET last_id = {keep}, hash = "  # noqa: S608
                      f"(SELECT hash FROM audit_log WHERE id = {keep})")
        assert (await verify_chain(conn)).ok
        report = await verify_chain(conn, anchor=anchor.head)
    assert [(p.kind, p.id) for p in report.problems] == [("anchor", anchor.seq)]


async def test_routers_publish_one_anchor_per_interval_between_them(
    hub: Hub, signer: ReceiptSigner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await hub.add_gateway("vpcp", serves=[G22])
    settings = hub.settings.with_(audit_anchor_seconds=1.0, hub_key=str(tmp_path / "hub.key"))
    stop = asyncio.Event()
    workers = [RouterWorker(settings, hub.pool) for _ in range(2)]
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        deadline = time.monotonic() + 30
        numbers: list[int] = []
        while len(numbers) < 3:
            assert time.monotonic() < deadline, f"anchors so far: {numbers}"
            await hub.pool.execute("INSERT INTO audit_log (actor, action, subject) "
                                   "VALUES ('t', 'test.row', 'x')")
            await asyncio.sleep(0.3)
            numbers = [r["number"] for r in await hub.pool.fetch(
                "SELECT number FROM audit_anchors ORDER BY number")]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)
    bodies = [AuditAnchor.from_json(r["body"]) for r in await hub.pool.fetch(
        "SELECT body::text AS body FROM audit_anchors ORDER BY number")]
    for before, after in itertools.pairwise(bodies):
        check_extends(before, after)
    got = [verify_anchor(m.body, signer.public_key_pem()) for m in await _take(hub, "vpcp")]
    assert [a.number for a in got] == [a.number for a in bodies]  # each once, in order
    starts = await _audit(hub, "process.weakened")
    assert [r["subject"] for r in starts] == ["router", "router"]
    assert all(r["after"] == ["amqp_tls_off"] for r in starts)  # receipts are signed
