"""What every router serves for large packages, over AMQP (the SDK never reaches the
database):

* ``lt.transfer`` (on ``lt.replay``, key ``transfer``): requests in the shape every hub
  request has (:mod:`router.requests`: direct reply-to, ``correlation_id``, the gateway
  from the broker-verified ``user_id``), JSON bodies:

  - ``{"op": "open", "message_id", "size", "sha256"}`` → ``transfer.open``
    ``{"upload_id", "chunk_bytes", "chunks", "present": [seq, ...]}`` (opening again with the
    same message and content resumes the open upload);
  - ``{"op": "status", "upload_id"}`` → ``transfer.status`` ``{"state", "present",
    "reason"}`` (the sender's own uploads);
  - ``{"op": "fetch", "upload_id", "from", "count"}`` → up to ``FETCH_WINDOW`` messages of
    type ``transfer.chunk`` (headers ``lt-chunk-seq``, ``lt-chunk-sha256``; body the chunk)
    then ``transfer.end`` — for the sender and for gateways the package was delivered to;
  - a refused request: ``transfer.error`` ``{"reason": {...}}``.

* ``lt.transfer.chunks`` (key ``chunk``): chunks, headers ``lt-upload-id``, ``lt-chunk-seq``,
  ``lt-chunk-sha256`` and the sender's ``user_id``. Each is checked and written
  (``router.transfer.uploads.take_chunk``) and acknowledged after its transaction commits;
  prefetch is small (``CHUNK_PREFETCH``), so a router holds a few chunks at most. A chunk
  that rejects its upload sends the sender a ``rejected`` receipt for the claim's
  ``message_id``.

Expiry: :func:`expiry_loop` removes uploads not claimed in time and tells their senders.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aio_pika
import asyncpg
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from router.ledger import Conn
from router.outbox.outbox import Outbox
from router.requests import Answer, HubRequest, Route, json_answer
from router.routing.plan import OutgoingReceipt
from router.settings import Settings
from router.transfer import uploads
from router.transfer.store import BlobStore
from schemas import wire_names
from schemas.reasons import LienthongError, OperationRefused, Reason

__all__ = ["CHUNK_PREFETCH", "FETCH_WINDOW", "TransferServer", "expiry_loop"]

log = structlog.get_logger("lienthong.transfer")

CHUNK_PREFETCH = 4  # chunks a router holds unacknowledged (x chunk size: its memory)
FETCH_WINDOW = 4  # chunks answered per fetch request
DIRECT_REPLY_PREFIX = f"{wire_names.DIRECT_REPLY}."


def _bad(detail: str) -> OperationRefused:
    return OperationRefused(Reason.UPLOAD_BAD_REQUEST, detail)


def _uuid(value: object) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _bad(f"not an upload id: {str(value)[:80]!r}") from None


def _header_text(headers: dict[str, Any], name: str) -> str:
    value = headers.get(name)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value) if value is not None else ""


class TransferServer:
    """Takes ``lt.transfer.chunks`` in a router process; its :meth:`route` (open, status,
    fetch on ``lt.transfer``) is served by a :class:`router.requests.RequestServer`."""

    def __init__(self, pool: asyncpg.Pool, store: BlobStore, settings: Settings,
                 outbox: Outbox) -> None:
        self._pool = pool
        self._store = store
        self._settings = settings
        self._outbox = outbox

    async def start(self, connection: AbstractRobustConnection) -> None:
        """Consume the chunks of uploads."""
        chunk_channel = await connection.channel()
        await chunk_channel.set_qos(prefetch_count=CHUNK_PREFETCH)
        chunks = await chunk_channel.get_queue(wire_names.CHUNKS)
        await chunks.consume(self._on_chunk)

    # chunks --------------------------------------------------------------------------
    async def _on_chunk(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        try:
            upload_id = _uuid(_header_text(headers, wire_names.UPLOAD_ID))
            seq = int(_header_text(headers, wire_names.CHUNK_SEQ))
            sha256 = bytes.fromhex(_header_text(headers, wire_names.CHUNK_SHA256))
        except (LienthongError, ValueError) as exc:
            log.warning("transfer.chunk_unreadable", user=message.user_id, error=str(exc))
            await message.ack()  # names no upload it could belong to: nothing to keep
            return
        try:
            async with self._pool.acquire() as conn:
                out = await uploads.take_chunk(
                    conn, self._store, upload_id=upload_id, amqp_user=message.user_id,
                    seq=seq, sha256=sha256, data=message.body)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            log.warning("transfer.chunk_retry", error=repr(exc))
            await asyncio.sleep(1)
            await message.nack(requeue=True)  # PostgreSQL is away: the chunk comes again
            return
        if out.result == "rejected" and out.reason is not None:
            log.warning("transfer.upload_rejected", upload=str(upload_id),
                        reason=out.reason.name, detail=out.detail)
            if out.upload is not None:  # the owner hears why its upload is gone
                receipt = uploads.rejection_receipt(out.upload, out.reason, out.detail)
                with contextlib.suppress(Exception):
                    await self._outbox.receipts(
                        [OutgoingReceipt(out.upload.gateway_id, receipt)])
        await message.ack()

    # requests (served by router.requests.RequestServer) ---------------------------------
    def route(self) -> Route:
        """The ``transfer`` request: open, status, fetch."""
        return Route(wire_names.TRANSFER_KEY, wire_names.TRANSFER, self._answer,
                     "transfer.error", Reason.UPLOAD_BAD_REQUEST)

    async def _answer(self, conn: Conn, request: HubRequest) -> Answer:
        gateway = await conn.fetchrow("SELECT status, amqp_user FROM gateways WHERE id = $1",
                                      request.gateway)
        if gateway is None or gateway["status"] != "active":
            raise OperationRefused(Reason.GATEWAY_UNKNOWN,
                                   f"no active gateway {request.gateway!r}")
        user: str = gateway["amqp_user"]
        op = request.body.get("op")
        if op == "open":
            answer = await self._open(conn, request.gateway, user, request.body)
        elif op == "status":
            answer = await self._status(conn, user, request.body)
        elif op == "fetch":
            return await self._fetch(conn, request.gateway, request.body)
        else:
            raise _bad(f"unknown op {str(op)[:40]!r}")
        return [json_answer(f"transfer.{op}", answer)]

    async def _open(self, conn: Any, gateway_id: str, user: str,
                    request: dict[str, Any]) -> dict[str, Any]:
        try:
            size = int(request["size"])
            sha256 = bytes.fromhex(str(request["sha256"]))
            message_id = str(request["message_id"])
        except (KeyError, ValueError, TypeError):
            raise _bad("open needs size, sha256 and message_id") from None
        up = await uploads.open_upload(
            conn, gateway_id=gateway_id, amqp_user=user, message_id=message_id, size=size,
            sha256=sha256, chunk_bytes=self._settings.chunk_bytes,
            max_bytes=self._settings.max_large_package_bytes,
            expiry=timedelta(minutes=self._settings.upload_expiry_minutes))
        present = await self._store.chunks_present(conn, up.id)
        log.info("transfer.opened", upload=str(up.id), gateway=gateway_id, size=size,
                 present=len(present))
        return {"upload_id": str(up.id), "chunk_bytes": up.chunk_bytes,
                "chunks": up.chunk_count, "present": present}

    async def _status(self, conn: Any, user: str, request: dict[str, Any]) -> dict[str, Any]:
        up = await uploads.load(conn, _uuid(request.get("upload_id")))
        if up is None:
            raise OperationRefused(Reason.UPLOAD_UNKNOWN, str(request.get("upload_id")))
        if up.amqp_user != user:
            raise OperationRefused(Reason.UPLOAD_NOT_YOURS, str(up.id))
        present = await self._store.chunks_present(conn, up.id)
        reason = up.reason
        return {"state": up.state, "present": present, "chunks": up.chunk_count,
                "hub_id": str(up.hub_id) if up.hub_id else None,
                "reason": reason.as_dict(up.detail) if reason is not None else None}

    async def _fetch(self, conn: Conn, gateway_id: str,
                     request: dict[str, Any]) -> AsyncIterator[aio_pika.Message]:
        up = await uploads.load(conn, _uuid(request.get("upload_id")))
        if up is None or up.state not in ("open", "stored"):
            raise OperationRefused(Reason.UPLOAD_UNKNOWN, str(request.get("upload_id")))
        allowed = up.gateway_id == gateway_id or (
            up.hub_id is not None and await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE hub_id = $1 "
                "AND gateway_id = $2)", up.hub_id, gateway_id))
        if not allowed:
            raise OperationRefused(Reason.FETCH_REFUSED, f"{up.id} for {gateway_id}")
        try:
            start = int(request.get("from", 0))
            count = max(1, min(FETCH_WINDOW, int(request.get("count", FETCH_WINDOW))))
        except (ValueError, TypeError):
            raise _bad("from and count must be integers") from None
        return self._chunks(conn, up.id, start, count)

    async def _chunks(self, conn: Conn, upload_id: uuid.UUID, start: int,
                      count: int) -> AsyncIterator[aio_pika.Message]:
        """The chunks asked for, one message each, then ``transfer.end``."""
        sent = 0
        async for seq, sha256, data in self._store.open_stream(conn, upload_id, start, count):
            yield aio_pika.Message(data, type="transfer.chunk",
                                   content_type="application/octet-stream",
                                   headers={wire_names.CHUNK_SEQ: seq,
                                            wire_names.CHUNK_SHA256: sha256.hex()})
            sent += 1
            del data
        yield json_answer("transfer.end", {"from": start, "count": sent})


async def expiry_loop(pool: asyncpg.Pool, store: BlobStore, outbox: Outbox, *,
                      every: float, stop: asyncio.Event) -> None:
    """Every ``every`` seconds: expire uploads past their time, tell their senders."""
    if every <= 0:
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return
        try:
            async with pool.acquire() as conn:
                expired = await uploads.expire_due(conn, store)
            if expired:
                await outbox.receipts([
                    OutgoingReceipt(u.gateway_id, uploads.rejection_receipt(
                        u, Reason.UPLOAD_EXPIRED, "not claimed in time")) for u in expired])
                log.warning("transfer.expired", uploads=[str(u.id) for u in expired])
        except Exception as exc:
            log.error("transfer.expiry_failed", error=repr(exc))
