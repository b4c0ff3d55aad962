"""The processes the benchmark measures: routers and raw relays, their memory, a profile.

Each router is a real ``python -m router.cli router -n 1`` process (two of them for the
two-router runs: what ``router -n 2`` supervises), pointed at the bench vhost and database
through ``LIENTHONG_AMQP_URL`` and ``LIENTHONG_DATABASE_URL``. Memory comes from
``/proc/<pid>/status``: ``VmRSS`` (now) and ``VmHWM`` (the peak). The profile is py-spy
attached to a running router; its collapsed stacks are summed per function.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

# ``bench`` is not installed: its relay runs as ``python -m bench.relay`` from the clone
_REPO = Path(__file__).resolve().parents[1]

__all__ = [
    "ProcessGroup",
    "ProcessMemory",
    "Profiler",
    "read_cpu_seconds",
    "read_memory",
    "summarize_collapsed",
]

Kind = Literal["router", "relay", "minimal"]


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    pid: int
    rss_kb: int
    peak_kb: int

    def as_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "rss_mb": round(self.rss_kb / 1024, 1),
                "peak_mb": round(self.peak_kb / 1024, 1)}


def read_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (``/proc/<pid>/stat``), in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # after the command name: state is field 3, utime and stime are fields 14 and 15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_memory(pid: int) -> ProcessMemory | None:
    """VmRSS and VmHWM of a live process, or None when it is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])  # kB
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    if "VmRSS" not in values:
        return None
    return ProcessMemory(pid, values["VmRSS"], values.get("VmHWM", values["VmRSS"]))


def _free_port() -> int:
    """A TCP port nothing listens on now (the router binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_log_numbers = iter(range(1, 1_000_000))


def _next_log_number() -> int:
    return next(_log_numbers)


@dataclass
class ProcessGroup:
    """``n`` router or relay processes started together and stopped together."""

    kind: Kind
    env: dict[str, str]
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)
    last_memory: list[ProcessMemory] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)

    def argv(self) -> list[str]:
        if self.kind == "router":
            return [sys.executable, "-m", "router.cli", "router", "-n", "1"]
        if self.kind == "minimal":
            return [sys.executable, "-m", "bench.minimal_relay"]
        return [sys.executable, "-m", "bench.relay"]

    def start(self, n: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            log = (self.log_dir / f"{self.kind}-{_next_log_number()}.log").open("ab")
            self._logs.append(log)
            env = self.env
            if self.kind == "router":  # each router serves its metrics on a port of its own
                port = _free_port()
                self.metrics_ports.append(port)
                env = {**env, "LIENTHONG_METRICS_PORT": str(port)}
            self.procs.append(subprocess.Popen(self.argv(), env=env, stdout=log, cwd=_REPO,
                                               stderr=subprocess.STDOUT))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def memory(self) -> list[ProcessMemory]:
        out = [m for m in (read_memory(pid) for pid in self.pids) if m is not None]
        if out:
            self.last_memory = out
        return out

    def cpu_seconds(self) -> float:
        """CPU time used so far by every live process of the group."""
        return sum(c for c in (read_cpu_seconds(pid) for pid in self.pids) if c is not None)

    def died(self) -> list[int]:
        """Exit codes of processes that stopped on their own."""
        return [code for code in (p.poll() for p in self.procs) if code is not None]

    async def stop(self, grace_s: float = 20.0) -> list[ProcessMemory]:
        """SIGTERM everyone, wait, kill stragglers; returns the memory read just before."""
        memory = self.memory()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                await asyncio.to_thread(p.wait, grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self._logs:
            log.close()
        self.procs.clear()
        self._logs.clear()
        self.metrics_ports.clear()
        return memory

    def kill(self) -> None:
        """Last-resort cleanup (Ctrl-C): no waiting for a graceful stop."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=5)
        for log in self._logs:
            log.close()
        self.procs.clear()
        self._logs.clear()


def _py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


class Profiler:
    """py-spy sampling one process until it exits, writing collapsed stacks."""

    def __init__(self, out: Path, *, rate: int = 200) -> None:
        self.out = out
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    @staticmethod
    def available() -> bool:
        return _py_spy() is not None

    def attach(self, pid: int) -> None:
        exe = _py_spy()
        if exe is None:
            self.error = "py-spy is not installed (pip install -e '.[dev]')"
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        log = self.out.with_suffix(".log").open("wb")
        self._proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--format", "raw", "--function",
             "--nonblocking", "--rate", str(self.rate), "--output", str(self.out)],
            stdout=log, stderr=subprocess.STDOUT,
        )

    async def finish(self, grace_s: float = 30.0) -> None:
        """Wait for py-spy to write its file (it stops when the process exits)."""
        if self._proc is None:
            return
        try:
            await asyncio.to_thread(self._proc.wait, grace_s)
        except subprocess.TimeoutExpired:
            self._proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self._proc.wait, 10)
        if not self.out.exists():
            self.error = f"py-spy wrote no profile (see {self.out.with_suffix('.log')})"

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()


def _frame_label(frame: str) -> str:
    """``handle (router/worker.py:170)`` -> ``handle (router/worker.py)``-style label,
    shortened to the path inside site-packages or the repository."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    path = path or where
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = "stdlib/" + path.split("/", 1)[1] if "/" in path else path
            break
    else:
        repo = str(Path(__file__).resolve().parents[1]) + os.sep
        path = path.removeprefix(repo)
    return f"{name} ({path}:{line})" if line else f"{name} ({path})"


_FRAMEWORK = (
    "_run_code ", "_run_module_as_main ", "<module> ", "run ", "Runner.run ",
    "BaseEventLoop.", "Handle._run ", "Context.invoke ", "Command.", "Group.invoke ",
    "router_cmd ", "run_router ", "RouterWorker.run ",
)


def summarize_collapsed(path: Path, *, top: int = 25) -> dict[str, Any]:
    """Per function: inclusive ("cumulative") and self samples, as shares of all samples.

    The input is py-spy's ``raw`` format: ``frame;frame;...;frame COUNT`` per line, the
    outermost frame (process/thread) first.
    """
    inclusive: Counter[str] = Counter()
    # frames every sample has (the event loop, click, runpy) say nothing: left out
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        total += count
        labels = [_frame_label(f) for f in frames]
        for label in set(labels):
            if not label.startswith(_FRAMEWORK):
                inclusive[label] += count
        own[labels[-1]] += count

    def rows(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "share": round(v / total, 4) if total else 0.0}
                for k, v in c.most_common(top)]

    return {"samples": total, "cumulative": rows(inclusive), "self": rows(own)}
