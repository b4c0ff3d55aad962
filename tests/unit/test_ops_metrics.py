"""The metrics the routers record and the ops process exposes."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from router import metrics
from router.ops.queue_health import HealthThresholds, classify
from router.settings import Settings, SettingsError


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    v = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if v is None else v


def test_record_batch_counts_outcomes_reasons_copies_and_timing() -> None:
    before = {
        "acc": _value("lienthong_packages_total", {"kind": "edoc", "outcome": "accepted"}),
        "rej": _value("lienthong_packages_total", {"kind": "unknown", "outcome": "rejected"}),
        "reason": _value("lienthong_rejections_total", {"reason": "MALFORMED_XML"}),
        "queued": _value("lienthong_copies_total", {"outcome": "queued"}),
        "undeliv": _value("lienthong_copies_total", {"outcome": "undeliverable"}),
        "routing": _value("lienthong_routing_seconds_count"),
        "fast": _value("lienthong_routing_seconds_bucket", {"le": "0.005"}),
        "batches": _value("lienthong_batch_size_count"),
    }
    metrics.record_batch(
        ["accepted", "accepted", "rejected"],
        ["edoc", "edoc", "bogus-kind"],
        [0.002, 0.3],
        copies_queued=5,
        copies_undeliverable=1,
        rejection_reasons=["MALFORMED_XML"],
    )
    assert _value("lienthong_packages_total", {"kind": "edoc", "outcome": "accepted"}) == (
        before["acc"] + 2
    )
    # an unexpected kind is folded into "unknown": label values stay a closed set
    assert _value("lienthong_packages_total", {"kind": "unknown", "outcome": "rejected"}) == (
        before["rej"] + 1
    )
    assert _value("lienthong_rejections_total", {"reason": "MALFORMED_XML"}) == before["reason"] + 1
    assert _value("lienthong_copies_total", {"outcome": "queued"}) == before["queued"] + 5
    assert _value("lienthong_copies_total", {"outcome": "undeliverable"}) == before["undeliv"] + 1
    assert _value("lienthong_routing_seconds_count") == before["routing"] + 2
    assert _value("lienthong_routing_seconds_bucket", {"le": "0.005"}) == before["fast"] + 1
    assert _value("lienthong_batch_size_count") == before["batches"] + 1


def test_record_batch_needs_parallel_lists() -> None:
    with pytest.raises(ValueError, match="parallel"):
        metrics.record_batch(["accepted"], [], [], 0, 0, [])


def test_histogram_buckets_span_1ms_to_10s() -> None:
    samples = {s.labels.get("le") for s in next(iter(metrics.ROUTING_SECONDS.collect())).samples
               if s.name.endswith("_bucket")}
    assert {"0.001", "10.0", "+Inf"} <= samples


def test_metrics_port_off_by_default_and_one_port_per_worker() -> None:
    assert Settings.from_env({}).metrics_port_of(0, 1) is None
    assert Settings.from_env({"LIENTHONG_METRICS_PORT": "off"}).metrics_port_of(1, 2) is None
    s = Settings.from_env({"LIENTHONG_METRICS_PORT": "9400"})
    assert [s.metrics_port_of(i, 3) for i in range(3)] == [9400, 9401, 9402]
    with pytest.raises(SettingsError, match="LIENTHONG_METRICS_PORT"):
        Settings.from_env({"LIENTHONG_METRICS_PORT": "65535"}).metrics_port_of(1, 2)


@pytest.mark.parametrize(
    ("present", "consumers", "ready", "oldest", "health"),
    [
        (False, 0, 0, None, "no_consumer"),
        (True, 0, 0, None, "no_consumer"),
        (True, 1, 0, None, "ok"),
        (True, 1, 5000, 10.0, "backlog"),
        (True, 2, 3, 3600.0, "stale"),
        (True, 0, 5000, 3600.0, "no_consumer"),
    ],
)
def test_gateway_health_classes(
    present: bool, consumers: int, ready: int, oldest: float | None, health: str
) -> None:
    assert classify(
        inbox_present=present, consumers=consumers, ready=ready, oldest_waiting=oldest,
        thresholds=HealthThresholds(backlog=1000, stale_seconds=900),
    ) == health
