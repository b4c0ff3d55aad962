"""The life of an upload in the ledger (``transfer_uploads``): opened by its gateway, fed
chunk by chunk, then claimed (stored), or rejected, expired, or found a duplicate — and in
those three cases its chunks are removed in the same transaction that says so.

Every rule about a chunk is here (:func:`take_chunk`): the upload must exist and be open,
belong to the gateway that sends the chunk, the sequence number must be in range, the size
right for it (every chunk full but the last), the bytes must match the chunk's SHA-256, and
a chunk sent again must be the same bytes. A chunk that breaks a rule rejects the whole
upload (nothing of it stays); a chunk for an upload no longer open is dropped.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from router.ledger import Conn
from router.routing.decide import derive_id
from router.transfer.store import BlobStore
from schemas import wire_names
from schemas.reasons import OperationRefused, Reason
from schemas.receipt import Receipt

__all__ = [
    "Upload",
    "expire_due",
    "load",
    "open_upload",
    "reference",
    "reject",
    "rejection_receipt",
    "take_chunk",
]


@dataclass(frozen=True, slots=True)
class Upload:
    id: uuid.UUID
    gateway_id: str
    amqp_user: str
    message_id: str
    size: int
    sha256: bytes
    chunk_bytes: int
    chunk_count: int
    state: str
    reason_code: int | None
    detail: str | None
    hub_id: uuid.UUID | None

    def chunk_size(self, seq: int) -> int:
        """The size chunk ``seq`` must have: full, but the last one holds the rest."""
        if seq < self.chunk_count - 1:
            return self.chunk_bytes
        return self.size - self.chunk_bytes * (self.chunk_count - 1)

    @property
    def reason(self) -> Reason | None:
        return Reason.from_code(self.reason_code) if self.reason_code is not None else None


_SELECT = ("SELECT id, gateway_id, amqp_user, message_id, size_bytes, sha256, chunk_bytes, "
           "chunk_count, state, reason_code, detail, hub_id FROM transfer_uploads ")


def _upload(row: object) -> Upload:
    r = row  # an asyncpg Record
    return Upload(
        id=r["id"], gateway_id=r["gateway_id"], amqp_user=r["amqp_user"],  # type: ignore[index]
        message_id=r["message_id"], size=int(r["size_bytes"]),  # type: ignore[index]
        sha256=bytes(r["sha256"]), chunk_bytes=int(r["chunk_bytes"]),  # type: ignore[index]
        chunk_count=int(r["chunk_count"]), state=r["state"],  # type: ignore[index]
        reason_code=r["reason_code"], detail=r["detail"], hub_id=r["hub_id"],  # type: ignore[index]
    )


async def load(conn: Conn, upload_id: uuid.UUID, *, share: bool = False) -> Upload | None:
    """The upload; ``share``: row-locked FOR SHARE until the transaction ends (a rejection
    or expiry, FOR UPDATE, waits for it)."""
    where = "WHERE id = $1 FOR SHARE" if share else "WHERE id = $1"
    row = await conn.fetchrow(_SELECT + where, upload_id)
    return _upload(row) if row is not None else None


async def _same_upload(conn: Conn, gateway_id: str, message_id: str,
                       sha256: bytes) -> Upload | None:
    row = await conn.fetchrow(
        _SELECT + "WHERE gateway_id = $1 AND message_id = $2 AND sha256 = $3 "
        "AND state IN ('open', 'stored') ORDER BY state = 'open' DESC LIMIT 1",
        gateway_id, message_id, sha256)
    return _upload(row) if row is not None else None


async def open_upload(
    conn: Conn, *, gateway_id: str, amqp_user: str, message_id: str, size: int,
    sha256: bytes, chunk_bytes: int, max_bytes: int, expiry: timedelta,
) -> Upload:
    """Open an upload, or give back the open one of the same message and content (a
    sender resuming) or the stored one (a sender that did not hear the receipt: its claim
    is answered again, nothing is uploaded twice). Raises OperationRefused
    (PACKAGE_TOO_LARGE, UPLOAD_BAD_REQUEST)."""
    if size > max_bytes:
        raise OperationRefused(Reason.PACKAGE_TOO_LARGE, f"{size} bytes > limit {max_bytes}")
    if size <= 0 or len(sha256) != 32 or not message_id:
        raise OperationRefused(Reason.UPLOAD_BAD_REQUEST,
                               "size > 0, sha256 (64 hex digits) and message_id are required")
    count = -(-size // chunk_bytes)
    existing = await _same_upload(conn, gateway_id, message_id, sha256)
    if existing is not None:  # a sender resuming, or re-sending after doubt
        return existing
    row = await conn.fetchrow(
        """INSERT INTO transfer_uploads (id, gateway_id, amqp_user, message_id, size_bytes,
                sha256, chunk_bytes, chunk_count, expires_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval)
            ON CONFLICT (gateway_id, message_id, sha256) WHERE state = 'open' DO NOTHING
            RETURNING id""",
        uuid.uuid4(), gateway_id, amqp_user, message_id, size, sha256, chunk_bytes, count,
        expiry)
    if row is None:  # opened by a concurrent request of the same sender
        same = await _same_upload(conn, gateway_id, message_id, sha256)
        assert same is not None
        return same
    upload = await load(conn, row["id"])
    assert upload is not None
    return upload


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What became of a chunk: ``stored``, ``again`` (the same bytes were there),
    ``dropped`` (its upload is not open: nothing to do) or ``rejected`` (the upload
    was rejected for it: ``reason``, ``detail``, ``upload``)."""

    result: str
    upload: Upload | None = None
    reason: Reason | None = None
    detail: str = ""


async def take_chunk(
    conn: Conn, store: BlobStore, *, upload_id: uuid.UUID, amqp_user: str | None,
    seq: int, sha256: bytes, data: bytes,
) -> ChunkOutcome:
    """Check and store one chunk, in one transaction (see the module's rules)."""
    async with conn.transaction():
        upload = await load(conn, upload_id, share=True)
        if upload is None or upload.state != "open":
            return ChunkOutcome("dropped", upload)
        if upload.amqp_user != amqp_user:
            # someone else's upload: refused, and the owner's upload is left alone
            return ChunkOutcome("rejected", None, Reason.UPLOAD_NOT_YOURS,
                                f"upload {upload_id} belongs to another gateway")
        problem: tuple[Reason, str] | None = None
        if not 0 <= seq < upload.chunk_count:
            problem = (Reason.CHUNK_OUT_OF_RANGE,
                       f"chunk {seq} of an upload of {upload.chunk_count} chunks")
        elif len(data) != upload.chunk_size(seq):
            problem = (Reason.CHUNK_OUT_OF_RANGE,
                       f"chunk {seq} holds {len(data)} bytes, not {upload.chunk_size(seq)}")
        elif hashlib.sha256(data).digest() != sha256:
            problem = (Reason.CHUNK_HASH_MISMATCH, f"chunk {seq}")
        else:
            existing = await store.put_chunk(conn, upload_id, seq, sha256, data)
            if existing is None:
                return ChunkOutcome("stored", upload)
            if existing == sha256:
                return ChunkOutcome("again", upload)
            problem = (Reason.CHUNK_CONFLICT, f"chunk {seq} was sent before with other bytes")
    rejected = await reject(conn, store, upload_id, problem[0], problem[1])
    return ChunkOutcome("rejected" if rejected else "dropped", upload, problem[0], problem[1])


async def reject(conn: Conn, store: BlobStore, upload_id: uuid.UUID, reason: Reason | None,
                 detail: str, *, state: str = "rejected") -> bool:
    """Close an open upload for ``reason`` and remove its chunks, in one transaction.
    False when it was not open (someone closed it first)."""
    async with conn.transaction():
        current = await conn.fetchval(
            "SELECT state FROM transfer_uploads WHERE id = $1 FOR UPDATE", upload_id)
        if current != "open":
            return False
        await store.delete(conn, upload_id)
        await conn.execute(
            "UPDATE transfer_uploads SET state = $2, reason_code = $3, detail = $4, "
            "settled_at = now() WHERE id = $1",
            upload_id, state, reason.code if reason else None, detail[:1000])
    return True


async def expire_due(conn: Conn, store: BlobStore, *, limit: int = 100) -> list[Upload]:
    """Expire open uploads past their time (their chunks removed); the ones expired."""
    ids = await conn.fetch(
        "SELECT id FROM transfer_uploads WHERE state = 'open' AND expires_at < now() "
        "ORDER BY expires_at LIMIT $1", limit)
    out = []
    for r in ids:
        if await reject(conn, store, r["id"], Reason.UPLOAD_EXPIRED,
                        "not claimed in time", state="expired"):
            upload = await load(conn, r["id"])
            assert upload is not None
            out.append(upload)
    return out


def rejection_receipt(upload: Upload, reason: Reason, detail: str) -> Receipt:
    """The receipt that tells the sender its upload was refused or expired: a ``rejected``
    receipt for the claim's ``message_id`` (what the SDK waits on)."""
    return Receipt(
        receipt_id=str(derive_id("upload", upload.id, reason.name)),
        type="rejected",
        message_id=upload.message_id,
        kind="edoc",
        reason=reason.as_dict(f"upload {upload.id}: {detail}"),
    )


def reference(upload: Upload) -> bytes:
    """The small JSON that stands for a large package: the claim's body as recorded in the
    ledger, and the body of every copy (recipients fetch the chunks it names)."""
    return json.dumps({
        "type": wire_names.TRANSFER_REF_TYPE,
        "upload_id": str(upload.id),
        "size": upload.size,
        "sha256": upload.sha256.hex(),
        "chunk_bytes": upload.chunk_bytes,
        "chunks": upload.chunk_count,
    }, sort_keys=True, separators=(",", ":")).encode()
