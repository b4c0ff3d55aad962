"""The audit log's hash chain catches every kind of tampering, and says where.

The tampering is done the way a database superuser would: the append-only trigger is
disabled and rows are edited, deleted or renumbered directly in SQL.
"""

from __future__ import annotations

import json
import time

import asyncpg
import pytest
from click.testing import CliRunner

from router.cli.security import audit as audit_cli
from router.security.audit import verify_chain
from tests.hub import Hub

DETAILS = [
    {"sha256": "ab" * 32, "sender": "000.00.00.G22", "recipients": ["000.00.00.H41"]},
    {"reason": "SENDER_NOT_SERVED", "detail": "Cơ quan gửi: Văn phòng Chính phủ \"VPCP\""},
    {"z": 1, "a": [1, 2.50, {"nested": None}], "b": True, "emoji": "📄"},
]


async def _fill(conn: asyncpg.Connection, n: int) -> None:
    # in statements of 1,000 rows: the chain trigger updates audit_head once per row, and
    # within one transaction that row's versions pile up (quadratic in the statement size)
    for start in range(1, n + 1, 1000):
        await conn.execute(
            """INSERT INTO audit_log (actor, action, subject, details)
               SELECT 'gateway:vpcp', 'edoc.accepted', 'doc-' || i,
                      ($1::jsonb || jsonb_build_object('i', i))
               FROM generate_series($2::int, $3::int) AS i""",
            json.dumps(DETAILS[0]),
            start,
            min(n, start + 999),
        )
    for d in DETAILS[1:]:
        await conn.execute(
            "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4)",
            "operator", "package.rejected", "x", json.dumps(d, ensure_ascii=False),
        )


async def _tamper(conn: asyncpg.Connection, *statements: str) -> None:
    await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_no_update")
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_no_update")


def _kinds(report: object) -> list[tuple[str, int]]:
    return [(p.kind, p.id) for p in report.problems]  # type: ignore[attr-defined]


async def test_an_intact_chain_verifies(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 40)
        report = await verify_chain(conn)
    assert report.ok, report.problems
    assert report.rows == 42
    assert report.last_id == report.head_id == 42


async def test_an_edited_row_is_named(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 20)
        await _tamper(conn, """UPDATE audit_log SET details = details || '{"sender": "G12"}'
                               WHERE id = 7""")
        report = await verify_chain(conn)
    assert _kinds(report) == [("edited", 7)]


@pytest.mark.parametrize("column", ["actor", "action", "subject", "at"])
async def test_every_column_is_covered(hub: Hub, column: str) -> None:
    change = {"actor": "actor = 'operator'", "action": "action = 'edoc.rejected'",
              "subject": "subject = 'doc-999'", "at": "at = at + interval '1 microsecond'"}
    async with hub.pool.acquire() as conn:
        await _fill(conn, 5)
        await _tamper(conn, f"UPDATE audit_log SET {change[column]} WHERE id = 3")  # noqa: S608
        report = await verify_chain(conn)
    assert _kinds(report) == [("edited", 3)]


async def test_a_deleted_row_is_named(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 20)
        await _tamper(conn, "DELETE FROM audit_log WHERE id IN (9, 10)")
        report = await verify_chain(conn)
    assert _kinds(report) == [("deleted", 9)]
    assert "9..10" in report.problems[0].detail


async def test_deleting_the_last_rows_is_caught_by_the_head(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 20)
        await _tamper(conn, "DELETE FROM audit_log WHERE id > 19")
        report = await verify_chain(conn)
    assert _kinds(report) == [("deleted", 20)]


async def test_reordered_rows_are_named_with_where_they_came_from(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 20)
        await _tamper(
            conn,
            "UPDATE audit_log SET id = -5 WHERE id = 5",
            "UPDATE audit_log SET id = 5 WHERE id = 6",
            "UPDATE audit_log SET id = 6 WHERE id = -5",
        )
        report = await verify_chain(conn)
    assert ("reordered", 5) in _kinds(report)
    assert ("reordered", 6) in _kinds(report)
    assert {k for k, _ in _kinds(report)} <= {"reordered", "relinked"}
    assert "was 6" in next(p.detail for p in report.problems if p.id == 5)


async def test_an_edited_and_rehashed_row_breaks_the_next_link(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 20)
        await _tamper(conn, """
            UPDATE audit_log SET subject = 'forged',
                hash = sha256(prev_hash || convert_to(id::text || '|'
                    || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
                    || '|' || actor || '|' || action || '|' || 'forged' || '|'
                    || details::text, 'UTF8'))
            WHERE id = 12""")
        report = await verify_chain(conn)
    assert _kinds(report) == [("relinked", 13)]


async def test_an_anchor_catches_a_rewritten_tail(hub: Hub) -> None:
    async with hub.pool.acquire() as conn:
        await _fill(conn, 10)
        head = await conn.fetchrow("SELECT last_id, hash FROM audit_head")
        assert head is not None
        anchor = (head["last_id"], bytes(head["hash"]))
        assert (await verify_chain(conn, anchor=anchor)).ok
        # rewrite the whole chain consistently: only the anchor can tell
        await _tamper(conn, "UPDATE audit_log SET hash = sha256(hash) WHERE id = 12")
        report = await verify_chain(conn, anchor=anchor)
    assert ("anchor", 12) in _kinds(report)


async def test_audit_verify_command(hub: Hub) -> None:
    env = {"LIENTHONG_DATABASE_URL": hub.settings.database_url}
    runner = CliRunner()
    async with hub.pool.acquire() as conn:
        await _fill(conn, 10)
    # the command runs its own event loop: run it in a thread
    import asyncio

    ok = await asyncio.to_thread(runner.invoke, audit_cli, ["verify"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    async with hub.pool.acquire() as conn:
        await _tamper(conn, "UPDATE audit_log SET actor = 'x' WHERE id = 4",
                      "DELETE FROM audit_log WHERE id = 8")
    bad = await asyncio.to_thread(runner.invoke, audit_cli, ["verify", "--json"], env=env)
    assert bad.exit_code == 65
    out = json.loads(bad.output)
    assert [(p["kind"], p["id"]) for p in out["problems"]] == [("edited", 4), ("deleted", 8)]


async def test_verification_streams_large_logs_quickly(hub: Hub) -> None:
    n = 20_000
    async with hub.pool.acquire() as conn:
        await _fill(conn, n)
        t0 = time.perf_counter()
        report = await verify_chain(conn)
        elapsed = time.perf_counter() - t0
    assert report.ok
    assert report.rows == n + 2
    # ~1 µs of hashing per row in PostgreSQL; a generous bound for a shared machine
    assert elapsed < 10, f"{elapsed:.1f} s for {n} rows"
