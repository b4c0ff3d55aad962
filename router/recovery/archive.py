"""Package bodies out of the hot ``documents`` table: a document older than N days has its
body written to ``DIR/YYYY/MM/<hub id>.edxml`` (the file is read back and checked against
the row's ``content_sha256`` first), then the row keeps its hash, its size and the file's
path, and its body becomes NULL (migration 0009). Re-delivery reads an archived body back
through :func:`read_body`, which checks the hash again. ``verify`` re-reads every file.

Memory is bounded by ``max_bytes`` per batch whatever the documents' sizes (one larger
document goes alone); one transaction per batch; the run is recorded in the audit log.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from router.security import audit
from schemas.reasons import LienthongError, Reason

__all__ = ["ArchiveRun", "ArchiveVerify", "archive", "file_for", "read_body", "verify"]

_CANDIDATES = """
    SELECT hub_id, size_bytes, received_at FROM documents
    WHERE archive_ref IS NULL AND received_at < $1
      AND (received_at, hub_id) > ($2::timestamptz, $3::uuid)
      -- a large package's body is its small reference; its bytes stay in the blob store
      AND NOT EXISTS (SELECT 1 FROM transfer_uploads t WHERE t.hub_id = documents.hub_id)
    ORDER BY received_at, hub_id LIMIT $4"""


@dataclass
class ArchiveRun:
    archived: int = 0
    bytes: int = 0
    altered: list[str] = field(default_factory=list)  # ledger bodies not matching their hash


@dataclass
class ArchiveVerify:
    checked: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (hub id, what is wrong)


def file_for(root: Path, hub_id: object, received_at: datetime) -> Path:
    when = received_at.astimezone(UTC)
    return root / f"{when:%Y}" / f"{when:%m}" / f"{hub_id}.edxml"


def _sha256_file(path: Path) -> bytes:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _write(path: Path, body: bytes, sha256: bytes) -> None:
    """Write ``body`` to ``path`` durably (temporary file, fsync, rename) and read it back:
    the row may drop its body only once the file is proven to hold it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    if _sha256_file(path) != sha256:
        raise OSError(f"{path}: the written file does not read back as written")


def read_body(ref: str, sha256: bytes) -> bytes:
    """The archived body at ``ref``, checked against the ledger's SHA-256."""
    try:
        body = Path(ref).read_bytes()
    except OSError as exc:
        raise LienthongError(Reason.ARCHIVED_BODY_UNREADABLE, f"{ref}: {exc}") from exc
    if hashlib.sha256(body).digest() != sha256:
        raise LienthongError(Reason.ARCHIVED_BODY_UNREADABLE, f"{ref}: SHA-256 differs")
    return body


async def archive(
    pool: asyncpg.Pool, root: Path, *, older_than: timedelta, actor: str,
    max_bytes: int = 64 * 1024 * 1024, page: int = 500,
    progress: Callable[[ArchiveRun], None] | None = None,
) -> ArchiveRun:
    """Move the bodies of documents received before now - ``older_than`` into ``root``."""
    if not root.is_absolute():  # the path is kept in each row: it must not depend on cwd
        raise ValueError(f"the archive directory must be an absolute path: {root}")
    cutoff = datetime.now(UTC) - older_than
    run = ArchiveRun()
    cursor: tuple[datetime, Any] = (datetime(1970, 1, 1, tzinfo=UTC),
                                    "00000000-0000-0000-0000-000000000000")
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(_CANDIDATES, cutoff, *cursor, page)
        if not rows:
            break
        cursor = (rows[-1]["received_at"], rows[-1]["hub_id"])
        batch: list[asyncpg.Record] = []
        size = 0
        for r in rows:
            if batch and size + r["size_bytes"] > max_bytes:
                await _move(pool, root, batch, run)
                batch, size = [], 0
            batch.append(r)
            size += r["size_bytes"]
        await _move(pool, root, batch, run)
        if progress is not None:
            progress(run)
    async with pool.acquire() as conn:
        await audit.append(conn, actor, "archive.run", str(root), {
            "older_than_days": older_than.total_seconds() / 86400, "archived": run.archived,
            "bytes": run.bytes, "altered": run.altered[:100]})
    return run


async def _move(pool: asyncpg.Pool, root: Path, batch: list[asyncpg.Record],
                run: ArchiveRun) -> None:
    ids = [r["hub_id"] for r in batch]
    async with pool.acquire() as conn, conn.transaction():
        # rows locked: a concurrent run skips them, nobody archives a body twice
        bodies = await conn.fetch(
            """SELECT hub_id, body, content_sha256, received_at FROM documents
               WHERE hub_id = ANY($1) AND archive_ref IS NULL
               FOR UPDATE SKIP LOCKED""", ids)
        moved: list[tuple[Any, str]] = []
        for b in bodies:
            body, sha = bytes(b["body"]), bytes(b["content_sha256"])
            if hashlib.sha256(body).digest() != sha:
                run.altered.append(str(b["hub_id"]))  # never archive what the hash denies
                continue
            path = file_for(root, b["hub_id"], b["received_at"])
            await asyncio.to_thread(_write, path, body, sha)
            moved.append((b["hub_id"], str(path)))
            run.bytes += len(body)
        if moved:
            await conn.execute(
                """UPDATE documents d SET body = NULL, archive_ref = m.ref, archived_at = now()
                   FROM unnest($1::uuid[], $2::text[]) AS m(hub_id, ref)
                   WHERE d.hub_id = m.hub_id""",
                [m[0] for m in moved], [m[1] for m in moved])
        run.archived += len(moved)


async def verify(pool: asyncpg.Pool, *, page: int = 1000) -> ArchiveVerify:
    """Re-read every archived body and compare it with the ledger's SHA-256."""
    result = ArchiveVerify()
    after = "00000000-0000-0000-0000-000000000000"
    while True:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT hub_id, archive_ref, content_sha256 FROM documents
                   WHERE archive_ref IS NOT NULL AND hub_id > $1::uuid
                   ORDER BY hub_id LIMIT $2""", after, page)
        if not rows:
            return result
        after = str(rows[-1]["hub_id"])
        await asyncio.to_thread(_check_page, rows, result)


def _check_page(rows: list[asyncpg.Record], result: ArchiveVerify) -> None:
    for r in rows:
        result.checked += 1
        path = Path(r["archive_ref"])
        try:
            ok = _sha256_file(path) == bytes(r["content_sha256"])
        except OSError as exc:
            result.bad.append((str(r["hub_id"]), f"{path}: {exc.strerror or exc}"))
            continue
        if not ok:
            result.bad.append((str(r["hub_id"]), f"{path}: SHA-256 differs"))
