"""The one AMQP connect: no other module of the hub opens a connection by itself, and the
TLS settings and the hub user come from the settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from router import amqp
from router.settings import Settings

ROUTER = Path(__file__).resolve().parents[2] / "router"
_OPENS = re.compile(r"\b(connect_robust|aio_pika\.connect|aiormq\.connect)\s*\(")


def test_only_router_amqp_opens_amqp_connections() -> None:
    offenders = [
        f"{path.relative_to(ROUTER.parent)}:{n}"
        for path in sorted(ROUTER.rglob("*.py"))
        if path != ROUTER / "amqp.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if _OPENS.search(line)
    ]
    assert offenders == []


def test_tls_context_from_the_settings(tmp_path: Path) -> None:
    assert amqp.ssl_context(Settings()) is None  # plain amqp:// (or the system CAs)
    with pytest.raises(ValueError, match="LIENTHONG_TLS_KEY is set without LIENTHONG_TLS_CERT"):
        amqp.ssl_context(Settings(tls_key=str(tmp_path / "client.key")))
    with pytest.raises(FileNotFoundError):
        amqp.ssl_context(Settings(tls_ca=str(tmp_path / "missing-ca.pem")))


def test_settings_read_tls_and_the_hub_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LIENTHONG_TLS_CA", "/etc/lt/ca.pem")
    monkeypatch.setenv("LIENTHONG_TLS_CERT", "/etc/lt/router.pem")
    monkeypatch.setenv("LIENTHONG_TLS_KEY", "/etc/lt/router.key")
    monkeypatch.setenv("LIENTHONG_HUB_KEY", "/etc/lt/hub.key")
    monkeypatch.setenv("LIENTHONG_CERT_WARN_DAYS", "45")
    s = Settings.from_env()
    assert (s.tls_ca, s.tls_cert, s.tls_key, s.hub_key, s.certificate_warn_days) == (
        "/etc/lt/ca.pem", "/etc/lt/router.pem", "/etc/lt/router.key", "/etc/lt/hub.key", 45.0)


def test_the_hub_user_is_the_url_user() -> None:
    assert amqp.hub_user(Settings(amqp_url="amqps://lt%2Dhub:pw@axis:5671/lienthong")) == "lt-hub"
    assert amqp.hub_user(Settings(amqp_url="amqp://axis/lienthong")) == "guest"
