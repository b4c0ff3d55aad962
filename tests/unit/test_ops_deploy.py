"""The Prometheus rules and the Grafana dashboard only use metrics lienthong defines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import REGISTRY

import router.metrics  # noqa: F401 - registers the metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_NAME = re.compile(r"\blienthong_[a-z_]+\b")


def _defined() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")  # labelled counters have no sample until used
        names.update(s.name for s in family.samples)
    return names


def _used(text: str) -> set[str]:
    return {n for n in _NAME.findall(text) if not n.startswith("lienthong_overview")}


def test_alert_rules_use_defined_metrics() -> None:
    text = (DEPLOY / "prometheus" / "lienthong-alerts.yml").read_text("utf-8")
    exprs = "\n".join(re.findall(r"expr: (.*(?:\n {10,}.*)*)", text))
    used = _used(exprs)
    assert used, "no metric found in the rules"
    assert used <= _defined(), used - _defined()
    for alert in ("GatewayNoConsumer", "GatewayOldestPackage", "RejectionSpike",
                  "ParkingNotEmpty", "CertificateExpiring", "NoRouter", "RouterInGrowing",
                  "Unroutable", "ParkingGrowing", "BrokerAlarm", "NotArrivedRising"):
        assert f"alert: Lienthong{alert}" in text
    promtool = shutil.which("promtool")
    if promtool:  # the Debian `prometheus` package provides it (make setup installs it)
        for args in (["check", "rules", "lienthong-alerts.yml"],
                     ["test", "rules", "lienthong-alerts-test.yml"],
                     ["check", "config", "prometheus.yml"]):
            subprocess.run([promtool, *args], cwd=DEPLOY / "prometheus", check=True,
                           capture_output=True)


def test_grafana_dashboard_uses_defined_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana" / "lienthong-overview.json").read_text("utf-8"))
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set().union(*(_used(e) for e in exprs))
    assert used <= _defined(), used - _defined()
    # every metric an operator cares about has a panel
    for metric in ("lienthong_packages_total", "lienthong_rejections_total",
                   "lienthong_routing_seconds_bucket", "lienthong_gateway_queue_depth",
                   "lienthong_gateway_oldest_seconds", "lienthong_deliveries",
                   "lienthong_certificate_expiry_timestamp_seconds", "lienthong_parked"):
        assert metric in used, metric
