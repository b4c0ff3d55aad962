"""The overview's judgement, without services: when lt.router.in counts as growing, how
long it has been non-empty, which alerts fire and which of them raise the red banner."""

from __future__ import annotations

from typing import Any, cast

from router.ops.overview import HubWatch, WatchThresholds, alerts


def _watch() -> HubWatch:
    # the pool, admin and snapshot are not used by sample()
    none = cast(Any, None)
    return HubWatch(none, none, none,
                    thresholds=WatchThresholds(growing_min=100, growing_seconds=60))


def test_growing_needs_a_rise_over_the_window_and_a_floor() -> None:
    w = _watch()
    assert w.sample(50, 0, 0.0)[0] is False
    assert w.sample(150, 0, 30.0)[0] is False  # no sample 60 s old yet
    growing, _, since = w.sample(200, 0, 61.0)
    assert growing is True and since == 61.0
    steady = _watch()
    steady.sample(500, 0, 0.0)
    assert steady.sample(500, 0, 61.0)[0] is False  # big but not rising
    small = _watch()
    small.sample(10, 0, 0.0)
    assert small.sample(90, 0, 61.0)[0] is False  # rising below the floor
    draining = _watch()
    draining.sample(900, 0, 0.0)
    assert draining.sample(400, 0, 61.0)[0] is False


def test_non_empty_time_restarts_when_the_queue_empties() -> None:
    w = _watch()
    w.sample(3, 0, 10.0)
    assert w.sample(5, 0, 40.0)[2] == 30.0
    assert w.sample(0, 0, 41.0)[2] is None
    assert w.sample(1, 0, 50.0)[2] == 0.0


def test_parking_growing() -> None:
    w = _watch()
    w.sample(0, 1, 0.0)
    assert w.sample(0, 1, 61.0)[1] is False
    assert w.sample(0, 4, 70.0)[1] is True


def test_alerts_and_banner() -> None:
    quiet = alerts(consumers=2, depth=0, growing=False, alarms=[], unroutable=0,
                   parking_growing=False)
    assert quiet == []
    fired = alerts(consumers=0, depth=4000, growing=True, alarms=["memory:rabbit@a"],
                   unroutable=3, parking_growing=True)
    assert [(a.name, a.severity) for a in fired] == [
        ("LienthongNoRouter", "critical"), ("LienthongRouterInGrowing", "critical"),
        ("LienthongBrokerAlarm", "critical"), ("LienthongUnroutable", "warning"),
        ("LienthongParkingGrowing", "warning")]
    assert all(a.message_vi and a.message_en and a.message_vi != a.message_en for a in fired)
    assert "memory:rabbit@a" in fired[2].message_en and "4000" in fired[1].message_vi
