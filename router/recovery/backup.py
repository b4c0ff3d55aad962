"""Backup and restore of one hub: the ledger (``pg_dump`` custom format) and the broker
definitions of its vhost (management API export: exchanges, queues, bindings, policies,
users with their password hashes, permissions). Messages are not in the definitions: after a
restore, ``lienthong redeliver --state queued`` sends again every copy the ledger has as
queued without a 01 status (copies keep their ids, so gateways drop one they already took).

A backup is a directory: ``ledger.dump``, ``broker.json`` and ``manifest.json`` (sizes and
SHA-256 of both files, what was in the ledger). Restore checks the hashes first and never
writes over a database that already holds a ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg

from router.broker_admin import BrokerAdmin
from router.security import audit
from router.settings import Settings, child_environment
from schemas.reasons import LienthongError, Reason

__all__ = [
    "FORMAT",
    "BackupError",
    "Manifest",
    "backup",
    "broker_part",
    "restore",
    "verify",
]

FORMAT = "lienthong-backup/1"
LEDGER = "ledger.dump"
BROKER = "broker.json"
MANIFEST = "manifest.json"
# what of the broker's definitions belongs to one vhost
_PER_VHOST = ("permissions", "topic_permissions", "parameters", "policies", "queues",
              "exchanges", "bindings")


class BackupError(LienthongError):
    """A backup or a restore could not be done; nothing was half-applied where said."""


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at: str
    vhost: str
    database: str
    files: dict[str, dict[str, Any]]
    ledger: dict[str, int]
    broker: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "created_at": self.created_at, "vhost": self.vhost,
                "database": self.database, "files": self.files, "ledger": self.ledger,
                "broker": self.broker}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(Reason.BACKUP_TOOL_MISSING,
                          f"{name} not found on PATH (Debian: apt-get install postgresql-client)")
    return path


def _libpq(database_url: str) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump / pg_restore without its password (which would show in ``ps``),
    and the environment that carries it instead."""
    parts = urlsplit(database_url)
    env = child_environment({})
    if parts.password is None:
        return database_url, env
    env["PGPASSWORD"] = unquote(parts.password)
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), env


def _database_name(database_url: str) -> str:
    return unquote(urlsplit(database_url).path.lstrip("/"))


async def _run(reason: Reason, *argv: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise BackupError(reason, f"{Path(argv[0]).name} exited {proc.returncode}: "
                                  f"{err.decode('utf-8', 'replace').strip()[-2000:]}")


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def broker_part(definitions: dict[str, Any], vhost: str, *,
                skip_users: frozenset[str] = frozenset()) -> dict[str, Any]:
    """What of the broker's definitions belongs to ``vhost``: the vhost itself, its
    exchanges, queues, bindings, policies and parameters, its permissions, and the users who
    hold them (with their password hashes) except ``skip_users``."""
    part: dict[str, Any] = {
        "rabbitmq_version": definitions.get("rabbitmq_version"),
        "vhosts": [v for v in definitions.get("vhosts", []) if v.get("name") == vhost],
    }
    for key in _PER_VHOST:
        part[key] = [x for x in definitions.get(key, []) if x.get("vhost") == vhost]
    holders = {p["user"] for p in part["permissions"]} | {
        p["user"] for p in part["topic_permissions"]}
    part["users"] = [u for u in definitions.get("users", [])
                     if u.get("name") in holders and u.get("name") not in skip_users]
    return part


def _renamed(part: dict[str, Any], vhost: str) -> dict[str, Any]:
    """``part`` moved to ``vhost`` (a restore into another vhost)."""
    out = dict(part)
    out["vhosts"] = [{**v, "name": vhost} for v in part.get("vhosts", [])] or [{"name": vhost}]
    for key in _PER_VHOST:
        out[key] = [{**x, "vhost": vhost} for x in part.get(key, [])]
    return out


def _management_user(settings: Settings) -> frozenset[str]:
    """The account backup and restore talk to the management API with: never replaced by a
    restore (the operator would lock themselves out)."""
    user = urlsplit(settings.management_url).username
    return frozenset({unquote(user)}) if user else frozenset()


def _new_directory(target: Path) -> None:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(Reason.BACKUP_TARGET_EXISTS, str(target))
    target.mkdir(parents=True, exist_ok=True)


def _file_facts(target: Path) -> dict[str, dict[str, Any]]:
    return {name: {"bytes": (target / name).stat().st_size, "sha256": _sha256(target / name)}
            for name in (LEDGER, BROKER)}


async def backup(settings: Settings, target: Path, *, actor: str) -> Manifest:
    """Write a backup of the hub of ``settings`` into the new directory ``target``."""
    pg_dump = _tool("pg_dump")
    _new_directory(target)
    try:
        return await _backup(settings, target, pg_dump, actor)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # never leave a backup that looks whole
        raise


async def _backup(settings: Settings, target: Path, pg_dump: str, actor: str) -> Manifest:
    conn = await asyncpg.connect(settings.database_url)
    try:
        ledger = {
            "documents": int(await conn.fetchval("SELECT count(*) FROM documents")),
            "deliveries": int(await conn.fetchval("SELECT count(*) FROM deliveries")),
            "deliveries_queued": int(await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE state = 'queued'")),
        }
        # in the ledger the dump holds: a restored hub shows when its backup was taken
        await audit.append(conn, actor, "backup.taken", settings.vhost,
                           {"directory": str(target), **ledger})
    finally:
        await conn.close()
    url, env = _libpq(settings.database_url)
    await _run(Reason.BACKUP_FAILED, pg_dump, "--format=custom", "--no-owner",
               f"--file={target / LEDGER}", f"--dbname={url}", env=env)
    async with BrokerAdmin(settings.management_url) as admin:
        definitions = await admin.request("GET", "/definitions")
    part = broker_part(definitions, settings.vhost, skip_users=_management_user(settings))
    if not part["vhosts"]:
        raise BackupError(Reason.BACKUP_FAILED, f"no vhost {settings.vhost!r} on the broker")
    (target / BROKER).write_text(json.dumps(part, ensure_ascii=False, indent=1), "utf-8")
    files = await asyncio.to_thread(_file_facts, target)
    manifest = Manifest(
        created_at=datetime.now(UTC).isoformat(), vhost=settings.vhost,
        database=_database_name(settings.database_url), files=files, ledger=ledger,
        broker={k: len(part[k]) for k in ("queues", "exchanges", "bindings", "policies",
                                          "users", "permissions")},
    )
    tmp = target / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.as_dict(), indent=1), "utf-8")
    os.replace(tmp, target / MANIFEST)  # the manifest last: its presence means complete
    return manifest


def verify(source: Path) -> Manifest:
    """The manifest of the backup in ``source`` once every file matches its SHA-256."""
    try:
        data = json.loads((source / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(Reason.BACKUP_CORRUPT, f"{source / MANIFEST}: {exc}") from exc
    if data.get("format") != FORMAT:
        raise BackupError(Reason.BACKUP_CORRUPT, f"not a {FORMAT} backup: {data.get('format')}")
    for name, expected in data["files"].items():
        path = source / name
        if not path.is_file() or _sha256(path) != expected["sha256"]:
            raise BackupError(Reason.BACKUP_CORRUPT, f"{path} does not match the manifest")
    return Manifest(**{k: data[k] for k in ("created_at", "vhost", "database", "files",
                                            "ledger", "broker")})


async def _prepare_database(database_url: str) -> None:
    """Create the target database; refuse one that already holds tables."""
    parts = urlsplit(database_url)
    name = _database_name(database_url)
    maintenance = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    conn = await asyncpg.connect(maintenance)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            return
    finally:
        await conn.close()
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema')")
    finally:
        await conn.close()
    if tables:
        raise BackupError(Reason.RESTORE_TARGET_NOT_EMPTY,
                          f"{name} has {tables} table(s); restore into an empty database")


async def restore(settings: Settings, source: Path, *, actor: str) -> Manifest:
    """Restore the backup in ``source`` into the database and vhost of ``settings``: the
    ledger (into a new or empty database, in one transaction), then the broker definitions.
    The copies that were queued are re-sent afterwards (``lienthong redeliver``)."""
    manifest = await asyncio.to_thread(verify, source)
    pg_restore = _tool("pg_restore")
    await _prepare_database(settings.database_url)  # refuses a ledger before any change
    # the broker first: importing definitions is idempotent, so a restore that fails in
    # pg_restore (one transaction: nothing written) can simply be run again
    part = _renamed(json.loads((source / BROKER).read_text("utf-8")), settings.vhost)
    part["users"] = [u for u in part["users"]
                     if u.get("name") not in _management_user(settings)]
    async with BrokerAdmin(settings.management_url) as admin:
        await admin.request("POST", "/definitions", part)
    url, env = _libpq(settings.database_url)
    await _run(Reason.RESTORE_FAILED, pg_restore, "--no-owner", "--exit-on-error",
               "--single-transaction", f"--dbname={url}", str(source / LEDGER), env=env)
    conn = await asyncpg.connect(settings.database_url)
    try:
        await audit.append(conn, actor, "backup.restored", settings.vhost, {
            "directory": str(source), "taken_at": manifest.created_at,
            "from_vhost": manifest.vhost, "from_database": manifest.database})
    finally:
        await conn.close()
    return manifest
