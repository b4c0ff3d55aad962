"""Who used the machine's CPU during a bench phase, and how long tasks waited for it.

A router's latency on a small machine is set as much by the processes it shares the CPU
with (RabbitMQ, PostgreSQL, the load generator) as by its own code. Two snapshots of
``/proc`` (CPU seconds of every process, and the kernel's CPU pressure counter, PSI) give,
for the time between them: the cores each kind of process used on average, and the share
of that time in which at least one runnable task waited for a CPU ("some" pressure).
Processes that exit between the snapshots are not counted: take the second one before
stopping the routers.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Snapshot", "shares", "snapshot"]

_KINDS = {"beam.smp": "rabbitmq", "postgres": "postgresql"}


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float  # monotonic seconds
    cpu: dict[int, tuple[str, float]]  # pid -> (command name, CPU seconds)
    pressure_us: int | None  # /proc/pressure/cpu "some" total, microseconds


def _pressure_us() -> int | None:
    try:
        with open("/proc/pressure/cpu", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def snapshot() -> Snapshot:
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat.rpartition(")")[2].split()
        cpu[int(entry)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return Snapshot(time.monotonic(), cpu, _pressure_us())


def shares(before: Snapshot, after: Snapshot, *, routers: Iterable[int],
           bench: int | None = None) -> dict[str, Any]:
    """Cores used on average between the snapshots, by kind of process (``routers``: the
    router pids; ``bench``: the load generator's), and the CPU pressure."""
    seconds = max(after.at - before.at, 1e-9)
    router_pids = set(routers)
    bench_pid = os.getpid() if bench is None else bench
    used: dict[str, float] = defaultdict(float)
    for pid, (name, cpu) in after.cpu.items():
        was = before.cpu.get(pid)
        delta = cpu - (was[1] if was is not None and was[0] == name else 0.0)
        if pid in router_pids:
            kind = "routers"
        elif pid == bench_pid:
            kind = "bench"
        else:
            kind = _KINDS.get(name, "other")
        used[kind] += max(delta, 0.0)
    cores = {k: round(v / seconds, 2) for k, v in sorted(used.items())}
    pressure = None
    if before.pressure_us is not None and after.pressure_us is not None:
        pressure = round((after.pressure_us - before.pressure_us) / 1e6 / seconds, 3)
    return {"seconds": round(seconds, 2), "cores": cores,
            "total_cores": round(sum(used.values()) / seconds, 2),
            "cpu_pressure_some": pressure}
