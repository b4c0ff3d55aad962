"""deploy/rabbitmq/rabbitmq.conf is checked by RabbitMQ's own configuration schemas
(cuttlefish, on a node of the local cluster) — and the check does catch a wrong key."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster

CONF = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "rabbitmq.conf"


def _copy(tmp_path: Path, extra: str = "") -> Path:
    tls = tmp_path / "tls"
    tls.mkdir()
    # every file the configuration names there (the node checks that each one exists)
    for name in set(re.findall(r"/etc/rabbitmq/tls/(\S+)", CONF.read_text("utf-8"))):
        (tls / name).write_text("", "utf-8")
    conf = tmp_path / "rabbitmq.conf"
    conf.write_text(CONF.read_text("utf-8").replace("/etc/rabbitmq/tls", str(tls)) + extra,
                    "utf-8")
    tmp_path.chmod(0o755)
    return conf


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A folder of its own, not under pytest's shared base: on a machine where several
    pytest sessions run at once, a newer session removes an older one's base folders
    (it keeps three), and the node then found no file to check."""
    with tempfile.TemporaryDirectory(prefix="lienthong-conf-") as name:
        yield Path(name)


def test_production_rabbitmq_conf_is_valid(cluster: Cluster, tmp_path: Path) -> None:
    cluster.run("rabbit-check-conf", str(_copy(tmp_path)))
    text = CONF.read_text("utf-8")
    assert "listeners.tcp = none" in text and "loopback_users.guest = true" in text


def test_a_misspelt_key_is_caught(cluster: Cluster, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="unknown_variable"):
        cluster.run("rabbit-check-conf", str(_copy(tmp_path, "heartbeet = 30\n")))
