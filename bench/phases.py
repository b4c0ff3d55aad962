"""Where a router batch's time goes: read from the routers' own Prometheus metrics.

Every router the bench starts serves ``/metrics`` on a port of its own
(``bench.processes``). After a latency run the bench reads the histograms
``lienthong_batch_phase_seconds`` (wait, turn, route, publish, finish) and
``lienthong_route_step_seconds`` (parse, lookup, record) of each router, adds them up and
reports, per phase, the batches counted, the mean and the bucket that holds the 99th
percentile (an upper bound: the histogram keeps buckets, not samples), and how many
batches were written in one statement or in a transaction under locks
(``lienthong_batch_writes_total``).
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["scrape", "summarize"]

_FAMILIES = {"lienthong_batch_phase_seconds": "phase", "lienthong_route_step_seconds": "step"}
ORDER = ("wait", "turn", "route", "parse", "lookup", "record", "publish", "finish")


def summarize(texts: Sequence[str]) -> dict[str, Any]:
    """The metrics texts of several routers to ``{phase: {batches, mean_ms, p99_ms_at_most}}``
    (phases in the order a batch goes through them) and the mean batch size."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    size_sum = size_count = 0.0
    writes: dict[str, int] = defaultdict(int)
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name == "lienthong_batch_writes":
                for s in family.samples:
                    if s.name.endswith("_total"):
                        writes[s.labels["how"]] += int(s.value)
                continue
            if family.name == "lienthong_batch_size":
                for s in family.samples:
                    if s.name.endswith("_sum"):
                        size_sum += s.value
                    elif s.name.endswith("_count"):
                        size_count += s.value
                continue
            label = _FAMILIES.get(family.name)
            if label is None:
                continue
            for s in family.samples:
                phase = s.labels.get(label)
                if phase is None:
                    continue
                if s.name.endswith("_sum"):
                    sums[phase] += s.value
                elif s.name.endswith("_count"):
                    counts[phase] += s.value
                elif s.name.endswith("_bucket"):
                    buckets[phase][float(s.labels["le"])] += s.value
    phases: dict[str, Any] = {}
    for phase in sorted(counts, key=lambda p: ORDER.index(p) if p in ORDER else len(ORDER)):
        n = counts[phase]
        if not n:
            continue
        bound = next((le for le, c in sorted(buckets[phase].items()) if c >= 0.99 * n),
                     math.inf)
        phases[phase] = {
            "batches": int(n),
            "mean_ms": round(sums[phase] / n * 1000, 2),
            "p99_ms_at_most": None if math.isinf(bound) else round(bound * 1000, 1),
        }
    return {"phases": phases,
            "mean_batch_size": round(size_sum / size_count, 1) if size_count else None,
            "writes": dict(writes)}


_SCRAPE_TIMEOUT = aiohttp.ClientTimeout(total=5.0)


async def scrape(ports: Sequence[int]) -> dict[str, Any]:
    """Read and summarize the metrics of the routers on ``ports`` (those that answer)."""
    async with aiohttp.ClientSession(timeout=_SCRAPE_TIMEOUT) as http:

        async def one(port: int) -> str | None:
            try:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    return await resp.text() if resp.status == 200 else None
            except (aiohttp.ClientError, TimeoutError):
                return None

        texts = await asyncio.gather(*(one(p) for p in ports))
    got = [t for t in texts if t is not None]
    return {**summarize(got), "routers_read": len(got)}
