"""What a router holds from its intake queues, and fair batches of it.

A router consumes ``lt.router.in`` and every gateway's intake queue
(``router.directory.intake_queues``). Messages wait here in one FIFO per source queue, and
batches are built across the sources in turn, so one gateway's burst does not stand
before another gateway's document:

* a round-robin batch takes one message from each waiting source in turn (then again)
  until the batch is full (count or bytes); the next batch starts with the source after
  the last one served;
* a source with only a few messages waiting (``few``) while another has many gets a
  small batch of its own, routed next (small: quickly decided); after such a batch the
  next one is round-robin again, so a trickle of quiet gateways cannot starve a busy one;
* while a busy source (more than ``few`` waiting) shares the router with a quiet one that
  sent in the last ``recent`` seconds, batches hold at most ``shared`` messages: a batch
  being routed is what a quiet gateway's next document waits for, so it must be short.
  Busy sources alone (one burst, or several) get full batches;
* within one source, messages leave in delivery order, and batches are decided in the
  order they are taken (``router.routing.intake._Turn``): one gateway's packages are
  decided in the order it published them.

It also keeps what the router holds unacknowledged, for two things:

* bytes: the router stops taking deliveries while it holds more than its budget;
* acks: with several queues on one channel, an ack with ``multiple=True`` covers every
  earlier delivery tag of the *channel*, across queues. :meth:`Sources.ack_split` says
  which of a batch's messages one such ack may cover (none held outside the batch with
  an earlier tag) and which must be acked one by one.

Pure logic, no I/O: the worker calls it from its delivery callbacks and its batch loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

__all__ = ["Sources"]

M = TypeVar("M", bound=Hashable)


class Sources(Generic[M]):
    """Messages held by a router: waiting in one FIFO per source queue, or taken into a
    batch that is not settled yet (acked, returned, or void with its channel)."""

    def __init__(self, *, size: Callable[[M], int], tag: Callable[[M], tuple[object, int]],
                 few: int = 16, shared: int = 32, recent: float = 1.0) -> None:
        """``size``: a message's bytes; ``tag``: its (channel, delivery tag), asked once,
        when it is delivered; ``few``: at most this many waiting make a source quiet;
        ``shared``: the batch size while a busy source shares the router with a quiet one
        active in the last ``recent`` seconds."""
        self._size = size
        self._tag = tag  # (channel, delivery tag)
        self.few = few
        self.shared = shared
        self.recent = recent
        self._last_put: dict[str, float] = {}  # source -> when it last had a message
        self._fifos: dict[str, deque[M]] = {}
        self._turns: deque[str] = deque()  # sources with messages waiting, in turn order
        self._held: dict[object, set[int]] = {}  # channel -> delivery tags held
        self._tags: dict[M, tuple[object, int]] = {}  # held message -> its tag
        self._put_at: dict[M, float] = {}  # held message -> when it began to wait
        self.held_bytes = 0
        self._small_last = False

    # delivered and settled --------------------------------------------------------------
    def hold(self, m: M) -> None:
        """``m`` was delivered: held (its bytes count, its tag is out) until settled."""
        if m in self._tags:
            return
        channel, tag = self._tags[m] = self._tag(m)
        self._held.setdefault(channel, set()).add(tag)
        self.held_bytes += self._size(m)

    def put(self, source: str, m: M, now: float = 0.0) -> None:
        """``m`` (held) waits for a batch, behind the earlier messages of ``source``
        (``now``: a monotonic clock's time)."""
        self.hold(m)
        self._last_put[source] = now
        self._put_at[m] = now
        fifo = self._fifos.setdefault(source, deque())
        if not fifo:
            self._turns.append(source)
        fifo.append(m)

    def settle(self, messages: Iterable[M]) -> None:
        """These messages are acked, returned or void: no longer held."""
        for m in messages:
            self._put_at.pop(m, None)
            if m not in self._tags:
                continue
            channel, tag = self._tags.pop(m)
            tags = self._held.get(channel)
            if tags is not None:
                tags.discard(tag)
                if not tags:
                    del self._held[channel]
            self.held_bytes -= self._size(m)

    # batches ----------------------------------------------------------------------------
    def waiting(self, source: str | None = None) -> int:
        """Messages waiting for a batch (of one source, or of all)."""
        if source is not None:
            return len(self._fifos.get(source, ()))
        return sum(len(f) for f in self._fifos.values())

    def sources_waiting(self) -> list[str]:
        """Sources with messages waiting, in turn order."""
        return list(self._turns)

    def take(self, count: int, max_bytes: int, now: float = 0.0) -> list[M]:
        """The next batch: at most ``count`` messages and ``max_bytes`` of them (a single
        larger message goes alone); what does not fit stays first in its source."""
        if not self._turns:
            return []
        quiet = [s for s in self._turns if len(self._fifos[s]) <= self.few]
        busy = {s for s in self._turns if len(self._fifos[s]) > self.few}
        if quiet and busy and not self._small_last:
            self._small_last = True
            return self._round_robin(quiet, count, max_bytes)
        self._small_last = False
        if busy and self._quiet_recently(busy, now):
            count = min(count, self.shared)
        return self._round_robin(list(self._turns), count, max_bytes)

    def _quiet_recently(self, busy: set[str], now: float) -> bool:
        """Has a source other than the busy ones had a message in the last ``recent`` s?"""
        for source, at in list(self._last_put.items()):
            if now - at > self.recent:
                del self._last_put[source]
            elif source not in busy:
                return True
        return False

    def _round_robin(self, sources: Sequence[str], count: int, max_bytes: int) -> list[M]:
        batch: list[M] = []
        size = 0
        served: list[str] = []
        active = list(sources)
        while active and len(batch) < count:
            again: list[str] = []
            for source in active:
                if len(batch) >= count:
                    break
                fifo = self._fifos[source]
                n = self._size(fifo[0])
                if batch and size + n > max_bytes:
                    continue  # waits, first in its source, for the next batch
                batch.append(fifo.popleft())
                size += n
                if source not in served:
                    served.append(source)
                if fifo:
                    again.append(source)
            active = again
        for source in served:  # served sources go to the back, in the order served
            self._turns.remove(source)
            if self._fifos[source]:
                self._turns.append(source)
            else:
                del self._fifos[source]
        return batch

    def waited(self, batch: Sequence[M], now: float) -> float:
        """How long the batch's longest-waiting message waited for it (``now``: the same
        clock as :meth:`put`'s)."""
        times = [self._put_at[m] for m in batch if m in self._put_at]
        return max(0.0, now - min(times)) if times else 0.0

    # acks -------------------------------------------------------------------------------
    def ack_split(self, batch: Sequence[M]) -> tuple[M | None, list[M]]:
        """(the message to ack with ``multiple=True``, or None; the messages to ack one by
        one). The multiple ack covers only messages of the batch: none held outside it has
        an earlier delivery tag on the channel."""
        tag = self._tags.get
        by_channel: dict[object, list[M]] = {}
        for m in batch:
            by_channel.setdefault((tag(m) or self._tag(m))[0], []).append(m)
        if len(by_channel) != 1:  # deliveries of a channel renewed since: one by one
            return None, list(batch)
        ((channel, messages),) = by_channel.items()
        number = {m: (tag(m) or self._tag(m))[1] for m in messages}
        mine = set(number.values())
        others = [t for t in self._held.get(channel, ()) if t not in mine]
        first_other = min(others, default=None)
        ordered = sorted(messages, key=number.__getitem__)
        covered = [m for m in ordered if first_other is None or number[m] < first_other]
        rest = ordered[len(covered):]
        if not covered:
            return None, rest
        if len(covered) == 1:
            return None, ordered
        return covered[-1], rest
