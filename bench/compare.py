"""Router CPU per package of several code trees, measured in the same minutes.

On a shared machine the load of other processes moves ``make bench``'s figures by 1.5x from
one minute to the next, so a before/after comparison must alternate: this drains the same
kind of pre-filled queue with router processes started from each tree in turn (a git
worktree of the commit before, the working tree after), in one bench environment, and
prints each drain and the medians. ``--burst`` measures fairness instead: N documents
from one gateway at once, then a steady stream from another; the stream's latency says
how long a single document waits behind another gateway's burst.

    git worktree add --detach ../before <commit>
    python -m bench.compare ../before . --packages 1500 --rounds 3
    python -m bench.compare . --burst 5000 --rate 100 --seconds 10

The routers run as ``python -m router.cli router`` with the tree as working directory, so
the tree's own ``router``, ``schemas`` and ``adapters`` are imported (the interpreter and
its packages are this one's).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import click
from aiormq.abc import DeliveredMessage

import bench.processes as processes
from bench.run import BenchConfig, _Bench, _text, bench_environment
from bench.workload import BenchDocument, BenchGateway, Workload, bench_directory
from router import topology
from router.settings import Settings


def _pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return round(ordered[k] * 1000, 1)


async def _drains(trees: Sequence[Path], packages: int, rounds: int, routers: int) -> None:
    config = BenchConfig(packages=packages, log_dir=Path(".bench"))
    async with bench_environment(Settings.from_env(), bench_directory(95)) as env:
        b = _Bench(env, config, lambda _m: None)
        await b.traffic.connect()
        rows: dict[Path, list[tuple[float, float, float]]] = {t: [] for t in trees}
        try:
            for _ in range(rounds):
                for tree in trees:
                    processes._REPO = tree
                    docs = b.documents(packages)
                    out = await b.throughput("router", routers, docs,
                                             b.status_submissions(docs))
                    row = (out["edoc"]["cpu_ms_per_package"],
                           out["status"]["cpu_ms_per_package"],
                           out["total"]["packages_per_s"])
                    rows[tree].append(row)
                    click.echo(f"{tree}: CPU ms per document {row[0]}, per status {row[1]}; "
                               f"{row[2]} packages/s")
        finally:
            b.kill_all()
            await b.traffic.close()
    for tree, got in rows.items():
        click.echo(f"{tree} median of {len(got)}: CPU ms per document "
                   f"{statistics.median(r[0] for r in got)}, per status "
                   f"{statistics.median(r[1] for r in got)}; "
                   f"{statistics.median(r[2] for r in got)} packages/s")


def _from(sender: BenchGateway, other: BenchGateway, n: int, tag: str,
          seed: int) -> list[BenchDocument]:
    """``n`` documents sent by ``sender`` (to ``other``)."""
    workload = Workload([sender, other], seed=seed)
    out: list[BenchDocument] = []
    i = 0
    while len(out) < n:
        d = workload.document(tag, i)
        i += 1
        if d.sender is sender:
            out.append(d)
    return out


async def _burst(tree: Path, routers: int, burst: int, rate: float, seconds: float) -> None:
    processes._REPO = tree
    gateways = bench_directory(95)
    a, x, b_gw, y = gateways[:4]
    burst_docs = _from(a, x, burst, "BU1-", 1)
    stream_docs = _from(b_gw, y, int(rate * seconds), "ST1-", 2)
    async with bench_environment(Settings.from_env(), gateways) as env:
        b = _Bench(env, BenchConfig(log_dir=Path(".bench")), lambda _m: None)
        await b.traffic.connect()
        arrived: dict[str, float] = {}
        every = {d.document_id for d in (*burst_docs, *stream_docs)}
        all_in = asyncio.Event()

        async def on_message(msg: DeliveredMessage) -> None:
            headers = msg.header.properties.headers or {}
            arrived[_text(headers.get("lt-document-id"))] = time.monotonic()
            if every <= arrived.keys():
                all_in.set()

        try:
            await b.traffic.purge([*b.inboxes, *b.receipt_queues, topology.ROUTER_IN])
            group = b.group("router")
            group.start(routers)
            await b._wait_consumers(group, routers)
            await b.traffic.consume([topology.inbox_queue(x.id), topology.inbox_queue(y.id)],
                                    on_message)
            t0 = time.monotonic()
            confirms = [asyncio.ensure_future(b.traffic.publish(a, d.body, kind="edoc"))
                        for d in burst_docs]
            sent: dict[str, float] = {}
            for i, d in enumerate(stream_docs):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                sent[d.document_id] = time.monotonic()
                confirms.append(asyncio.ensure_future(
                    b.traffic.publish(b_gw, d.body, kind="edoc")))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in.wait(), 300)
            await asyncio.gather(*confirms, return_exceptions=True)
            await b.traffic.stop_consuming()
            await group.stop()
        finally:
            b.kill_all()
            await b.traffic.close()
    lat = [arrived[k] - t for k, t in sent.items() if k in arrived]
    done = [arrived[d.document_id] for d in burst_docs if d.document_id in arrived]
    click.echo(f"{tree} x{routers}: {len(done)}/{burst} burst documents from {a.id} in "
               f"{max(done) - t0:.1f} s; stream from {b_gw.id} at {rate:g}/s: "
               f"{len(lat)}/{len(sent)} arrived, p50 {_pct(lat, 50)} ms, "
               f"p99 {_pct(lat, 99)} ms, max {_pct(lat, 100)} ms")


@click.command()
@click.argument("trees", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--packages", type=click.IntRange(10), default=1500, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--routers", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--burst", type=click.IntRange(0), default=0,
              help="Measure fairness instead: this many documents at once from one "
                   "gateway, then --rate/s for --seconds from another (first tree only).")
@click.option("--rate", type=click.FloatRange(1), default=100.0, show_default=True)
@click.option("--seconds", type=click.FloatRange(1), default=10.0, show_default=True)
def compare(trees: tuple[Path, ...], packages: int, rounds: int, routers: int, burst: int,
            rate: float, seconds: float) -> None:
    """Router drains of TREES in turn (CPU ms per package), or the burst figure."""
    resolved = [t.resolve() for t in trees]
    if burst:
        asyncio.run(_burst(resolved[0], routers, burst, rate, seconds))
    else:
        asyncio.run(_drains(resolved, packages, rounds, routers))


if __name__ == "__main__":
    compare()
