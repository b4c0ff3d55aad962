"""Fault injection for the chaos and poison-message tests. Off unless the process runs
with ``LIENTHONG_ENABLE_FAULTS=1``; then a package containing the marker
``LIENTHONG-FAULT:crash`` kills the router process (as a segfault or an OOM kill would)
and ``LIENTHONG-FAULT:raise`` makes routing raise. Never enable it in production."""

from __future__ import annotations

import os

__all__ = ["check", "enabled"]

_CRASH = b"LIENTHONG-FAULT:crash"
_RAISE = b"LIENTHONG-FAULT:raise"


def enabled() -> bool:
    return os.environ.get("LIENTHONG_ENABLE_FAULTS") == "1"


def check(body: bytes) -> None:
    if not enabled():
        return
    if _CRASH in body:
        os._exit(70)
    if _RAISE in body:
        raise RuntimeError("injected fault (LIENTHONG-FAULT:raise)")
