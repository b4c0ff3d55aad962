"""The hub at a glance (issue #16): is the axis routing right now?

Read from the broker (the management API's queue snapshot the gateway table already uses,
plus its nodes' alarms) and from the ledger through indexes only, never a scan of every
delivery:

- routers alive: consumers of ``lt.router.in``; the depth of every intake queue together
  (``lt.router.in`` and the gateways' ``lt.router.in.<id>``) and how long the oldest
  message among them has waited (``head_message_timestamp`` when the broker gives it,
  which it does only for messages carrying an AMQP timestamp on a classic queue;
  otherwise how long they have been seen non-empty without a break — an upper bound,
  ``oldest_source`` says which);
- unroutable (``lt.unroutable``) and parked (ledger + ``lt.parking``) counts;
- received → inbox latency p50/p99 over the last ``window`` (deliveries created then:
  ``created_at`` is when the router recorded the package, ``queued_at`` when its copy was
  confirmed in the recipient's inbox; the gateway → hub leg is in the routers'
  ``lienthong_routing_seconds`` histogram);
- documents today (Vietnam day) and the share of today's deliveries already in an inbox
  or further;
- the alerts firing, evaluated here on the same conditions as deploy/prometheus rules.

"Growing" needs history: :class:`HubWatch` keeps the last few minutes of samples of
``lt.router.in`` depth and of the parked count in memory (each ops process its own).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from router import topology
from router.broker_admin import BrokerAdmin
from router.ops.queue_health import QueueSnapshot
from router.reporting.national import VIETNAM

__all__ = ["Alert", "HubOverview", "HubWatch", "WatchThresholds", "alerts"]


@dataclass(frozen=True, slots=True)
class WatchThresholds:
    """When ``lt.router.in`` counts as growing: it holds at least ``growing_min`` messages
    and more than ``growing_seconds`` ago (the oldest sample at least that old)."""

    growing_min: int = 100
    growing_seconds: float = 60.0
    latency_window: timedelta = timedelta(minutes=5)
    ledger_ttl: float = 10.0  # seconds the ledger figures are reused (tests: 0)


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    severity: str  # critical | warning
    message_vi: str
    message_en: str


@dataclass(frozen=True, slots=True)
class HubOverview:
    checked_at: str
    routers: int
    router_in_depth: int
    router_in_oldest_seconds: float | None
    router_in_oldest_source: str | None  # broker | since_nonempty
    router_in_growing: bool
    unroutable: int
    parked: int
    latency_window_seconds: float
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None
    documents_today: int
    deliveries_today: int
    delivered_share_today: float | None
    broker_alarms: list[str]
    alerts: list[Alert]
    banner: bool  # a red banner: no router, lt.router.in growing or a broker alarm

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_LEDGER = """
SELECT
    (SELECT count(*) FROM parked_messages WHERE state = 'parked') AS parked,
    (SELECT count(*) FROM documents WHERE kind = 'edoc' AND received_at >= $1) AS docs,
    (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
                (ORDER BY extract(epoch FROM queued_at - created_at))
       FROM deliveries WHERE created_at >= $2 AND queued_at IS NOT NULL) AS latency,
    d.n AS deliveries, d.delivered
FROM (SELECT count(*) AS n,
             count(*) FILTER (WHERE state NOT IN ('submitted', 'undeliverable')) AS delivered
        FROM deliveries WHERE created_at >= $1) d
"""


@dataclass
class HubWatch:
    """Samples the hub and answers :meth:`overview`. One per ops process."""

    pool: asyncpg.Pool
    admin: BrokerAdmin
    snapshot: QueueSnapshot
    thresholds: WatchThresholds = field(default_factory=WatchThresholds)
    _depths: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=512))
    _nonempty_since: float | None = None
    _ledger_row: tuple[float, datetime, asyncpg.Record] | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def overview(self, *, now: datetime | None = None) -> HubOverview:
        now = now or datetime.now(UTC)
        today = datetime.combine(now.astimezone(VIETNAM).date(), datetime.min.time(), VIETNAM)
        queues, nodes, row = await asyncio.gather(
            self.snapshot.queues(),
            self.admin.request("GET", "/nodes?columns=name,mem_alarm,disk_free_alarm"),
            self._ledger(today, now - self.thresholds.latency_window),
        )
        # waiting for the routers: lt.router.in and every gateway's intake queue (each
        # router consumes them all, lt.router.in first: its consumers are the routers)
        intake = [q for name, q in queues.items() if topology.is_intake_queue(name)]
        depth = sum(int(q.get("messages") or 0) for q in intake)
        consumers = int((queues.get(topology.ROUTER_IN) or {}).get("consumers") or 0)
        parked = int(row["parked"] or 0) + int(
            (queues.get(topology.PARKING) or {}).get("messages") or 0)
        unroutable = int((queues.get(topology.UNROUTABLE) or {}).get("messages") or 0)
        growing, parking_growing, since_nonempty = self.sample(depth, parked, time.monotonic())
        oldest, source = None, None
        heads = [float(q["head_message_timestamp"]) for q in intake
                 if q.get("messages") and isinstance(q.get("head_message_timestamp"), int | float)]
        head = min(heads, default=None)
        if depth and head is not None:
            oldest, source = max(0.0, now.timestamp() - float(head)), "broker"
        elif depth and since_nonempty is not None:
            oldest, source = since_nonempty, "since_nonempty"
        alarms = [
            f"{kind}:{n.get('name')}"
            for n in nodes or []
            for kind, key in (("memory", "mem_alarm"), ("disk", "disk_free_alarm"))
            if n.get(key)
        ]
        firing = alerts(consumers, depth, growing, alarms, unroutable, parking_growing)
        latency = row["latency"]
        n, delivered = int(row["deliveries"] or 0), int(row["delivered"] or 0)
        return HubOverview(
            checked_at=now.isoformat(),
            routers=consumers,
            router_in_depth=depth,
            router_in_oldest_seconds=None if oldest is None else round(oldest, 1),
            router_in_oldest_source=source,
            router_in_growing=growing,
            unroutable=unroutable,
            parked=parked,
            latency_window_seconds=self.thresholds.latency_window.total_seconds(),
            latency_p50_seconds=_r(latency, 0),
            latency_p99_seconds=_r(latency, 1),
            documents_today=int(row["docs"] or 0),
            deliveries_today=n,
            delivered_share_today=round(delivered / n, 4) if n else None,
            broker_alarms=alarms,
            alerts=firing,
            banner=any(a.severity == "critical" for a in firing),
        )

    async def _ledger(self, today: datetime, since: datetime) -> asyncpg.Record:
        """Today's figures and the latency, read at most once per ``ledger_ttl`` however
        many dashboards poll (the broker's figures, which drive the banner, are fresh)."""
        async with self._lock:
            cached = self._ledger_row
            if (cached is not None and cached[1] == today
                    and time.monotonic() - cached[0] < self.thresholds.ledger_ttl):
                return cached[2]
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(_LEDGER, today, since)
            assert row is not None
            self._ledger_row = (time.monotonic(), today, row)
            return row

    def sample(self, depth: int, parked: int, t: float) -> tuple[bool, bool, float | None]:
        """Record a sample taken at monotonic time ``t``; return (lt.router.in growing,
        parking growing, seconds lt.router.in has been non-empty)."""
        if depth == 0:
            self._nonempty_since = None
        elif self._nonempty_since is None:
            self._nonempty_since = t
        self._depths.append((t, depth, parked))
        horizon = t - 4 * self.thresholds.growing_seconds
        while self._depths and self._depths[0][0] < horizon:
            self._depths.popleft()
        # the newest sample at least growing_seconds old
        then = None
        for s in self._depths:
            if t - s[0] >= self.thresholds.growing_seconds:
                then = s
            else:
                break
        growing = (then is not None and depth >= self.thresholds.growing_min
                   and depth > then[1])
        parking_growing = then is not None and parked > then[2]
        since = None if self._nonempty_since is None else t - self._nonempty_since
        return growing, parking_growing, since


def _r(v: list[float | None] | None, i: int) -> float | None:
    x = None if v is None else v[i]
    return None if x is None else round(float(x), 3)


def alerts(consumers: int, depth: int, growing: bool, alarms: list[str], unroutable: int,
            parking_growing: bool) -> list[Alert]:
    out: list[Alert] = []
    if consumers == 0:
        out.append(Alert("LienthongNoRouter", "critical",
                         "Không có router nào nhận từ lt.router.in: trục không chuyển văn bản",
                         "No router consumes lt.router.in: the axis is not routing"))
    if growing:
        out.append(Alert("LienthongRouterInGrowing", "critical",
                         f"Hàng đợi lt.router.in đang tăng ({depth} gói)",
                         f"lt.router.in keeps growing ({depth} messages)"))
    if alarms:
        out.append(Alert("LienthongBrokerAlarm", "critical",
                         "RabbitMQ báo động bộ nhớ/đĩa, các gateway bị chặn gửi: "
                         + ", ".join(alarms),
                         "RabbitMQ raised a memory/disk alarm, publishers are blocked: "
                         + ", ".join(alarms)))
    if unroutable:
        out.append(Alert("LienthongUnroutable", "warning",
                         f"{unroutable} gói không định tuyến được trong lt.unroutable",
                         f"{unroutable} unroutable messages in lt.unroutable"))
    if parking_growing:
        out.append(Alert("LienthongParkingGrowing", "warning",
                         "Khu cách ly đang tăng", "Parking is growing"))
    return out
