"""The façade's bound on request bodies held at once."""

from __future__ import annotations

import asyncio

import pytest

from adapters.vxp.budget import ByteBudget


async def test_requests_share_the_budget_and_wait_their_turn() -> None:
    budget = ByteBudget(100)
    order: list[str] = []
    release_first = asyncio.Event()

    async def hold(name: str, size: int, until: asyncio.Event | None = None) -> None:
        async with budget.reserve(size, wait=5):
            order.append(f"{name} in ({budget.in_use})")
            if until is not None:
                await until.wait()
        order.append(f"{name} out")

    first = asyncio.create_task(hold("a", 60, release_first))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold("b", 60))
    await asyncio.sleep(0.05)
    assert order == ["a in (60)"]  # b waits: 120 > 100
    release_first.set()
    await asyncio.gather(first, second)
    assert order == ["a in (60)", "a out", "b in (60)", "b out"]
    assert budget.in_use == 0


async def test_no_room_in_time_is_a_timeout_and_nothing_stays_reserved() -> None:
    budget = ByteBudget(100)
    async with budget.reserve(100, wait=1):
        with pytest.raises(TimeoutError):
            async with budget.reserve(1, wait=0.05):
                pass
        assert budget.in_use == 100
    assert budget.in_use == 0


async def test_a_request_larger_than_the_budget_takes_all_of_it() -> None:
    budget = ByteBudget(100)
    async with budget.reserve(10_000, wait=1):
        assert budget.in_use == 100
    assert budget.in_use == 0
