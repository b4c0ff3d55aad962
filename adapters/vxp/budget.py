"""A bound on the bytes of request bodies the façade holds at once.

Each small ``sendEdoc`` holds its file in memory (up to the small limit) until the hub
answers; without a bound, many uploads at once could exhaust memory. A request reserves its
size before reading (its Content-Length, or the small limit when unknown; a read buffer
when its Content-Length says it is a large package, spooled to disk) and waits its turn,
up to a deadline, while the budget is spent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["ByteBudget"]


class ByteBudget:
    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, size: int, *, wait: float) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget (a request larger than the whole budget gets
        the whole budget). Raises TimeoutError after ``wait`` seconds without room."""
        size = min(size, self.total)
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.in_use + size <= self.total), wait)
            self.in_use += size
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= size
                self._changed.notify_all()
