"""The VXP directory operations, answered from the hub's published directory feed.

The façade keeps one :class:`adapters.directory_feed.DirectoryMirror` (a SQLite file, or in
memory) and brings it up to date through the caller's gateway before answering, at most
once per ``interval`` seconds: one request for the changes since the version it has. When
the hub does not answer, the last synchronised directory is served; a façade that has
never synchronised answers ``FAIL``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import structlog

from adapters.client import GatewayClient
from adapters.directory_feed import DirectoryFeedFailed, DirectoryMirror, DirectoryRecord
from adapters.vxp.envelope import VxpFailure
from schemas.reasons import Reason

__all__ = ["VxpDirectory"]

log = structlog.get_logger("lienthong.vxp")

VIETNAM = timezone(timedelta(hours=7))


def _time(iso: str) -> str:
    """``modified_at`` (ISO 8601) as the other VXP answers write times (Vietnam time)."""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


class VxpDirectory:
    """The directory as the VXP operations answer it."""

    def __init__(self, path: str = ":memory:", *, interval: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mirror = DirectoryMirror(path)
        self.interval = interval
        self.clock = clock
        self._lock = asyncio.Lock()
        self._synced_at: float | None = None

    async def refresh(self, client: GatewayClient) -> None:
        """Fetch the changes since the mirror's version, unless that was done less than
        ``interval`` seconds ago."""
        async with self._lock:
            if self._synced_at is not None and self.clock() - self._synced_at < self.interval:
                return
            try:
                changed = await self.mirror.sync(client)
            except (TimeoutError, DirectoryFeedFailed) as exc:
                log.warning("vxp.directory.sync_failed", error=repr(exc),
                            version=self.mirror.version)
                if self.mirror.version > 0:
                    # serve what the last synchronisation brought; ask again only after
                    # ``interval`` (not every request waiting for a silent hub)
                    self._synced_at = self.clock()
                    return
                if isinstance(exc, DirectoryFeedFailed):
                    raise VxpFailure(exc.reason, exc.detail) from exc
                raise VxpFailure(Reason.VXP_HUB_TIMEOUT, "directory feed") from exc
            self._synced_at = self.clock()
            if changed:
                log.info("vxp.directory.synced", changed=changed, version=self.mirror.version)

    def invalidate(self) -> None:
        """The directory changed at the hub (this façade asked it to): the next answer
        synchronises first, whatever the interval."""
        self._synced_at = None

    def close(self) -> None:
        self.mirror.close()

    # answers ------------------------------------------------------------------------------
    def _records(self, *, include_deleted: bool) -> tuple[list[DirectoryRecord], dict[str, int]]:
        every = list(self.mirror.records(include_deleted=True))
        ids = {r.code: r.id for r in every}
        shown = every if include_deleted else [r for r in every if not r.deleted]
        return shown, ids

    def agencies(self) -> list[dict[str, Any]]:
        """getAgenciesList: the agencies that exist; ``oldCode`` one of their aliases."""
        records, ids = self._records(include_deleted=False)
        return [{
            "id": r.id, "code": r.code, "pid": ids.get(r.parent or "", 0), "name": r.name,
            "mail": "", "oldCode": (r.qd20 or r.aliases or ("",))[0],
        } for r in records]

    def agencies_qd20(self, level: int | None = None) -> list[dict[str, Any]]:
        """getAgenciesListQD20: ``code`` the QĐ 20 code (the canonical code when the
        agency has none), ``code102`` the QCVN 102 code; ``level`` 1 = agencies without a
        parent, 2 = their children, ..."""
        records, ids = self._records(include_deleted=False)
        parents = {r.code: r.parent for r in records}
        answer = []
        for r in records:
            if level is not None and _depth(r.code, parents) != level:
                continue
            answer.append({
                "id": r.id, "code": (r.qd20 or (r.code,))[0],
                "pid": ids.get(r.parent or "", 0), "name": r.name, "mail": "",
                "code102": (r.qcvn102 or (r.code,))[0],
            })
        return answer

    def synchronize_unit(self) -> list[dict[str, Any]]:
        """getSynchronizeUnit: every agency, deleted ones (tombstones) included, with the
        feed version and time of its last change."""
        records, ids = self._records(include_deleted=True)
        return [{
            "id": r.id, "code": r.code, "pid": ids.get(r.parent or "", 0), "name": r.name,
            "mail": "", "version": r.version, "centerCode": r.gateway or "",
            "deleted": r.deleted, "modifyDate": _time(r.modified_at), "isAgency": True,
        } for r in records]


def _depth(code: str, parents: dict[str, str | None]) -> int:
    depth, seen = 1, {code}
    parent = parents.get(code)
    while parent is not None and parent not in seen:  # a cycle cannot loop forever
        seen.add(parent)
        depth += 1
        parent = parents.get(parent)
    return depth
