"""The benchmark's results for people: rich tables from the JSON that ``bench.run`` makes."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table

__all__ = ["render"]


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def _mark(ok: bool | None) -> str:
    if ok is None:
        return ""
    return "[green]✓[/]" if ok else "[red]✗[/]"


def _met(targets: dict[str, Any], run: dict[str, Any], key: str) -> str:
    met: dict[str, bool] = targets.get(f"routers_{run['routers']}", {})
    return _mark(met.get(key))


def _every(run: dict[str, Any]) -> list[dict[str, Any]]:
    return list(run.get("latency_runs") or [run["latency"]])


def _worst(runs: list[dict[str, Any]]) -> str:
    n = max(len(_every(r)) for r in runs)
    return f", worst of {n} runs" if n > 1 else ""


def _worst_of(run: dict[str, Any], p: str) -> float | None:
    values = [one[f"{p}_ms"] for one in _every(run) if one.get(f"{p}_ms") is not None]
    return max(values) if values else None


def _share_at_once(where: dict[str, Any]) -> str:
    writes = where.get("writes") or {}
    total = sum(writes.values())
    return f"{writes.get('one_statement', 0) / total:.0%}" if total else "–"


def _latency_tables(result: dict[str, Any]) -> list[Table]:
    """Per router count: every latency run, where a batch's time went in it (the routers'
    own metrics) and who used the CPU meanwhile."""
    rate = result["config"].get("rate")
    steps = (("wait", "wait"), ("turn", "turn"), ("route", "route"), ("parse", "· parse"),
             ("lookup", "· lookup"), ("record", "· record"), ("publish", "publish"),
             ("finish", "finish"))
    kinds = (("routers", "routers"), ("rabbitmq", "RabbitMQ"), ("postgresql", "PostgreSQL"),
             ("bench", "load generator"), ("other", "other"))
    tables = []
    for run in result["runs"]:
        every = _every(run)
        n = run["routers"]
        table = Table(title=f"{n} router{'s' if n > 1 else ''}, {_num(rate)} packages/s "
                            "offered: every latency run", title_justify="left")
        table.add_column("")
        for i in range(1, len(every) + 1):
            table.add_column(f"run {i}", justify="right")
        where = [one.get("where_time_goes") or {} for one in every]
        cpu = [one.get("cpu") or {} for one in every]
        table.add_row("p50 / p99 (ms)", *(f"{_num(one.get('p50_ms'), '{:.0f}')} / "
                                          f"{_num(one.get('p99_ms'), '{:.0f}')}"
                                          for one in every))
        table.add_row("max (ms)", *(_num(one.get("max_ms"), "{:.0f}") for one in every))
        table.add_row("packages per batch", *(_num(w.get("mean_batch_size"), "{:.1f}")
                                              for w in where))
        table.add_row("batches written in one statement", *(_share_at_once(w) for w in where))
        for key, label in steps:
            table.add_row(f"{label} (mean ms per batch)",
                          *(_num(w.get("phases", {}).get(key, {}).get("mean_ms"), "{:.1f}")
                            for w in where))
        for key, label in kinds:
            table.add_row(f"CPU cores: {label}",
                          *(_num(c.get("cores", {}).get(key), "{:.2f}") for c in cpu))
        table.add_row("a task waited for a CPU (share of time)",
                      *(_num(c.get("cpu_pressure_some"), "{:.0%}") for c in cpu))
        floor = run.get("latency_floor")
        if floor:
            # the same traffic through the minimal relay, just before these runs
            table.caption = (
                f"the floor, the same traffic through the minimal relay just before: p50 / "
                f"p99 {_num(floor.get('p50_ms'), '{:.0f}')} / "
                f"{_num(floor.get('p99_ms'), '{:.0f}')} ms; RabbitMQ "
                f"{_num((floor.get('cpu') or {}).get('cores', {}).get('rabbitmq'), '{:.2f}')}"
                f" cores; a task waited for a CPU "
                f"{_num((floor.get('cpu') or {}).get('cpu_pressure_some'), '{:.0%}')}")
            table.caption_justify = "left"
        tables.append(table)
    return tables


def _results_table(result: dict[str, Any]) -> Table:
    targets = result.get("targets", {})
    table = Table(title="lienthong bench — router vs raw relay (same broker, same run)",
                  title_justify="left")
    table.add_column("metric")
    for run in result["runs"]:
        table.add_column(f"{run['routers']} router{'s' if run['routers'] > 1 else ''}",
                         justify="right")
    table.add_column("target", justify="right")

    def row(label: str, values: list[str], target: str = "") -> None:
        table.add_row(label, *values, target)

    runs = result["runs"]
    row("raw relay: documents/s", [_num(r["raw_relay"]["edoc"]["packages_per_s"]) for r in runs])
    row("raw relay: status packages/s",
        [_num(r["raw_relay"]["status"]["packages_per_s"]) for r in runs])
    row("raw relay: packages/s (all)",
        [_num(r["raw_relay"]["total"]["packages_per_s"]) for r in runs])
    minimal = [r.get("minimal_relay") or {} for r in runs]
    row("minimal relay (bench/minimal_relay.py): packages/s (all)",
        [_num(m.get("total", {}).get("packages_per_s")) for m in minimal])
    row("router: documents/s", [_num(r["router"]["edoc"]["packages_per_s"]) for r in runs])
    row("router: copies/s", [_num(r["router"]["edoc"]["copies_per_s"]) for r in runs])
    row("router: status packages/s", [_num(r["router"]["status"]["packages_per_s"]) for r in runs])
    row("router: packages/s (all)", [_num(r["router"]["total"]["packages_per_s"]) for r in runs])
    row("router CPU ms per document / status",
        [f"{_num(r['router']['edoc']['cpu_ms_per_package'], '{:.2f}')} / "
         f"{_num(r['router']['status']['cpu_ms_per_package'], '{:.2f}')}" for r in runs])
    row("router CPU busy (1 = one core each)",
        [f"{_num(r['router']['edoc']['cpu_busy'], '{:.2f}')} / "
         f"{_num(r['router']['status']['cpu_busy'], '{:.2f}')}" for r in runs])
    row("raw relay CPU ms per document / status",
        [f"{_num(r['raw_relay']['edoc']['cpu_ms_per_package'], '{:.2f}')} / "
         f"{_num(r['raw_relay']['status']['cpu_ms_per_package'], '{:.2f}')}" for r in runs])
    row("minimal relay CPU ms per document / status",
        [f"{_num(m.get('edoc', {}).get('cpu_ms_per_package'), '{:.2f}')} / "
         f"{_num(m.get('status', {}).get('cpu_ms_per_package'), '{:.2f}')}" for m in minimal])
    row("ratio router ÷ raw (documents)", [_num(r["ratio_edoc"], "{:.2f}") for r in runs])
    row("ratio router ÷ raw (all)",
        [f"{_num(r['ratio'], '{:.2f}')} {_met(targets, r, 'ratio')}" for r in runs],
        f"≥ {targets.get('ratio_min', 0.6)}")
    row("ratio router ÷ minimal relay (all)",
        [_num(r.get("ratio_minimal"), "{:.2f}") for r in runs])
    row("latency: offered → achieved /s",
        [f"{_num(r['latency']['offered_rate'])} → {_num(r['latency']['achieved_rate'])}"
         for r in runs])
    limits = {"p50": targets.get("p50_ms_max", 15), "p99": targets.get("p99_ms_max", 50)}
    for p in ("p50", "p95", "p99"):
        row(f"latency submit→inbox {p} (ms){_worst(runs)}",
            [(_num(_worst_of(r, p), "{:.1f}")
              + (f" {_met(targets, r, p)}" if p in limits else ""))
             for r in runs],
            f"≤ {limits[p]:.0f}" if p in limits else "")
    row("latency max (ms)", [_num(r["latency"]["max_ms"], "{:.1f}") for r in runs])
    floors = [r.get("latency_floor") or {} for r in runs]
    row("latency floor: minimal relay p50 / p99 (ms)",
        [f"{_num(f.get('p50_ms'), '{:.1f}')} / {_num(f.get('p99_ms'), '{:.1f}')}"
         for f in floors])
    row("  documents p99 / status p99 (ms)",
        [f"{_num(r['latency']['by_kind']['edoc']['p99_ms'], '{:.1f}')} / "
         f"{_num(r['latency']['by_kind']['status']['p99_ms'], '{:.1f}')}" for r in runs])
    row("router RSS peak, per process (MB)",
        [f"{_num(r['memory']['max_peak_mb'], '{:.0f}')} "
         f"{_met(targets, r, 'rss')}" for r in runs],
        f"≤ {targets.get('rss_mb_max', 150):.0f}")
    row("raw relay RSS peak (MB)", [_num(r["relay_memory"]["max_peak_mb"], "{:.0f}") for r in runs])
    row("every package delivered", [_mark(r["delivered_ok"]) for r in runs])
    return table


def _workload_line(result: dict[str, Any]) -> str:
    w = result["workload"]
    c = result["config"]
    m = result.get("machine", {})
    return (
        f"{w['gateways']} gateways · {c['packages']:,} documents per drain, "
        f"{w['edoc_bytes_min']:,}–{w['edoc_bytes_max']:,} B (mean {w['edoc_bytes_mean']:,}), "
        f"fan-out mean {w['fanout_mean']} · one 01/03/06 answer per copy · "
        "packages built with the project's builder · "
        f"{m.get('cpus')} CPUs, RabbitMQ {m.get('rabbitmq', '?')}, "
        f"PostgreSQL {m.get('postgresql', '?')}"
    )


def _profile_table(profile: dict[str, Any], top: int = 20) -> Table:
    table = Table(title=f"router profile (py-spy, {profile.get('samples', 0):,} samples of "
                        f"busy time) — top functions by cumulative share",
                  title_justify="left")
    table.add_column("cumulative", justify="right")
    table.add_column("function")
    for r in profile.get("cumulative", [])[:top]:
        table.add_row(f"{r['share'] * 100:.1f}%", r["function"])
    return table


def render(result: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    parts: list[Any] = [_results_table(result), _workload_line(result),
                        *_latency_tables(result)]
    problems = [p for r in result["runs"]
                for section in (r["raw_relay"]["edoc"], r["raw_relay"]["status"],
                                r["router"]["edoc"], r["router"]["status"], r["latency"],
                                r.get("latency_floor") or {})
                for p in section.get("problems", [])]
    if problems:
        parts.append("[red]problems:[/] " + "; ".join(problems[:10]))
    profile = result.get("profile")
    if profile and profile.get("cumulative"):
        parts.append(_profile_table(profile))
        parts.append(f"collapsed stacks: {profile['collapsed_stacks']}")
    elif profile:
        parts.append(f"profile: {profile.get('errors') or profile.get('error')}")
    console.print(Group(*parts))
