"""Wait for a condition instead of sleeping: the one polling helper of the tests.

``await eventually(lambda: queue_depth(hub, q), timeout=10)`` polls ``check`` (a plain or
an async callable) until it returns a truthy value and returns that value; past
``timeout`` seconds it fails the test with the last value seen. A negative check ("nothing
arrived") belongs after a positive signal (a receipt, a count reached), never after a
fixed sleep.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling, not an I/O timeout
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)
