"""The façade's side of each gateway: one SDK client per gateway, and the intake that
moves copies from the gateway's inbox into the façade's mailbox.

A copy is written to PostgreSQL (one transaction per batch) before its AMQP ack, keyed by
the hub's copy id: a crash between the two only means the hub delivers the copy again,
and the second insert changes nothing. So a copy is never lost and never listed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass

import structlog

from adapters.client import MAX_PACKAGE_BYTES, GatewayClient, InboxMessage
from adapters.transfer import LARGE_THRESHOLD, MAX_LARGE_BYTES
from adapters.vxp.envelope import VxpFailure
from adapters.vxp.store import NewCopy, Store
from schemas.reasons import LienthongError, Reason
from schemas.receipt import Receipt

__all__ = ["GatewayLink", "GatewayLinks", "Limits"]

log = structlog.get_logger("lienthong.vxp")

@dataclass(frozen=True, slots=True)
class Limits:
    """The hub's size limits, as each gateway's client takes them
    (``LIENTHONG_MAX_PACKAGE_BYTES``, ``LIENTHONG_LARGE_THRESHOLD_BYTES``,
    ``LIENTHONG_MAX_LARGE_PACKAGE_BYTES``): a file over ``large_threshold`` is sent as a
    large package, in chunks."""

    max_package_bytes: int = MAX_PACKAGE_BYTES
    large_threshold: int = LARGE_THRESHOLD
    max_large_bytes: int = MAX_LARGE_BYTES


BATCH = 200
BUFFER = 500  # copies held in memory per gateway at most (the client prefetches 100)


def _copy(msg: InboxMessage) -> NewCopy:
    """What the mailbox keeps of a copy: the package, or for a large package its reference
    (small JSON: the bytes stay in the hub's blob store until a download fetches them)."""
    body = msg.body
    reference = msg.reference
    if reference is not None and msg.kind not in ("edoc", "status"):
        raise LienthongError(Reason.TYPE_MISSING, f"large copy of kind {msg.kind!r}")
    kind = msg.kind if msg.kind in ("edoc", "status") else msg.package.kind
    return NewCopy(
        doc_id=msg.copy_id or hashlib.sha256(body).hexdigest(),
        kind=kind,
        hub_id=msg.hub_id,
        sender=msg.sender,
        recipients=msg.recipients,
        document_id=msg.document_id,
        status_code=msg.status_code,
        body=body,
        large=reference is not None,
        size=int(reference["size"]) if reference is not None else len(body),
    )


class GatewayLink:
    """One gateway: its SDK client (sending) and its inbox intake (receiving)."""

    def __init__(self, gateway_id: str, amqp_url: str, store: Store,
                 *, receipt_timeout: float, limits: Limits | None = None) -> None:
        self.gateway_id = gateway_id
        self.store = store
        limits = limits or Limits()
        self.client = GatewayClient(amqp_url, gateway_id=gateway_id,
                                    receipt_timeout=receipt_timeout,
                                    max_package_bytes=limits.max_package_bytes,
                                    large_threshold=limits.large_threshold,
                                    max_large_bytes=limits.max_large_bytes)
        self._buffer: asyncio.Queue[InboxMessage] = asyncio.Queue(BUFFER)
        self._events: asyncio.Queue[Receipt] = asyncio.Queue(BUFFER)
        self._tasks: list[asyncio.Task[None]] = []
        self.stored = 0

    async def start(self) -> None:
        await self.client.connect()
        self._tasks = [
            asyncio.create_task(self._read(), name=f"vxp-inbox-{self.gateway_id}"),
            asyncio.create_task(self._write(), name=f"vxp-store-{self.gateway_id}"),
            asyncio.create_task(self._read_events(), name=f"vxp-rcpt-{self.gateway_id}"),
            asyncio.create_task(self._write_events(), name=f"vxp-evt-{self.gateway_id}"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()  # unacked copies go back to the hub's queue

    async def _read(self) -> None:
        async for msg in self.client.inbox():
            await self._buffer.put(msg)

    async def _write(self) -> None:
        while True:
            batch = [await self._buffer.get()]
            while len(batch) < BATCH and not self._buffer.empty():
                batch.append(self._buffer.get_nowait())
            good: list[InboxMessage] = []
            copies: list[NewCopy] = []
            for m in batch:
                try:
                    copies.append(_copy(m))
                    good.append(m)
                except LienthongError as exc:  # no kind and not edXML: the hub parks it
                    log.warning("vxp.mailbox.refused", gateway=self.gateway_id,
                                copy=m.copy_id, reason=exc.reason.name)
                    with contextlib.suppress(Exception):
                        await m.refuse()
            batch = good
            if not batch:
                continue
            try:
                await self.store.store_copies(self.gateway_id, copies)
            except Exception:
                log.exception("vxp.mailbox.store_failed", gateway=self.gateway_id,
                              copies=len(batch))
                for m in batch:
                    await m.retry()  # back to the hub; it comes again
                await asyncio.sleep(1.0)
                continue
            for m in batch:
                await m.ack()
            self.stored += len(batch)

    async def _read_events(self) -> None:
        async for receipt in self.client.receipts():
            if receipt.type == "delivery":
                await self._events.put(receipt)

    async def _write_events(self) -> None:
        """Delivery events (for getSentEdocList), one transaction per batch."""
        while True:
            batch = [await self._events.get()]
            while len(batch) < BATCH and not self._events.empty():
                batch.append(self._events.get_nowait())
            try:
                await self.store.record_events(batch)
            except Exception:
                log.exception("vxp.events.store_failed", gateway=self.gateway_id,
                              events=len(batch))


class GatewayLinks:
    """The gateways the façade speaks for, connected on first use."""

    def __init__(self, store: Store, *, receipt_timeout: float = 30.0,
                 limits: Limits | None = None) -> None:
        self.store = store
        self.receipt_timeout = receipt_timeout
        self.limits = limits or Limits()
        self._links: dict[str, GatewayLink] = {}
        self._lock = asyncio.Lock()
        self._starting: dict[str, asyncio.Task[None]] = {}

    async def get(self, gateway_id: str) -> GatewayLink:
        link = self._links.get(gateway_id)
        if link is not None:
            return link
        async with self._lock:
            link = self._links.get(gateway_id)
            if link is not None:
                return link
            url = await self.store.gateway_url(gateway_id)
            if url is None:
                raise VxpFailure(Reason.VXP_GATEWAY_UNAVAILABLE,
                                 f"no AMQP URL for gateway {gateway_id}")
            link = GatewayLink(gateway_id, url, self.store,
                               receipt_timeout=self.receipt_timeout, limits=self.limits)
            try:
                await asyncio.wait_for(link.start(), 15.0)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await link.close()
                log.warning("vxp.gateway.connect_failed", gateway=gateway_id, error=str(exc))
                raise VxpFailure(Reason.VXP_GATEWAY_UNAVAILABLE, gateway_id) from exc
            self._links[gateway_id] = link
            log.info("vxp.gateway.connected", gateway=gateway_id)
            return link

    def kick(self, gateway_id: str) -> None:
        """Connect ``gateway_id`` in the background if it is not yet (its mailbox then
        fills whether or not anybody sends)."""
        if gateway_id in self._links or gateway_id in self._starting:
            return

        async def start() -> None:
            with contextlib.suppress(VxpFailure):  # logged; tried again later
                await self.get(gateway_id)

        task = asyncio.create_task(start(), name=f"vxp-link-{gateway_id}")
        self._starting[gateway_id] = task
        task.add_done_callback(lambda _: self._starting.pop(gateway_id, None))

    async def keep_linked(self, every: float = 10.0) -> None:
        """Link every gateway that has systems, now and then again (new systems, a
        gateway whose first connection failed)."""
        while True:
            try:
                for gateway_id in await self.store.gateways_in_use():
                    self.kick(gateway_id)
            except Exception:
                log.exception("vxp.gateways.refresh_failed")
            await asyncio.sleep(every)

    async def close(self) -> None:
        for task in list(self._starting.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()
