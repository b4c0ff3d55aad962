"""Every environment variable lienthong reads, in one table: parsed, range-checked and named
in the error when wrong. Documented in the README's Configuration table (a unit test keeps
the two in step).

Nothing else in ``router/``, ``bench/`` or ``demo/`` reads ``os.environ``: code that needs a
variable takes it from a :class:`Settings` (``Settings.from_env()``), and the few helpers
below (:func:`named_secret`, :func:`child_environment`) are the only other ways in.
``lienthong config show`` prints the effective values with their source, secrets redacted.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from schemas.reasons import LienthongError, Reason

__all__ = [
    "LOG_LEVELS",
    "MESSAGE_SIZE_MARGIN",
    "Settings",
    "SettingsError",
    "child_environment",
    "named_secret",
    "redact_url",
    "unknown_variables",
    "variables",
]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_OFF = {"", "0", "off", "none", "false", "no"}
_REDACTED = "***"
MESSAGE_SIZE_MARGIN = 1024 * 1024  # broker limit = package limit + this


class SettingsError(LienthongError, ValueError):
    """One or more environment variables are unusable; ``problems`` names each of them."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(Reason.SETTING_INVALID, "; ".join(self.problems))

    def explain(self) -> str:
        """The message printed at startup: one line per bad variable, in both languages."""
        lines = [
            f"lienthong: {Reason.SETTING_INVALID.message_vi} / "
            f"{Reason.SETTING_INVALID.message_en} ({Reason.SETTING_INVALID.name}, "
            f"{Reason.SETTING_INVALID.code}):"
        ]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


def _var(
    name: str,
    default: Any,
    help: str,
    *,
    kind: str = "str",
    low: float | None = None,
    high: float | None = None,
    redact: str | None = None,
) -> Any:
    """A Settings field read from ``name``. ``kind``: str, int, float, level, port (an int
    or off), path (a string or unset). ``redact``: "url" (its password hidden) or "all"
    (the whole value hidden)."""
    meta = {"env": name, "help": help, "kind": kind, "low": low, "high": high,
            "redact": redact}
    return field(default=default, metadata=meta)


def _int(raw: str) -> int:
    text = raw.strip().replace("_", "")
    try:
        return int(text)
    except ValueError:
        raise ValueError("not an integer") from None


def _float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _level(raw: str) -> str:
    level = raw.strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ValueError(f"not a log level (one of {', '.join(LOG_LEVELS)})")
    return level


def _port(raw: str) -> int | None:
    if raw.strip().lower() in _OFF:
        return None
    return _int(raw)


def _text(raw: str) -> str:
    return raw.strip()


def _path(raw: str) -> str | None:
    return raw.strip() or None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": _text, "int": _int, "float": _float, "level": _level, "port": _port, "path": _path,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a lienthong process reads from its environment."""

    # the services
    amqp_url: str = _var(
        "LIENTHONG_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/lienthong",
        "the hub's AMQP connection; its path is the vhost", redact="url")
    database_url: str = _var(
        "LIENTHONG_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/lienthong",
        "the ledger", redact="url")
    management_url: str = _var(
        "LIENTHONG_MANAGEMENT_URL", "http://guest:guest@127.0.0.1:15672",
        "RabbitMQ management API (users, permissions, queue health)", redact="url")
    # what a package may be
    max_package_bytes: int = _var(
        "LIENTHONG_MAX_PACKAGE_BYTES", 30 * 1024 * 1024,
        "larger packages are refused before parsing (`PACKAGE_TOO_LARGE`); 1 KiB to 512 MiB",
        kind="int", low=1024, high=512 * 1024 * 1024)
    large_threshold_bytes: int = _var(
        "LIENTHONG_LARGE_THRESHOLD_BYTES", 16 * 1024 * 1024,
        "`lienthong send`, `lienthong watch` and `lienthong vxp serve` send a larger file "
        "as a large package (chunked upload, claim check); at most "
        "`LIENTHONG_MAX_PACKAGE_BYTES`",
        kind="int", low=1024, high=512 * 1024 * 1024)
    max_large_package_bytes: int = _var(
        "LIENTHONG_MAX_LARGE_PACKAGE_BYTES", 2 * 1024**3,
        "a large package declared or found larger is refused (`PACKAGE_TOO_LARGE`); "
        "1 MiB to 16 GiB",
        kind="int", low=1024 * 1024, high=16 * 1024**3)
    chunk_bytes: int = _var(
        "LIENTHONG_CHUNK_BYTES", 4 * 1024 * 1024,
        "chunk size of large packages: no AMQP message of an upload or a fetch is larger "
        "(plus headers); 64 KiB to 16 MiB, at most `LIENTHONG_MAX_PACKAGE_BYTES`",
        kind="int", low=64 * 1024, high=16 * 1024 * 1024)
    upload_expiry_minutes: float = _var(
        "LIENTHONG_UPLOAD_EXPIRY_MINUTES", 1440.0,
        "an upload not claimed this long after it was opened is removed, with an "
        "`UPLOAD_EXPIRED` receipt to the sender; more than 0",
        kind="float", low=0.01, high=525_600)
    max_recipients: int = _var(
        "LIENTHONG_MAX_RECIPIENTS", 500, "`TOO_MANY_RECIPIENTS` above; 1 to 100000",
        kind="int", low=1, high=100_000)
    max_attachments: int = _var(
        "LIENTHONG_MAX_ATTACHMENTS", 100, "`TOO_MANY_ATTACHMENTS` above; 0 to 10000",
        kind="int", low=0, high=10_000)
    # routing
    batch_size: int = _var(
        "LIENTHONG_BATCH_SIZE", 200, "packages per router batch; 1 to 10000",
        kind="int", low=1, high=10_000)
    batch_wait_ms: int = _var(
        "LIENTHONG_BATCH_WAIT_MS", 20,
        "under load, how long a batch waits to fill; 0 to 60000", kind="int", low=0, high=60_000)
    delivery_limit: int = _var(
        "LIENTHONG_DELIVERY_LIMIT", 20,
        "deliveries of one message to routers before RabbitMQ parks it (a policy: "
        "`topology apply` changes it on the live queue); 1 to 1000",
        kind="int", low=1, high=1000)
    sweep_seconds: int = _var(
        "LIENTHONG_SWEEP_SECONDS", 30,
        "how often each router sweeps deadlines (0: off); up to 86400",
        kind="int", low=0, high=86_400)
    not_arrived_minutes: float = _var(
        "LIENTHONG_NOT_ARRIVED_MINUTES", 15.0,
        'a queued delivery without 01 after this is "not arrived"; more than 0',
        kind="float", low=0.001, high=525_600)
    amqp_user_prefix: str = _var(
        "LIENTHONG_AMQP_USER_PREFIX", "", "prefix of gateways' AMQP user names (tests use it)")
    batch_max_bytes: int = _var(
        "LIENTHONG_BATCH_MAX_BYTES", 64 * 1024 * 1024,
        "package bytes per router batch (a larger package goes alone); 1 MiB to 4 GiB",
        kind="int", low=1024 * 1024, high=4 * 1024**3)
    inflight_max_bytes: int = _var(
        "LIENTHONG_INFLIGHT_MAX_BYTES", 2 * 1024**3,
        "bytes a router may hold unacknowledged: its prefetch on each intake queue is this "
        "divided by the broker's maximum message size (at least 2, at most 2 x batch size), "
        "and it stops taking from every intake queue while it holds more than this; it holds "
        "at most this plus what the queues had already sent when it stopped (at most one "
        "prefetch per queue with messages waiting); 1 MiB to 64 GiB",
        kind="int", low=1024 * 1024, high=64 * 1024**3)
    intake_refresh_seconds: float = _var(
        "LIENTHONG_INTAKE_REFRESH_SECONDS", 10.0,
        "how often a router starts consuming gateways' new intake queues and one router "
        "reconciles their bindings with the directory; 0.1 to 3600",
        kind="float", low=0.1, high=3600)
    receipts_max_length: int = _var(
        "LIENTHONG_RECEIPTS_MAX_LENGTH", 10_000,
        "a gateway's receipts queue keeps at most this many receipts (policy "
        "`lt-gateway-receipts`, oldest dropped; gateways replay from the ledger)",
        kind="int", low=1, high=10**8)
    receipts_max_bytes: int = _var(
        "LIENTHONG_RECEIPTS_MAX_BYTES", 16 * 1024 * 1024,
        "a gateway's receipts queue keeps at most this many bytes (same policy)",
        kind="int", low=1024, high=64 * 1024**3)
    # logs and metrics
    log_level: str = _var(
        "LIENTHONG_LOG_LEVEL", "INFO",
        "structlog JSON lines on stdout: DEBUG, INFO, WARNING, ERROR or CRITICAL (anything "
        "else is refused)", kind="level")
    health_port: int | None = _var(
        "LIENTHONG_HEALTH_PORT", None,
        "routers serve /healthz and /readyz (liveness, readiness): worker i of "
        "`lienthong router -n N` on port + i; `off` or unset: none", kind="port", low=1,
        high=65_535)
    metrics_port: int | None = _var(
        "LIENTHONG_METRICS_PORT", None,
        "routers serve Prometheus metrics: `lienthong router -n N` gives worker i (0..N-1) "
        "port + i; `off` or unset: none", kind="port", low=1, high=65_535)
    # security
    hub_key: str | None = _var(
        "LIENTHONG_HUB_KEY", None,
        "Ed25519 key file for signing receipts (`lienthong receipt keygen`); unset: unsigned, "
        "with a warning", kind="path")
    tls_ca: str | None = _var(
        "LIENTHONG_TLS_CA", None, "CA file that verifies RabbitMQ (use an `amqps://` URL)",
        kind="path")
    tls_cert: str | None = _var(
        "LIENTHONG_TLS_CERT", None, "client certificate for mutual TLS to RabbitMQ",
        kind="path")
    tls_key: str | None = _var(
        "LIENTHONG_TLS_KEY", None, "the client certificate's private key", kind="path")
    certificate_warn_days: float = _var(
        "LIENTHONG_CERT_WARN_DAYS", 30.0,
        "a package signed with a certificate that expires within this many days is accepted "
        "with the warning `CERTIFICATE_EXPIRING_SOON`; 0 to 3650",
        kind="float", low=0, high=3650)
    audit_anchor_seconds: float = _var(
        "LIENTHONG_AUDIT_ANCHOR_SECONDS", 300.0,
        "how often the routers sign the audit head and send it to every gateway (0: off; "
        "needs `LIENTHONG_HUB_KEY`); up to 86400",
        kind="float", low=0, high=86_400)
    # the ops service
    ops_tokens: str = _var(
        "LIENTHONG_OPS_TOKENS", "",
        "ops API tokens `name:role:token,…` (role `read` or `operator`)", redact="all")
    ops_tokens_file: str | None = _var(
        "LIENTHONG_OPS_TOKENS_FILE", None, "a file of ops API tokens, one entry a line",
        kind="path")
    ops_host: str = _var("LIENTHONG_OPS_HOST", "127.0.0.1", "where `lienthong ops` listens")
    ops_port: int = _var(
        "LIENTHONG_OPS_PORT", 8080, "the port `lienthong ops` listens on",
        kind="int", low=1, high=65_535)
    ops_backlog: int = _var(
        "LIENTHONG_OPS_BACKLOG", 1000, "gateway health: inbox backlog that is too much",
        kind="int", low=1, high=10**9)
    ops_stale_seconds: float = _var(
        "LIENTHONG_OPS_STALE_SECONDS", 900.0,
        "gateway health: age of the oldest waiting package that is too old",
        kind="float", low=1, high=10**7)
    ops_router_in_growing_min: int = _var(
        "LIENTHONG_OPS_ROUTER_IN_GROWING_MIN", 100,
        "the overview calls lt.router.in growing when it holds at least this many messages",
        kind="int", low=1, high=10**9)
    ops_router_in_growing_seconds: float = _var(
        "LIENTHONG_OPS_ROUTER_IN_GROWING_SECONDS", 60.0,
        "... and more than it did this many seconds ago", kind="float", low=1, high=86_400)
    # gateway-side doors: the current axis's HTTP API (adapters/vxp)
    vxp_database_url: str = _var(
        "LIENTHONG_VXP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/lienthong_vxp",
        "the VXP façade's own database (systems, mailbox); created on first use", redact="url")
    vxp_secret_key: str = _var(
        "LIENTHONG_VXP_SECRET_KEY", "",
        "Fernet key encrypting system secrets and gateway AMQP URLs (`lienthong vxp new-key`)",
        redact="all")
    vxp_host: str = _var("LIENTHONG_VXP_HOST", "127.0.0.1", "where `lienthong vxp serve` listens")
    vxp_port: int = _var("LIENTHONG_VXP_PORT", 8090, "its port", kind="int", low=1, high=65535)
    vxp_timestamp_window_seconds: int = _var(
        "LIENTHONG_VXP_TIMESTAMP_WINDOW_SECONDS", 300,
        "strict-mode systems: timestamp freshness and replay window",
        kind="int", low=1, high=86_400)
    vxp_state_dir: str | None = _var(
        "LIENTHONG_VXP_STATE_DIR", None,
        "folder of the façade's directory mirror (`directory.sqlite`) and of its spool "
        "(`spool/`: large `sendEdoc` bodies and downloads on their way, emptied at start); "
        "unset: the mirror is kept in memory, fetched whole again after a restart, and the "
        "spool is the system's temporary folder", kind="path")
    # tools
    samples: str | None = _var(
        "LIENTHONG_SAMPLES", None,
        "the shared edXML samples (demo, tests, bench); unset: `../shared/edxml-samples`",
        kind="path")
    bench_log_level: str = _var(
        "LIENTHONG_BENCH_LOG_LEVEL", "WARNING", "log level of the routers `make bench` starts",
        kind="level")
    # which fields came from the environment (for `lienthong config show`)
    from_environment: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable; raise :class:`SettingsError` naming each bad one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in variables():
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or not raw.strip():  # empty: as if unset
                continue
            try:
                values[f.name] = _convert(f, raw)
            except ValueError as exc:
                shown = _REDACTED if f.metadata["redact"] else raw  # never echo a secret
                problems.append(f"{name}={shown!r}: {exc}")
        if problems:
            raise SettingsError(problems)
        settings = cls(**values, from_environment=frozenset(values))
        settings.check()
        return settings

    def check(self) -> None:
        """Rules across variables."""
        problems = []
        if self.large_threshold_bytes > self.max_package_bytes:
            problems.append("LIENTHONG_LARGE_THRESHOLD_BYTES is larger than "
                            "LIENTHONG_MAX_PACKAGE_BYTES")
        if self.chunk_bytes > self.max_package_bytes:
            problems.append("LIENTHONG_CHUNK_BYTES is larger than LIENTHONG_MAX_PACKAGE_BYTES")
        if self.tls_key and not self.tls_cert:
            problems.append("LIENTHONG_TLS_KEY is set without LIENTHONG_TLS_CERT")
        for f in variables():
            is_url = f.metadata["redact"] == "url"
            if is_url and not urlsplit(getattr(self, f.name)).scheme:
                problems.append(f"{f.metadata['env']}: not a URL (no scheme)")
        if problems:
            raise SettingsError(problems)

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

    def source(self, name: str) -> str:
        """``env`` when the field ``name`` came from the environment, else ``default``."""
        return "env" if name in self.from_environment else "default"

    def metrics_port_of(self, worker: int, workers: int) -> int | None:
        """The metrics port of worker ``worker`` (0-based) of ``workers``: port + worker.
        Raises SettingsError when the last one would not be a port."""
        if self.metrics_port is None:
            return None
        if self.metrics_port + workers - 1 > 65_535:
            raise SettingsError([
                f"LIENTHONG_METRICS_PORT={self.metrics_port}: {workers} workers need ports "
                f"{self.metrics_port}..{self.metrics_port + workers - 1}, above 65535"])
        return self.metrics_port + worker

    def effective(self) -> list[dict[str, Any]]:
        """One row per variable: name, value (secrets redacted), source, meaning."""
        rows = []
        for f in variables():
            value = getattr(self, f.name)
            redact = f.metadata["redact"]
            if redact == "url" and isinstance(value, str):
                value = redact_url(value)
            elif redact == "all" and value:
                value = _REDACTED
            rows.append({"variable": f.metadata["env"], "value": value,
                         "source": self.source(f.name), "meaning": f.metadata["help"]})
        return rows

    @property
    def samples_dir(self) -> Path:
        """``LIENTHONG_SAMPLES``, else ``shared/edxml-samples`` beside the repository."""
        if self.samples:
            return Path(self.samples)
        return Path(__file__).resolve().parents[2] / "shared" / "edxml-samples"

    @property
    def vhost(self) -> str:
        path = urlsplit(self.amqp_url).path
        return unquote(path[1:]) if len(path) > 1 else "/"


def variables() -> list[dataclasses.Field[Any]]:
    """The Settings fields read from the environment, in table order."""
    return [f for f in dataclasses.fields(Settings) if "env" in f.metadata]


def _convert(f: dataclasses.Field[Any], raw: str) -> Any:
    meta = f.metadata
    value = _PARSERS[meta["kind"]](raw)
    if isinstance(value, int | float) and not isinstance(value, bool):
        low, high = meta["low"], meta["high"]
        if low is not None and value < low:
            raise ValueError(f"must be at least {low:g}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high:g}")
    return value


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (the user name stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:{_REDACTED}@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``LIENTHONG_*`` variables set but not read by lienthong (a typo, or a retired one):
    reported, never silently ignored."""
    env = os.environ if environ is None else environ
    known = {f.metadata["env"] for f in variables()}
    return sorted(n for n in env if n.startswith("LIENTHONG_") and n not in known)


def named_secret(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A variable whose name the operator gives on the command line (e.g. ``package sign
    --password-env VAR``): its value, or None when unset or empty."""
    env = os.environ if environ is None else environ
    return env.get(name) or None


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """The environment of a process lienthong starts (a router worker, a bench relay): this
    process's, with ``overrides``."""
    env = dict(os.environ)
    env.update(overrides)
    return env
