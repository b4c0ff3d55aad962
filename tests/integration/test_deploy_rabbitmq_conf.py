"""deploy/'s RabbitMQ configuration, translated by RabbitMQ's own Cuttlefish schemas inside
the running node (`rabbitmqctl eval`, a pure function call: the node's configuration is not
touched). Unknown keys and values of the wrong type fail, as they would at a node's start."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.hub import require_services

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_TRANSLATE = (
    'Schemas = filelib:wildcard("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/*/priv/'
    'schema/*.schema"), Schema = cuttlefish_schema:files(Schemas), '
    'Conf = cuttlefish_conf:files(["{conf}"]), '
    "case cuttlefish_generator:map(Schema, Conf) of {{error, Phase, Errors}} -> "
    "{{error, Phase, Errors}}; Config when is_list(Config) -> ok end."
)


@pytest.fixture
def readable_dir() -> Iterator[Path]:
    """A directory the broker's user can read (pytest's own are private)."""
    path = Path(tempfile.mkdtemp(prefix="lt-rabbitconf-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _translate(text: str, where: Path) -> str:
    rabbitmqctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    if not os.access(rabbitmqctl, os.X_OK):
        pytest.fail("rabbitmqctl is needed (make setup installs rabbitmq-server)")
    # the TLS files the configuration names must exist for the schema's validators
    for name in ("ca.pem", "server.pem", "server.key"):
        (where / name).write_text("placeholder\n")
        (where / name).chmod(0o644)
    conf = where / "rabbitmq.conf"
    conf.write_text(text.replace("/etc/rabbitmq/tls/", f"{where}/"), "utf-8")
    conf.chmod(0o644)
    done = subprocess.run([rabbitmqctl, "-q", "eval", _TRANSLATE.format(conf=conf)],
                          capture_output=True, text=True, timeout=120)
    return (done.stdout + done.stderr).strip()


def _sources() -> dict[str, str]:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text("utf-8"))
    k8s = yaml.safe_load((DEPLOY / "k8s" / "rabbitmq-cluster.yaml").read_text("utf-8"))
    return {
        "rabbitmq/rabbitmq.conf": (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text("utf-8"),
        "compose configs": compose["configs"]["rabbitmq-conf"]["content"],
        "k8s additionalConfig": k8s["spec"]["rabbitmq"]["additionalConfig"],
    }


@pytest.mark.parametrize("source", list(_sources()))
def test_rabbitmq_translates_the_configuration(source: str, readable_dir: Path) -> None:
    require_services()
    out = _translate(_sources()[source], readable_dir)
    assert out == "ok", f"{source}: {out}"


def test_a_misspelled_key_or_a_bad_value_is_refused(readable_dir: Path) -> None:
    require_services()
    text = _sources()["rabbitmq/rabbitmq.conf"]
    out = _translate(text + "max_mesage_size = 1\nheartbeat = often\n", readable_dir)
    assert re.search(r"unknown_variable,\s*\"max_mesage_size\"", out), out
    assert "heartbeat" in out, out
