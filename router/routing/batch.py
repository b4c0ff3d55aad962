"""Routing one batch of submitted messages: parse → look up → decide → record.

:class:`BatchRouter` turns a batch of :class:`Incoming` messages into a :class:`BatchPlan`:
the copies to publish to recipient gateways and the receipts to send back, after writing
everything to the ledger in one transaction. It only moves data between the steps:

* ``schemas.parse_package``: the bytes to a typed package (or the parser's refusal);
* ``router.routing.lookup``: the facts the decisions need, one round trip;
* ``router.routing.decide``: pure; every rejection rule;
* ``router.routing.record``: the one batch transaction;
* ``router.routing.plan``: the copies and receipts.

It does no AMQP I/O: ``router.routing.intake`` does.

Idempotency: hub ids, delivery ids, copy ids and receipt ids are either stored (hub ids)
or derived deterministically from stored ids, so processing the same message twice (a
crash before the ack) republishes the same copies with the same ids, and gateways drop
the second one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from router import metrics
from router.routing import decide
from router.routing import plan as plans
from router.routing.decide import Incoming, derive_id
from router.routing.lookup import look_up
from router.routing.plan import BatchPlan, Copy, OutgoingReceipt
from router.routing.record import record
from router.security.signature_gate import SignatureGate
from schemas import ParsedPackage, ParseLimits, parse_package
from schemas.reasons import PackageRejected, Reason

__all__ = ["BatchPlan", "BatchRouter", "Copy", "Incoming", "OutgoingReceipt", "derive_id"]


class BatchRouter:
    """Validates, authorises and records a batch; returns what to publish."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        limits: ParseLimits,
        gate: SignatureGate | None = None,
        signature_refresh_seconds: float = 30.0,
    ) -> None:
        self._pool = pool
        self._limits = limits
        self._gate = gate or SignatureGate(pool, refresh_seconds=signature_refresh_seconds)

    async def route(self, batch: Sequence[Incoming]) -> BatchPlan:
        step = metrics.ROUTE_STEP_SECONDS
        t0 = time.perf_counter()
        plan = BatchPlan(outcomes=[""] * len(batch))
        parsed = [self._parse(m) for m in batch]
        plan.kinds = [
            "unknown" if isinstance(p, PackageRejected) else p.package.kind for p in parsed
        ]
        t1 = time.perf_counter()
        step.labels("parse").observe(t1 - t0)
        async with self._pool.acquire() as conn:
            wanted = decide.wanted(batch, parsed)
            facts = await look_up(conn, wanted, datetime.now(UTC))
            t2 = time.perf_counter()
            step.labels("lookup").observe(t2 - t1)
            await self._gate.refresh_if_stale(
                [g.id for g in facts.gateways.values()], conn=conn
            )
            facts.now = datetime.now(UTC)
            decisions = decide.decide(batch, parsed, facts, self._gate.check)
            t3 = time.perf_counter()
            done = await record(conn, batch, decisions, plan,
                                max_body_bytes=self._limits.max_bytes, known=facts.deliveries)
            step.labels("record").observe(time.perf_counter() - t3)
        for p in done.accepted:
            plan.outcomes[p.index] = "accepted"
            plans.plan_copies(p, plan)
        for clash in done.duplicates:
            plan.outcomes[clash.plan.index] = "resumed" if clash.is_resume else "duplicate"
            if not clash.is_resume:  # a resume's receipt is the first one's, built by record
                plan.receipts.append(plans.duplicate_receipt(
                    clash.plan, clash.hub_id, repeat=clash.same_message))
        plan.pending.extend(done.resumed)
        return plan

    def _parse(self, msg: Incoming) -> ParsedPackage | PackageRejected:
        if msg.wire_error:  # decided on its envelope alone; the body is not read
            return PackageRejected(Reason.BAD_MESSAGE_PROPERTIES, msg.wire_error)
        if msg.parsed is not None:  # a large package's claim, validated as it streamed
            return msg.parsed
        try:
            return parse_package(msg.body, limits=self._limits)
        except PackageRejected as exc:
            # kept as data, without tracebacks: their frames hold the batch (and every body
            # in it) in a reference cycle, freed only by a later garbage collection
            exc.__cause__ = exc.__context__ = None
            return exc.with_traceback(None)

    @staticmethod
    def receipts_for(plan: BatchPlan, states: dict[uuid.UUID, str]) -> list[OutgoingReceipt]:
        """Every receipt of the batch once its copies' fate is known (see
        ``router.routing.plan.receipts_for``)."""
        return plans.receipts_for(plan, states)
