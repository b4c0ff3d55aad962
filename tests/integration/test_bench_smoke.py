"""The benchmark machinery at tiny scale: it runs end to end and loses nothing.

Correctness only: no timing is asserted (the benchmark is a tool, timings are noisy)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from bench.report import render
from bench.run import RESULT_KEYS, BenchConfig, BenchEnvironment, run_in_environment
from bench.workload import bench_directory
from router.directory.registry import AgencyRow
from tests.hub import Hub


async def test_bench_runs_every_phase_and_delivers_every_package(
    hub: Hub, tmp_path: Path
) -> None:
    gateways = bench_directory(6)
    for g in gateways:
        await hub.add_gateway(g.id, serves=[g.agency], kind="ministry", name=g.name)
    await hub.add_agencies([AgencyRow(g.agency, g.name, gateway=g.id) for g in gateways])
    env = BenchEnvironment(hub.settings, gateways, dict(hub.credentials))
    config = BenchConfig.quick(packages=50, rate=40.0, duration=1.5, warmup=0.0,
                               routers=(1,), gateways=len(gateways), log_dir=tmp_path,
                               latency_runs=2)

    result = await run_in_environment(env, config)

    assert set(RESULT_KEYS) <= set(result)
    assert result["workload"]["edoc_bytes_min"] >= 5 * 1024
    [run] = result["runs"]
    assert {"routers", "raw_relay", "router", "ratio", "latency", "memory",
            "delivered_ok"} <= set(run)
    for measured in (run["raw_relay"], run["router"]):
        for phase in ("edoc", "status"):
            assert measured[phase]["problems"] == []
            assert {"packages_per_s", "copies", "seconds", "cpu_ms_per_package"} <= set(
                measured[phase])
        assert measured["edoc"]["packages"] == 50
        # every copy of a document is answered by exactly one status package
        assert measured["status"]["packages"] == measured["edoc"]["copies"]
        assert measured["status"]["copies"] == measured["status"]["packages"]
    latency = run["latency"]
    assert latency["problems"] == []
    assert latency["copies_arrived"] == latency["copies_expected"]
    assert latency["copies_expected"]["edoc"] > 0
    assert latency["copies_expected"]["status"] > 0
    assert latency["receipts"]["queued"] == latency["receipts"]["expected"]
    assert {"p50_ms", "p95_ms", "p99_ms"} <= set(latency)
    # the floor: the same traffic through the minimal relay, every copy and receipt there
    floor = run["latency_floor"]
    assert floor["problems"] == []
    assert floor["copies_arrived"] == floor["copies_expected"]
    assert floor["copies_expected"]["status"] > 0
    assert floor["receipts"]["queued"] == floor["receipts"]["expected"]
    assert floor["p50_ms"] is not None
    assert run["memory"]["max_peak_mb"] > 0
    assert run["delivered_ok"] is True
    # both latency runs are kept, each with where its batches' time went, read from the
    # router's own metrics: every batch went through each phase once
    assert len(run["latency_runs"]) == 2
    for one in run["latency_runs"]:
        where = one["where_time_goes"]
        assert where["routers_read"] == 1
        phases = where["phases"]
        batches = phases["route"]["batches"]
        assert batches > 0
        for phase in ("wait", "turn", "parse", "lookup", "record", "publish", "finish"):
            assert phases[phase]["batches"] == batches, phase
            assert phases[phase]["mean_ms"] >= 0
        assert phases["record"]["mean_ms"] <= phases["route"]["mean_ms"]
        # who used the CPU meanwhile: the router did some work, RabbitMQ too
        assert one["cpu"]["cores"]["routers"] > 0
        assert one["cpu"]["cores"]["rabbitmq"] > 0
    out = io.StringIO()
    render(result, Console(file=out, width=200))
    assert "every latency run" in out.getvalue()
    assert "CPU cores: RabbitMQ" in out.getvalue()
    assert "worst of 2 runs" in out.getvalue()
    assert "latency floor: minimal relay" in out.getvalue()
    # the router's ledger agrees: one delivery per copy, every one of them answered
    docs = await hub.pool.fetchval("SELECT count(*) FROM documents WHERE kind = 'edoc'")
    assert docs == 50 + sum(one["submitted"]["edoc"] for one in run["latency_runs"])
    queued = await hub.pool.fetchval(
        "SELECT count(*) FROM deliveries WHERE state IN ('queued', 'submitted')"
        " AND hub_id IN (SELECT hub_id FROM documents WHERE kind = 'edoc')"
    )
    assert queued == 0
