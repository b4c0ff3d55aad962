"""Gateway health: the RabbitMQ management API (one call for every queue of the vhost)
joined with the ledger (one query for every gateway). Fast at 1,000 gateways.

Health, worst first:

=============  ==============================================================================
no_consumer    nobody consumes the gateway's inbox (or the inbox is missing)
stale          a consumer is connected but the oldest package in the inbox has waited longer
               than ``stale_seconds`` (a stuck consumer: prefetch full, acks never sent)
backlog        more than ``backlog`` messages wait in the inbox
ok             otherwise
=============  ==============================================================================

A gateway's intake queue (``lt.router.in.<id>``: what it submitted, waiting for the
routers) is shown beside (``intake_depth``); it does not change the gateway's health (the
routers' own health is the overview's).

"Oldest waiting" comes from the ledger (oldest ``queued_at`` among deliveries still in state
``queued``) and is reported only while the inbox holds messages: a gateway that took its
copies but never answered 01 has nothing waiting, it has deliveries "not arrived" (reported
separately as ``oldest_unarrived_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import asyncpg

from router.broker_admin import BrokerAdmin
from router.topology import inbox_queue, intake_queue, receipts_queue

__all__ = [
    "HEALTH_LABELS",
    "GatewayHealth",
    "HealthThresholds",
    "QueueSnapshot",
    "QueueStats",
    "classify",
    "gateway_health",
    "summary",
]

HEALTH_LABELS: dict[str, tuple[str, str]] = {
    "ok": ("Bình thường", "OK"),
    "no_consumer": ("Không có kết nối nhận", "No consumer"),
    "stale": ("Ngừng nhận", "Stale"),
    "backlog": ("Tồn đọng", "Backlog"),
}

# Only what the table needs: keeps the response small with thousands of queues.
_COLUMNS = ",".join(
    (
        "name",
        "messages",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
        "state",
        "idle_since",
        "head_message_timestamp",
        "message_stats.publish_details.rate",
        "message_stats.deliver_get_details.rate",
        "message_stats.ack_details.rate",
    )
)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    backlog: int = 1000
    stale_seconds: float = 900.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    messages: int = 0
    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    publish_rate: float = 0.0
    deliver_rate: float = 0.0
    ack_rate: float = 0.0
    state: str | None = None

    @classmethod
    def from_api(cls, q: dict[str, Any]) -> QueueStats:
        stats = q.get("message_stats") or {}

        def rate(key: str) -> float:
            return float((stats.get(key) or {}).get("rate") or 0.0)

        return cls(
            messages=int(q.get("messages") or 0),
            ready=int(q.get("messages_ready") or 0),
            unacked=int(q.get("messages_unacknowledged") or 0),
            consumers=int(q.get("consumers") or 0),
            publish_rate=rate("publish_details"),
            deliver_rate=rate("deliver_get_details"),
            ack_rate=rate("ack_details"),
            state=q.get("state"),
        )


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    gateway_id: str
    name: str
    kind: str
    status: str  # directory status: active | suspended
    inbox_present: bool
    inbox: QueueStats
    receipts: QueueStats
    oldest_waiting_seconds: float | None
    oldest_unarrived_seconds: float | None
    last_seen: datetime | None
    health: str
    intake: QueueStats = QueueStats()  # what it submitted, waiting for the routers

    def as_dict(self) -> dict[str, Any]:
        vi, en = HEALTH_LABELS[self.health]
        return {
            "gateway_id": self.gateway_id,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "inbox_present": self.inbox_present,
            "depth": self.inbox.messages,
            "ready": self.inbox.ready,
            "unacknowledged": self.inbox.unacked,
            "consumers": self.inbox.consumers,
            "publish_rate": round(self.inbox.publish_rate, 3),
            "deliver_rate": round(self.inbox.deliver_rate, 3),
            "receipts_depth": self.receipts.messages,
            "intake_depth": self.intake.messages,
            "oldest_waiting_seconds": _round(self.oldest_waiting_seconds),
            "oldest_unarrived_seconds": _round(self.oldest_unarrived_seconds),
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
            "health": self.health,
            "health_vi": vi,
            "health_en": en,
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def classify(
    *, inbox_present: bool, consumers: int, ready: int, oldest_waiting: float | None,
    thresholds: HealthThresholds,
) -> str:
    if not inbox_present or consumers == 0:
        return "no_consumer"
    if oldest_waiting is not None and oldest_waiting > thresholds.stale_seconds:
        return "stale"
    if ready > thresholds.backlog:
        return "backlog"
    return "ok"


class QueueSnapshot:
    """The vhost's queue statistics, fetched at most once per ``ttl`` seconds however many
    requests ask at the same time (the dashboard polls; the management API is not free)."""

    def __init__(self, admin: BrokerAdmin, vhost: str, *, ttl: float = 2.0) -> None:
        self._admin = admin
        self._vhost = vhost
        self._ttl = ttl
        self._at = 0.0
        self._queues: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()

    async def queues(self) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if time.monotonic() - self._at > self._ttl:
                rows = await self._admin.request(
                    "GET", f"/queues/{quote(self._vhost, safe='')}?columns={_COLUMNS}"
                ) or []
                self._queues = {q["name"]: q for q in rows}
                self._at = time.monotonic()
            return self._queues


async def gateway_health(
    pool: asyncpg.Pool,
    snapshot: QueueSnapshot,
    *,
    thresholds: HealthThresholds | None = None,
    record_presence: bool = True,
) -> list[GatewayHealth]:
    """Health of every gateway in the directory, ordered by id."""
    thresholds = thresholds or HealthThresholds()
    queues_task = asyncio.create_task(snapshot.queues())  # in parallel with the query
    try:
        return await _join(pool, queues_task, thresholds, record_presence)
    finally:
        if not queues_task.done():
            queues_task.cancel()
        with contextlib.suppress(BaseException):
            await queues_task  # retrieve its outcome: never an unobserved task error


async def _join(
    pool: asyncpg.Pool,
    queues_task: asyncio.Task[dict[str, dict[str, Any]]],
    thresholds: HealthThresholds,
    record_presence: bool,
) -> list[GatewayHealth]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT g.id, g.name, g.kind, g.status, p.last_consumer_at,
                      extract(epoch FROM now() - (
                          SELECT d.queued_at FROM deliveries d
                           WHERE d.gateway_id = g.id AND d.state = 'queued'
                           ORDER BY d.queued_at LIMIT 1)) AS oldest,
                      now() AS now
                 FROM gateways g LEFT JOIN gateway_presence p ON p.gateway_id = g.id
                ORDER BY g.id"""
        )
        queues = await queues_task
        out: list[GatewayHealth] = []
        seen_now: list[str] = []
        for r in rows:
            gid = r["id"]
            raw_inbox = queues.get(inbox_queue(gid))
            inbox = QueueStats.from_api(raw_inbox) if raw_inbox else QueueStats()
            raw_receipts = queues.get(receipts_queue(gid))
            receipts = QueueStats.from_api(raw_receipts) if raw_receipts else QueueStats()
            raw_intake = queues.get(intake_queue(gid))
            intake = QueueStats.from_api(raw_intake) if raw_intake else QueueStats()
            unarrived = float(r["oldest"]) if r["oldest"] is not None else None
            waiting = unarrived if inbox.messages > 0 else None
            last_seen: datetime | None = r["last_consumer_at"]
            if inbox.consumers > 0:
                last_seen = r["now"]
                seen_now.append(gid)
            out.append(
                GatewayHealth(
                    gateway_id=gid,
                    name=r["name"],
                    kind=r["kind"],
                    status=r["status"],
                    inbox_present=raw_inbox is not None,
                    inbox=inbox,
                    receipts=receipts,
                    oldest_waiting_seconds=waiting,
                    oldest_unarrived_seconds=unarrived,
                    last_seen=last_seen,
                    health=classify(
                        inbox_present=raw_inbox is not None,
                        consumers=inbox.consumers,
                        ready=inbox.ready,
                        oldest_waiting=waiting,
                        thresholds=thresholds,
                    ),
                    intake=intake,
                )
            )
        if record_presence and seen_now:
            await conn.execute(
                """INSERT INTO gateway_presence (gateway_id, last_consumer_at)
                   SELECT unnest($1::text[]), now()
                   ON CONFLICT (gateway_id)
                   DO UPDATE SET last_consumer_at = EXCLUDED.last_consumer_at""",
                seen_now,
            )
    return out


def summary(gateways: list[GatewayHealth]) -> dict[str, int]:
    counts = dict.fromkeys(HEALTH_LABELS, 0)
    for g in gateways:
        counts[g.health] += 1
    return counts
