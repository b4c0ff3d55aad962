"""Fault injection for the poison-message and chaos tests: test code, never in the product.

A package containing ``LIENTHONG-FAULT:raise`` makes routing raise (a bug in the router);
``LIENTHONG-FAULT:crash`` kills the router process (as a segfault or an OOM kill would).
The hook wraps :meth:`router.routing.batch.BatchRouter.route`, the step every batch takes:

- in-process routers (``Hub.start_router``): the ``faults`` fixture installs it for one test
  and can switch it off mid-test (``faults.enabled = False``: "the bug is fixed");
- spawned router processes (:class:`router.processes.RouterProcesses`): put
  ``tests/fault_injection`` on their ``PYTHONPATH`` (:func:`spawn_env`); its
  ``sitecustomize`` installs the hook at interpreter start.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from router.routing.batch import BatchPlan, BatchRouter, Incoming

__all__ = ["CRASH", "RAISE", "Faults", "install", "spawn_env"]

CRASH = b"LIENTHONG-FAULT:crash"
RAISE = b"LIENTHONG-FAULT:raise"
SITE_DIR = Path(__file__).resolve().parent / "fault_injection"


class Faults:
    """The switch of an installed hook."""

    def __init__(self) -> None:
        self.enabled = True
        self.raised = 0

    def check(self, batch: Sequence[Incoming]) -> None:
        if not self.enabled:
            return
        for msg in batch:
            if CRASH in msg.body:
                os._exit(70)
            if RAISE in msg.body:
                self.raised += 1
                raise RuntimeError("injected fault (LIENTHONG-FAULT:raise)")


def install(setattr_: Callable[[Any, str, Any], None] = setattr) -> Faults:
    """Wrap ``BatchRouter.route`` with the fault hook (``setattr_``: pytest's
    ``monkeypatch.setattr`` to undo it after the test)."""
    faults = Faults()
    original = BatchRouter.route

    @functools.wraps(original)
    async def route(self: BatchRouter, batch: Sequence[Incoming]) -> BatchPlan:
        faults.check(batch)
        return await original(self, batch)

    setattr_(BatchRouter, "route", route)
    return faults


def spawn_env() -> dict[str, str]:
    """Environment additions that arm the hook in spawned router processes."""
    path = os.pathsep.join(p for p in (str(SITE_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}
