"""Router CPU per package of several code trees, measured in the same minutes.

On a shared machine the load of other processes moves ``make bench``'s figures by 1.5x from
one minute to the next, so a before/after comparison must alternate: this drains the same
kind of pre-filled queue with router processes started from each tree in turn (a git
worktree of the commit before, the working tree after), in one bench environment, and
prints each drain and the medians. ``--latency`` alternates the trees' latency runs
instead (the paced 300 packages/s of ``make bench``, and the minimal relay's floor once a
round), with where a batch's time went and the cores each side used. ``--burst`` measures
fairness instead: a steady
stream from one gateway alone, then the same stream right behind N documents at once from
another gateway; the difference of the stream's latency says how long a single document
waits behind another gateway's burst.

    git worktree add --detach ../before <commit>
    python -m bench.compare ../before . --packages 1500 --rounds 3
    python -m bench.compare ../before . --latency --rounds 5
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
from collections.abc import AsyncIterator, Sequence
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


@contextlib.asynccontextmanager
async def _bench(config: BenchConfig) -> AsyncIterator[_Bench]:
    """A bench environment, its gateways connected; every process started in it is killed
    at the end."""
    async with bench_environment(Settings.from_env(), bench_directory(95)) as env:
        b = _Bench(env, config, lambda _m: None)
        await b.traffic.connect()
        try:
            yield b
        finally:
            b.kill_all()
            await b.traffic.close()


def _medians(rows: dict[Path, list[tuple[float, ...]]], labels: Sequence[str]) -> None:
    """Each tree's median of every column (``labels``: how to print each)."""
    for tree, got in rows.items():
        values = ", ".join(label.format(statistics.median(r[i] for r in got))
                           for i, label in enumerate(labels))
        click.echo(f"{tree} median of {len(got)}: {values}")


async def _drains(trees: Sequence[Path], packages: int, rounds: int, routers: int) -> None:
    rows: dict[Path, list[tuple[float, ...]]] = {t: [] for t in trees}
    async with _bench(BenchConfig(packages=packages, log_dir=Path(".bench"))) as b:
        for _ in range(rounds):
            for tree in trees:
                processes._REPO = tree
                docs = b.documents(packages)
                out = await b.throughput("router", routers, docs, b.status_submissions(docs))
                row = (out["edoc"]["cpu_ms_per_package"], out["status"]["cpu_ms_per_package"],
                       out["total"]["packages_per_s"])
                rows[tree].append(row)
                click.echo(f"{tree}: CPU ms per document {row[0]}, per status {row[1]}; "
                           f"{row[2]} packages/s")
    _medians(rows, ("CPU ms per document {}", "per status {}", "{} packages/s"))


async def _latencies(trees: Sequence[Path], rounds: int, routers: int, rate: float,
                     seconds: float) -> None:
    rows: dict[Path, list[tuple[float, ...]]] = {t: [] for t in trees}
    config = BenchConfig(rate=rate, duration=seconds, log_dir=Path(".bench"))
    async with _bench(config) as b:
        for _ in range(rounds):
            floor = await b.latency(1, "minimal")
            click.echo(f"minimal relay (the floor): p50 {floor['p50_ms']} ms, "
                       f"p99 {floor['p99_ms']} ms")
            for tree in trees:
                processes._REPO = tree
                out = await b.latency(routers)
                where = out["where_time_goes"]
                steps = where["phases"]
                cores = out["cpu"]["cores"]
                rows[tree].append((out["p50_ms"], out["p99_ms"]))
                click.echo(
                    f"{tree}: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms; per batch "
                    f"({where['mean_batch_size']} packages) wait {steps['wait']['mean_ms']}, "
                    f"route {steps['route']['mean_ms']} (lookup "
                    f"{steps['lookup']['mean_ms']}, record {steps['record']['mean_ms']}), "
                    f"publish {steps['publish']['mean_ms']} ms; cores: routers "
                    f"{cores['routers']}, PostgreSQL {cores['postgresql']}, RabbitMQ "
                    f"{cores['rabbitmq']}; a task waited for a CPU "
                    f"{out['cpu']['cpu_pressure_some']:.0%}")
    _medians(rows, ("p50 {} ms", "p99 {} ms"))


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
    """Gateway B's stream alone, then the same stream while gateway A's burst is routed,
    in one run with the same routers: the difference is what the burst costs B."""
    processes._REPO = tree
    gateways = bench_directory(95)
    a, x, b_gw, y = gateways[:4]
    burst_docs = _from(a, x, burst, "BU1-", 1)
    alone_docs = _from(b_gw, y, int(rate * seconds), "ST0-", 3)
    stream_docs = _from(b_gw, y, int(rate * seconds), "ST1-", 2)
    async with bench_environment(Settings.from_env(), gateways) as env:
        b = _Bench(env, BenchConfig(log_dir=Path(".bench")), lambda _m: None)
        await b.traffic.connect()
        arrived: dict[str, float] = {}
        wanted: set[str] = set()
        all_in = asyncio.Event()

        async def on_message(msg: DeliveredMessage) -> None:
            headers = msg.header.properties.headers or {}
            arrived[_text(headers.get("lt-document-id"))] = time.monotonic()
            if wanted <= arrived.keys():
                all_in.set()

        async def stream(docs: Sequence[BenchDocument], t0: float) -> dict[str, float]:
            sent: dict[str, float] = {}
            for i, d in enumerate(docs):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                sent[d.document_id] = time.monotonic()
                confirms.append(asyncio.ensure_future(
                    b.traffic.publish(b_gw, d.body, kind="edoc")))
            return sent

        async def settle(docs: Sequence[BenchDocument]) -> None:
            wanted.update(d.document_id for d in docs)
            all_in.clear()
            if not wanted <= arrived.keys():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(all_in.wait(), 300)
            await asyncio.gather(*confirms, return_exceptions=True)

        confirms: list[asyncio.Future[None]] = []
        try:
            await b.traffic.purge([*b.inboxes, *b.receipt_queues, *b.intake])
            group = b.group("router")
            group.start(routers)
            await b._wait_consumers(group, routers)
            await b.traffic.consume([topology.inbox_queue(x.id), topology.inbox_queue(y.id)],
                                    on_message)
            # B's stream alone: its latency without any burst
            sent_alone = await stream(alone_docs, time.monotonic())
            await settle(alone_docs)
            # A's burst, then the same stream while the routers drain it (the burst is
            # published first, so that this process's 5,000 publishes do not hold up the
            # stream's own publishes and count as the hub's latency)
            t0 = time.monotonic()
            await asyncio.gather(*(b.traffic.publish(a, d.body, kind="edoc")
                                   for d in burst_docs))
            published = time.monotonic() - t0
            sent = await stream(stream_docs, time.monotonic())
            await settle([*burst_docs, *stream_docs])
            await b.traffic.stop_consuming()
            await group.stop()
        finally:
            b.kill_all()
            await b.traffic.close()
    alone = [arrived[k] - t for k, t in sent_alone.items() if k in arrived]
    lat = [arrived[k] - t for k, t in sent.items() if k in arrived]
    done = [arrived[d.document_id] for d in burst_docs if d.document_id in arrived]
    click.echo(f"{tree} x{routers}: {len(done)}/{burst} burst documents from {a.id} "
               f"published in {published:.1f} s, all routed {max(done) - t0:.1f} s after "
               f"the first was published")
    for label, got, of in (("alone", alone, sent_alone), ("during the burst", lat, sent)):
        click.echo(f"  stream from {b_gw.id} at {rate:g}/s, {label}: {len(got)}/{len(of)} "
                   f"arrived, p50 {_pct(got, 50)} ms, p99 {_pct(got, 99)} ms, "
                   f"max {_pct(got, 100)} ms")
    worst = sorted(((arrived[k] - t, t - t0) for k, t in sent.items() if k in arrived),
                   reverse=True)[:5]
    click.echo("  slowest during the burst (latency ms @ seconds after the burst began): "
               + ", ".join(f"{w * 1000:.0f} @ {at:.2f}" for w, at in worst))
    click.echo(f"  the burst's cost to {b_gw.id}: p50 {_pct(lat, 50) - _pct(alone, 50):+.1f} ms, "
               f"p99 {_pct(lat, 99) - _pct(alone, 99):+.1f} ms "
               f"(requirement: at most +100 ms)")


@click.command()
@click.argument("trees", nargs=-1, required=True,
                type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--packages", type=click.IntRange(10), default=1500, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=3, show_default=True)
@click.option("--routers", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--burst", type=click.IntRange(0), default=0,
              help="Measure fairness instead: this many documents at once from one "
                   "gateway, then --rate/s for --seconds from another (first tree only).")
@click.option("--latency", is_flag=True,
              help="Alternate the trees' latency runs instead (--rate, default 300/s).")
@click.option("--rate", type=click.FloatRange(1), default=None,
              help="Packages/s offered  [default: 100 with --burst, 300 with --latency]")
@click.option("--seconds", type=click.FloatRange(1), default=10.0, show_default=True)
def compare(trees: tuple[Path, ...], packages: int, rounds: int, routers: int, burst: int,
            latency: bool, rate: float | None, seconds: float) -> None:
    """Router drains of TREES in turn (CPU ms per package), their latency runs in turn,
    or the burst figure."""
    resolved = [t.resolve() for t in trees]
    if latency:
        asyncio.run(_latencies(resolved, rounds, routers, rate or 300.0, seconds))
    elif burst:
        asyncio.run(_burst(resolved[0], routers, burst, rate or 100.0, seconds))
    else:
        asyncio.run(_drains(resolved, packages, rounds, routers))


if __name__ == "__main__":
    compare()
