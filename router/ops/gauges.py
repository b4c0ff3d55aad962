"""Refreshing the gauges that describe the ledger and the broker (run by the ops process).

Per-gateway gauges come from one management API call and one ledger query
(:func:`router.queue_health.gateway_health`); ledger counts from a few aggregate queries,
each bounded by a statement timeout so a slow ledger never stalls the ops process. None of
them reads every delivery: deliveries per state are kept by triggers
(``delivery_state_deltas``, migration 0007) and folded here; not-arrived, overdue and parked
counts read partial indexes of the open rows only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from typing import Any

import asyncpg
import structlog

from router import metrics, topology
from router.ops.queue_health import HealthThresholds, QueueSnapshot, gateway_health
from router.reporting.tracking import DELIVERY_STATES, LISTS

__all__ = ["GaugeRefresher"]

log = structlog.get_logger("lienthong.ops.gauges")


class GaugeRefresher:
    """Keeps the gauges current; remembers label sets to drop gateways that disappear."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        snapshot: QueueSnapshot,
        *,
        thresholds: HealthThresholds | None = None,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        self._pool = pool
        self._snapshot = snapshot
        self._thresholds = thresholds or HealthThresholds()
        self._timeout_ms = statement_timeout_ms
        self._gateways: set[str] = set()
        self._cert_gateways: set[str] = set()
        self._parked_in_broker = 0

    async def refresh(self) -> None:
        await self._refresh_gateways()
        await self._refresh_ledger()
        await self._refresh_certificates()
        metrics.GAUGES_REFRESHED.set(time.time())

    async def _refresh_gateways(self) -> None:
        rows = await gateway_health(
            self._pool, self._snapshot, thresholds=self._thresholds, record_presence=True
        )
        current: set[str] = set()
        queues = await self._snapshot.queues()
        for g in rows:
            gid = g.gateway_id
            current.add(gid)
            metrics.GATEWAY_QUEUE_DEPTH.labels(gid, "inbox").set(g.inbox.messages)
            metrics.GATEWAY_QUEUE_DEPTH.labels(gid, "receipts").set(g.receipts.messages)
            metrics.GATEWAY_QUEUE_DEPTH.labels(gid, "intake").set(g.intake.messages)
            metrics.GATEWAY_CONSUMERS.labels(gid).set(
                g.inbox.consumers if g.inbox_present else 0
            )
            metrics.GATEWAY_OLDEST.labels(gid).set(g.oldest_waiting_seconds or 0.0)
        for gone in self._gateways - current:
            for queue in ("inbox", "receipts", "intake"):
                _remove(metrics.GATEWAY_QUEUE_DEPTH, gone, queue)
            _remove(metrics.GATEWAY_CONSUMERS, gone)
            _remove(metrics.GATEWAY_OLDEST, gone)
        self._gateways = current
        self._parked_in_broker = int((queues.get(topology.PARKING) or {}).get("messages") or 0)

    async def _refresh_ledger(self) -> None:
        async with self._pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL statement_timeout = {int(self._timeout_ms)}")
                by_state = {r["state"]: int(r["n"]) for r in await conn.fetch(_FOLD_STATES)}
            async with conn.transaction(readonly=True):
                await conn.execute(f"SET LOCAL statement_timeout = {int(self._timeout_ms)}")
                not_arrived = await conn.fetchval(
                    f"SELECT count(*) FROM deliveries d WHERE {LISTS['not_arrived']}"  # noqa: S608
                )
                overdue = await conn.fetchval(
                    f"SELECT count(*) FROM deliveries d WHERE {LISTS['overdue']}"  # noqa: S608
                )
                parked = await conn.fetchval(
                    "SELECT count(*) FROM parked_messages WHERE state = 'parked'"
                )
        for state in {*DELIVERY_STATES, *by_state}:
            metrics.DELIVERIES.labels(state).set(by_state.get(state, 0))
        metrics.NOT_ARRIVED.set(not_arrived or 0)
        metrics.OVERDUE.set(overdue or 0)
        # parked in the ledger, plus what routers have not copied out of lt.parking yet
        metrics.PARKED.set((parked or 0) + self._parked_in_broker)

    async def _refresh_certificates(self) -> None:
        try:
            module: Any = importlib.import_module("router.security.certificates")
        except ImportError:
            return
        expiry = getattr(module, "certificate_expiry", None)
        if expiry is None:
            return
        async with self._pool.acquire() as conn:
            rows = await expiry(conn)
        nearest: dict[str, float] = {}
        for gateway, _fingerprint, days in rows:
            if gateway is None:
                continue
            nearest[gateway] = min(float(days), nearest.get(gateway, float("inf")))
        now = time.time()
        for gateway, days in nearest.items():
            metrics.CERT_EXPIRY.labels(gateway).set(round(now + days * 86400))
        for gone in self._cert_gateways - set(nearest):
            _remove(metrics.CERT_EXPIRY, gone)
        self._cert_gateways = set(nearest)

    async def run(self, stop: asyncio.Event, interval: float = 15.0) -> None:
        """Refresh every ``interval`` seconds until ``stop`` is set; errors are logged."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # keep refreshing: a broker or DB blip is temporary
                log.warning("gauges.refresh_failed", error=repr(exc)[:500])
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                continue


# Fold the per-statement deltas the triggers appended into the per-state counts and read
# them, in one statement: each delta row is deleted (so counted) by exactly one refresh.
_FOLD_STATES = """
WITH folded AS (DELETE FROM delivery_state_deltas RETURNING state, n),
sums AS (SELECT state, sum(n) AS n FROM folded GROUP BY state),
up AS (INSERT INTO delivery_state_counts AS c (state, n) SELECT state, n FROM sums
       ON CONFLICT (state) DO UPDATE SET n = c.n + EXCLUDED.n RETURNING c.state, c.n)
SELECT state, n FROM up
UNION ALL
SELECT state, n FROM delivery_state_counts WHERE state NOT IN (SELECT state FROM up)
"""


def _remove(gauge: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
