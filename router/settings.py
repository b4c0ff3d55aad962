"""Configuration from environment variables. One table, documented in the README."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

__all__ = ["MESSAGE_SIZE_MARGIN", "Settings"]

MESSAGE_SIZE_MARGIN = 1024 * 1024  # broker limit = package limit + this


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
    # bytes, not messages, bound a router's memory (issue #11)
    batch_max_bytes: int = 64 * 1024 * 1024
    inflight_max_bytes: int = 512 * 1024 * 1024
    # a gateway's receipts queue keeps at most this much (oldest dropped; replay refills)
    receipts_max_length: int = 10_000
    receipts_max_bytes: int = 16 * 1024 * 1024

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
            batch_max_bytes=_env_int("LIENTHONG_BATCH_MAX_BYTES", d.batch_max_bytes),
            inflight_max_bytes=_env_int("LIENTHONG_INFLIGHT_MAX_BYTES", d.inflight_max_bytes),
            receipts_max_length=_env_int("LIENTHONG_RECEIPTS_MAX_LENGTH",
                                         d.receipts_max_length),
            receipts_max_bytes=_env_int("LIENTHONG_RECEIPTS_MAX_BYTES", d.receipts_max_bytes),
        )

    @property
    def max_message_bytes(self) -> int:
        """The broker's maximum message size for this hub: the package limit plus a margin,
        so a package just over the limit still reaches a router and gets its
        PACKAGE_TOO_LARGE receipt (deploy/local/ensure-services.sh sets it)."""
        return self.max_package_bytes + MESSAGE_SIZE_MARGIN

    @property
    def prefetch_count(self) -> int:
        """Messages a router may hold unacknowledged: as many as fit in
        ``inflight_max_bytes`` at the broker's maximum message size (at least 2: one batch
        routing, one arriving), never more than two batches."""
        fit = self.inflight_max_bytes // self.max_message_bytes
        return max(2, min(self.batch_size * 2, fit))

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def vhost(self) -> str:
        from urllib.parse import unquote, urlsplit

        path = urlsplit(self.amqp_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"
