"""A gateway's local copy of the hub's directory, kept in sync from the published feed.

::

    from adapters import GatewayClient
    from adapters.directory_feed import DirectoryMirror

    mirror = DirectoryMirror("directory.sqlite")      # what it had before a restart
    async with GatewayClient(url) as gw:
        await mirror.sync(gw)                          # the snapshot, then only changes
        mirror.get("G22")                              # any alias, any spelling
        for rec in mirror.records(include_deleted=True):   # e.g. VXP getSynchronizeUnit
            print(rec.code, rec.version, rec.deleted, rec.modified_at)

The hub numbers every change to an agency with a feed version (``router.directory.feed``);
the mirror asks for the changes after the version it has and applies each page in one
SQLite transaction together with the new version, so a mirror killed at any point resumes
where its last page ended. A mirror that was offline catches up with one request per 1,000
changed agencies; deletions arrive as tombstones (``deleted``), kept so that a consumer can
tell its own clients what disappeared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.client import GatewayClient
from adapters.errors import HubRefused
from schemas import wire_names
from schemas.agency_code import normalize
from schemas.reasons import LienthongError, Reason

__all__ = ["DirectoryFeedFailed", "DirectoryMirror", "DirectoryRecord"]

FEED_KEY = wire_names.DIRECTORY_KEY  # the routing key of the request on lt.replay


class DirectoryFeedFailed(LienthongError):
    """The hub refused a directory feed request; ``reason`` says why."""


@dataclass(frozen=True, slots=True)
class DirectoryRecord:
    """One agency as the hub publishes it."""

    code: str  # canonical (normalised) code
    id: int  # the hub's stable number for the agency
    name: str
    parent: str | None
    gateway: str | None  # the gateway that serves it
    status: str  # active / locked
    aliases: tuple[str, ...]  # every other spelling it is reached by
    qd20: tuple[str, ...]  # its QĐ 20/2020 codes
    qcvn102: tuple[str, ...]  # its QCVN 102 codes (the canonical one included)
    version: int  # feed version of its last change
    deleted: bool
    modified_at: str  # ISO 8601, UTC, of its last change

    @classmethod
    def from_feed(cls, d: dict[str, Any]) -> DirectoryRecord:
        return cls(
            code=str(d["code"]), id=int(d["id"]), name=str(d["name"]),
            parent=d.get("parent"), gateway=d.get("gateway"),
            status=str(d.get("status") or "active"),
            aliases=tuple(d.get("aliases") or ()), qd20=tuple(d.get("qd20") or ()),
            qcvn102=tuple(d.get("qcvn102") or ()), version=int(d["version"]),
            deleted=bool(d["deleted"]), modified_at=str(d["modified_at"]),
        )

    def as_feed(self) -> dict[str, Any]:
        return {"code": self.code, "id": self.id, "name": self.name, "parent": self.parent,
                "gateway": self.gateway, "status": self.status, "aliases": list(self.aliases),
                "qd20": list(self.qd20), "qcvn102": list(self.qcvn102),
                "version": self.version, "deleted": self.deleted,
                "modified_at": self.modified_at}


class DirectoryMirror:
    """The directory, persisted in a SQLite file (``:memory:`` for a throwaway copy).

    Use it from the thread that created it (the event loop's): each call is a local
    SQLite call."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(
            """CREATE TABLE IF NOT EXISTS agencies (
                   code TEXT PRIMARY KEY, version INTEGER NOT NULL, deleted INTEGER NOT NULL,
                   record TEXT NOT NULL);
               CREATE TABLE IF NOT EXISTS aliases (alias TEXT PRIMARY KEY, code TEXT NOT NULL);
               CREATE TABLE IF NOT EXISTS mirror (key TEXT PRIMARY KEY, value INTEGER);"""
        )
        self.latest = self.version  # the hub's newest version, as last heard

    @property
    def version(self) -> int:
        """The feed version this mirror is complete up to (0: empty)."""
        row = self._db.execute("SELECT value FROM mirror WHERE key = 'version'").fetchone()
        return int(row[0]) if row else 0

    def apply(self, records: list[dict[str, Any]], version: int) -> None:
        """Apply one page of the feed and remember ``version``, all or nothing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for d in records:
                rec = DirectoryRecord.from_feed(d)
                old = self._db.execute("SELECT version FROM agencies WHERE code = ?",
                                       (rec.code,)).fetchone()
                if old is not None and old[0] >= rec.version:
                    continue  # a page asked again: nothing older overwrites the newer
                self._db.execute(
                    "INSERT OR REPLACE INTO agencies (code, version, deleted, record) "
                    "VALUES (?, ?, ?, ?)",
                    (rec.code, rec.version, int(rec.deleted),
                     json.dumps(rec.as_feed(), ensure_ascii=False)))
                self._db.execute("DELETE FROM aliases WHERE code = ?", (rec.code,))
                if not rec.deleted:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO aliases (alias, code) VALUES (?, ?)",
                        [(a, rec.code) for a in {rec.code, *rec.aliases}])
            self._db.execute(
                "INSERT INTO mirror (key, value) VALUES ('version', ?) ON CONFLICT (key) "
                "DO UPDATE SET value = max(value, excluded.value)", (version,))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    async def sync(self, client: GatewayClient, *, page_size: int = 1000) -> int:
        """Fetch and apply every change after :attr:`version`; returns how many agencies
        changed. Raises DirectoryFeedFailed when the hub refuses, TimeoutError when no
        router answers (the mirror keeps what it had)."""
        changed = 0
        while True:
            try:
                kind, body = await client.ask_hub(FEED_KEY,
                                                  {"after": self.version, "limit": page_size})
            except HubRefused as exc:
                raise DirectoryFeedFailed(exc.reason, exc.detail) from exc
            if kind != "directory.page":
                raise DirectoryFeedFailed(Reason.DIRECTORY_BAD_REQUEST,
                                          f"unexpected answer {kind!r}")
            self.apply(body["records"], int(body["version"]))
            self.latest = int(body["latest"])
            changed += len(body["records"])
            if not body["more"]:
                return changed

    async def follow(self, client: GatewayClient, *, interval: float = 30.0) -> None:
        """Keep in sync until cancelled (a failed round is tried again next interval)."""
        while True:
            with contextlib.suppress(TimeoutError, DirectoryFeedFailed):
                await self.sync(client)
            await asyncio.sleep(interval)

    def get(self, code: str, *, include_deleted: bool = False) -> DirectoryRecord | None:
        """The agency reached by ``code`` (its code or any alias, any spelling)."""
        key = normalize(code)
        row = self._db.execute(
            "SELECT a.record FROM aliases al JOIN agencies a ON a.code = al.code "
            "WHERE al.alias = ?", (key,)).fetchone()
        if row is None and include_deleted:
            row = self._db.execute("SELECT record FROM agencies WHERE code = ?",
                                   (key,)).fetchone()
        return DirectoryRecord.from_feed(json.loads(row[0])) if row else None

    def records(self, *, include_deleted: bool = False) -> Iterator[DirectoryRecord]:
        """Every agency, by code (tombstones too when asked)."""
        sql = "SELECT record FROM agencies"
        if not include_deleted:
            sql += " WHERE deleted = 0"
        for (text,) in self._db.execute(sql + " ORDER BY code"):
            yield DirectoryRecord.from_feed(json.loads(text))

    def changed_since(self, version: int) -> Iterator[DirectoryRecord]:
        """The agencies changed after ``version``, deletions included, oldest change first
        (what a client that synchronises incrementally, e.g. VXP ``getSynchronizeUnit``,
        asks for)."""
        for (text,) in self._db.execute(
                "SELECT record FROM agencies WHERE version > ? ORDER BY version", (version,)):
            yield DirectoryRecord.from_feed(json.loads(text))

    def close(self) -> None:
        self._db.close()
