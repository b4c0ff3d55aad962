"""Fair batches across intake queues (router.routing.sources) and which gateways get an
intake queue of their own (router.directory.intake_queues), without services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from router.directory.intake_queues import topics_overlap, wanted_bindings
from router.routing.intake import RouterWorker
from router.routing.sources import Sources
from router.settings import Settings

CHANNEL = "channel-1"


@dataclass(frozen=True)
class _Msg:
    source: str
    n: int
    tag: int
    size: int = 10
    channel: str = CHANNEL


class _Feed:
    """Deliveries on one channel, tagged in delivery order like RabbitMQ does."""

    def __init__(self, few: int = 4) -> None:
        self.sources: Sources[_Msg] = Sources(size=lambda m: m.size,
                                              tag=lambda m: (m.channel, m.tag), few=few)
        self.tag = 0

    def deliver(self, source: str, count: int, size: int = 10) -> list[_Msg]:
        out = []
        for i in range(count):
            self.tag += 1
            m = _Msg(source, i, self.tag, size)
            self.sources.put(source, m)
            out.append(m)
        return out


def test_a_quiet_gateway_is_in_the_next_batch_not_behind_a_burst() -> None:
    feed = _Feed()
    feed.deliver("A", 1000)
    quiet = feed.deliver("B", 1)
    batch = feed.sources.take(200, 10**9)
    assert batch == quiet  # a small batch of its own, routed next


def test_busy_sources_share_batches_in_turn_and_keep_their_order() -> None:
    feed = _Feed(few=0)
    feed.deliver("A", 300)
    feed.deliver("B", 300)
    taken: list[_Msg] = []
    while batch := feed.sources.take(100, 10**9):
        assert abs(sum(m.source == "A" for m in batch) - sum(m.source == "B" for m in batch)) <= 1
        taken += batch
    for source in "AB":
        assert [m.n for m in taken if m.source == source] == list(range(300))


def test_quiet_gateways_cannot_starve_a_busy_one() -> None:
    feed = _Feed()
    feed.deliver("A", 1000)
    served_a = 0
    for i in range(10):
        feed.deliver(f"Q{i}", 1)  # a new quiet message before every batch
        batch = feed.sources.take(100, 10**9)
        served_a += sum(m.source == "A" for m in batch)
    assert served_a >= 4 * (feed.sources.shared - 1)  # every other batch takes from all


def test_a_burst_gets_short_batches_only_while_a_quiet_gateway_is_sending() -> None:
    feed = _Feed()
    feed.deliver("A", 1000)
    assert len(feed.sources.take(200, 10**9, now=0.0)) == 200  # alone: full batches
    feed.sources.put("B", _Msg("B", 0, 10_000), now=1.0)
    assert [m.source for m in feed.sources.take(200, 10**9, now=1.0)] == ["B"]
    # B sent a moment ago: what B sends next waits for short batches only
    assert len(feed.sources.take(200, 10**9, now=1.5)) == feed.sources.shared
    assert len(feed.sources.take(200, 10**9, now=3.0)) == 200  # B quiet for long: full


def test_bytes_bound_a_batch_and_a_large_message_goes_alone() -> None:
    feed = _Feed(few=0)
    feed.deliver("A", 1, size=500)
    feed.deliver("B", 3, size=100)
    first = feed.sources.take(100, 250)
    assert [m.size for m in first] == [500]  # too large for any batch: alone
    second = feed.sources.take(100, 250)
    assert [m.source for m in second] == ["B", "B"]
    assert feed.sources.waiting() == 1


def test_one_multiple_ack_never_covers_a_message_not_routed_yet() -> None:
    feed = _Feed(few=0)
    a = feed.deliver("A", 3)  # tags 1-3
    b = feed.deliver("B", 3)  # tags 4-6
    batch = feed.sources.take(4, 10**9)  # A1 B1 A2 B2 (tags 1, 4, 2, 5)
    assert {m.tag for m in batch} == {1, 2, 4, 5}
    together, alone = feed.sources.ack_split(batch)
    # tag 3 (A's third) is still waiting: one ack up to tag 2, then 4 and 5 alone
    assert together == a[1]
    assert alone == [b[0], b[1]]
    feed.sources.settle(batch)
    rest = feed.sources.take(10, 10**9)
    together, alone = feed.sources.ack_split(rest)
    assert together is not None and together.tag == 6 and alone == []


def test_held_bytes_count_until_settled() -> None:
    feed = _Feed()
    ms = feed.deliver("A", 5, size=100)
    assert feed.sources.held_bytes == 500
    batch = feed.sources.take(2, 10**9)
    assert feed.sources.held_bytes == 500  # taken, not acked: still held
    feed.sources.settle(batch)
    assert feed.sources.held_bytes == 300
    feed.sources.settle(batch)  # twice is harmless
    assert feed.sources.held_bytes == 300 and len(ms) == 5


def test_topic_patterns_overlap_as_rabbitmq_matches_them() -> None:
    assert topics_overlap("#.H47", "000.00.01.H47")
    assert topics_overlap("#.H47", "*.*.*.H47")
    assert topics_overlap("#", "000.00.00.G12")
    assert topics_overlap("000.#", "#.G12")
    assert not topics_overlap("#.H47", "000.00.00.G12")
    assert not topics_overlap("*.H47", "000.00.00.H47")
    assert not topics_overlap("000.00.00.G12", "000.00.00.G13")


def test_only_gateways_whose_keys_nobody_shares_get_an_intake_queue() -> None:
    wanted = wanted_bindings({
        "vpcp": (["000.00.00.G22"], []),
        "btc": (["000.00.00.G12"], ["000.00.00.g12", "000.00.00.B12"]),
        "lgsp-nghean": (["#.H40"], ["000.00.01.H40"]),  # its own code, under its pattern
        "lgsp-hue": (["#.H46"], []),
        "hue-city": ([], ["000.01.00.H46"]),  # inside lgsp-hue's pattern: both shared
        "nothing": ([], []),
    })
    assert wanted == {
        "vpcp": frozenset({"000.00.00.G22"}),
        "btc": frozenset({"000.00.00.G12", "000.00.00.B12"}),
        "lgsp-nghean": frozenset({"#.H40"}),
    }


def test_shared_batches_route_in_about_the_time_a_quiet_gateway_may_wait() -> None:
    worker = RouterWorker(Settings(batch_size=200), cast(Any, None))
    worker._routed_in(0.3, 200)  # 1.5 ms a package: 30 ms is 20 packages
    assert worker._sources.shared == 20
    worker._routed_in(0.001, 200)  # much faster lately: larger, up to the batch size
    worker._routed_in(0.001, 200)
    assert 20 < worker._sources.shared <= 200
    worker._routed_in(100.0, 200)  # very slow: never below 8
    assert worker._sources.shared == 8


def test_a_batch_says_how_long_its_longest_waiting_message_waited() -> None:
    sources: Sources[_Msg] = Sources(size=lambda m: m.size, tag=lambda m: (m.channel, m.tag))
    early, late = _Msg("A", 0, 1), _Msg("B", 0, 2)
    sources.put("A", early, now=10.0)
    sources.put("B", late, now=10.5)
    batch = sources.take(10, 10**9, now=11.0)
    assert sources.waited(batch, now=11.25) == 1.25  # the first one waited longest
    sources.settle(batch)
    assert sources.waited(batch, now=12.0) == 0.0  # settled: no longer known
