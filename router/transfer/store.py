"""Where a large package's bytes live: one small interface, one default.

:class:`BlobStore` is all the rest of ``router.transfer`` knows: put a chunk, list the chunks
present, stream them back in order, delete an upload's chunks. :class:`PostgresBlobStore`,
the default, keeps chunks in the hub's own PostgreSQL (``transfer_chunks``, migration 0010;
``STORAGE EXTERNAL``: out of line and not compressed again). Why there and not in a
directory or large objects:

* a chunk is written in the same transaction that checks its upload (state, owner), and a
  rejected or expired upload's chunks go in the transaction that marks it: nothing half
  applied, nothing left behind, with no second system to keep in step;
* the routers already reach PostgreSQL from every host: no shared filesystem between
  router hosts, no new service to run;
* the ledger's replication, backups (``lienthong backup``) and failover protect the bytes
  with the documents that refer to them;
* a ``bytea`` row per chunk (a few MiB) streams back one row at a time (bounded memory);
  large objects would need their own cleanup (``lo_unlink``, vacuumlo) and permissions.

Methods take the connection to use, so callers put them in their own transactions.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Protocol

from router.ledger import Conn

__all__ = ["BlobStore", "PostgresBlobStore", "StoredChunk"]

StoredChunk = tuple[int, bytes, bytes]  # seq, sha256, data


class BlobStore(Protocol):
    async def put_chunk(self, conn: Conn, upload_id: uuid.UUID, seq: int, sha256: bytes,
                        data: bytes) -> bytes | None:
        """Store a chunk unless one with this seq is there; returns the SHA-256 of the one
        already stored (None: this one was stored)."""

    async def chunks_present(self, conn: Conn, upload_id: uuid.UUID) -> list[int]:
        """The sequence numbers stored, in order."""

    def open_stream(self, conn: Conn, upload_id: uuid.UUID, start: int = 0,
                    count: int | None = None) -> AsyncIterator[StoredChunk]:
        """The chunks from ``start`` in order, one at a time."""

    async def delete(self, conn: Conn, upload_id: uuid.UUID) -> int:
        """Remove every chunk of the upload; how many there were."""


class PostgresBlobStore:
    """Chunks as rows of ``transfer_chunks`` in the ledger's database."""

    async def put_chunk(self, conn: Conn, upload_id: uuid.UUID, seq: int, sha256: bytes,
                        data: bytes) -> bytes | None:
        stored = await conn.fetchval(
            """INSERT INTO transfer_chunks (upload_id, seq, sha256, data)
               VALUES ($1, $2, $3, $4) ON CONFLICT (upload_id, seq) DO NOTHING
               RETURNING seq""",
            upload_id, seq, sha256, data)
        if stored is not None:
            return None
        existing = await conn.fetchval(
            "SELECT sha256 FROM transfer_chunks WHERE upload_id = $1 AND seq = $2",
            upload_id, seq)
        return bytes(existing)

    async def chunks_present(self, conn: Conn, upload_id: uuid.UUID) -> list[int]:
        rows = await conn.fetch(
            "SELECT seq FROM transfer_chunks WHERE upload_id = $1 ORDER BY seq", upload_id)
        return [int(r["seq"]) for r in rows]

    async def open_stream(self, conn: Conn, upload_id: uuid.UUID, start: int = 0,
                          count: int | None = None) -> AsyncIterator[StoredChunk]:
        seq = start
        end = None if count is None else start + count
        while end is None or seq < end:
            row = await conn.fetchrow(
                "SELECT seq, sha256, data FROM transfer_chunks WHERE upload_id = $1 "
                "AND seq = $2", upload_id, seq)
            if row is None:
                return
            yield int(row["seq"]), bytes(row["sha256"]), bytes(row["data"])
            del row
            seq += 1

    async def delete(self, conn: Conn, upload_id: uuid.UUID) -> int:
        done = await conn.execute("DELETE FROM transfer_chunks WHERE upload_id = $1",
                                  upload_id)
        return int(done.split()[-1])
