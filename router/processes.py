"""Router worker processes: the supervisor of ``lienthong router -n N`` and the workers the
demo and the chaos tests start, all run the way an operator runs them
(``python -m router.cli router -n 1`` per worker).

Workers never outlive the process that started them: on Linux each worker asks the kernel
for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so ``kill -9`` of the
supervisor stops its workers at once instead of leaving orphans that keep consuming. SIGKILL,
not SIGTERM: a worker stuck reconnecting may not finish a graceful stop, and the broker
returns a killed worker's unacknowledged messages as after any crash (the ledger makes the
second routing a duplicate). An orderly stop (SIGTERM to the supervisor) stays graceful.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from router.settings import Settings, child_environment
from schemas.reasons import Reason

__all__ = ["RestartPolicy", "RouterProcesses", "Supervisor", "die_with_parent", "worker_argv"]

_PR_SET_PDEATHSIG = 1


def worker_argv(index: int | None = None) -> list[str]:
    """The command line of one router worker (``index``: its place under a supervisor)."""
    argv = [sys.executable, "-m", "router.cli", "router", "-n", "1"]
    if index is not None:
        argv += ["--worker-index", str(index)]
    return argv


def die_with_parent(parent: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` for a child that must not outlive its parent: SIGKILL on the
    parent's death (Linux), and an immediate exit if the parent is already gone."""
    expected = os.getpid() if parent is None else parent
    # resolved here, in the parent: the child between fork and exec only makes the call
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def arm() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != expected:  # the parent died before the request was armed
            os._exit(1)

    return arm


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How a supervisor restarts crashed workers: after ``first_delay`` seconds, doubling for
    each crash of the same worker within ``window`` seconds, at most ``max_delay``; after
    ``max_crashes`` crashes of any workers within ``window`` seconds it gives up."""

    max_crashes: int = 5
    window: float = 60.0
    first_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, recent_crashes: int) -> float:
        return float(min(self.first_delay * 2 ** max(recent_crashes - 1, 0), self.max_delay))


@dataclass
class _Slot:
    proc: subprocess.Popen[bytes] | None
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None


class Supervisor:
    """Runs ``n`` workers; restarts a crashed one with exponential backoff; gives up (exit
    status 3) after too many crashes; SIGTERM/SIGINT stop every worker gracefully."""

    GIVE_UP_STATUS = 3

    def __init__(
        self,
        n: int,
        policy: RestartPolicy,
        *,
        argv: Callable[[int], Sequence[str]] = worker_argv,
        out: IO[str] | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self.n = n
        self.policy = policy
        self._argv = argv
        self._out = out or sys.stderr
        self._stop_timeout = stop_timeout
        self._stopping = False
        self._crashes: deque[float] = deque()
        self.slots = [_Slot(None) for _ in range(n)]

    def _say(self, text: str) -> None:
        print(f"lienthong router: {text}", file=self._out, flush=True)

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(self._argv(index)), preexec_fn=die_with_parent())

    def _stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for i, slot in enumerate(self.slots):
            slot.proc = self._spawn(i)
        pids = [s.proc.pid for s in self.slots if s.proc is not None]
        self._say(f"supervising {self.n} workers (pids {pids})")
        while not self._stopping:
            time.sleep(0.1)
            now = time.monotonic()
            for i, slot in enumerate(self.slots):
                if slot.proc is None:
                    if slot.restart_at is not None and now >= slot.restart_at:
                        slot.proc, slot.restart_at = self._spawn(i), None
                        self._say(f"worker {i} restarted (pid {slot.proc.pid})")
                    continue
                code = slot.proc.poll()
                if code is None:
                    continue
                if self._stopping:
                    break
                if self._crashed(i, slot, code, now):
                    self.terminate()
                    return self.GIVE_UP_STATUS
        self.terminate()
        return 0

    def _crashed(self, i: int, slot: _Slot, code: int, now: float) -> bool:
        """Note worker ``i``'s exit; True when the supervisor must give up."""
        window = self.policy.window
        for crashes in (self._crashes, slot.crashes):
            crashes.append(now)
            while crashes and now - crashes[0] > window:
                crashes.popleft()
        pid = slot.proc.pid if slot.proc else 0
        slot.proc = None
        if len(self._crashes) >= self.policy.max_crashes:
            reason = Reason.WORKERS_CRASHING
            self._say(
                f"{reason.name} ({reason.code}): {reason.message_vi} / {reason.message_en}: "
                f"{len(self._crashes)} crashes within {window:g} s (last: worker {i}, pid "
                f"{pid}, exit status {code}); see the workers' logs above"
            )
            return True
        delay = self.policy.delay(len(slot.crashes))
        slot.restart_at = now + delay
        self._say(f"worker {i} (pid {pid}) exited with status {code}; restarting in "
                  f"{delay:g} s")
        return False

    def terminate(self) -> None:
        """SIGTERM every worker, wait for them (SIGKILL after the timeout)."""
        procs = [s.proc for s in self.slots if s.proc is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout
        for p in procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class RouterProcesses:
    """``n`` router workers on ``settings``' broker and ledger; killable, stoppable."""

    def __init__(
        self,
        settings: Settings,
        n: int,
        *,
        log_path: Path,
        sweep_seconds: int | None = None,
        env: Mapping[str, str] | None = None,
        argv: Sequence[str] | None = None,
    ) -> None:
        self.env = child_environment({
            "LIENTHONG_AMQP_URL": settings.amqp_url,
            "LIENTHONG_DATABASE_URL": settings.database_url,
            "LIENTHONG_BATCH_WAIT_MS": str(settings.batch_wait_ms),
            "LIENTHONG_LOG_LEVEL": "WARNING",
        })
        self.env.update(env or {})
        if sweep_seconds is not None:
            self.env["LIENTHONG_SWEEP_SECONDS"] = str(sweep_seconds)
        self.argv = list(argv) if argv is not None else worker_argv()
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.kills = 0
        self.procs = [self._spawn() for _ in range(n)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )

    def kill_one(self) -> None:
        """SIGKILL one worker at random (as the OOM killer would) and start another."""
        i = random.randrange(len(self.procs))
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()
        self.kills += 1
        self.procs[i] = self._spawn()

    def stop(self, timeout: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
        self._log.close()
