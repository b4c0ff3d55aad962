"""Which copies a gateway has already handled, so a copy the hub delivers twice is dropped.

The hub gives every copy an id (AMQP ``message_id``) that stays the same when the copy is
delivered again: after a router crash, after a batch re-delivery, after the gateway's own
connection dropped before its ack reached the broker. The SDK checks that id against a
:class:`CopyFilter` before it hands a copy to the application.

* :class:`SeenCopies` keeps the ids in memory: enough while the process lives.
* :class:`DurableSeenCopies` keeps them in a SQLite file: a gateway that restarts still
  drops what it handled before the restart.
"""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["CopyFilter", "DurableSeenCopies", "SeenCopies"]


@runtime_checkable
class CopyFilter(Protocol):
    """What the SDK needs from a duplicate filter."""

    def __contains__(self, copy_id: object) -> bool: ...

    def add(self, copy_id: str) -> None: ...


class SeenCopies:
    """Remembers the copy ids already handled, in memory (bounded, oldest forgotten first)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def __contains__(self, copy_id: object) -> bool:
        return copy_id in self._ids

    def add(self, copy_id: str) -> None:
        self._ids[copy_id] = None
        self._ids.move_to_end(copy_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


class DurableSeenCopies:
    """Remembers the copy ids already handled in a SQLite file, across restarts.

    An id is written (and committed) before the SDK acks the copy, so a process that dies
    at any point afterwards still knows it. SQLite runs in WAL mode with
    ``synchronous=NORMAL``: a crash of the process loses nothing; a power cut may lose
    the last commits, and those copies may then be shown once more. The file keeps the
    newest ``capacity`` ids (the hub re-delivers within days, not years).

    Use it from the thread that created it (the event loop's); each look-up and insert is
    a local SQLite call of a few microseconds, made in the loop.
    """

    _TRIM_EVERY = 1_000

    def __init__(self, path: str | Path, capacity: int = 5_000_000) -> None:
        self.path = Path(path)
        self._capacity = capacity
        self._added = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None)  # autocommit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen_copies ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " copy_id TEXT NOT NULL UNIQUE,"
            " seen_at REAL NOT NULL)"
        )

    def __contains__(self, copy_id: object) -> bool:
        if not isinstance(copy_id, str):
            return False
        row = self._db.execute(
            "SELECT 1 FROM seen_copies WHERE copy_id = ?", (copy_id,)
        ).fetchone()
        return row is not None

    def add(self, copy_id: str) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO seen_copies (copy_id, seen_at) VALUES (?, ?)",
            (copy_id, time.time()),
        )
        self._added += 1
        if self._added % self._TRIM_EVERY == 0:
            self._trim()

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM seen_copies").fetchone()[0])

    def _trim(self) -> None:
        self._db.execute(
            "DELETE FROM seen_copies WHERE seq <= (SELECT max(seq) FROM seen_copies) - ?",
            (self._capacity,),
        )

    def close(self) -> None:
        self._db.close()
