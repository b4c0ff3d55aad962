"""A router's memory is bounded by bytes: batch assembly and prefetch (issue #11, item 3)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, cast

from router.routing.intake import RouterWorker
from router.settings import Settings
from router.topology import ROUTER_IN

MiB = 1024 * 1024


@dataclass(eq=False)
class _Delivered:
    """What the batch assembly looks at: a delivered message's body (and its place)."""

    body: bytes
    delivery_tag: int
    channel: str = "channel"


def _worker(**settings: Any) -> RouterWorker:
    return RouterWorker(Settings(batch_wait_ms=0).with_(**settings), cast(Any, None))


async def _batches(worker: RouterWorker, sizes: list[int]) -> list[list[int]]:
    for tag, n in enumerate(sizes, start=1):
        worker._wait_in(ROUTER_IN, cast(Any, _Delivered(b"x" * n, tag)))
    stop = asyncio.Event()
    out: list[list[int]] = []
    while len(out) < 20:
        batch = await worker._next_batch(stop)
        if not batch:
            break
        out.append([len(m.body) for m in batch])
    return out


async def test_a_batch_holds_no_more_bytes_than_the_setting() -> None:
    worker = _worker(batch_size=200, batch_max_bytes=64 * MiB)
    batches = await _batches(worker, [29 * MiB] * 10)
    assert [len(b) for b in batches] == [2, 2, 2, 2, 2]
    assert all(sum(b) <= 64 * MiB for b in batches)


async def test_small_packages_still_fill_a_batch_and_nothing_is_lost_or_reordered() -> None:
    worker = _worker(batch_size=200, batch_max_bytes=64 * MiB)
    sizes = [10_000 + i for i in range(300)] + [40 * MiB, 30 * MiB, 1000]
    batches = await _batches(worker, sizes)
    assert [len(b) for b in batches] == [200, 101, 2]  # 100 small + 40 MiB, then 30 MiB + 1
    assert [n for b in batches for n in b] == sizes


async def test_a_message_larger_than_the_batch_bound_goes_alone() -> None:
    worker = _worker(batch_size=200, batch_max_bytes=8 * MiB)
    batches = await _batches(worker, [1 * MiB, 20 * MiB, 1 * MiB])
    assert batches == [[1 * MiB], [20 * MiB], [1 * MiB]]


def test_prefetch_keeps_the_bytes_in_flight_under_the_setting() -> None:
    s = Settings()
    assert s.prefetch_count * s.max_message_bytes <= s.inflight_max_bytes
    assert s.prefetch_count >= 2
    small = Settings(max_package_bytes=64 * 1024, inflight_max_bytes=512 * MiB, batch_size=200)
    assert small.prefetch_count == 400  # small packages: two full batches, as before
    tight = Settings(inflight_max_bytes=10 * MiB)
    assert tight.prefetch_count == 2  # never below one batch routing + one arriving
