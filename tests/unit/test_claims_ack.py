"""A large package's claim is checked aside while later deliveries are routed; until its
own batch settles it, no batch may ack it with ``multiple=True`` (it would be acked before
it is routed: lost if the router then dies; its own ack later an unknown delivery tag,
which closes the channel)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from router.routing.sources import Sources
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
    held: Sources[_Delivery] = Sources(size=lambda m: 1,
                                       tag=lambda m: ("channel", m.delivery_tag))
    claims = Claims(None, None, ParseLimits())  # type: ignore[arg-type]
    checking = asyncio.Event()
    release = asyncio.Event()

    async def slow_resolve(batch: Any, messages: Any = None) -> None:
        checking.set()
        await release.wait()

    claims.resolve = slow_resolve  # type: ignore[method-assign]
    on = asyncio.Event()

    def hand_on(message: _Delivery) -> None:
        held.put("lt.router.in", message)
        on.set()

    first = _Delivery(1)
    held.put("lt.router.in", first)
    claim = _Delivery(2)
    held.hold(claim)  # delivered: held while it is checked aside
    claims.prepare(claim, _Claim(), hand_on)  # type: ignore[arg-type]
    await checking.wait()
    later = [_Delivery(3), _Delivery(4), _Delivery(5)]
    for m in later:
        held.put("lt.router.in", m)

    assert held.take(1, 10**9) == [first]
    assert held.ack_split([first]) == (None, [first])  # before the claim: acked alone
    held.settle([first])
    assert held.take(3, 10**9) == later
    assert held.ack_split(later) == (None, later)  # one by one: the claim is out
    release.set()
    await asyncio.wait_for(on.wait(), 5)
    assert held.ack_split(later) == (None, later)  # handed on, but not yet settled
    assert held.take(3, 10**9) == [claim]
    held.settle([claim])  # its batch acked it
    assert held.ack_split(later) == (later[-1], [])
