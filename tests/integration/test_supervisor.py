"""``lienthong router -n N`` with real processes: the supervisor restarts crashed workers
with backoff and gives up; its workers never outlive it; each worker has its own metrics
port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest

from tests.hub import Hub

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
    env.update(LIENTHONG_LOG_LEVEL="WARNING", **extra)
    return env


def _hub_env(hub: Hub, **extra: str) -> dict[str, str]:
    return _env(LIENTHONG_AMQP_URL=hub.settings.amqp_url,
                LIENTHONG_DATABASE_URL=hub.settings.database_url,
                LIENTHONG_SWEEP_SECONDS="0", **extra)


@contextlib.contextmanager
def _supervisor(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "router.cli", "router", *args], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie no longer runs


def _free_ports(n: int) -> int:
    """A port p with p..p+n-1 all free."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + n > 65_535:
            continue
        free = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
        if free:
            return base
    raise AssertionError("no free port range")


async def _consumers(hub: Hub) -> int:
    connection = await aio_pika.connect(hub.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue("lt.router.in", passive=True)
        return int(q.declaration_result.consumer_count or 0)


async def _until(what: str, check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for: {what}")
        await asyncio.sleep(0.1)


def _scrape(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return b"lienthong_packages_total" in r.read()
    except OSError:
        return False


async def test_crashing_workers_back_off_then_the_supervisor_gives_up() -> None:
    # the ledger is unreachable: every worker dies at start
    env = _env(LIENTHONG_DATABASE_URL="postgresql://postgres@127.0.0.1:9/nowhere")
    started = time.monotonic()
    with _supervisor(env, "-n", "2") as proc:
        await _until("the supervisor to give up", lambda: proc.poll() is not None, 120)
        print(f"supervisor gave up {time.monotonic() - started:.1f} s after start")
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert proc.returncode == 3
    assert "WORKERS_CRASHING (6031)" in err
    assert "5 crashes within 60 s" in err
    assert "restarting in 0.5 s" in err and "restarting in 1 s" in err  # backoff doubles


async def test_each_worker_serves_its_own_metrics_port(hub: Hub) -> None:
    port = _free_ports(2)
    with _supervisor(_hub_env(hub, LIENTHONG_METRICS_PORT=str(port)), "-n", "2") as proc:
        await _until("two consumers on lt.router.in", lambda: _consumers_is(hub, 2), 60)
        await _until("both metrics ports", lambda: _scrape(port) and _scrape(port + 1), 30)
        assert len(_children(proc.pid)) == 2
        proc.send_signal(signal.SIGTERM)
        await _until("the supervisor to exit", lambda: proc.poll() is not None, 30)
        assert proc.stderr is not None
        assert "exited with status" not in proc.stderr.read()  # no port clash, no restart


async def test_workers_die_with_their_supervisor(hub: Hub) -> None:
    with _supervisor(_hub_env(hub), "-n", "2") as proc:
        await _until("two consumers on lt.router.in", lambda: _consumers_is(hub, 2), 60)
        workers = _children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        await _until("the workers to exit", lambda: not any(map(_alive, workers)), 10)
        gone_after = time.monotonic() - started
        print(f"workers gone {gone_after:.2f} s after kill -9 of their supervisor")
        await _until("no consumer left", lambda: _consumers_is(hub, 0), 10)
    assert gone_after < 3.0


async def test_sigterm_stops_every_worker_gracefully(hub: Hub) -> None:
    with _supervisor(_hub_env(hub), "-n", "2") as proc:
        await _until("two consumers on lt.router.in", lambda: _consumers_is(hub, 2), 60)
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        await _until("the supervisor to exit", lambda: proc.poll() is not None, 30)
        assert proc.returncode == 0
        assert not any(map(_alive, workers))
        assert proc.stderr is not None
        assert "exited with status" not in proc.stderr.read()  # no worker was restarted
    assert await _consumers(hub) == 0


async def _consumers_is(hub: Hub, n: int) -> bool:
    return await _consumers(hub) == n


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not sys.platform.startswith("linux"):
        pytest.fail("these tests read /proc (Linux)")
