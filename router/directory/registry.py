"""The directory: gateways, the agencies they serve, and every alias an agency is known by.

A gateway's ``serves`` list holds agency codes and AMQP-topic-style patterns over the
dot-separated code (``*`` one part, ``#`` any number of parts): ``#.H47`` is the whole
Quảng Nam tree. Agencies are assigned to gateways explicitly (the ``gateway`` column of an
import) or by the first gateway whose pattern matches.

Provisioning a gateway creates its AMQP user with least privilege: no configure rights,
write only to ``lt.submit`` with the routing key restricted (topic permission) to the codes
it serves, read only its own two queues.

Every change here is appended to the audit log (``router.security.audit``) in the same
transaction, with the ``actor`` given and the values before and after; never a password.
Every change to an agency as gateways see it (name, parent, aliases, gateway, removal) is
published, in the same transaction, to the directory feed (``router.directory.feed``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from router.broker_admin import BrokerAdmin
from router.directory import feed
from router.ledger import Conn
from router.security import audit
from router.topology import REPLAY, SUBMIT, inbox_queue, receipts_queue
from schemas.agency_code import AgencyCode, normalize
from schemas.reasons import LienthongError, OperationRefused, Reason

__all__ = [
    "AgencyRow",
    "GatewayCredentials",
    "ImportResult",
    "add_gateway",
    "gateway_topic_regex",
    "import_agencies",
    "pattern_matches",
    "read_agencies_csv",
    "register_agency",
    "remove_agency",
    "remove_gateway",
    "set_agency_management",
    "set_gateway_status",
    "sync_gateway_permissions",
]

_GATEWAY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


@dataclass(frozen=True, slots=True)
class AgencyRow:
    code: str
    name: str
    parent: str | None = None
    aliases: tuple[str, ...] = ()
    gateway: str | None = None


@dataclass(slots=True)
class ImportResult:
    created: int = 0
    updated: int = 0
    aliases: int = 0
    unassigned: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GatewayCredentials:
    gateway_id: str
    user: str
    password: str


def read_agencies_csv(path: Path) -> list[AgencyRow]:
    """Read ``code,name,parent,aliases,gateway`` (aliases separated by ``|``)."""
    rows: list[AgencyRow] = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"code", "name"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for n, rec in enumerate(reader, start=2):
            code = (rec.get("code") or "").strip()
            name = (rec.get("name") or "").strip()
            if not code or not name:
                raise ValueError(f"{path}:{n}: code and name are required")
            aliases = tuple(a.strip() for a in (rec.get("aliases") or "").split("|") if a.strip())
            rows.append(
                AgencyRow(
                    code=code,
                    name=name,
                    parent=(rec.get("parent") or "").strip() or None,
                    aliases=aliases,
                    gateway=(rec.get("gateway") or "").strip() or None,
                )
            )
    return rows


# One part of an agency code (between dots), in any case. RabbitMQ matches a topic
# permission against the routing key's raw bytes: a wildcard must admit only these
# characters, never ``.*`` or ``[^.]+`` (which admit any byte, e.g. ``b"\xff\xfe.H60"``).
CODE_PART = "[A-Za-z0-9_-]+"


@lru_cache(maxsize=4096)
def _pattern_regex(pattern: str) -> str:
    """Translate a topic pattern over agency codes into an anchored regex whose wildcards
    admit only agency-code characters."""
    parts = normalize(pattern).split(".")
    if parts == ["#"]:
        return rf"^{CODE_PART}(?:\.{CODE_PART})*$"
    out = ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "#":
            # "#" stands for zero or more parts together with their dots
            out = (out[:-2] + rf"(?:\.{CODE_PART})*" if last
                   else out + rf"(?:{CODE_PART}\.)*")
            continue
        out += (CODE_PART if part == "*" else re.escape(part)) + ("" if last else r"\.")
    return f"^{out}$"


def pattern_matches(pattern: str, code: str) -> bool:
    """``pattern_matches("#.H47", "001.00.00.H47")`` is True."""
    return re.match(_pattern_regex(pattern), normalize(code)) is not None


def gateway_topic_regex(serves: Iterable[str], codes: Iterable[str]) -> str:
    """The routing-key regex for a gateway's topic permission on ``lt.submit``."""
    patterns = [p for p in serves if "*" in p or "#" in p]
    alts = [_pattern_regex(p)[1:-1] for p in patterns]
    explicit = sorted({normalize(c) for c in (*serves, *codes) if "*" not in c and "#" not in c})
    alts += [re.escape(c) for c in explicit if not any(pattern_matches(p, c) for p in patterns)]
    if not alts:
        return "^$"  # serves nothing: may publish nothing
    return "^(?:" + "|".join(alts) + ")$"


async def _gateway_serves(conn: Conn) -> list[tuple[str, list[str]]]:
    rows = await conn.fetch("SELECT id, serves FROM gateways ORDER BY created_at, id")
    return [(r["id"], list(r["serves"])) for r in rows]


async def import_agencies(
    conn: Conn, rows: Sequence[AgencyRow], *, actor: str = "operator"
) -> ImportResult:
    """Upsert agencies and their aliases in one transaction. Re-importing is harmless.

    One ``agencies.imported`` audit row records the summary, a digest of what changed and
    the first changes with their values before and after.

    Raises LienthongError(GATEWAY_UNKNOWN) naming gateways that do not exist, and
    LienthongError(BAD_AGENCY_CODE) when one alias would name two agencies.
    """
    async with conn.transaction():
        result, changes, before = await _upsert_agencies(conn, rows)
        await audit.append(conn, actor, "agencies.imported", f"{len(rows)} rows",
                           _import_summary(result, changes))
        # the imported agencies and those an alias moved away from
        await feed.publish(conn, sorted({*(normalize(r.code) for r in rows),
                                         *before.alias_owner.values()}))
    return result


@dataclass(slots=True)
class _Before:
    agencies: dict[str, tuple[str, str | None, str | None]]  # code -> name, parent, gateway
    alias_owner: dict[str, str]  # alias -> code of the agency it named


async def _agencies_before(conn: Conn, rows: Sequence[AgencyRow], owner: dict[str, str]) -> _Before:
    codes = sorted({normalize(r.code) for r in rows})
    recs = await conn.fetch(
        "SELECT code, name, parent_code, gateway_id FROM agencies WHERE code = ANY($1::text[])",
        codes,
    )
    aliases = await conn.fetch(
        """SELECT al.alias, a.code FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
           WHERE al.alias = ANY($1::text[])""",
        sorted(owner),
    )
    return _Before(
        {r["code"]: (r["name"], r["parent_code"], r["gateway_id"]) for r in recs},
        {r["alias"]: r["code"] for r in aliases},
    )


async def _upsert_agencies(
    conn: Conn, rows: Sequence[AgencyRow]
) -> tuple[ImportResult, list[dict[str, object]], _Before]:
    """Upsert ``rows`` (in the caller's transaction): what changed, each agency's values
    before and after, and the directory before (for the feed)."""
    result = ImportResult()
    serves = await _gateway_serves(conn)
    known_gateways = {gid for gid, _ in serves}
    unknown = sorted({r.gateway for r in rows if r.gateway and r.gateway not in known_gateways})
    if unknown:
        raise LienthongError(Reason.GATEWAY_UNKNOWN, ", ".join(unknown))
    owner: dict[str, str] = {}
    for r in rows:
        code = normalize(r.code)
        for alias in (code, *(normalize(a) for a in r.aliases)):
            if owner.setdefault(alias, code) != code:
                raise LienthongError(
                    Reason.BAD_AGENCY_CODE,
                    f"alias {alias} names both {owner[alias]} and {code}",
                )
    before = await _agencies_before(conn, rows, owner)
    changes: list[dict[str, object]] = []
    for r in rows:
        code = normalize(r.code)
        gateway = r.gateway or next(
            (gid for gid, pats in serves if any(pattern_matches(p, code) for p in pats)),
            None,
        )
        if gateway is None:
            result.unassigned.append(code)
        rec = await conn.fetchrow(
            """INSERT INTO agencies (code, name, parent_code, gateway_id)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,
                   parent_code = EXCLUDED.parent_code,
                   gateway_id = COALESCE(EXCLUDED.gateway_id, agencies.gateway_id),
                   removed_at = NULL, updated_at = now()
               RETURNING id, (xmax = 0) AS inserted""",
            code,
            r.name,
            normalize(r.parent) if r.parent else None,
            gateway,
        )
        assert rec is not None
        if rec["inserted"]:
            result.created += 1
        else:
            result.updated += 1
        aliases = sorted({code, *(normalize(a) for a in r.aliases)})
        change = _agency_change(before, code, r, gateway, aliases)
        if change is not None:
            changes.append(change)
        await conn.execute(
            """INSERT INTO agency_aliases (alias, agency_id)
               SELECT unnest($1::text[]), $2
               ON CONFLICT (alias) DO UPDATE SET agency_id = EXCLUDED.agency_id""",
            aliases,
            rec["id"],
        )
        result.aliases += len(aliases)
    return result, changes, before


def _agency_change(
    before: _Before, code: str, r: AgencyRow, gateway: str | None, aliases: list[str]
) -> dict[str, object] | None:
    """What the import changes for one agency, or None when nothing."""
    old = before.agencies.get(code)
    parent = normalize(r.parent) if r.parent else None
    new = (r.name, parent, gateway if gateway is not None or old is None else old[2])
    moved = {a: before.alias_owner[a] for a in aliases
             if a in before.alias_owner and before.alias_owner[a] != code}
    added = [a for a in aliases if a not in before.alias_owner]
    if old == new and not moved and not added:
        return None
    keys = ("name", "parent", "gateway")
    change: dict[str, object] = {
        "code": code,
        "before": None if old is None else dict(zip(keys, old, strict=True)),
        "after": dict(zip(keys, new, strict=True)),
    }
    if added:
        change["aliases_added"] = added
    if moved:
        change["aliases_moved_from"] = moved
    return change


_SAMPLE = 20  # changes written out in full; the digest covers them all


def _import_summary(result: ImportResult, changes: list[dict[str, object]]) -> dict[str, object]:
    digest = hashlib.sha256()
    for c in changes:  # in import order, each change as canonical JSON on its own line
        digest.update(json.dumps(c, ensure_ascii=False, sort_keys=True).encode() + b"\n")
    return {
        "created": result.created,
        "updated": result.updated,
        "changed": len(changes),
        "unchanged": result.created + result.updated - len(changes),
        "aliases_moved": sum(1 for c in changes if "aliases_moved_from" in c),
        "unassigned": len(result.unassigned),
        "changes_sha256": digest.hexdigest(),
        "changes": changes[:_SAMPLE],
        "changes_truncated": len(changes) > _SAMPLE,
    }


async def _assigned_codes(conn: Conn, gateway_id: str) -> list[str]:
    rows = await conn.fetch(
        """SELECT al.alias FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
           WHERE a.gateway_id = $1""",
        gateway_id,
    )
    return [r["alias"] for r in rows]


async def sync_gateway_permissions(
    conn: Conn, admin: BrokerAdmin, vhost: str, gateway_id: str
) -> None:
    """Make the gateway's RabbitMQ permissions match the ledger (status, served codes)."""
    rec = await conn.fetchrow(
        "SELECT amqp_user, status, serves FROM gateways WHERE id = $1", gateway_id
    )
    if rec is None:
        raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
    user = rec["amqp_user"]
    if rec["status"] != "active":
        await admin.clear_permissions(vhost, user)
        await admin.clear_topic_permissions(vhost, user)
        await admin.close_user_connections(user)
        return
    queues = "|".join(re.escape(q) for q in (inbox_queue(gateway_id), receipts_queue(gateway_id)))
    await admin.set_permissions(
        vhost, user, configure="^$",
        # lt.replay: a gateway asks for the receipts it missed (router.recovery.replay)
        write=f"^(?:{re.escape(SUBMIT)}|{re.escape(REPLAY)})$", read=f"^(?:{queues})$"
    )
    codes = await _assigned_codes(conn, gateway_id)
    await admin.set_topic_permissions(
        vhost,
        user,
        exchange=SUBMIT,
        write=gateway_topic_regex(rec["serves"], codes),
        read=".*",
    )


async def add_gateway(
    conn: Conn,
    admin: BrokerAdmin,
    vhost: str,
    gateway_id: str,
    *,
    name: str,
    kind: str = "agency",
    serves: Sequence[str] = (),
    password: str | None = None,
    user_prefix: str = "",
    actor: str = "operator",
) -> GatewayCredentials:
    """Register a gateway, assign the agencies it serves, create its AMQP user.

    Adding an existing id updates it (name, kind, ``serves``) and sets a new password:
    audited as ``gateway.updated`` with the values before and after, a new one as
    ``gateway.added``.

    Queues are declared by the caller (``topology.declare_gateway``), which holds an AMQP
    connection with configure rights. Returns the credentials; they are shown once.
    """
    if not _GATEWAY_ID.match(gateway_id):
        raise ValueError(
            f"gateway id {gateway_id!r}: use lowercase letters, digits and '-' (max 63)"
        )
    serves_n = [normalize(s) for s in serves]
    user = f"{user_prefix}{gateway_id}"
    password = password or secrets.token_urlsafe(24)
    async with conn.transaction():
        old = await conn.fetchrow(
            "SELECT name, kind, serves, status, amqp_user FROM gateways WHERE id = $1 FOR UPDATE",
            gateway_id,
        )
        await conn.execute(
            """INSERT INTO gateways (id, name, kind, amqp_user, serves)
               VALUES ($1, $2, $3, $5, $4)
               ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                   serves = EXCLUDED.serves, amqp_user = EXCLUDED.amqp_user,
                   status = CASE WHEN gateways.status = 'removed' THEN 'active'
                                 ELSE gateways.status END,
                   updated_at = now()""",
            gateway_id,
            name,
            kind,
            serves_n,
            user,
        )
        taken: list[str] = []
        if serves_n:
            rows = await conn.fetch(
                "SELECT id, code, gateway_id FROM agencies WHERE removed_at IS NULL")
            matched = [r for r in rows if any(pattern_matches(p, r["code"]) for p in serves_n)]
            taken = sorted(r["code"] for r in matched if r["gateway_id"] != gateway_id)
            await conn.execute(
                "UPDATE agencies SET gateway_id = $1, updated_at = now() WHERE id = ANY($2)",
                gateway_id,
                [r["id"] for r in matched],
            )
            await feed.publish(conn, taken)
        after = {"name": name, "kind": kind, "serves": serves_n, "amqp_user": user,
                 "status": "active" if old is None or old["status"] == "removed"
                 else old["status"]}
        await audit.append(
            conn, actor, "gateway.added" if old is None else "gateway.updated", gateway_id,
            {"before": None if old is None else {k: (list(v) if k == "serves" else v)
                                                  for k, v in old.items()},
             "after": after,
             "agencies_assigned": len(taken),
             "agencies_assigned_sample": taken[:_SAMPLE],
             "credentials": "new password set (not recorded)"},
        )
    await admin.put_user(user, password)
    await sync_gateway_permissions(conn, admin, vhost, gateway_id)
    return GatewayCredentials(gateway_id=gateway_id, user=user, password=password)


async def set_gateway_status(
    conn: Conn, admin: BrokerAdmin, vhost: str, gateway_id: str, status: str,
    *, actor: str = "operator",
) -> None:
    """Suspend (``suspended``) or resume (``active``) a gateway in the ledger and RabbitMQ.
    Audited as ``gateway.suspended`` / ``gateway.resumed`` with the status before."""
    if status not in ("active", "suspended"):
        raise ValueError(f"status {status!r}: active or suspended")
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT status FROM gateways WHERE id = $1 FOR UPDATE", gateway_id
        )
        if old is None or old == "removed":
            raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
        await conn.execute(
            "UPDATE gateways SET status = $2, updated_at = now() WHERE id = $1", gateway_id,
            status,
        )
        await audit.append(
            conn, actor, "gateway.resumed" if status == "active" else "gateway.suspended",
            gateway_id, {"before": {"status": old}, "after": {"status": status}},
        )
    await sync_gateway_permissions(conn, admin, vhost, gateway_id)


async def remove_gateway(
    conn: Conn, admin: BrokerAdmin, vhost: str, gateway_id: str, *, actor: str = "operator"
) -> int:
    """Remove a gateway: its AMQP user is deleted (its connections end), it serves nothing
    and its agencies are unassigned; its row stays, as documents refer to it. Audited as
    ``gateway.removed``. Returns the number of agencies unassigned."""
    async with conn.transaction():
        old = await conn.fetchrow(
            "SELECT name, kind, serves, status, amqp_user FROM gateways WHERE id = $1 FOR UPDATE",
            gateway_id,
        )
        if old is None or old["status"] == "removed":
            raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
        freed = await conn.fetch(
            "UPDATE agencies SET gateway_id = NULL, updated_at = now() WHERE gateway_id = $1 "
            "RETURNING code",
            gateway_id,
        )
        await conn.execute(
            "UPDATE gateways SET status = 'removed', serves = '{}', updated_at = now() "
            "WHERE id = $1",
            gateway_id,
        )
        codes = sorted(r["code"] for r in freed)
        await feed.publish(conn, codes)
        await audit.append(
            conn, actor, "gateway.removed", gateway_id,
            {"before": {k: (list(v) if k == "serves" else v) for k, v in old.items()},
             "after": {"status": "removed", "serves": []},
             "agencies_unassigned": len(codes),
             "agencies_unassigned_sample": codes[:_SAMPLE]},
        )
    await admin.delete_user(old["amqp_user"])
    return len(codes)


async def set_agency_management(
    conn: Conn, gateway_id: str, allowed: bool, *, actor: str = "operator"
) -> bool:
    """Let a gateway register and delete agencies itself (within its ``serves``), or stop
    it. Audited as ``gateway.agency_management`` with the value before and after, when it
    changes. Returns the value before.

    Raises LienthongError(GATEWAY_UNKNOWN) for a gateway that does not exist."""
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT manage_agencies FROM gateways WHERE id = $1 AND status <> 'removed' "
            "FOR UPDATE", gateway_id)
        if old is None:
            raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
        if old != allowed:
            await conn.execute(
                "UPDATE gateways SET manage_agencies = $2, updated_at = now() WHERE id = $1",
                gateway_id, allowed)
            await audit.append(conn, actor, "gateway.agency_management", gateway_id,
                               {"before": {"manage_agencies": old},
                                "after": {"manage_agencies": allowed}})
    return bool(old)


async def _may_manage(conn: Conn, gateway_id: str, code: str) -> None:
    """Refuse (a reason) unless ``gateway_id`` may manage agency ``code`` itself: the
    operator's switch is on and one of its ``serves`` patterns covers the code. Locks the
    gateway's row until the caller's transaction ends (no switch-off slips in between)."""
    rec = await conn.fetchrow(
        "SELECT serves, status, manage_agencies FROM gateways WHERE id = $1 FOR SHARE",
        gateway_id)
    if rec is None or rec["status"] != "active":
        raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
    if not rec["manage_agencies"]:
        raise LienthongError(Reason.AGENCY_MANAGEMENT_NOT_ALLOWED,
                             f"gateway {gateway_id} (lienthong gateways set {gateway_id} "
                             "--manage-agencies on)")
    if not any(pattern_matches(p, code) for p in rec["serves"]):
        raise LienthongError(Reason.AGENCY_NOT_SERVED,
                             f"{code} is not in {' '.join(rec['serves']) or '(nothing)'}")


async def register_agency(
    conn: Conn, gateway_id: str, row: AgencyRow, *, actor: str
) -> dict[str, object]:
    """A gateway registers (or renames) one of its own agencies: allowed only when the
    operator's switch is on (:func:`set_agency_management`) and its ``serves`` covers the
    code; the agency is assigned to it. Applied like an import of one row, published to
    the feed, audited as ``agency.registered`` with the values before and after.
    Returns the audit details.

    Raises LienthongError: BAD_AGENCY_CODE, GATEWAY_UNKNOWN,
    AGENCY_MANAGEMENT_NOT_ALLOWED, AGENCY_NOT_SERVED, AGENCY_OF_ANOTHER_GATEWAY."""
    code = AgencyCode.parse(row.code).text
    parent = AgencyCode.parse(row.parent).text if row.parent else None
    async with conn.transaction():
        await _may_manage(conn, gateway_id, code)
        # one registration of a code at a time (a new code has no row to lock yet)
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('agency:' || $1))", code)
        old = await _agency_as_audited(conn, code)
        if old is not None and old["gateway"] not in (None, gateway_id):
            raise LienthongError(Reason.AGENCY_OF_ANOTHER_GATEWAY,
                                 f"{code} is served by {old['gateway']}")
        owner = await conn.fetchrow(
            """SELECT a.code, a.gateway_id FROM agency_aliases al
               JOIN agencies a ON a.id = al.agency_id WHERE al.alias = $1""", code)
        if owner is not None and owner["code"] != code:
            # the code already reaches another agency: taking it would re-route its mail
            if owner["gateway_id"] not in (None, gateway_id):
                raise LienthongError(Reason.AGENCY_OF_ANOTHER_GATEWAY,
                                     f"{code} names {owner['code']}, served by "
                                     f"{owner['gateway_id']}")
            raise LienthongError(Reason.BAD_AGENCY_CODE,
                                 f"{code} is already an alias of {owner['code']}")
        _, _, before = await _upsert_agencies(
            conn, [AgencyRow(code, row.name, parent, gateway=gateway_id)])
        after = await _agency_as_audited(conn, code)
        details: dict[str, object] = {"code": code, "gateway": gateway_id, "before": old,
                                      "after": after}
        if old != after:
            await audit.append(conn, actor, "agency.registered", code, details)
            await feed.publish(conn, sorted({code, *before.alias_owner.values()}))
    return details


async def _agency_as_audited(conn: Conn, code: str) -> dict[str, object] | None:
    """An agency's values for an audit row's before/after (None: no such agency, or
    removed)."""
    rec = await conn.fetchrow(
        """SELECT a.name, a.parent_code, a.gateway_id, a.removed_at,
                  array(SELECT x.alias FROM agency_aliases x WHERE x.agency_id = a.id
                        ORDER BY x.alias) AS aliases
           FROM agencies a WHERE a.code = $1 FOR UPDATE""", code)
    if rec is None or rec["removed_at"] is not None:
        return None
    return {"name": rec["name"], "parent": rec["parent_code"], "gateway": rec["gateway_id"],
            "aliases": list(rec["aliases"])}


async def remove_agency(
    conn: Conn, code: str, *, actor: str = "operator", by_gateway: str | None = None
) -> str:
    """Remove an agency from the directory: it loses its aliases (nothing routes to it any
    more: senders get RECIPIENT_UNKNOWN) and its gateway; its row stays, as documents refer
    to it, and the feed publishes it as deleted. Importing it again brings it back.
    Audited as ``agency.removed``. Returns its canonical code.

    ``by_gateway``: a gateway removes one of its own agencies; refused (a reason) unless
    the operator allows it to manage agencies, its ``serves`` covers the code and the
    agency is its own.

    Raises OperationRefused(OPS_UNKNOWN_AGENCY) when no agency is known by ``code``."""
    key = normalize(code)
    async with conn.transaction():
        if by_gateway is not None:
            await _may_manage(conn, by_gateway, key)
        rec = await conn.fetchrow(
            """SELECT a.id, a.code, a.name, a.parent_code, a.gateway_id,
                      array(SELECT x.alias FROM agency_aliases x WHERE x.agency_id = a.id
                            ORDER BY x.alias) AS aliases
               FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
               WHERE al.alias = $1 FOR UPDATE OF a""",
            key,
        )
        if rec is None:
            raise OperationRefused(Reason.OPS_UNKNOWN_AGENCY, f"agency {code!r}")
        if by_gateway is not None:
            if not any(pattern_matches(p, rec["code"]) for p in await conn.fetchval(
                    "SELECT serves FROM gateways WHERE id = $1", by_gateway)):
                # reached through an alias the gateway serves, but not its own code
                raise LienthongError(Reason.AGENCY_NOT_SERVED, rec["code"])
            if rec["gateway_id"] != by_gateway:
                raise LienthongError(Reason.AGENCY_OF_ANOTHER_GATEWAY,
                                     f"{rec['code']} is served by {rec['gateway_id'] or 'none'}")
        await conn.execute("DELETE FROM agency_aliases WHERE agency_id = $1", rec["id"])
        await conn.execute(
            "UPDATE agencies SET gateway_id = NULL, removed_at = now(), updated_at = now() "
            "WHERE id = $1", rec["id"])
        await audit.append(
            conn, actor, "agency.removed", rec["code"],
            {"before": {"name": rec["name"], "parent": rec["parent_code"],
                        "gateway": rec["gateway_id"], "aliases": list(rec["aliases"])},
             "after": None, **({"gateway": by_gateway} if by_gateway else {})},
        )
        await feed.publish(conn, [rec["code"]])
    return str(rec["code"])
