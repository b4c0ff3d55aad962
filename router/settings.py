"""Configuration from environment variables. One table, documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

__all__ = ["Settings"]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a lienthong process reads from its environment."""

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/lienthong"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/lienthong"
    management_url: str = "http://guest:guest@127.0.0.1:15672"
    max_package_bytes: int = 30 * 1024 * 1024
    max_recipients: int = 500
    max_attachments: int = 100
    batch_size: int = 200
    batch_wait_ms: int = 20
    delivery_limit: int = 20
    log_level: str = "INFO"
    amqp_user_prefix: str = ""
    sweep_seconds: int = 30
    not_arrived_minutes: float = 15.0
    audit_anchor_seconds: float = 300.0
    health_port: int = 0  # a router worker's /healthz and /readyz; 0: off

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            amqp_url=os.environ.get("LIENTHONG_AMQP_URL", d.amqp_url),
            database_url=os.environ.get("LIENTHONG_DATABASE_URL", d.database_url),
            management_url=os.environ.get("LIENTHONG_MANAGEMENT_URL", d.management_url),
            max_package_bytes=_env_int("LIENTHONG_MAX_PACKAGE_BYTES", d.max_package_bytes),
            max_recipients=_env_int("LIENTHONG_MAX_RECIPIENTS", d.max_recipients),
            max_attachments=_env_int("LIENTHONG_MAX_ATTACHMENTS", d.max_attachments),
            batch_size=_env_int("LIENTHONG_BATCH_SIZE", d.batch_size),
            batch_wait_ms=_env_int("LIENTHONG_BATCH_WAIT_MS", d.batch_wait_ms),
            delivery_limit=_env_int("LIENTHONG_DELIVERY_LIMIT", d.delivery_limit),
            log_level=os.environ.get("LIENTHONG_LOG_LEVEL", d.log_level),
            amqp_user_prefix=os.environ.get("LIENTHONG_AMQP_USER_PREFIX", d.amqp_user_prefix),
            sweep_seconds=_env_int("LIENTHONG_SWEEP_SECONDS", d.sweep_seconds),
            not_arrived_minutes=float(
                os.environ.get("LIENTHONG_NOT_ARRIVED_MINUTES", d.not_arrived_minutes)
            ),
            audit_anchor_seconds=float(
                os.environ.get("LIENTHONG_AUDIT_ANCHOR_SECONDS", d.audit_anchor_seconds)
            ),
            health_port=_env_int("LIENTHONG_HEALTH_PORT", d.health_port),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def vhost(self) -> str:
        from urllib.parse import unquote, urlsplit

        path = urlsplit(self.amqp_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"
