"""A large package's claim is checked aside while later deliveries are routed; until its
own batch settles it, no batch may ack it with ``multiple=True`` (it would be acked before
it is routed: lost if the router then dies)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from router.transfer.claims import Claims
from schemas import ParseLimits


@dataclass(eq=False)
class _Delivery:
    delivery_tag: int


class _Claim:
    upload_id = "u-1"
    wire_error = None
    parsed = None


async def test_later_batches_ack_one_by_one_while_an_earlier_claim_is_out() -> None:
    claims = Claims(None, None, ParseLimits())  # type: ignore[arg-type]
    checking = asyncio.Event()
    release = asyncio.Event()

    async def slow_resolve(batch: Any, messages: Any = None) -> None:
        checking.set()
        await release.wait()

    claims.resolve = slow_resolve  # type: ignore[method-assign]
    handed: list[object] = []
    on = asyncio.Event()

    def hand_on(message: object) -> None:
        handed.append(message)
        on.set()

    claim = _Delivery(2)
    claims.prepare(claim, _Claim(), hand_on)  # type: ignore[arg-type]
    await checking.wait()

    assert claims.acked_together([_Delivery(1)])  # before the claim: one ack is fine
    later = [_Delivery(3), _Delivery(4), _Delivery(5)]
    assert not claims.acked_together(later)  # would ack the claim too
    release.set()
    await asyncio.wait_for(on.wait(), 5)
    assert handed == [claim]
    assert not claims.acked_together(later)  # handed on, but not yet settled by its batch
    claims.forget([claim, _Delivery(6)])  # its batch acked it
    assert claims.acked_together(later)
