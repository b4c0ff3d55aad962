"""Parking: messages that could not be processed or delivered, kept for operators.

Everything dead-lettered to ``lt.parking`` (poison submissions that hit the router queue's
delivery limit or that a router parked itself, copies a gateway refused or could not
consume within its inbox's delivery limit) is copied into ``parked_messages`` by the
routers and then acked: the ledger is the operators' view, with filters.

* ``requeue``: a parked submission goes back through normal validation (it is published
  again to ``lt.submit`` on behalf of its original gateway); a parked copy goes back to its
  gateway's inbox with the same ``message_id``, so a gateway that has it drops it.
* ``drop``: marks it dropped, with who and why, in the audit log. Nothing is deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from router import topology
from router.ledger import Conn
from schemas import wire_names as wire
from schemas.reasons import OperationRefused, Reason

__all__ = [
    "ORIGINAL_USER_HEADER",
    "QUARANTINE_ERROR_HEADER",
    "ParkedFilter",
    "drop",
    "drop_quarantined",
    "list_parked",
    "list_quarantine",
    "quarantine",
    "quarantine_id",
    "record_parked",
    "requeue",
    "show",
]

# Set by the hub when it re-submits a parked package for its original gateway. Trusted by
# the router only on messages whose validated AMQP user_id is the hub's own user.
ORIGINAL_USER_HEADER = wire.ORIGINAL_USER

_NS = uuid.UUID("6c69656e-7468-6f6e-672d-7061726b0001")


def _plain(value: Any) -> Any:
    """AMQP header values as JSON-friendly data."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ParkedRecord:
    id: uuid.UUID
    reason: Reason
    error: str
    source_queue: str | None
    delivery_ids: list[str]


def classify(headers: dict[str, Any]) -> tuple[Reason, str, str | None]:
    """Why a message was parked: (reason, error text, source queue)."""
    if headers.get(wire.PARK_REASON):
        name = _plain(headers[wire.PARK_REASON])
        reason = Reason[name] if name in Reason.__members__ else Reason.POISON
        return reason, str(_plain(headers.get(wire.PARK_ERROR, ""))), topology.ROUTER_IN
    deaths = headers.get("x-death") or []
    first = _plain(deaths[0]) if deaths else {}
    queue = first.get("queue") or _plain(headers.get("x-first-death-queue"))
    why = first.get("reason") or _plain(headers.get("x-first-death-reason")) or "unknown"
    count = first.get("count")
    if topology.is_intake_queue(str(queue or "")):
        return Reason.POISON, f"{why} after {count} deliveries on {queue}", queue
    return Reason.UNDELIVERABLE, f"{why} by the gateway on {queue} (count {count})", queue


async def record_parked(
    conn: Conn,
    *,
    body: bytes,
    headers: dict[str, Any],
    amqp_user: str | None,
    routing_key: str | None,
    message_id: str | None,
    message_type: str | None,
    wire_error: str | None = None,
) -> ParkedRecord:
    """Copy one dead-lettered message into the ledger (idempotent) and mark the
    deliveries of a parked copy undeliverable. Texts must be valid UTF-8 (the router
    passes printable stand-ins); ``wire_error`` says what its envelope held instead."""
    reason, error, queue = classify(headers)
    if wire_error:
        error = f"{error}; {Reason.BAD_MESSAGE_PROPERTIES.name}: {wire_error}"
    if not amqp_user and headers.get(ORIGINAL_USER_HEADER):
        amqp_user = str(_plain(headers[ORIGINAL_USER_HEADER]))
    sha = hashlib.sha256(body).digest()
    deaths = _plain(headers.get("x-death") or [])
    first_time = deaths[0].get("time") if deaths else None
    pid = uuid.uuid5(_NS, f"{message_id}|{sha.hex()}|{queue}|{first_time}")
    gateway = None
    if queue and queue.startswith(wire.GATEWAY_QUEUE_PREFIX) and queue.endswith(".inbox"):
        gateway = queue[len(wire.GATEWAY_QUEUE_PREFIX) : -len(".inbox")]
    else:
        gateway = await conn.fetchval(
            "SELECT id FROM gateways WHERE amqp_user = $1", amqp_user or ""
        )
    delivery_ids = [str(_plain(d)) for d in headers.get(wire.DELIVERY_IDS) or []]
    async with conn.transaction():
        inserted = await conn.fetchval(
            """INSERT INTO parked_messages (id, source_queue, reason, reason_code, error,
                   amqp_user, gateway_id, routing_key, message_id, message_type, headers,
                   body, content_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13)
               ON CONFLICT (id) DO NOTHING RETURNING id""",
            pid, queue, reason.name, reason.code, error[:2000], amqp_user, gateway,
            routing_key, message_id, message_type,
            json.dumps(_plain(headers), ensure_ascii=False, default=str), body, sha,
        )
        if inserted and delivery_ids:
            await conn.execute(
                """WITH u AS (
                       UPDATE deliveries SET state = 'undeliverable', updated_at = now(),
                           last_reason_code = $2, last_error = $3
                       WHERE id = ANY($1::uuid[]) AND state IN ('queued', 'submitted')
                       RETURNING id)
                   INSERT INTO status_events (delivery_id, state, flags)
                   SELECT id, 'undeliverable', '{parked}' FROM u""",
                delivery_ids, reason.code, error[:2000],
            )
        if inserted:
            await conn.execute(
                "INSERT INTO audit_log (actor, action, subject, details) "
                "VALUES ('router', 'message.parked', $1, $2::jsonb)",
                str(pid),
                json.dumps({"reason": reason.name, "queue": queue, "sha256": sha.hex()}),
            )
    return ParkedRecord(pid, reason, error, queue, delivery_ids)


@dataclass(frozen=True, slots=True)
class ParkedFilter:
    state: str | None = "parked"
    gateway: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: Sequence[uuid.UUID] = ()
    limit: int = 100


_COLUMNS = """id, parked_at, source_queue, reason, reason_code, error, gateway_id, routing_key,
              message_id, message_type, state, settled_at, settled_by, settled_why,
              octet_length(body) AS size"""


async def list_parked(conn: Conn, flt: ParkedFilter) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM parked_messages
            WHERE ($1::text IS NULL OR state = $1)
              AND ($2::text IS NULL OR gateway_id = $2)
              AND ($3::text IS NULL OR reason = $3)
              AND ($4::timestamptz IS NULL OR parked_at >= $4)
              AND ($5::timestamptz IS NULL OR parked_at < $5)
              AND (cardinality($6::uuid[]) = 0 OR id = ANY($6::uuid[]))
            ORDER BY parked_at, id LIMIT $7""",  # noqa: S608 - fixed column list
        flt.state, flt.gateway, flt.reason, flt.since, flt.until, list(flt.ids), flt.limit,
    )
    return [dict(r) for r in rows]


async def show(conn: Conn, parked_id: uuid.UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS}, headers, body FROM parked_messages WHERE id = $1",  # noqa: S608
        parked_id,
    )
    return dict(row) if row else None


async def requeue(
    conn: Conn,
    channel: AbstractChannel,
    ids: Sequence[uuid.UUID],
    *,
    actor: str,
    hub_user: str,
) -> int:
    """Send parked messages back: submissions through validation, copies to their inbox.

    ``hub_user`` is the AMQP user of ``channel`` (the hub's own: RabbitMQ refuses a
    ``user_id`` that is not the connection's user); submissions are published with it as
    ``user_id`` and the original gateway in ``lt-original-user``, which the routers trust
    only from the hub's user.
    """
    rows = await conn.fetch(
        """SELECT id, source_queue, amqp_user, gateway_id, routing_key, message_id,
                  message_type, headers, body
           FROM parked_messages WHERE id = ANY($1::uuid[]) AND state = 'parked'""",
        list(ids),
    )
    submit = await channel.get_exchange(topology.SUBMIT, ensure=False)
    deliver = await channel.get_exchange(topology.DELIVER, ensure=False)
    pubs = []
    for r in rows:
        headers = {
            k: v for k, v in json.loads(r["headers"]).items()
            if not k.startswith("x-") and k not in (wire.PARK_REASON, wire.PARK_ERROR)
        }
        is_copy = (r["source_queue"] or "").startswith(wire.GATEWAY_QUEUE_PREFIX)
        if not is_copy:
            headers[ORIGINAL_USER_HEADER] = r["amqp_user"] or ""
        msg = aio_pika.Message(
            bytes(r["body"]),
            message_id=r["message_id"],
            type=r["message_type"],
            user_id=None if is_copy else hub_user,
            content_type="application/xml",
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        if is_copy:
            pubs.append(deliver.publish(msg, routing_key=r["gateway_id"] or ""))
        else:
            pubs.append(submit.publish(msg, routing_key=r["routing_key"] or ""))
    await asyncio.gather(*pubs)
    await _settle(conn, [r["id"] for r in rows], "requeued", actor, None)
    return len(rows)


async def drop(
    conn: Conn, ids: Sequence[uuid.UUID], *, actor: str, why: str
) -> int:
    if not why.strip():
        raise OperationRefused(
            Reason.OPS_WHY_REQUIRED, "say why (--why): dropping is recorded in the audit log"
        )
    return await _settle(conn, list(ids), "dropped", actor, why)


async def _settle(
    conn: Conn, ids: list[uuid.UUID], state: str, actor: str, why: str | None
) -> int:
    async with conn.transaction():
        done = await conn.fetch(
            """UPDATE parked_messages SET state = $2, settled_at = now(), settled_by = $3,
                   settled_why = $4::text
               WHERE id = ANY($1::uuid[]) AND state = 'parked' RETURNING id, reason""",
            ids, state, actor, why,
        )
        if done:
            await conn.execute(
                """INSERT INTO audit_log (actor, action, subject, details)
                   SELECT $1, $2, u.id::text,
                          jsonb_build_object('reason', u.reason, 'why', $3::text)
                   FROM unnest($4::uuid[], $5::text[]) AS u(id, reason)""",
                actor, f"parking.{state}", why, [r["id"] for r in done],
                [r["reason"] for r in done],
            )
    return len(done)


# the quarantine ------------------------------------------------------------------------
# What routers could not record from lt.parking (or what kept killing them there): kept in
# the lt.quarantine queue, which nothing consumes by itself, for operators to look at and
# drop with ``lienthong parking quarantine``. A message there is identified by a uuid
# derived from its message_id and body.

QUARANTINE_ERROR_HEADER = "lt-quarantine-error"


def quarantine_id(message_id: str | None, body: bytes) -> uuid.UUID:
    return uuid.uuid5(_NS, f"quarantine|{message_id}|{hashlib.sha256(body).hexdigest()}")


async def quarantine(
    channel: AbstractChannel,
    body: bytes,
    headers: dict[str, Any],
    *,
    routing_key: str,
    message_id: str | None,
    message_type: str | None,
    user_id: str | None,
    error: str,
) -> None:
    """Put one message aside in ``lt.quarantine`` (confirmed when ``channel`` confirms).
    Texts must be encodable (printable stand-ins for undecodable bytes)."""
    exchange = await channel.get_exchange(topology.QUARANTINE, ensure=False)
    await exchange.publish(
        aio_pika.Message(
            body,
            message_id=message_id,
            type=message_type,
            headers={**headers, QUARANTINE_ERROR_HEADER: error[:1000],
                     ORIGINAL_USER_HEADER: user_id or ""},
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        ),
        routing_key=routing_key,
    )


def _quarantined(msg: aio_pika.abc.AbstractIncomingMessage) -> dict[str, Any]:
    headers = dict(msg.headers or {})
    deaths = _plain(headers.get("x-death") or [])
    first = deaths[0] if deaths else {}
    why = headers.get(QUARANTINE_ERROR_HEADER) or (
        f"{first.get('reason')} after {first.get('count')} deliveries on {first.get('queue')}"
        if first else "unknown")
    return {
        "id": quarantine_id(msg.message_id, msg.body),
        "routing_key": msg.routing_key,
        "message_id": msg.message_id,
        "message_type": msg.type,
        "amqp_user": _plain(headers.get(ORIGINAL_USER_HEADER)) or msg.user_id,
        "error": str(_plain(why)),
        "size": len(msg.body),
        "sha256": hashlib.sha256(msg.body).hexdigest(),
        "headers": _plain(headers),
        "body": msg.body,
    }


async def list_quarantine(channel: AbstractChannel, *, limit: int = 100) -> list[dict[str, Any]]:
    """Read up to ``limit`` quarantined messages without removing any (they are taken
    and then given back when ``channel`` closes: the caller closes it)."""
    queue = await channel.get_queue(topology.QUARANTINE, ensure=False)
    out: list[dict[str, Any]] = []
    while len(out) < limit:
        msg = await queue.get(no_ack=False, fail=False)
        if msg is None:
            break
        out.append(_quarantined(msg))
    return out


async def drop_quarantined(
    conn: Conn, channel: AbstractChannel, ids: Sequence[uuid.UUID], *, actor: str, why: str,
    scan: int = 10_000,
) -> int:
    """Remove the quarantined messages with these ids (the others stay), each recorded in
    the audit log with who and why. The caller closes ``channel``."""
    if not why.strip():
        raise ValueError("say why (--why): dropping is recorded in the audit log")
    wanted = set(ids)
    queue = await channel.get_queue(topology.QUARANTINE, ensure=False)
    dropped: list[dict[str, Any]] = []
    for _ in range(scan):
        if not wanted:
            break
        msg = await queue.get(no_ack=False, fail=False)
        if msg is None:
            break
        info = _quarantined(msg)
        if info["id"] in wanted:
            await conn.execute(
                "INSERT INTO audit_log (actor, action, subject, details) "
                "VALUES ($1, 'quarantine.dropped', $2, $3::jsonb)",
                actor, str(info["id"]),
                json.dumps({"why": why, "sha256": info["sha256"],
                            "routing_key": info["routing_key"],
                            "message_id": info["message_id"]}, ensure_ascii=False),
            )
            await msg.ack()
            wanted.discard(info["id"])
            dropped.append(info)
    return len(dropped)
