"""The gateway SDK: what a ministry or province developer uses to connect to lienthong.

::

    from adapters import GatewayClient

    async with GatewayClient("amqp://vpcp:SECRET@axis.example:5672/lienthong") as gw:
        receipt = await gw.send(package_bytes)          # waits for the hub's receipt
        print(receipt.type, receipt.hub_id)             # accepted / duplicate / rejected
        async for msg in gw.inbox():                    # documents and status packages
            async with msg.process():                   # ack on success, retry on error
                store(msg.package, msg.body)

Copies the hub delivers twice (after a crash somewhere) carry the same ``message_id``;
the client drops the second one and counts it in ``duplicates_dropped``. By default the
filter lives in memory; pass ``seen=DurableSeenCopies("seen.sqlite")`` so that a gateway
that restarts still drops the copies it handled before.

Several clients of one gateway may run at once (several servers of a ministry): each
``send()`` gets its receipt directly (RabbitMQ direct reply-to), while the gateway's
receipts queue stays the durable record of every receipt and event, shared by the
clients' ``receipts()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from adapters import wire
from adapters.endpoints import connect_failover
from adapters.errors import (
    HubRefused,
    NotConnected,
    PublishNacked,
    PublishRefused,
    ReceiptTimeout,
    ReplayFailed,
    SenderCodeRequired,
    SendFailed,
    StatusNeedsDocument,
)
from adapters.seen import CopyFilter, SeenCopies
from schemas import (
    EdocPackage,
    Organization,
    PackageRejected,
    ParsedPackage,
    Reason,
    ResponseFor,
    StatusCode,
    StatusPackage,
    build_package,
    parse_package,
    wire_names,
)
from schemas.agency_code import normalize
from schemas.audit_anchor import (
    ANCHOR_MESSAGE_TYPE,
    AnchorGap,
    AuditAnchor,
    check_extends,
    verify_anchor,
)
from schemas.receipt import Receipt
from schemas.wire_names import DIRECT_REPLY, REPLAY, SUBMIT, inbox_queue, receipts_queue

wire.install()  # before any connection: see adapters.wire

__all__ = ["GatewayClient", "HubRefused", "InboxMessage", "ReplayFailed", "SendFailed"]

# the hub's default package limit (LIENTHONG_MAX_PACKAGE_BYTES); ask the hub's operators
MAX_PACKAGE_BYTES = 30 * 1024 * 1024

_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


class InboxMessage:
    """A document or status package the hub delivered to this gateway."""

    def __init__(self, message: AbstractIncomingMessage, seen: CopyFilter) -> None:
        self._message = message
        self._seen = seen
        self._parsed: ParsedPackage | None = None
        headers = message.headers or {}
        self.copy_id: str = message.message_id or ""
        self.kind: str = message.type or str(headers.get(wire_names.KIND, ""))
        self.hub_id: str = str(headers.get(wire_names.HUB_ID, ""))
        self.sender: str = str(headers.get(wire_names.SENDER, ""))
        self.document_id: str | None = _opt_str(headers.get(wire_names.DOCUMENT_ID))
        self.status_code: str | None = _opt_str(headers.get(wire_names.STATUS_CODE))
        self.recipients: list[str] = [_s(x) for x in _list(headers.get(wire_names.RECIPIENTS))]
        self.delivery_ids: list[str] = [_s(x) for x in _list(headers.get(wire_names.DELIVERY_IDS))]

    @property
    def body(self) -> bytes:
        """The package exactly as the sender signed and sent it."""
        return self._message.body

    @property
    def reference(self) -> dict[str, Any] | None:
        """For a large package's copy: the reference to fetch it by
        (``GatewayClient.fetch_large``); None when ``body`` is the package itself."""
        from adapters.transfer import reference_of

        return reference_of(self._message.body)

    @property
    def parsed(self) -> ParsedPackage:
        if self._parsed is None:
            self._parsed = parse_package(self._message.body)
        return self._parsed

    @property
    def package(self) -> EdocPackage | StatusPackage:
        return self.parsed.package

    async def ack(self) -> None:
        """Done with it. Remembered as handled first: if the connection drops before the
        broker hears the ack, the copy comes again and is dropped as a duplicate."""
        self._seen.add(self.copy_id)
        with contextlib.suppress(*_CONNECTION_ERRORS):
            await self._message.ack()

    async def retry(self) -> None:
        """Give it back to the hub; it comes again (up to the inbox's delivery limit,
        after which it is parked for operators, never dropped)."""
        with contextlib.suppress(*_CONNECTION_ERRORS):  # a lost channel gives it back too
            await self._message.nack(requeue=True)

    async def refuse(self) -> None:
        """Refuse it for good: the hub parks it with the reason for operators."""
        await self._message.reject(requeue=False)

    @contextlib.asynccontextmanager
    async def process(self, *, requeue: bool = True) -> AsyncIterator[Self]:
        """Ack when the block succeeds; on an exception retry it (``requeue``) or park it."""
        try:
            yield self
        except BaseException:
            if requeue:
                await self.retry()
            else:
                await self.refuse()
            raise
        else:
            await self.ack()


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _receipt(body: bytes) -> Receipt | None:
    try:
        return Receipt.from_json(body)
    except (ValueError, KeyError, TypeError):
        return None  # not a receipt: nothing a gateway can do with it


def _refusal(body: bytes) -> tuple[Reason, str]:
    """The reason and detail of a hub's refusal (``{"reason": {"reason", "code", …}}``);
    a reason this SDK does not know yet is PROCESSING_ERROR with the hub's words."""
    try:
        why = json.loads(body)["reason"]
        return Reason[why["reason"]], str(why.get("detail") or "")
    except (ValueError, KeyError, TypeError):
        return Reason.PROCESSING_ERROR, body[:300].decode("utf-8", "replace")


def _opt_str(x: Any) -> str | None:
    return None if x is None else _s(x)


def _list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else []


class GatewayClient:
    """An async connection of one gateway to the axis (robust: it reconnects by itself)."""

    def __init__(
        self,
        amqp_url: str,
        *,
        gateway_id: str | None = None,
        receipt_timeout: float = 30.0,
        seen: CopyFilter | None = None,
        sign: Callable[[bytes], bytes] | None = None,
        hub_public_key: bytes | None = None,
        max_package_bytes: int | None = MAX_PACKAGE_BYTES,
        tls: ssl.SSLContext | None = None,
        connection_name: str | None = None,
        take_receipts: bool = True,
        large_threshold: int = 16 * 1024 * 1024,
        max_large_bytes: int = 2 * 1024**3,
    ) -> None:
        """``seen``: the duplicate filter for delivered copies (in memory unless given,
        e.g. ``DurableSeenCopies(path)`` to survive restarts).
        ``sign``: applied to every package before it is sent, e.g.
        ``functools.partial(schemas.signature.sign_package, key_pem=…, cert_pem=…)``.
        ``hub_public_key``: the hub's receipt key (PEM); audit anchors arriving on the
        receipts queue are then verified and each checked to extend the one before
        (``last_anchor``, which a gateway may set from its own storage at start); what
        does not is listed in ``anchor_problems``.
        ``max_package_bytes``: the hub's size limit; a larger package (as signed) raises
        PackageRejected(PACKAGE_TOO_LARGE) and is not published (None: no local check).

        ``tls``: the TLS context of an ``amqps://`` URL, e.g.
        ``adapters.tls_context(ca, cert, key)`` for mutual TLS (or give ``cafile``,
        ``certfile``, ``keyfile`` in the URL's query).
        ``connection_name``: how the connection shows in RabbitMQ's management UI
        (default ``lienthong-gateway <gateway id> <pid>``).
        ``take_receipts``: False for a short-lived client that only asks the hub
        (``ask_hub``) or sends with a direct answer: it leaves the gateway's receipts queue
        to the gateway's own consumers (a receipt taken here would be gone for them).
        ``large_threshold``, ``max_large_bytes``: ``send_file`` sends a larger file as a
        large package, and refuses one over the hub's large limit (the hub's
        ``LIENTHONG_LARGE_THRESHOLD_BYTES`` and ``LIENTHONG_MAX_LARGE_PACKAGE_BYTES``)."""
        self.large_threshold = large_threshold
        self.max_large_bytes = max_large_bytes
        self._sign = sign
        self.hub_public_key = hub_public_key
        self.last_anchor: AuditAnchor | None = None
        self.anchor_problems: list[str] = []
        self.max_package_bytes = max_package_bytes
        parts = urlsplit(amqp_url)
        self.user = unquote(parts.username or "guest")
        self.gateway_id = gateway_id or self.user
        self.tls = tls
        self.connection_name = (
            connection_name or f"lienthong-gateway {self.gateway_id} {os.getpid()}"
        )
        self.amqp_url = amqp_url
        self.take_receipts = take_receipts
        self.receipt_timeout = receipt_timeout
        self.seen: CopyFilter = seen if seen is not None else SeenCopies()
        self.duplicates_dropped = 0
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._submit: AbstractExchange | None = None
        self._pending: dict[str, asyncio.Future[Receipt]] = {}
        self._other_receipts: asyncio.Queue[Receipt] = asyncio.Queue()
        self._receipt_tag: str | None = None
        self._receipt_queue: AbstractQueue | None = None
        self._seen_receipts = SeenCopies(50_000)
        self._inbox_tag: str | None = None
        self._inbox_buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._replays: dict[str, asyncio.Queue[AbstractIncomingMessage]] = {}
        # where the last replay stopped: pass it as ``after`` to go on from there
        self.replay_cursor: str | None = None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        wire.install()  # a frame with non-UTF-8 text must not kill this connection
        # several hosts in the URL (amqp://u:p@h1,h2/vhost): tried in turn on connect and
        # on loss (adapters.endpoints)
        self._connection = await connect_failover(
            self.amqp_url,
            ssl_context=self.tls,
            client_properties={"connection_name": self.connection_name},
        )
        self._channel = await self._connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=100)
        self._submit = await self._channel.get_exchange(SUBMIT, ensure=False)
        # a passive declare (no configure right needed) registers the queue with the robust
        # channel, so the consumer comes back by itself after a reconnect
        if self.take_receipts:
            self._receipt_queue = await self._channel.declare_queue(
                receipts_queue(self.gateway_id), passive=True
            )
            self._receipt_tag = await self._receipt_queue.consume(self._on_receipt)
        # receipts of this client's own sends, straight back on this channel
        replies = await self._channel.declare_queue(DIRECT_REPLY, passive=True)
        await replies.consume(self._on_reply, no_ack=True)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # sending -------------------------------------------------------------------------
    async def send(
        self,
        package: bytes | EdocPackage | StatusPackage,
        *,
        message_id: str | None = None,
        wait: bool = True,
        validate: bool = True,
        sender_code: str | None = None,
        kind: str | None = None,
    ) -> Receipt | None:
        """Submit a package. With ``wait`` returns the hub's receipt (accepted, duplicate
        or rejected); raises :class:`ReceiptTimeout` (a TimeoutError) carrying the
        ``message_id`` to send again with when none comes in ``receipt_timeout``, and
        :class:`PublishRefused` when RabbitMQ refuses the message (the client opens a new
        channel; nothing was sent).

        Bytes are parsed first (raising PackageRejected locally, before anything is sent)
        unless ``validate`` is False; then ``sender_code`` (the routing key) is required
        and the hub does all the checking.
        """
        if isinstance(package, bytes):
            body = package
            if validate:
                pkg = parse_package(body).package
                sender_code = sender_code or pkg.sender.organ_id
                kind = kind or pkg.kind
        else:
            body = build_package(package)
            sender_code = sender_code or package.sender.organ_id
            kind = kind or package.kind
        if not sender_code:
            raise SenderCodeRequired
        if self._sign is not None:
            body = self._sign(body)
        if self._submit is None or self._channel is None:
            raise NotConnected
        if self.max_package_bytes is not None and len(body) > self.max_package_bytes:
            raise PackageRejected(
                Reason.PACKAGE_TOO_LARGE,
                f"{len(body)} bytes > limit {self.max_package_bytes}; nothing was sent",
            )
        message_id = message_id or str(uuid.uuid4())
        message = aio_pika.Message(
            body,
            message_id=message_id,
            user_id=self.user,
            type=kind,
            headers={wire_names.SENT_AT: time.time()},
            content_type=wire_names.PACKAGE_CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            reply_to=DIRECT_REPLY if wait else None,
        )
        return await self._submit_message(message, sender_code, wait=wait)

    async def _submit_message(self, message: aio_pika.Message, sender_code: str, *,
                      wait: bool) -> Receipt | None:
        message_id = message.message_id or ""
        if not wait:
            await self._publish(message, normalize(sender_code))
            return None
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = fut
        try:
            await self._publish(message, normalize(sender_code))
            try:
                return await asyncio.wait_for(fut, self.receipt_timeout)
            except TimeoutError:
                raise ReceiptTimeout(message_id, self.receipt_timeout) from None
        finally:
            self._pending.pop(message_id, None)

    # large packages (adapters.transfer) -----------------------------------------------
    async def send_file(
        self,
        path: str | os.PathLike[str],
        *,
        message_id: str | None = None,
        wait: bool = True,
        validate: bool = True,
        sender_code: str | None = None,
        kind: str | None = None,
    ) -> Receipt | None:
        """Send the edXML file at ``path``: as one message up to ``large_threshold`` bytes
        (exactly as :meth:`send`), larger as a large package — chunked, resumable,
        checksummed, in bounded memory (``adapters.transfer``). Sending the same file again
        with the same ``message_id`` resumes an unfinished upload. Large packages are not
        signed by ``sign`` (sign the file before)."""
        from adapters import transfer

        file = Path(path)
        if os.stat(file).st_size <= self.large_threshold:
            with open(file, "rb") as fh:  # noqa: ASYNC230 - at most large_threshold bytes
                body = fh.read()
            return await self.send(body, message_id=message_id, wait=wait,
                                   validate=validate, sender_code=sender_code, kind=kind)
        return await transfer.send_large(
            self, file, message_id=message_id, wait=wait, validate=validate,
            sender_code=sender_code, kind=kind, max_bytes=self.max_large_bytes)

    async def fetch_large(self, message: InboxMessage | dict[str, Any],
                          dest: str | os.PathLike[str]) -> Path:
        """Fetch the large package a copy stands for (``message.reference``) into the file
        ``dest``: byte-identical, or FetchCorrupt and no file."""
        from adapters import transfer

        ref = message.reference if isinstance(message, InboxMessage) else message
        if ref is None:
            raise ValueError("not a large package's copy")
        return await transfer.fetch_large(self, ref, Path(dest))

    async def submit_claim(self, body: bytes, *, upload_id: str, message_id: str,
                           sender_code: str | None, kind: str | None,
                           wait: bool) -> Receipt | None:
        """Publish a large package's claim on ``lt.submit`` (``adapters.transfer``)."""
        if not sender_code:
            raise SenderCodeRequired
        message = aio_pika.Message(
            body, message_id=message_id, user_id=self.user, type=kind,
            headers={wire_names.SENT_AT: time.time(), wire_names.UPLOAD_ID: upload_id},
            content_type=wire_names.TRANSFER_CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            reply_to=DIRECT_REPLY if wait else None)
        return await self._submit_message(message, sender_code, wait=wait)

    async def hub_exchange(self, name: str) -> AbstractExchange:
        if self._channel is None:
            raise NotConnected
        return await self._channel.get_exchange(name, ensure=False)

    async def publish_to(self, exchange: AbstractExchange, message: aio_pika.Message,
                         routing_key: str) -> None:
        """Publish and await the confirm (see ``_publish``)."""
        await self._publish(message, routing_key, exchange)

    async def request_many(
        self, key: str, body: dict[str, Any]
    ) -> tuple[str, asyncio.Queue[AbstractIncomingMessage]]:
        """Ask the routers (``lt.replay``, routing key ``key``); the answers arrive in the
        queue returned until :meth:`forget_request`."""
        exchange = await self.hub_exchange(REPLAY)
        request_id = str(uuid.uuid4())
        answers: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._replays[request_id] = answers
        await self._publish(
            aio_pika.Message(json.dumps(body).encode(), correlation_id=request_id,
                             reply_to=DIRECT_REPLY, user_id=self.user,
                             content_type="application/json"),
            key, exchange)
        return request_id, answers

    def forget_request(self, request_id: str) -> None:
        self._replays.pop(request_id, None)

    async def _publish(self, message: aio_pika.Message, routing_key: str,
                       exchange: AbstractExchange | None = None) -> None:
        """Publish (to ``lt.submit`` unless told) and await the broker's confirm. A refused
        publish closes the channel (standard AMQP): the channel is restored at once and the
        send fails with a reason — PACKAGE_TOO_LARGE over the broker's maximum message
        size, else :class:`PublishRefused`."""
        exchange = exchange or self._submit
        if self._channel is None or exchange is None:
            raise NotConnected
        # after a reconnect the channel is usable before its consumers are back, and
        # RabbitMQ closes a channel that asks for direct replies it does not consume:
        # wait until the channel is wholly restored
        await self._channel.ready()
        try:
            await exchange.publish(message, routing_key=routing_key)
        except aiormq.exceptions.DeliveryError as exc:
            # a nack: the queue did not take it. After its node died, a channel can keep
            # refusing a quorum queue long after the queue has a new leader: start afresh
            await self._renew_channel()
            raise PublishNacked(message.message_id or "", str(exc)) from exc
        except aiormq.exceptions.ChannelClosed as exc:
            if isinstance(exc, aiormq.exceptions.ChannelInvalidStateError):
                raise
            await self._restore_channel()
            text = str(exc)
            if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed) and (
                "message size" in text
            ):
                raise PackageRejected(
                    Reason.PACKAGE_TOO_LARGE,
                    f"{len(message.body)} bytes refused by the broker: {text}",
                ) from exc
            raise PublishRefused(message.message_id or "", text) from exc

    async def _renew_channel(self) -> None:
        """Close this client's channel under the robust channel, which then opens a new
        one with its consumers (as after a channel the broker closed); wait for it.
        Unacked deliveries come again and are dropped as duplicates if handled."""
        channel = self._channel
        assert channel is not None
        with contextlib.suppress(Exception):
            underlay = await channel.get_underlay_channel()
            await underlay.close(aiormq.exceptions.ChannelClosed(0, "renewed after a nack"))
        await self._restore_channel()

    async def _restore_channel(self) -> None:
        """Wait until the robust channel has reopened with its consumers (it starts at
        once, as soon as the broker's close is processed), not for the next reconnect."""
        channel = self._channel
        assert channel is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.receipt_timeout
        while loop.time() < deadline:
            if not channel.is_closed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(channel.ready(), deadline - loop.time())
                if not channel.is_closed:
                    return
            await asyncio.sleep(0.01)  # the broker's close is being processed

    async def send_status(
        self,
        *,
        sender: Organization,
        about: EdocPackage | InboxMessage,
        code: StatusCode | str,
        description: str | None = None,
        to: str | None = None,
        wait: bool = True,
    ) -> Receipt | None:
        """Answer a document with a status (01 arrived, 03 accepted, 06 done, ...).

        The status goes to the document's sender, or to ``to`` (a recall, 13, goes from
        the sender to a recipient).
        """
        doc = about.package if isinstance(about, InboxMessage) else about
        if not isinstance(doc, EdocPackage):
            raise StatusNeedsDocument(type(doc).__name__)
        from datetime import datetime, timedelta, timezone

        status = StatusPackage(
            sender=sender,
            response_for=ResponseFor(
                organ_id=to or doc.sender.organ_id,
                code=str(doc.code) or None,
                promulgation_date=doc.promulgation.promulgation_date,
                document_id=doc.document_id,
            ),
            status_code=StatusCode(code),
            description=description,
            timestamp=datetime.now(timezone(timedelta(hours=7))).replace(
                tzinfo=None, microsecond=0
            ),
        )
        return await self.send(status, wait=wait)

    def take_anchor(self, body: bytes) -> AuditAnchor | None:
        """Check a signed audit head from the hub against the last one kept (see
        ``schemas.audit_anchor``); keep it when it verifies. A missing anchor in between
        (another client of this gateway took it) is not a problem; a fork is."""
        if self.hub_public_key is None:
            return None
        try:
            anchor = verify_anchor(body, self.hub_public_key)
            if self.last_anchor is not None:
                check_extends(self.last_anchor, anchor)
        except AnchorGap:
            pass
        except ValueError as exc:  # unsigned, forged, forked, cut back
            self.anchor_problems.append(str(exc))
            return None
        if self.last_anchor is None or anchor.number > self.last_anchor.number:
            self.last_anchor = anchor
        return anchor

    async def _on_receipt(self, message: AbstractIncomingMessage) -> None:
        if message.type == ANCHOR_MESSAGE_TYPE:
            self.take_anchor(message.body)
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await message.ack()
            return
        receipt = _receipt(message.body)
        if receipt is not None and not self._answer(receipt):  # nobody waits, not seen
            self._seen_receipts.add(receipt.receipt_id)
            self._other_receipts.put_nowait(receipt)
        with contextlib.suppress(*_CONNECTION_ERRORS):
            await message.ack()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        """A receipt sent straight to this client (its copy in the queue may reach
        another client of the gateway, or this one, where it is dropped as seen)."""
        replay = self._replays.get(message.correlation_id or "")
        if replay is not None:
            replay.put_nowait(message)
            return
        receipt = _receipt(message.body)
        if receipt is not None:
            self._answer(receipt)

    def _answer(self, receipt: Receipt) -> bool:
        """Hand ``receipt`` to the ``send`` waiting for it, if any; True when handled."""
        fut = self._pending.get(receipt.message_id or "")
        if fut is not None and not fut.done() and receipt.type != "delivery":
            # even a receipt seen before (a re-sent message gets the same receipt
            # again) answers a waiting send
            fut.set_result(receipt)
            self._seen_receipts.add(receipt.receipt_id)
            return True
        return receipt.receipt_id in self._seen_receipts

    async def receipts(self) -> AsyncIterator[Receipt]:
        """Receipts no ``send`` of this client is waiting for: delivery events (a
        recipient's state changed) and receipts of packages sent with ``wait=False``.
        Several clients of one gateway share this feed (it is the gateway's receipts
        queue), so it can also show the receipts of the other clients' sends."""
        while True:
            yield await self._other_receipts.get()

    async def replay_receipts(
        self,
        *,
        since: datetime | None = None,
        after: str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Receipt]:
        """The receipts this gateway missed, rebuilt by the hub from its ledger: from
        ``since`` (an aware datetime) or after ``after`` (a cursor, see
        ``replay_cursor``), oldest first, each with its original ``receipt_id``.

        The receipts queue keeps only the newest receipts (the hub drops the oldest past
        its bound); a gateway that was away replays the rest. Receipts this client has
        already seen (by ``receipt_id``) are skipped, and those replayed are then dropped
        if they still come through ``receipts()``: each receipt comes once.
        Raises ReplayFailed (with a reason) when the hub refuses the request and
        TimeoutError when it does not answer within ``receipt_timeout``."""
        assert self._channel is not None, "connect() first"
        if since is None and after is None:
            raise ValueError("give since or after")
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be an aware datetime (with a time zone)")
        cursor = after
        while True:
            body = {"since": since.isoformat() if since and cursor is None else None,
                    "after": cursor, "limit": page_size}
            async with self._asking(wire_names.REPLAY_RECEIPTS_KEY, body) as answers:
                while True:
                    message = await asyncio.wait_for(answers.get(), self.receipt_timeout)
                    if message.type == "replay.end":
                        end = json.loads(message.body)
                        break
                    if message.type == "replay.error":
                        raise ReplayFailed(*_refusal(message.body))
                    receipt = _receipt(message.body)
                    if receipt is None or receipt.receipt_id in self._seen_receipts:
                        continue
                    self._seen_receipts.add(receipt.receipt_id)
                    yield receipt
            cursor = end.get("cursor") or cursor
            self.replay_cursor = cursor
            if not end.get("more"):
                return

    @contextlib.asynccontextmanager
    async def _asking(self, key: str, body: dict[str, Any]
                      ) -> AsyncIterator[asyncio.Queue[AbstractIncomingMessage]]:
        """Publish one request to the routers (``lt.replay``, routing key ``key``, this
        gateway's ``user_id``, direct reply-to) and give the queue its answers arrive on,
        for as long as the block runs."""
        if self._channel is None:
            raise NotConnected
        exchange = await self._channel.get_exchange(REPLAY, ensure=False)
        request_id = str(uuid.uuid4())
        answers: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._replays[request_id] = answers
        try:
            await self._publish(
                aio_pika.Message(json.dumps(body).encode(), correlation_id=request_id,
                                 reply_to=DIRECT_REPLY, user_id=self.user,
                                 content_type="application/json",
                                 # not answered by then: nobody waits, nobody acts on it
                                 expiration=self.receipt_timeout),
                key, exchange,
            )
            yield answers
        finally:
            self._replays.pop(request_id, None)

    async def ask_hub(self, key: str, body: dict[str, Any]) -> tuple[str, Any]:
        """One request to the routers with routing key ``key`` (``directory``,
        ``directory.register_agency``, ``audit.record_gateway_change``…; see
        ``router.requests``) and its one answer, as (message type, parsed JSON).
        Raises HubRefused (with the hub's reason) when the hub refuses the request,
        TimeoutError when no router answers within ``receipt_timeout``."""
        async with self._asking(key, body) as answers:
            message = await asyncio.wait_for(answers.get(), self.receipt_timeout)
        if (message.type or "").endswith(".error"):
            raise HubRefused(*_refusal(message.body))
        return message.type or "", json.loads(message.body)

    # receiving -------------------------------------------------------------------------
    async def inbox(
        self, *, timeout: float | None = None  # noqa: ASYNC109 - an idle time, not a deadline
    ) -> AsyncIterator[InboxMessage]:
        """Documents and status packages for this gateway, each once.

        Stops after ``timeout`` seconds without a message (never, when None). One consumer
        serves the client's whole life (started on first use); it survives reconnections.
        """
        if self._channel is None:
            raise NotConnected
        if self._inbox_tag is None:
            queue = await self._channel.declare_queue(inbox_queue(self.gateway_id), passive=True)
            self._inbox_tag = await queue.consume(self._on_inbox)
        while True:
            try:
                message = await asyncio.wait_for(self._inbox_buffer.get(), timeout)
            except TimeoutError:
                return
            if message.message_id and message.message_id in self.seen:
                self.duplicates_dropped += 1
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await message.ack()
                continue
            yield InboxMessage(message, self.seen)

    async def _on_inbox(self, message: AbstractIncomingMessage) -> None:
        self._inbox_buffer.put_nowait(message)
