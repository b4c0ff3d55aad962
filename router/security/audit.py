"""The audit log: the ONE place rows are appended (:func:`append`, :func:`append_many`),
listed (:func:`list_entries`) and checked (:func:`verify_chain`).

Every change to the trust configuration (gateways, their ``serves``, agencies and aliases,
certificates, signature policies, ops tokens, settings that weaken security) is appended
with who did it (``cli:<os user>``, ``api:<token name>``, ``router``...), what, and
``{"before": ..., "after": ...}``; never a secret. Routing events (packages accepted and
rejected) are appended by the routing batch in the same transaction as the ledger rows.

Checking the chain: was any row edited, deleted or reordered?

Each row's hash is ``sha256(prev_hash || convert_to(id|at|actor|action|subject|details,
'UTF8'))`` (the ``audit_chain()`` trigger of the ledger). :func:`verify_chain` recomputes
every row's hash inside PostgreSQL in one ordered pass (a window over the primary key: no
row leaves the server unless it is wrong, so a million rows take a few seconds) and
classifies what it finds:

``edited``     the row's content no longer matches its own hash
``deleted``    ids are missing between two rows, or after the last one (audit_head)
``reordered``  the row's content matches its hash only under another row's id: rows
               were swapped or renumbered
``relinked``   the row is intact but does not follow the row before it (its predecessor
               was edited and re-hashed, or a row was inserted)
``head``       audit_head does not name the last row and its hash

An attacker who can rewrite the whole tail of the chain consistently is detected only
against a hash recorded elsewhere: ``lienthong audit head`` prints the head to notarise,
``verify_chain(conn, anchor=(id, hash))`` checks the chain still passes through it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from router.ledger import Conn

__all__ = [
    "AuditEntry",
    "AuditProblem",
    "AuditReport",
    "append",
    "append_many",
    "change_entry",
    "head",
    "last_details",
    "list_entries",
    "verify_chain",
]

async def head(conn: Conn) -> tuple[int, bytes]:
    """The chain's head: the last row's id and hash (``audit_head``)."""
    row = await conn.fetchrow("SELECT last_id, hash FROM audit_head")
    if row is None:
        return 0, b""
    return int(row["last_id"]), bytes(row["hash"])


async def last_details(conn: Conn, action: str, subject: str | None = None) -> Any:
    """The details of the newest row of ``action`` (and ``subject``), or None."""
    raw = await conn.fetchval(
        "SELECT details::text FROM audit_log WHERE action = $1 "
        "AND ($2::text IS NULL OR subject = $2) ORDER BY id DESC LIMIT 1",
        action, subject,
    )
    return json.loads(raw) if raw else None


# Keys whose values are never written to the log, whatever a caller passes.
_SECRET_KEYS = frozenset({"password", "secret", "token", "private_key", "key_pem"})


def _scrub(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: ("<redacted>" if k in _SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _details_json(details: Mapping[str, Any]) -> str:
    return json.dumps(_scrub(details), ensure_ascii=False, sort_keys=True, default=str)


async def append(
    conn: Conn, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None
) -> None:
    """Append one row (inside the caller's transaction, if any): the chain trigger gives
    it its id and hash. ``details`` is JSON; keys named like secrets are redacted."""
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject, details) VALUES ($1, $2, $3, $4::jsonb)",
        actor,
        action,
        subject,
        _details_json(details or {}),
    )


async def append_many(
    conn: Conn, rows: Sequence[tuple[str, str, str, Mapping[str, Any] | str]]
) -> None:
    """Append ``(actor, action, subject, details)`` rows in one statement (hot paths:
    a routing batch). ``details`` may be JSON text already."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO audit_log (actor, action, subject, details)
           SELECT a, b, c, d::jsonb
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(a, b, c, d)""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] if isinstance(r[3], str) else _details_json(r[3]) for r in rows],
    )


async def change_entry(conn: Conn, change_id: str) -> int | None:
    """The id of the row recording the change ``change_id`` (a gateway-side change,
    ``router.security.gateway_changes``), or None."""
    found = await conn.fetchval(
        "SELECT id FROM audit_log WHERE details ? 'change_id' AND details->>'change_id' = $1 "
        "ORDER BY id LIMIT 1", change_id)
    return None if found is None else int(found)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "actor": self.actor,
                "action": self.action, "subject": self.subject, "details": self.details,
                "hash": self.hash}


async def list_entries(
    conn: Conn,
    *,
    since: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """The newest rows first, filtered. ``action`` ending in ``.`` or ``*`` is a prefix
    (``gateway.`` = every gateway change); ``actor`` likewise (``cli:*``)."""

    def pattern(value: str | None) -> str | None:
        if value is None:
            return None
        esc = value.rstrip("*").replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return esc + "%" if value.endswith(("*", ".")) else esc

    rows = await conn.fetch(
        """SELECT id, at, actor, action, subject, details::text AS details, hash
           FROM audit_log
           WHERE ($1::timestamptz IS NULL OR at >= $1)
             AND ($2::text IS NULL OR actor LIKE $2)
             AND ($3::text IS NULL OR action LIKE $3)
             AND ($4::bigint IS NULL OR id < $4)
           ORDER BY id DESC LIMIT $5""",
        since, pattern(actor), pattern(action), before_id, max(1, min(limit, 10_000)),
    )
    return [
        AuditEntry(r["id"], r["at"], r["actor"], r["action"], r["subject"],
                   json.loads(r["details"]), bytes(r["hash"]).hex())
        for r in rows
    ]

# Each row's text is built with exactly the expression of audit_chain(); only wrong rows
# leave the server (with their text, to find where a moved row came from).
_SCAN = """
WITH texts AS (
    SELECT id, prev_hash, hash,
           convert_to('|' || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')
                      || '|' || actor || '|' || action || '|' || subject
                      || '|' || details::text, 'UTF8') AS rest
    FROM audit_log
), chain AS (
    SELECT id, prev_hash, hash, rest,
           sha256(prev_hash || convert_to(id::text, 'UTF8') || rest) = hash AS content_ok,
           lag(id) OVER w AS before_id,
           lag(hash) OVER w AS before_hash
    FROM texts
    WINDOW w AS (ORDER BY id)
)
SELECT id, prev_hash, hash, content_ok, before_id, before_hash,
       CASE WHEN content_ok THEN NULL ELSE rest END AS rest
FROM chain
WHERE NOT content_ok
   OR id <> COALESCE(before_id, 0) + 1
   OR prev_hash IS DISTINCT FROM COALESCE(before_hash, '\\x00'::bytea)
ORDER BY id
LIMIT $1
"""


@dataclass(frozen=True, slots=True)
class AuditProblem:
    kind: str  # edited, deleted, reordered, relinked, head, anchor
    id: int
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "detail": self.detail}


@dataclass(slots=True)
class AuditReport:
    rows: int = 0
    first_id: int | None = None
    last_id: int | None = None
    head_id: int | None = None
    head_hash: str | None = None
    problems: list[AuditProblem] = field(default_factory=list)
    truncated: bool = False  # more problems than were listed

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "head_id": self.head_id,
            "head_hash": self.head_hash,
            "problems": [p.as_dict() for p in self.problems],
            "truncated": self.truncated,
        }


async def verify_chain(
    conn: asyncpg.Connection,
    *,
    max_problems: int = 1000,
    anchor: tuple[int, bytes] | None = None,
) -> AuditReport:
    """Recompute the audit chain and report every broken place (up to ``max_problems``)."""
    report = AuditReport()
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        stats = await conn.fetchrow("SELECT count(*) AS n, min(id) AS lo, max(id) AS hi "
                                    "FROM audit_log")
        head = await conn.fetchrow("SELECT last_id, hash FROM audit_head")
        bad = await conn.fetch(_SCAN, max_problems + 1)
        suspects = [r for r in bad if not r["content_ok"]]
        texts = {r["id"]: bytes(r["rest"]) for r in suspects}
        last_hash = None
        if stats is not None and stats["hi"] is not None:
            last_hash = await conn.fetchval("SELECT hash FROM audit_log WHERE id = $1",
                                            stats["hi"])
        anchor_hash = None
        if anchor is not None:
            anchor_hash = await conn.fetchval("SELECT hash FROM audit_log WHERE id = $1",
                                              anchor[0])
    assert stats is not None
    report.rows = stats["n"]
    report.first_id, report.last_id = stats["lo"], stats["hi"]
    if head is not None:
        report.head_id = head["last_id"]
        report.head_hash = bytes(head["hash"]).hex()
    if len(bad) > max_problems:
        report.truncated = True
        bad = bad[:max_problems]

    # where a suspect row may have come from: other suspect rows and the holes in the chain
    candidates = [r["id"] for r in suspects]
    for r in bad:
        before = r["before_id"] or 0
        candidates.extend(range(before + 1, min(r["id"], before + 1 + max_problems)))
    if head is not None and report.last_id is not None and head["last_id"] > report.last_id:
        candidates.extend(range(report.last_id + 1,
                                min(head["last_id"], report.last_id + max_problems) + 1))
    for r in bad:
        rid = r["id"]
        before = r["before_id"] or 0
        if rid != before + 1:
            missing = f"{before + 1}" if rid == before + 2 else f"{before + 1}..{rid - 1}"
            report.problems.append(
                AuditProblem("deleted", before + 1, f"row(s) {missing} are missing")
            )
        if not r["content_ok"]:
            moved_from = _original_id(r, texts.get(rid, b""), candidates)
            if moved_from is not None:
                report.problems.append(
                    AuditProblem("reordered", rid, f"row {rid} holds the row that was "
                                 f"{moved_from}: rows were swapped or renumbered")
                )
            else:
                report.problems.append(
                    AuditProblem("edited", rid, f"row {rid}'s content does not match its hash")
                )
        elif rid == before + 1 and bytes(r["prev_hash"]) != bytes(r["before_hash"] or b"\x00"):
            report.problems.append(
                AuditProblem("relinked", rid, f"row {rid} does not follow row {before}: row "
                             f"{before} was edited and re-hashed, or a row was inserted")
            )
    if head is not None and report.last_id is not None:
        if head["last_id"] > report.last_id:
            report.problems.append(
                AuditProblem("deleted", report.last_id + 1,
                             f"rows {report.last_id + 1}..{head['last_id']} after the last "
                             "row are missing (audit_head)")
            )
        elif head["last_id"] != report.last_id or bytes(head["hash"]) != bytes(last_hash or b""):
            report.problems.append(
                AuditProblem("head", report.last_id, "audit_head does not match the last row")
            )
    elif head is not None and head["last_id"] > 0:
        report.problems.append(
            AuditProblem("deleted", 1, f"all {head['last_id']} rows are missing (audit_head)")
        )
    if anchor is not None and (anchor_hash is None or bytes(anchor_hash) != anchor[1]):
        report.problems.append(
            AuditProblem("anchor", anchor[0], "the chain no longer passes through the "
                         "anchored hash")
        )
    report.problems.sort(key=lambda p: p.id)
    return report


def _original_id(row: asyncpg.Record, rest: bytes, candidates: list[int]) -> int | None:
    """The id under which the row's content matches its own hash, if another one."""
    prev, want = bytes(row["prev_hash"]), bytes(row["hash"])
    for cid in candidates:
        if cid != row["id"] and hashlib.sha256(prev + str(cid).encode() + rest).digest() == want:
            return cid
    return None
