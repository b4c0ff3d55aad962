"""Router worker processes started from Python (the demo, the chaos tests), the way an
operator runs them: ``python -m router.cli router -n 1`` per worker, logs in one file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from router.settings import Settings

__all__ = ["RouterProcesses"]


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
    ) -> None:
        self.env = dict(os.environ)
        self.env.update(
            LIENTHONG_AMQP_URL=settings.amqp_url,
            LIENTHONG_DATABASE_URL=settings.database_url,
            LIENTHONG_BATCH_WAIT_MS=str(settings.batch_wait_ms),
            LIENTHONG_LOG_LEVEL="WARNING",
        )
        self.env.update(env or {})
        if sweep_seconds is not None:
            self.env["LIENTHONG_SWEEP_SECONDS"] = str(sweep_seconds)
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.kills = 0
        self.procs = [self._spawn() for _ in range(n)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "router.cli", "router", "-n", "1"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
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
