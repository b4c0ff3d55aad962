"""The routing worker: consumes the intake queues in batches and moves packages on.

It consumes ``lt.router.in`` and every gateway's intake queue (``lt.router.in.<id>``,
``router.directory.intake_queues``), new ones as they appear, and builds each batch across
them in turn (``router.routing.sources``): one gateway's burst does not stand before
another gateway's document. It stops taking deliveries while it holds more than
``LIENTHONG_INFLIGHT_MAX_BYTES`` unacknowledged, and takes them again below.

For each batch:

1. route it (``router.routing.batch``): parse, validate, authorise, resolve recipients and write
   documents, deliveries, status events, rejections and audit rows in one transaction;
2. publish one copy per recipient gateway to ``lt.deliver`` (persistent, ``mandatory``),
   all at once, then await every publisher confirm together;
3. mark deliveries ``queued`` (or ``undeliverable`` when the broker returned the copy: no
   inbox) in one statement; copies the broker keeps refusing (a quorum queue electing a
   new leader nacks them) are not marked: the batch waits and runs again, as in an outage;
4. publish the receipts (pipelined confirms again);
5. ack the whole batch with ``multiple=True``.

Two batches are in flight at once (``PIPELINE_DEPTH``): while one waits for the broker's
confirms and marks its deliveries, the next is parsed, decided and recorded. Packages are
still decided in queue order (a batch routes once the one before it has recorded: a status
or a revoke sent right behind its document sees it), and acks stay in order: a batch acks
only once the batch before it has acked (or returned its messages), as ``multiple=True``
covers every earlier delivery of the channel.

A crash anywhere before 5 leaves the messages unacked: RabbitMQ redelivers them, the
ledger's unique keys turn the second pass into a resume (same ids, same copies), and
gateways drop copies they already have by ``message_id``.

Messages redelivered after a crash are *suspects*: the worker routes them in small groups
the first time, then one by one, counting an attempt against a message only when it was
processed alone, and parks a message that keeps failing alone (``lt.parking`` with the
reason, a POISON rejection in the ledger and a receipt to the sender) instead of letting it
take the worker down forever. A message whose outcome the ledger already holds is never
parked: it is resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
import aiormq
import asyncpg
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from adapters import wire
from router import amqp, ledger, metrics, topology
from router.directory import agency_requests, feed, intake_queues
from router.outbox import events as notifications
from router.outbox import publish as publishing
from router.outbox.outbox import Outbox
from router.outbox.signing import hub_signer
from router.recovery import deadlines, parking, replay
from router.requests import RequestServer
from router.routing import liveness
from router.routing.batch import BatchPlan, BatchRouter, Copy, Incoming, OutgoingReceipt, derive_id
from router.routing.sources import Sources
from router.security import anchors, gateway_changes, posture
from router.security.signature_gate import SignatureGate
from router.settings import Settings
from router.transfer.claims import Claims, upload_id_of
from router.transfer.server import TransferServer, expiry_loop
from router.transfer.store import PostgresBlobStore
from schemas import ParseLimits, wire_names
from schemas.reasons import Reason
from schemas.receipt import Receipt

__all__ = ["RouterWorker", "run_router"]

log = structlog.get_logger("lienthong.router")

DIRECT_REPLY_PREFIX = f"{wire_names.DIRECT_REPLY}."
OUTAGE_PATIENCE = 300.0  # seconds a batch waits for PostgreSQL/RabbitMQ to come back
SUSPECT_GROUP = 16  # first retry after a crash: in groups this small
PARK_AFTER = 3  # a message that took its router down alone this many times is parked
START_RETRY_SECONDS = 1.0  # a start cut short by a lost node begins again after this
PIPELINE_DEPTH = 2  # batches in flight at once (suspects: one, alone)
RESUME_AT = 0.75  # deliveries stopped at the in-flight bytes budget resume below this share
# while a burst shares the router with a quiet gateway, a batch routes in about this long
# (what the quiet gateway's next document may wait for): its size follows the time
# routing has taken per package lately
SHARED_ROUTE_SECONDS = 0.03


@dataclass(frozen=True, slots=True)
class _Turn:
    """A pipelined batch's place: it routes (decides and records) once the batch before it
    has (``before``), and says so (``done``), so packages are still decided in queue
    order; only the waits for confirms overlap."""

    before: asyncio.Future[None] | None
    done: asyncio.Future[None]


class _Abandon(Exception):
    """The messages' channel is gone during an outage; the broker redelivers them."""


def _transient(exc: BaseException) -> bool:
    """Errors that mean "a service is away", not "this message is bad"."""
    return isinstance(
        exc,
        OSError
        | TimeoutError
        | asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.OperatorInterventionError
        # a PostgreSQL failover: no host is the primary yet, or this one was just demoted
        | asyncpg.exceptions.TargetServerAttributeNotMatched
        | asyncpg.exceptions.ReadOnlySQLTransactionError
        | aiormq.exceptions.AMQPConnectionError
        | aiormq.exceptions.ChannelInvalidStateError
        | aiormq.exceptions.ChannelClosed
        # a queue without a leader (its node died) refuses until its members elect one
        | publishing.QueueRefused,
    ) and not isinstance(exc, aiormq.exceptions.ChannelAccessRefused)


def _channel_gone(m: AbstractIncomingMessage) -> bool:
    """Is the channel that delivered ``m`` closed (its deliveries void)? aio-pika raises
    on ``m.channel`` once it is, rather than return a closed channel."""
    try:
        return m.channel.is_closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return True


def _endpoint(conn: AbstractRobustConnection | None) -> str | None:
    """``host:port`` of the node a connection uses (or last used)."""
    url = getattr(conn, "url", None)
    return f"{url.host}:{url.port}" if url is not None else None


@dataclass(slots=True)
class BatchStats:
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    parked: int = 0
    copies: int = 0


_TEXT_PROPERTIES = ("routing_key", "message_id", "type", "user_id", "reply_to",
                    "correlation_id", "app_id", "content_type", "content_encoding")


def _unstorable(text: str) -> bool:
    """Not UTF-8 on the wire, or holding NUL (which PostgreSQL text cannot store)."""
    return wire.undecodable(text) or "\x00" in text


def _stand_in(text: str) -> str:
    return wire.printable(text).replace("\x00", "\\x00")


def _clean(value: Any, path: str, problems: list[str]) -> Any:
    """A header value that pamqp can encode again: undecodable keys and texts (kept by
    ``adapters.wire`` as surrogates) become printable, and each one is reported."""
    if isinstance(value, str):
        if wire.undecodable(value):
            problems.append(f"header {path} {wire.raw(value)!r} is not UTF-8")
            return wire.printable(value)
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            if _unstorable(key):
                problems.append(f"header key {wire.raw(key)!r} is not UTF-8 text")
                key = _stand_in(key)
            out[key] = _clean(v, f"{path}.{key}" if path else key, problems)
        return out
    if isinstance(value, list | tuple):
        return [_clean(v, path, problems) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Envelope:
    """A delivered message's AMQP envelope in a form the hub can store and publish again.

    ``adapters.wire`` lets undecodable bytes through the frame reader as surrogates; here
    each text property and header is checked: ``error`` says what was not UTF-8 (None when
    all was), and every field holds a printable stand-in (``\\xff`` for a byte 0xff), never
    the raw text, so nothing downstream (asyncpg, pamqp's encoders, JSON) trips on it."""

    routing_key: str
    message_id: str | None
    type: str | None
    user_id: str | None
    reply_to: str | None
    headers: dict[str, Any]
    error: str | None

    @classmethod
    def of(cls, m: AbstractIncomingMessage) -> Envelope:
        problems: list[str] = []
        text: dict[str, str | None] = {}
        for name in _TEXT_PROPERTIES:
            value = getattr(m, name, None)
            if isinstance(value, str) and _unstorable(value):
                problems.append(f"{name} {wire.raw(value)!r} is not UTF-8 text")
                value = _stand_in(value)
            text[name] = value if isinstance(value, str) else None
        headers = _clean(dict(m.headers or {}), "", problems)
        return cls(
            routing_key=text["routing_key"] or "",
            message_id=text["message_id"],
            type=text["type"],
            user_id=text["user_id"],
            reply_to=text["reply_to"],
            headers=headers,
            error="; ".join(problems)[:1000] or None,
        )


class RouterWorker:
    """One routing worker process (run several as competing consumers)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.router = BatchRouter(
            pool,
            limits=ParseLimits(
                max_bytes=settings.max_package_bytes,
                max_recipients=settings.max_recipients,
                max_attachments=settings.max_attachments,
            ),
            gate=SignatureGate(pool, warn_days=settings.certificate_warn_days),
        )
        self.stats = BatchStats()
        self._blobs = PostgresBlobStore()  # large packages (router.transfer)
        self._claims = Claims(pool, self._blobs, ParseLimits(
            max_bytes=settings.max_large_package_bytes,
            max_recipients=settings.max_recipients,
            max_attachments=settings.max_attachments))
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._deliver: AbstractExchange | None = None
        self._receipts: AbstractExchange | None = None
        self._dead: AbstractExchange | None = None
        self._outbox: Outbox | None = None
        # what this router holds from its intake queues: one FIFO per queue, fair batches
        self._sources: Sources[AbstractIncomingMessage] = Sources(
            size=lambda m: len(m.body), tag=lambda m: (m.channel, m.delivery_tag or 0))
        self._arrived = asyncio.Event()  # a message joined the sources
        self._hub_user = amqp.hub_user(settings)
        hub_signer(settings)  # an unusable key stops the worker now (unset: a warning)
        self._last_full = False
        self._consuming = False
        self._intake_channel: AbstractChannel | None = None
        self._intake: dict[str, tuple[AbstractQueue, str]] = {}  # queue -> consumer tag
        self._paused = False  # holding more bytes than the budget: not consuming
        self._refreshing: asyncio.Task[None] | None = None
        self._wanted: set[str] = set()  # intake queues to consume (unless paused)
        self._intake_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.peak_held_bytes = 0
        # the route step of the batch handed on last: the next batch is taken once it is
        # done (when it can route at once), so it is made of what waits then, fairly
        self._routing: asyncio.Future[None] | None = None
        self._route_each: float | None = None  # seconds per package routed, lately
        self._transfers: asyncpg.Pool | None = None  # large packages' own connections
        self._batches = 0

    async def run(self, stop: asyncio.Event) -> None:
        # large packages: uploads opened, chunks stored, fetched; expired ones removed —
        # on connections of their own, so routing never waits for a pool connection
        self._transfers = await ledger.router_pool(self.settings.database_url, min_size=1,
                                                   max_size=3)
        transfers = self._transfers
        self._claims.use(transfers)
        try:
            connection = await self._start(stop)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(transfers.close(), 10)
            raise
        if connection is None:  # stopped while (re)starting
            await transfers.close()
            return
        async with connection:
            assert self._outbox is not None
            expiring = asyncio.create_task(expiry_loop(
                transfers, self._blobs, self._outbox, every=self.settings.sweep_seconds,
                stop=stop))
            log.info("router.started", batch_size=self.settings.batch_size, pid=os.getpid())
            async with self.pool.acquire() as conn:
                await posture.record_start(conn, "router", self.settings,
                                           receipts_signed=self._outbox.signed)
            sweeper = asyncio.create_task(self._sweep_deadlines(stop))
            anchoring = asyncio.create_task(anchors.anchor_loop(
                self.pool, self._receipts_exchange, self._outbox.signer,
                interval=self.settings.audit_anchor_seconds, stop=stop))
            # batches in flight: while one waits for the broker's confirms, the next one is
            # routed (in queue order: see _Turn; each acks after the one before)
            inflight: list[asyncio.Task[None]] = []
            routed: asyncio.Future[None] | None = None  # the previous batch's route step
            try:
                while not stop.is_set():
                    while len(inflight) >= PIPELINE_DEPTH:
                        await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                        inflight = [t for t in inflight if not t.done()]
                    batch = await self._next_batch(stop)
                    if not batch:
                        continue
                    self._batches += 1
                    if any(m.redelivered for m in batch):
                        # suspects are blamed only for what they do alone: nothing else
                        # is in flight while they are routed
                        await asyncio.gather(*inflight, return_exceptions=True)
                        inflight = []
                        await self._handle_or_return(batch, None)
                        continue
                    previous = inflight[-1] if inflight else None
                    turn = _Turn(routed, asyncio.get_running_loop().create_future())
                    routed = turn.done
                    inflight.append(asyncio.create_task(
                        self._handle_or_return(batch, previous, turn)))
            finally:
                await asyncio.gather(*inflight, return_exceptions=True)
                self._consuming = False
                sweeper.cancel()
                anchoring.cancel()
                expiring.cancel()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(transfers.close(), 10)
                await self._stop_intake()
                log.info("router.stopped", **self._stats_dict())

    async def _start(self, stop: asyncio.Event) -> AbstractRobustConnection | None:
        """Connect and set everything up (:meth:`_set_up`). A node lost midway (the
        connection drops between two steps, as when the only node it knew dies) does not
        end the worker: that attempt's connection is closed and the start begins again on
        a fresh one, as often as it takes, while the worker stays alive and not ready.
        Only the very first connect raises (a wrong URL or password fails the start).
        None when ``stop`` is set first."""
        attempt = 0
        while not stop.is_set():
            attempt += 1
            try:
                connection = await amqp.connect(self.settings, "router")
            except Exception as exc:
                if attempt == 1 or not _transient(exc):
                    raise
                log.warning("router.start_waiting", error=repr(exc), attempt=attempt)
                await self._pause(stop, START_RETRY_SECONDS)
                continue
            self._connection = connection
            transport = connection.transport
            try:
                await self._set_up(connection)
            except Exception as exc:
                # the node went away under the start: aiormq then says so in many ways
                # (a RuntimeError "... closed" from a channel opened on the lost connection)
                lost = (transport is None or connection.transport is not transport
                        or transport.connection.is_closed)
                with contextlib.suppress(Exception):
                    await connection.close()
                if not (lost or _transient(exc)):
                    raise
                log.warning("router.start_interrupted", error=repr(exc), attempt=attempt,
                            endpoint=_endpoint(connection))
                await self._pause(stop, START_RETRY_SECONDS)
                continue
            return connection
        return None

    async def _open_publishing(self, connection: AbstractRobustConnection) -> None:
        """The publisher-confirm channel, its exchanges and the outbox on it (the one
        outbox object, which the transfer server and the expiry loop hold too, moves to a
        renewed channel)."""
        channel = await connection.channel(publisher_confirms=True)
        self._deliver = await channel.get_exchange(topology.DELIVER)
        self._receipts = await channel.get_exchange(topology.RECEIPTS)
        self._dead = await channel.get_exchange(topology.DEAD)
        if self._outbox is None:
            self._outbox = await Outbox.open(channel, self.settings)
        else:
            await self._outbox.move_to(channel)
        self._publish_channel = channel

    async def _renew_publishing(self) -> None:
        """A fresh publishing channel in place of one the broker keeps refusing.

        Seen on the 3-node cluster after kill -9 of a node: the router's channel, restored
        on a surviving node while the dead node's quorum queues were still electing, had
        every publish to one of those queues nacked for minutes, long after a new leader
        was elected (a new channel on the same node published at once). RabbitMQ keeps
        its per-channel queue client state; a new channel starts from the queue's current
        leader."""
        old, conn = self._publish_channel, self._connection
        if conn is None or conn.is_closed or not conn.connected.is_set():
            return  # the robust connection restores every channel when it is back
        try:
            await self._open_publishing(conn)
        except Exception as exc:
            log.warning("router.publish_channel_renew_failed", error=repr(exc))
            return
        log.warning("router.publish_channel_renewed", endpoint=_endpoint(conn))
        metrics.PUBLISH_CHANNEL_RENEWALS.inc()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    def _receipts_exchange(self) -> AbstractExchange:
        assert self._receipts is not None
        return self._receipts

    @staticmethod
    async def _pause(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _set_up(self, connection: AbstractRobustConnection) -> None:
        """Channels, exchanges, the consumers of the intake queues and ``lt.parking``, the
        replay and directory servers. Ready (``/readyz``) only once all of it is done."""
        consume = await connection.channel()
        # in-flight bytes bounded: prefetch x the broker's maximum message size on each
        # intake queue (quorum queues have no per-channel prefetch), and no consumer at
        # all while more than the budget is held (_hold_changed)
        await consume.set_qos(prefetch_count=self.settings.prefetch_count)
        await self._open_publishing(connection)
        self._intake_channel = consume
        self._intake.clear()
        # the intake queues are consumed by name (get_queue without a declaration), so
        # the robust connection does not restore their consumers: this does, once it has
        # restored the channels after a broker restart or a lost node
        connection.reconnect_callbacks.add(self._consume_again)
        await self._refresh_intake(connection)
        if self._refreshing is not None:  # a start begun again: on this connection now
            self._refreshing.cancel()
        self._refreshing = asyncio.create_task(self._refresh_loop(connection))
        parking_channel = await connection.channel()
        await parking_channel.set_qos(prefetch_count=20)
        parking = await parking_channel.get_queue(topology.PARKING)
        await parking.consume(self._on_parked)
        # gateways ask here: the receipts they missed, the directory feed, changes
        async with self.pool.acquire() as conn:  # agencies of a ledger older than the feed
            await feed.publish(conn)
        assert self._outbox is not None
        await RequestServer(self.pool, [
            replay.route(self._outbox.sign), feed.route(), *agency_requests.routes(),
            gateway_changes.route(),
        ]).start(connection)
        assert self._transfers is not None
        transfer = TransferServer(self._transfers, self._blobs, self.settings, self._outbox)
        await transfer.start(connection)
        # fetches stream a chunk at a time on the transfers' own connections
        await RequestServer(self._transfers, [transfer.route()], prefetch=2).start(connection)
        self._consuming = True

    # intake queues ----------------------------------------------------------------------
    async def _refresh_intake(self, connection: AbstractRobustConnection) -> None:
        """Reconcile the gateways' intake queues with the directory (one router at a time),
        then consume every intake queue the ledger lists: gateways added since included,
        draining ones (their gateway gone) only while they hold messages."""
        channel = await connection.channel()
        try:
            async with self.pool.acquire() as conn:
                try:
                    await intake_queues.reconcile(conn, channel)
                except aiormq.exceptions.ChannelNotFoundEntity as exc:
                    # a hub upgraded without `topology apply`: no lt.intake exchange yet.
                    # Everything still arrives in lt.router.in: route from there, say why
                    log.error("router.intake_topology_missing", error=str(exc),
                              hint="run `lienthong topology apply` (Chạy `lienthong topology "
                                   "apply` để tạo hàng đợi tiếp nhận của từng cổng)")
                    channel = await connection.channel()
                listed = await intake_queues.consumed_queues(conn)
            wanted = {name for name, gone in listed.items() if not gone}
            for name in (name for name, gone in listed.items() if gone):
                counts = await intake_queues.queue_counts(channel, name)
                if counts is not None and (counts[0] or self._sources.waiting(name)):
                    wanted.add(name)  # else empty: left alone, deleted once long empty
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self._wanted = wanted
        await self._converge()

    async def _refresh_loop(self, connection: AbstractRobustConnection) -> None:
        every = self.settings.intake_refresh_seconds
        while True:
            await asyncio.sleep(every)
            if connection.is_closed or not connection.connected.is_set():
                continue  # the robust connection restores the consumers when it is back
            try:
                await self._refresh_intake(connection)
            except Exception as exc:
                log.warning("router.intake_refresh_failed", error=repr(exc))

    async def _consume_again(self, _connection: object) -> None:
        """After a reconnection: the consumers of the intake queues are gone with the old
        channel; consume every wanted queue again on the restored one."""
        async with self._intake_lock:
            self._intake.clear()
        try:
            await self._converge()
        except Exception as exc:  # the next refresh converges again
            log.warning("router.intake_reconsume_failed", error=repr(exc))
            return
        log.info("router.intake_consuming_again", queues=len(self._intake))

    async def _converge(self) -> None:
        """Consume exactly the wanted intake queues, or none while paused."""
        async with self._intake_lock:
            channel = self._intake_channel
            if channel is None:
                return
            target = set() if self._paused else self._wanted
            for name in sorted(set(self._intake) - target):
                queue, tag = self._intake.pop(name)
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
            # lt.router.in last: a consumer there says this router takes from them all
            for name in sorted(target - set(self._intake),
                               key=lambda n: (n == topology.ROUTER_IN, n)):
                queue = await channel.get_queue(name, ensure=False)
                self._intake[name] = (queue, await queue.consume(
                    functools.partial(self._on_message, source=name)))

    def _hold_changed(self) -> None:
        """Stop consuming above the in-flight bytes budget; consume again well below."""
        held = self._sources.held_bytes
        self.peak_held_bytes = max(self.peak_held_bytes, held)
        metrics.INTAKE_HELD_BYTES.set(held)
        budget = self.settings.inflight_max_bytes
        pause = held > budget if not self._paused else held > budget * RESUME_AT
        if pause != self._paused:
            self._paused = pause
            if pause:
                metrics.INTAKE_PAUSES.inc()
            log.info("router.intake_paused" if pause else "router.intake_resumed",
                     held_bytes=held, budget=budget)
            task = asyncio.get_running_loop().create_task(self._converge_now())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _converge_now(self) -> None:
        """:meth:`_converge` for a pause or a resume; a failure (the connection going away
        meanwhile) is logged: the next refresh converges again."""
        try:
            await self._converge()
        except Exception as exc:
            log.warning("router.intake_converge_failed", error=repr(exc))

    async def _stop_intake(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        self._wanted = set()
        with contextlib.suppress(Exception):
            await self._converge()

    def health(self) -> dict[str, object]:
        """What the liveness endpoint shows (``router.routing.liveness``)."""
        conn = self._connection
        connected = conn is not None and not conn.is_closed and conn.connected.is_set()
        return {
            "alive": True,  # answering at all: the loop runs (the endpoint stops with it)
            "ready": connected and self._consuming,
            "amqp": "connected" if connected else "reconnecting",
            "endpoint": _endpoint(conn),
            "batches": self._batches,
            "pid": os.getpid(),
        }

    def _stats_dict(self) -> dict[str, int]:
        s = self.stats
        return {
            "messages": s.messages,
            "accepted": s.accepted,
            "rejected": s.rejected,
            "duplicates": s.duplicates,
            "parked": s.parked,
            "copies": s.copies,
        }

    async def _sweep_deadlines(self, stop: asyncio.Event) -> None:
        """Flag deliveries not arrived in time and overdue ones; push events to senders.
        Every router sweeps; SKIP LOCKED keeps them out of each other's way."""
        every = self.settings.sweep_seconds
        if every <= 0:
            return
        while not stop.is_set():
            await asyncio.sleep(every)
            try:
                assert self._outbox is not None
                async with self.pool.acquire() as conn:
                    res = await deadlines.sweep_and_tell(
                        conn, self._outbox,
                        not_arrived_after=timedelta(minutes=self.settings.not_arrived_minutes),
                    )
                if res.not_arrived or res.overdue:
                    log.warning("router.recovery.deadlines", not_arrived=res.not_arrived,
                                overdue=res.overdue)
            except Exception as exc:
                log.error("router.sweep_failed", error=repr(exc))

    async def _on_message(self, message: AbstractIncomingMessage, *,
                          source: str = topology.ROUTER_IN) -> None:
        self._sources.hold(message)
        self._hold_changed()
        if not message.redelivered and upload_id_of(dict(message.headers or {})):
            # a large package's claim: checked aside first (router.transfer.claims)
            self._claims.prepare(message, self._incoming(message),
                                 functools.partial(self._wait_in, source))
            return
        self._wait_in(source, message)

    def _wait_in(self, source: str, message: AbstractIncomingMessage) -> None:
        self._sources.put(source, message, time.monotonic())
        self._arrived.set()

    async def _on_parked(self, message: AbstractIncomingMessage) -> None:
        """Copy a dead-lettered message into the ledger for operators, then ack it.

        Whatever arrives is recorded (an undecodable envelope in printable form, with what
        was wrong in the error). A message that cannot be recorded is never retried in a
        loop: a data error sends it to ``lt.quarantine`` at once; while PostgreSQL is away
        it goes back, and the ``lt-parking`` policy's delivery limit moves it to the
        quarantine if that lasts (or if it kills the routers that take it)."""
        env = Envelope.of(message)
        try:
            async with self.pool.acquire() as conn:
                rec = await parking.record_parked(
                    conn,
                    body=message.body,
                    headers=env.headers,
                    amqp_user=env.user_id,
                    routing_key=env.routing_key,
                    message_id=env.message_id,
                    message_type=env.type,
                    wire_error=env.error,
                )
        except Exception as exc:
            if _transient(exc):
                log.error("router.parking_record_failed", error=repr(exc))
                await asyncio.sleep(1)
                await message.nack(requeue=True)
                return
            log.error("router.parking_unrecordable", error=repr(exc),
                      routing_key=env.routing_key, message_id=env.message_id)
            try:
                assert self._publish_channel is not None
                await parking.quarantine(self._publish_channel, message.body, env.headers,
                                         routing_key=env.routing_key,
                                         message_id=env.message_id, message_type=env.type,
                                         user_id=env.user_id, error=repr(exc))
            except Exception as qexc:
                log.error("router.quarantine_failed", error=repr(qexc))
                await message.nack(requeue=True)  # the policy's delivery limit ends it
                return
            await message.ack()
            return
        if rec.delivery_ids:
            try:
                async with self.pool.acquire() as conn:
                    events = await notifications.delivery_events(
                        conn, rec.delivery_ids, cause=f"parked:{rec.id}")
                await self._publish_receipts(events)
            except Exception as exc:
                log.error("router.parked_notify_failed", error=repr(exc))
        await message.ack()
        log.warning("router.parked_recorded", parked_id=str(rec.id), reason=rec.reason.name,
                    queue=rec.source_queue, detail=rec.error)

    async def _next_batch(self, stop: asyncio.Event) -> list[AbstractIncomingMessage]:
        """The next batch: up to ``batch_size`` messages and ``batch_max_bytes`` of bodies
        (a single larger message goes alone), taken fairly across the intake queues
        (``router.routing.sources``); what does not fit waits, first in its queue.

        Taken only once the batch before it has routed (it could not route earlier: see
        ``_Turn``): a document that arrives meanwhile from a quiet gateway goes into it
        rather than wait behind one more batch of another gateway's burst."""
        await asyncio.sleep(0)  # the batch handed on last starts (and says where it is)
        if self._routing is not None and not self._routing.done():
            await asyncio.wait([self._routing])
        if not self._sources.waiting():
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout=0.5)
            except TimeoutError:
                return []
        # wait for more only under load (the previous batch was full): at low load a
        # package goes at once instead of waiting batch_wait_ms for company
        size, max_bytes = self.settings.batch_size, self.settings.batch_max_bytes
        if self._last_full and self._sources.waiting() < size:
            deadline = time.monotonic() + self.settings.batch_wait_ms / 1000
            while self._sources.waiting() < size and not stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout=remaining)
        now = time.monotonic()
        batch = self._sources.take(size, max_bytes, now)
        if batch:
            metrics.BATCH_PHASE_SECONDS.labels("wait").observe(self._sources.waited(batch, now))
        self._last_full = len(batch) >= size or self._sources.waiting() > 0
        return batch

    # batches ---------------------------------------------------------------------------
    async def _handle_or_return(
        self, batch: list[AbstractIncomingMessage], previous: asyncio.Task[None] | None,
        turn: _Turn | None = None,
    ) -> None:
        """Route a batch; on an error nothing of it is lost: it goes back to the queue."""
        if turn is not None:
            self._routing = turn.done
        try:
            await self._handle(batch, previous, turn)
        except Exception as exc:
            log.error("router.batch_abandoned", error=repr(exc), size=len(batch))
            for m in batch:  # whatever is still ours goes back to the queue
                with contextlib.suppress(Exception):
                    await m.nack(requeue=True)
            await asyncio.sleep(0.5)
        finally:
            if turn is not None and not turn.done.done():
                turn.done.set_result(None)
            self._sources.settle(batch)  # acked, returned or void: no longer held
            self._hold_changed()

    async def _handle(
        self, messages: list[AbstractIncomingMessage],
        previous: asyncio.Task[None] | None = None,
        turn: _Turn | None = None,
    ) -> None:
        """Route a batch and ack it. ``previous``: the batch taken before this one, still in
        flight: it is settled first, as an ack with ``multiple=True`` covers every earlier
        delivery of the channel."""
        # deliveries of a channel closed since (its node went away, the connection failed
        # over) are void: the broker has put them back and delivers them again on the new
        # channel. Routing them now would count a second attempt for each (parking healthy
        # packages after a few node failures) and their acks would fail.
        live = [m for m in messages if not _channel_gone(m)]
        if len(live) < len(messages):
            log.warning("router.stale_deliveries_dropped", count=len(messages) - len(live))
        self._claims.forget([m for m in messages if _channel_gone(m)])
        messages = live
        fresh = [m for m in messages if not m.redelivered]
        suspects = [m for m in messages if m.redelivered]
        if suspects:
            await self._outlasting_outages(self._handle_suspects, suspects)
        if fresh:
            try:
                await self._outlasting_outages(
                    functools.partial(self._route_and_publish, turn=turn), fresh)
            except _Abandon:
                raise
            except Exception as exc:
                log.error("router.batch_failed", error=repr(exc), size=len(fresh), exc_info=exc)
                # back to the queue: they return as suspects, handled a few at a time
                for m in fresh:
                    await m.nack(requeue=True)
                self._claims.forget(fresh)
                return
            if previous is not None:
                await asyncio.wait([previous])
            self._claims.forget(fresh)  # this batch's own claims are settled by this ack
            # one ack with multiple=True covers every earlier delivery of the channel, of
            # every intake queue: only up to the first one held outside this batch (a
            # later batch's, one still waiting, a claim checked aside)
            together, alone = self._sources.ack_split(fresh)
            if together is not None:
                await together.ack(multiple=True)
            for m in alone:
                await m.ack()

    async def _outlasting_outages(
        self,
        fn: Callable[[list[AbstractIncomingMessage]], Awaitable[None]],
        messages: list[AbstractIncomingMessage],
    ) -> None:
        """Run ``fn``; while PostgreSQL or RabbitMQ is away, wait and run it again rather
        than bounce the messages (an outage is not the messages' fault and must not count
        towards their delivery limit). Every step is idempotent, so running again is safe.
        Gives up (``_Abandon``) when the channel that holds the messages is gone: the
        broker then redelivers them by itself."""
        delay = 0.25
        waited = 0.0
        while True:
            try:
                await fn(messages)
            except Exception as exc:
                if not _transient(exc):
                    raise
                if isinstance(exc, publishing.QueueRefused):
                    await self._renew_publishing()
                if _channel_gone(messages[0]) or waited > OUTAGE_PATIENCE:
                    log.warning("router.batch_abandoned_outage", error=repr(exc),
                                size=len(messages))
                    raise _Abandon from exc
                log.warning("router.outage_wait", error=repr(exc), retry_in=delay)
                metrics.OUTAGE_WAITS.labels(
                    "refused" if isinstance(exc, publishing.QueueRefused) else "other").inc()
                await asyncio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 5.0)
            else:
                return

    async def _handle_suspects(self, suspects: list[AbstractIncomingMessage]) -> None:
        """Messages redelivered after a crash. Only a message that was being processed
        *alone* when a router died can be blamed for it:

        * the first time a message comes back it goes in a small group, and nothing is
          counted against it (the crash may have been any message's fault, or none's);
        * a message that comes back again goes alone, and each solo attempt is counted;
        * one that took its router down alone more than ``PARK_AFTER`` times is parked,
          unless the ledger already holds its outcome (accepted or rejected): that one is
          finished (resumed), never parked, so no sender gets contradictory receipts."""
        incoming = [self._incoming(m) for m in suspects]
        seen_before = await self._note_suspects(incoming)
        first = [i for i, seen in enumerate(seen_before) if not seen]
        groups = [first[k : k + SUSPECT_GROUP] for k in range(0, len(first), SUSPECT_GROUP)]
        for group in groups:
            await self._route_suspects(suspects, incoming, group)
        for i in (i for i, seen in enumerate(seen_before) if seen):
            attempts = await self._count_solo_attempt(incoming[i])
            if attempts > PARK_AFTER and not await self._already_decided(incoming[i]):
                await self._park(suspects[i], incoming[i], "failed repeatedly")
                continue
            await self._route_suspects(suspects, incoming, [i])

    async def _route_suspects(self, suspects: list[AbstractIncomingMessage],
                              incoming: list[Incoming], group: list[int]) -> None:
        msgs = [suspects[i] for i in group]
        try:
            await self._outlasting_outages(self._route_and_publish, msgs)
        except _Abandon:
            raise
        except Exception as exc:
            log.error("router.suspect_failed", error=repr(exc), size=len(msgs))
            await self._note_error([incoming[i] for i in group], repr(exc))
            for m in msgs:
                await m.nack(requeue=True)
            return
        for m in msgs:
            await m.ack()
        await self._clear_attempts([incoming[i] for i in group])

    async def _route_and_publish(self, messages: Sequence[AbstractIncomingMessage],
                                 turn: _Turn | None = None) -> None:
        incoming = [self._incoming(m) for m in messages]
        started = time.time()
        clock = time.perf_counter()
        await self._claims.resolve(incoming, messages)  # large packages' claims
        if turn is not None and turn.before is not None:
            # decided in queue order: a package sees what the one before it committed
            await asyncio.wait([turn.before])
        turned = time.perf_counter()
        try:
            plan = await self.router.route(incoming)
        finally:
            if turn is not None and not turn.done.done():
                turn.done.set_result(None)
        self._routed_in(time.perf_counter() - turned, len(incoming))
        await self._claims.settle(incoming, plan)
        route_done = time.perf_counter()
        states = await self._publish_copies(plan.copies)
        queued_at = time.time()
        published = time.perf_counter()
        # the copies' fate is known: record it and tell the senders at the same time
        await asyncio.gather(
            self._mark(states), self._publish_receipts(BatchRouter.receipts_for(plan, states))
        )
        phase = metrics.BATCH_PHASE_SECONDS
        phase.labels("turn").observe(turned - clock)
        phase.labels("route").observe(route_done - turned)
        phase.labels("publish").observe(published - route_done)
        phase.labels("finish").observe(time.perf_counter() - published)
        self._count(plan)
        routed = [
            queued_at - (m.sent_at or started)
            for m, outcome in zip(incoming, plan.outcomes, strict=True)
            if outcome == "accepted"
        ]
        queued = sum(s == "queued" for s in states.values())
        metrics.record_batch(
            plan.outcomes, plan.kinds, routed, queued, len(states) - queued,
            plan.rejection_reasons,
        )

    def _routed_in(self, seconds: float, packages: int) -> None:
        """A batch of ``packages`` routed in ``seconds``: the size of shared batches
        follows (``SHARED_ROUTE_SECONDS``), between 8 and the batch size."""
        if packages < 8:
            return  # too few to say much about the time per package
        each = seconds / packages
        self._route_each = each if self._route_each is None else (
            0.8 * self._route_each + 0.2 * each)
        self._sources.shared = max(8, min(self.settings.batch_size,
                                          int(SHARED_ROUTE_SECONDS / self._route_each)))

    def _count(self, plan: BatchPlan) -> None:
        s = self.stats
        s.messages += len(plan.outcomes)
        s.accepted += sum(o in ("accepted", "resumed") for o in plan.outcomes)
        s.rejected += plan.outcomes.count("rejected")
        s.duplicates += plan.outcomes.count("duplicate")
        s.copies += len(plan.copies)

    def _incoming(self, m: AbstractIncomingMessage) -> Incoming:
        env = Envelope.of(m)
        user = env.user_id
        if user and user == self._hub_user and env.headers:
            # a parked package the hub re-submits for its original gateway
            original = env.headers.get(parking.ORIGINAL_USER_HEADER)
            if original:
                user = (original.decode("utf-8", "backslashreplace")
                        if isinstance(original, bytes) else str(original))
        sent_at = None
        raw = env.headers.get(wire_names.SENT_AT)
        if isinstance(raw, int | float):
            sent_at = float(raw)
        # only RabbitMQ's direct reply-to addresses: never a queue name a sender chose; and
        # not for a redelivered message: its sender may have been on a node that has died
        # since, and RabbitMQ 3.10 answers a reply to such an address by closing the
        # router's whole connection (INTERNAL_ERROR), again at every redelivery, until the
        # healthy package is parked. The receipt still reaches the sender through its
        # gateway's receipts queue, which the SDK reads too.
        reply_to = (env.reply_to if (env.reply_to or "").startswith(DIRECT_REPLY_PREFIX)
                    and not m.redelivered else None)
        return Incoming(
            reply_to=reply_to,
            sent_at=sent_at,
            body=m.body,
            amqp_user=user,
            routing_key=env.routing_key,
            message_id=env.message_id,
            declared_type=env.type,
            redelivered=bool(m.redelivered),
            wire_error=env.error,
            upload_id=upload_id_of(env.headers),
        )

    # publishing ------------------------------------------------------------------------
    async def _publish_copies(self, copies: list[Copy]) -> dict[uuid.UUID, str]:
        assert self._outbox is not None
        return await self._outbox.copies(copies)

    async def _publish_receipts(self, receipts: list[OutgoingReceipt]) -> None:
        assert self._outbox is not None
        await self._outbox.receipts(receipts)  # signed; direct replies as well

    async def _mark(self, states: dict[uuid.UUID, str]) -> None:
        if not states:
            return
        ids = list(states)
        await self.pool.execute(
            publishing.MARK_SQL, ids, [states[i] for i in ids], Reason.UNDELIVERABLE.code, []
        )

    # suspects and parking --------------------------------------------------------------
    async def _note_suspects(self, incoming: list[Incoming]) -> list[bool]:
        """Remember these suspects; True for each one that was a suspect before (it came
        back again since: it goes alone from now on)."""
        rows = await self.pool.fetch(
            """WITH u AS (SELECT DISTINCT s, m FROM unnest($1::bytea[], $2::text[]) AS u(s, m)),
               ins AS (
                   INSERT INTO processing_attempts (content_sha256, message_id, attempts)
                   SELECT s, m, 0 FROM u
                   ON CONFLICT (content_sha256, message_id) DO NOTHING
                   RETURNING content_sha256, message_id)
               SELECT content_sha256, message_id FROM ins""",
            [m.sha256 for m in incoming],
            [self._attempt_key(m) for m in incoming],
        )
        new = {(bytes(r["content_sha256"]), r["message_id"]) for r in rows}
        return [(m.sha256, self._attempt_key(m)) not in new for m in incoming]

    async def _count_solo_attempt(self, msg: Incoming) -> int:
        """Count one attempt at this message processed alone; returns the count."""
        n = await self.pool.fetchval(
            """INSERT INTO processing_attempts AS p (content_sha256, message_id, attempts)
               VALUES ($1, $2, 1)
               ON CONFLICT (content_sha256, message_id)
               DO UPDATE SET attempts = p.attempts + 1, updated_at = now()
               RETURNING attempts""",
            msg.sha256, self._attempt_key(msg),
        )
        return int(n)

    async def _already_decided(self, msg: Incoming) -> bool:
        """Does the ledger hold this message's outcome (a document or a rejection)?
        Asked only of a message about to be parked (rare), so the unindexed look-up of
        documents by content is acceptable."""
        return bool(await self.pool.fetchval(
            """SELECT EXISTS (SELECT 1 FROM rejections WHERE id = $3 AND reason <> 'POISON')
                   OR EXISTS (SELECT 1 FROM documents
                              WHERE content_sha256 = $1 AND message_id IS NOT DISTINCT FROM $2)""",
            msg.sha256, msg.message_id, derive_id("rejection", msg.key),
        ))

    @staticmethod
    def _attempt_key(m: Incoming) -> str:
        return f"{m.amqp_user}|{m.message_id}"

    async def _note_error(self, incoming: list[Incoming], error: str) -> None:
        await self.pool.execute(
            """UPDATE processing_attempts p SET last_error = $3
               FROM unnest($1::bytea[], $2::text[]) AS u(s, m)
               WHERE p.content_sha256 = u.s AND p.message_id = u.m""",
            [m.sha256 for m in incoming],
            [self._attempt_key(m) for m in incoming],
            error[:2000],
        )

    async def _clear_attempts(self, incoming: list[Incoming]) -> None:
        await self.pool.execute(
            """DELETE FROM processing_attempts p
               USING unnest($1::bytea[], $2::text[]) AS u(s, m)
               WHERE p.content_sha256 = u.s AND p.message_id = u.m""",
            [m.sha256 for m in incoming],
            [self._attempt_key(m) for m in incoming],
        )

    async def _park(self, message: AbstractIncomingMessage, msg: Incoming, why: str) -> None:
        """Move a poison message to lt.parking, record why, tell the sender, ack it."""
        assert self._dead is not None and self._receipts is not None
        last_error = await self.pool.fetchval(
            "SELECT last_error FROM processing_attempts WHERE content_sha256 = $1 "
            "AND message_id = $2",
            msg.sha256,
            self._attempt_key(msg),
        )
        detail = f"{why}: {last_error or 'the router process died while routing it'}"
        rid = derive_id("rejection", msg.key)
        gateway = await self.pool.fetchval(
            "SELECT id FROM gateways WHERE amqp_user = $1", msg.amqp_user or ""
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO rejections (id, amqp_user, gateway_id, message_id, routing_key,
                       reason, reason_code, detail, size_bytes, content_sha256, body)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   ON CONFLICT (id) DO NOTHING""",
                rid, msg.amqp_user, gateway, msg.message_id, msg.routing_key,
                Reason.POISON.name, Reason.POISON.code, detail[:2000], len(msg.body),
                msg.sha256, msg.body,
            )
            await conn.execute(
                "INSERT INTO audit_log (actor, action, subject, details) "
                "VALUES ('router', 'package.parked', $1, $2::jsonb)",
                str(rid),
                f'{{"sha256": "{msg.sha256.hex()}"}}',
            )
        headers = Envelope.of(message).headers  # never the raw, undecodable texts
        headers.update({wire_names.PARK_REASON: Reason.POISON.name,
                        wire_names.PARK_ERROR: detail[:1000],
                        parking.ORIGINAL_USER_HEADER: msg.amqp_user or ""})
        await self._dead.publish(
            aio_pika.Message(
                msg.body,
                message_id=msg.message_id,
                type=msg.declared_type,
                user_id=None,
                headers=headers,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=msg.routing_key,
        )
        if gateway:
            r = Receipt(
                receipt_id=str(derive_id("receipt", rid)),
                type="rejected",
                message_id=msg.message_id,
                kind=msg.declared_type,
                sender=msg.routing_key,
                reason=Reason.POISON.as_dict(detail),
            )
            await self._publish_receipts([OutgoingReceipt(gateway, r, msg.reply_to)])
        await message.ack()
        self.stats.parked += 1
        metrics.PACKAGES.labels(msg.declared_type or "unknown", "parked").inc()
        log.error("router.parked", message_id=msg.message_id, reason=Reason.POISON.name,
                  detail=detail)


async def run_router(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run one worker until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    # two batches in flight: each holds a connection to route and takes one to mark
    pool = await ledger.router_pool(settings.database_url, min_size=1, max_size=6)
    # Everything alive now (modules, schemas, the pool) lives as long as the process: keep
    # it out of the collector's full passes, which otherwise walk it all and stall the
    # batch in flight (up to 40 ms measured, a large part of the p99 latency).
    gc.collect()
    gc.freeze()
    worker = RouterWorker(settings, pool)
    health = (await liveness.serve_liveness(worker, settings.health_port)
              if settings.health_port else None)
    try:
        await worker.run(stop)
    finally:
        if health is not None:
            await health.cleanup()
        await pool.close()
