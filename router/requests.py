"""The hub's request server: gateways ask, routers answer, over AMQP only.

Gateway-side software never reads the hub's database; it publishes a request to the
``lt.replay`` exchange (which every gateway may write to) with a routing key naming the
request, its ``user_id`` (RabbitMQ refuses a message whose ``user_id`` is not the
connection's user, so it is the broker-verified identity of the gateway), a
``correlation_id`` and RabbitMQ's direct reply-to. Every router serves the requests
(:class:`RequestServer`) and answers on the reply-to:

==============================  ============  ===========================================
routing key                     queue         answered by
==============================  ============  ===========================================
``receipts``                    lt.replay     :mod:`router.recovery.replay`
``directory``                   lt.directory  :mod:`router.directory.feed`
``directory.register_agency``   lt.requests   :mod:`router.directory.agency_requests`
``directory.delete_agency``     lt.requests   :mod:`router.directory.agency_requests`
``audit.record_gateway_change`` lt.requests   :mod:`router.security.gateway_changes`
``transfer``                    lt.transfer   :mod:`router.transfer.server` (large packages)
==============================  ============  ===========================================

The shape every request shares:

* the request body is one JSON object (at most :data:`REQUEST_MAX_BYTES`);
* the gateway is looked up from the ``user_id`` (``GATEWAY_UNKNOWN`` when none is);
* a handler returns the answer's messages (JSON bodies, an AMQP ``type`` each); the last
  one is published only once the others are confirmed, so it never overtakes one. A
  handler whose answer is large (a large package's chunks) returns an async iterator
  instead: each message is published and confirmed before the next is read, so a router
  holds one of them at a time, on the request's ledger connection;
* a refusal is one message of the route's error type (``replay.error``,
  ``directory.error``, ``audit.error``) with ``{"reason": {"reason", "code",
  "message_vi", "message_en", "detail"}}`` (:meth:`schemas.reasons.Reason.as_dict`).

A request that cannot be answered (no reply-to, a failure inside the hub) is logged and
dropped: the asker times out and asks again; nothing is retried from the queue.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from router.ledger import Conn
from schemas.reasons import LienthongError, Reason
from schemas.wire_names import DIRECT_REPLY

__all__ = ["REQUEST_MAX_BYTES", "Answer", "HubRequest", "RequestServer", "Route", "gateway_of",
           "json_answer", "parse_body"]

log = structlog.get_logger("lienthong.requests")

REQUEST_MAX_BYTES = 64 * 1024  # a request is a few fields; anything larger is refused
DIRECT_REPLY_PREFIX = f"{DIRECT_REPLY}."
_BY = re.compile(r"^[a-z]{1,20}(?::[\w.@+-]{1,110})?$")


@dataclass(frozen=True, slots=True)
class HubRequest:
    """One request: who asks (the gateway of the broker-verified ``user_id``) and what."""

    key: str
    gateway: str
    body: dict[str, Any]

    def actor(self) -> str:
        """Who asks, for the audit log: ``gateway:<id>``, then who the gateway says acted
        on its side (the request's ``by``: ``cli:<OS user>``, ``vxp:<system id>``), e.g.
        ``gateway:vpcp/cli:alice``. Only the gateway is verified (by the broker)."""
        by = self.body.get("by")
        if by is None:
            return f"gateway:{self.gateway}"
        if not isinstance(by, str) or not _BY.match(by):
            raise LienthongError(Reason.HUB_REQUEST_BAD,
                                 "by is kind:name, e.g. cli:alice (at most 120 characters)")
        return f"gateway:{self.gateway}/{by}"

    def text(self, name: str, *, required: bool = True, limit: int = 500) -> str | None:
        """A text field of the request; LienthongError(HUB_REQUEST_BAD) naming it."""
        value = self.body.get(name)
        if value is None or value == "":
            if required:
                raise LienthongError(Reason.HUB_REQUEST_BAD, f"{name} is required")
            return None
        if not isinstance(value, str) or len(value) > limit or not value.strip():
            raise LienthongError(Reason.HUB_REQUEST_BAD,
                                 f"{name} is text of at most {limit} characters")
        return value.strip()


Answer = Sequence[aio_pika.Message] | AsyncIterator[aio_pika.Message]
Handler = Callable[[Conn, HubRequest], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Route:
    """A request kind: its routing key, the queue it arrives on, its handler, the AMQP
    ``type`` of its refusals and the reason a malformed request gets."""

    key: str
    queue: str
    handler: Handler
    error_type: str
    bad_request: Reason


def json_answer(kind: str, body: dict[str, Any]) -> aio_pika.Message:
    """An answer message: ``body`` as JSON, AMQP ``type`` ``kind``."""
    return aio_pika.Message(json.dumps(body, ensure_ascii=False, default=str).encode(),
                            type=kind, content_type="application/json")


async def gateway_of(conn: Conn, amqp_user: str | None) -> str:
    """The asking gateway, from the ``user_id`` RabbitMQ checked."""
    gateway: str | None = await conn.fetchval(
        "SELECT id FROM gateways WHERE amqp_user = $1 AND status <> 'removed'",
        amqp_user or "")
    if gateway is None:
        raise LienthongError(Reason.GATEWAY_UNKNOWN, f"AMQP user {amqp_user!r} (set user_id)")
    return gateway


def parse_body(bad_request: Reason, raw: bytes) -> dict[str, Any]:
    """A request's JSON object; LienthongError(``bad_request``) saying what is wrong."""
    if len(raw) > REQUEST_MAX_BYTES:
        raise LienthongError(bad_request, f"more than {REQUEST_MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise LienthongError(bad_request, "the request is not JSON") from None
    if not isinstance(data, dict):
        raise LienthongError(bad_request, "the request is a JSON object")
    return data


class RequestServer:
    """Serves every request route in a router process: one channel, a few requests at a
    time, each answered on its asker's direct reply-to."""

    def __init__(self, pool: asyncpg.Pool, routes: Sequence[Route], *,
                 prefetch: int = 4) -> None:
        self._pool = pool
        self._routes = {r.key: r for r in routes}
        self._prefetch = prefetch
        self._channel: AbstractChannel | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        self._channel = await connection.channel(publisher_confirms=True)
        await self._channel.set_qos(prefetch_count=self._prefetch)
        for name in sorted({r.queue for r in self._routes.values()}):
            try:
                queue = await self._channel.get_queue(name)
            except aiormq.exceptions.ChannelNotFoundEntity:
                # a hub upgraded without `lienthong topology apply`: routing goes on
                log.error("requests.queue_missing", queue=name,
                          hint=f"run `lienthong topology apply` to serve {name}")
                await self._channel.reopen()  # the broker closed it: the qos goes too
                await self._channel.set_qos(prefetch_count=self._prefetch)
                continue
            await queue.consume(self._on_request)

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        reply_to = message.reply_to or ""
        route = self._routes.get(message.routing_key or "")
        try:
            if route is None:
                log.warning("requests.unknown_key", key=message.routing_key,
                            user=message.user_id)
            elif reply_to.startswith(DIRECT_REPLY_PREFIX):
                await self._answer(route, message, reply_to)
            else:
                log.warning("requests.no_reply_to", key=route.key, user=message.user_id)
        except Exception as exc:  # the asker times out; the request is never retried
            log.error("requests.failed", key=message.routing_key, error=repr(exc),
                      user=message.user_id)
        finally:
            await message.ack()

    async def _answer(self, route: Route, message: AbstractIncomingMessage,
                      reply_to: str) -> None:
        # here, not at the top: the outbox imports routing, which imports the registry,
        # which records into the directory feed, which is served from here
        from router.outbox.publish import publish_all

        assert self._channel is not None
        gateway = None
        try:
            body = parse_body(route.bad_request, message.body)
            async with self._pool.acquire() as conn:
                gateway = await gateway_of(conn, message.user_id)
                out = await route.handler(conn, HubRequest(route.key, gateway, body))
                if not isinstance(out, Sequence):
                    sent = 0
                    async for m in out:  # one at a time, each confirmed before the next
                        m.correlation_id = message.correlation_id
                        await publish_all(self._channel.default_exchange, [(m, reply_to)],
                                          mandatory=False, retries=1)
                        sent += 1
                    log.info("requests.answered", key=route.key, gateway=gateway,
                             messages=sent)
                    return
                answer = list(out)
        except LienthongError as err:
            answer = [json_answer(route.error_type, {"reason": err.as_dict()})]
            log.info("requests.refused", key=route.key, gateway=gateway,
                     user=message.user_id, reason=err.reason.name, detail=err.detail)
        for m in answer:
            m.correlation_id = message.correlation_id
        exchange = self._channel.default_exchange
        head, last = answer[:-1], answer[-1:]
        if head:
            await publish_all(exchange, [(m, reply_to) for m in head], mandatory=False,
                              retries=1)
        # the last one only once every other is confirmed: it never overtakes one
        await publish_all(exchange, [(m, reply_to) for m in last], mandatory=False,
                          retries=1)
        log.info("requests.answered", key=route.key, gateway=gateway, messages=len(answer))
