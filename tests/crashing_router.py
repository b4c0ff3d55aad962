"""A router worker for tests that dies as a segfault or the OOM killer would make it die
(SIGKILL, no clean-up) when a batch it routes holds a marker:

* ``TEST-CRASH-BEFORE-COMMIT``: before the batch is routed (nothing of it is recorded);
* ``TEST-CRASH-AFTER-RECEIPTS``: after the batch is recorded, its copies and receipts are
  published, and before it is acked.

Run as ``python -m tests.crashing_router`` with the usual ``LIENTHONG_*`` environment. The
hook lives here, in the tests, never in the hub's hot path.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from router.logs import configure_logging
from router.routing import intake
from router.routing.intake import RouterWorker
from router.settings import Settings

CRASH_BEFORE = b"TEST-CRASH-BEFORE-COMMIT"
CRASH_AFTER = b"TEST-CRASH-AFTER-RECEIPTS"

_route_and_publish = RouterWorker._route_and_publish


async def _crashing(self: RouterWorker, messages: Sequence[AbstractIncomingMessage],
                    **kw: Any) -> None:
    if any(CRASH_BEFORE in m.body for m in messages):
        os.kill(os.getpid(), signal.SIGKILL)
    await _route_and_publish(self, messages, **kw)
    if any(CRASH_AFTER in m.body for m in messages):
        os.kill(os.getpid(), signal.SIGKILL)


RouterWorker._route_and_publish = _crashing  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    asyncio.run(intake.run_router(settings))
