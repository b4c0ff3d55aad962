"""What the benchmark reads off processes and profiles, and how it sums it up."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest

from bench.__main__ import _routers
from bench.cpu_shares import Snapshot, shares, snapshot
from bench.phases import summarize
from bench.processes import read_cpu_seconds, read_memory, summarize_collapsed
from bench.run import _percentiles


def test_memory_and_cpu_come_from_proc() -> None:
    mem = read_memory(os.getpid())
    assert mem is not None
    assert mem.pid == os.getpid()
    assert 0 < mem.rss_kb <= mem.peak_kb
    assert mem.as_dict()["rss_mb"] > 0
    cpu = read_cpu_seconds(os.getpid())
    assert cpu is not None
    assert cpu > 0
    assert read_memory(2**22 + 12345) is None


def test_collapsed_stacks_sum_to_cumulative_and_self_shares(tmp_path: Path) -> None:
    stacks = tmp_path / "p.txt"
    stacks.write_text(
        "MainThread;_run_module_as_main (<frozen runpy>:173);"
        "route (/repo/router/routing.py:174);parse_package (/repo/schemas/parser.py:276) 30\n"
        "MainThread;_run_module_as_main (<frozen runpy>:173);"
        "route (/repo/router/routing.py:174) 10\n"
        "MainThread;_run_module_as_main (<frozen runpy>:173);"
        "write (/x/lib/python3.11/asyncio/selector_events.py:1037) 60\n",
        encoding="utf-8",
    )
    summary = summarize_collapsed(stacks)
    assert summary["samples"] == 100
    cumulative = {r["function"].split(" ")[0]: r["share"] for r in summary["cumulative"]}
    assert cumulative["route"] == 0.4
    assert cumulative["parse_package"] == 0.3
    assert "_run_module_as_main" not in cumulative  # every sample has it: says nothing
    own = {r["function"].split(" ")[0]: r["share"] for r in summary["self"]}
    assert own == {"write": 0.6, "parse_package": 0.3, "route": 0.1}
    assert any("stdlib/asyncio/selector_events.py" in r["function"]
               for r in summary["self"])


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    p = _percentiles(values)
    assert (p["p50_ms"], p["p95_ms"], p["p99_ms"], p["max_ms"]) == (50.0, 95.0, 99.0, 100.0)
    assert _percentiles([])["p99_ms"] is None


def test_router_counts_option() -> None:
    assert _routers("1,2") == (1, 2)
    with pytest.raises(click.BadParameter):
        _routers("0,x")


def test_a_gateway_url_on_a_cluster_keeps_every_node() -> None:
    from bench.traffic import gateway_amqp_url
    from router.directory.registry import GatewayCredentials

    creds = GatewayCredentials(gateway_id="a", user="gw.a", password="p@ss")
    url = gateway_amqp_url("amqp://guest:guest@127.0.0.1:5681,127.0.0.1:5682/lt_bench_x", creds)
    assert url == "amqp://gw.a:p%40ss@127.0.0.1:5681,127.0.0.1:5682/lt_bench_x"


def test_where_time_goes_adds_up_the_routers_histograms() -> None:
    def router(route_sum: float, route_count: int, slow: int) -> str:
        fast = route_count - slow
        return (
            "# TYPE lienthong_batch_phase_seconds histogram\n"
            f'lienthong_batch_phase_seconds_bucket{{le="0.005",phase="route"}} {fast}\n'
            f'lienthong_batch_phase_seconds_bucket{{le="0.01",phase="route"}} {route_count}\n'
            f'lienthong_batch_phase_seconds_bucket{{le="+Inf",phase="route"}} {route_count}\n'
            f'lienthong_batch_phase_seconds_count{{phase="route"}} {route_count}\n'
            f'lienthong_batch_phase_seconds_sum{{phase="route"}} {route_sum}\n'
            "# TYPE lienthong_route_step_seconds histogram\n"
            f'lienthong_route_step_seconds_bucket{{le="+Inf",step="record"}} {route_count}\n'
            f'lienthong_route_step_seconds_count{{step="record"}} {route_count}\n'
            f'lienthong_route_step_seconds_sum{{step="record"}} {route_sum / 2}\n'
            "# TYPE lienthong_batch_size histogram\n"
            f"lienthong_batch_size_count {route_count}\n"
            f"lienthong_batch_size_sum {route_count * 3}\n"
        )

    # two routers: 100 batches in 0.4 s (2 slower than 5 ms), 100 in 0.6 s (none slower)
    got = summarize([router(0.4, 100, 2), router(0.6, 100, 0)])
    assert list(got["phases"]) == ["route", "record"]  # in the order a batch goes
    assert got["phases"]["route"] == {"batches": 200, "mean_ms": 5.0, "p99_ms_at_most": 5.0}
    assert got["phases"]["record"]["mean_ms"] == 2.5
    assert got["phases"]["record"]["p99_ms_at_most"] is None  # only +Inf: no bound known
    assert got["mean_batch_size"] == 3.0
    # 3 of 100 slower than 5 ms: the 99th percentile is in the next bucket
    assert summarize([router(0.5, 100, 3)])["phases"]["route"]["p99_ms_at_most"] == 10.0


def test_cpu_shares_split_the_machine_by_kind_of_process() -> None:
    before = Snapshot(100.0, {1: ("beam.smp", 10.0), 2: ("postgres", 5.0), 3: ("python", 1.0),
                              4: ("python", 2.0), 9: ("sshd", 0.0)}, 1_000_000)
    after = Snapshot(102.0, {1: ("beam.smp", 11.0), 2: ("postgres", 5.5), 3: ("python", 2.0),
                             4: ("python", 2.4), 5: ("postgres", 0.5), 9: ("sshd", 0.1)},
                     1_500_000)
    got = shares(before, after, routers=[3], bench=4)
    assert got["cores"] == {"bench": 0.2, "other": 0.05, "postgresql": 0.5,
                            "rabbitmq": 0.5, "routers": 0.5}
    assert got["total_cores"] == 1.75
    assert got["cpu_pressure_some"] == 0.25  # 0.5 s of waiting in 2 s
    # a pid reused by another program counts from zero, never negative
    reused = Snapshot(102.0, {1: ("bash", 0.3)}, None)
    assert shares(before, reused, routers=[])["cores"] == {"other": 0.15}
    assert shares(before, reused, routers=[])["cpu_pressure_some"] is None


def test_a_real_snapshot_sees_this_process() -> None:
    snap = snapshot()
    assert os.getpid() in snap.cpu
    assert snap.cpu[os.getpid()][1] > 0
