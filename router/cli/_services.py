"""Connections the commands open (the ledger pool, the management API), and what a command
says when one of them, or a file, fails: each kind of failure its own bilingual message and
exit code (``explain``), never one catch-all for another cause."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import aiormq.exceptions
import asyncpg
import click

from router.broker_admin import BrokerAdminError

# sysexits.h codes, re-exported: scripts can tell the causes apart (router.cli.exit_codes)
from router.cli.exit_codes import (
    EXIT_DATABASE_MISSING,
    EXIT_LOGIN_REFUSED,
    EXIT_MISSING_FILE,
    EXIT_UNREACHABLE,
)
from router.settings import Settings

__all__ = [
    "EXIT_DATABASE_MISSING",
    "EXIT_LOGIN_REFUSED",
    "EXIT_MISSING_FILE",
    "EXIT_UNREACHABLE",
    "Failure",
    "connect_db",
    "explain",
    "fail",
    "fail_with",
    "run_async",
]

T = TypeVar("T")

_NETWORK_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
    errno.ECONNRESET, errno.EHOSTDOWN,
})


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, for the person at the terminal (Vietnamese, then English)."""

    message_vi: str
    message_en: str
    exit_code: int

    def text(self) -> str:
        return f"{self.message_vi}\n  {self.message_en}"


def fail(message: str, code: int = 1) -> None:
    click.echo(f"lienthong: {message}", err=True)
    raise SystemExit(code)


def fail_with(failure: Failure) -> None:
    fail(failure.text(), failure.exit_code)


def _safe(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, ""))


def _services(settings: Settings | None) -> str:
    if settings is None:
        return "RabbitMQ / PostgreSQL"
    return (f"RabbitMQ {_safe(settings.amqp_url)}, PostgreSQL {_safe(settings.database_url)}, "
            f"management API {_safe(settings.management_url)}")


def _unreachable(what: str, exc: BaseException) -> Failure:
    return Failure(
        f"không kết nối được tới {what} ({exc}). Dịch vụ có đang chạy không? `make setup` "
        "khởi động chúng.",
        f"cannot reach {what} ({exc}). Is it running? `make setup` starts the local services; "
        "otherwise check LIENTHONG_AMQP_URL, LIENTHONG_DATABASE_URL, LIENTHONG_MANAGEMENT_URL.",
        EXIT_UNREACHABLE,
    )


def explain(exc: BaseException, settings: Settings | None = None) -> Failure | None:
    """The failure ``exc`` stands for, or None when it is none of the known kinds."""
    # a file that is not there (or cannot be read): name the file, not a service
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)) and (
        exc.filename is not None
    ):
        return Failure(
            f"không đọc được tệp {exc.filename}: {exc.strerror}",
            f"cannot read the file {exc.filename}: {exc.strerror}",
            EXIT_MISSING_FILE,
        )
    # refused logins
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        where = _safe(settings.amqp_url) if settings else "RabbitMQ"
        return Failure(
            f"RabbitMQ từ chối đăng nhập ({where}): sai tên hoặc mật khẩu ({exc})",
            f"RabbitMQ refused the login ({where}): wrong user or password ({exc}); "
            "check LIENTHONG_AMQP_URL",
            EXIT_LOGIN_REFUSED,
        )
    if isinstance(exc, (asyncpg.InvalidPasswordError,
                        asyncpg.InvalidAuthorizationSpecificationError)):
        where = _safe(settings.database_url) if settings else "PostgreSQL"
        return Failure(
            f"PostgreSQL từ chối đăng nhập ({where}): {exc}",
            f"PostgreSQL refused the login ({where}): {exc}; check LIENTHONG_DATABASE_URL",
            EXIT_LOGIN_REFUSED,
        )
    if isinstance(exc, BrokerAdminError) and exc.status == 401:
        where = _safe(settings.management_url) if settings else "the management API"
        return Failure(
            f"API quản trị RabbitMQ từ chối đăng nhập ({where}): {exc}",
            f"the RabbitMQ management API refused the login ({where}): {exc}; "
            "check LIENTHONG_MANAGEMENT_URL",
            EXIT_LOGIN_REFUSED,
        )
    # a database that does not exist
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        where = _safe(settings.database_url) if settings else "PostgreSQL"
        return Failure(
            f"cơ sở dữ liệu không tồn tại ({where}): {exc}. Tạo nó bằng `createdb`, rồi "
            "`lienthong db migrate`",
            f"the database does not exist ({where}): {exc}. Create it (`createdb`), then run "
            "`lienthong db migrate`",
            EXIT_DATABASE_MISSING,
        )
    # unreachable hosts, per service
    if isinstance(exc, BrokerAdminError) and exc.status == 0 and isinstance(
        exc.__cause__, OSError
    ):
        where = _safe(settings.management_url) if settings else ""
        return _unreachable(f"the RabbitMQ management API {where}".strip(), exc.__cause__)
    if isinstance(exc, aiormq.exceptions.AMQPConnectionError):
        return _unreachable(f"RabbitMQ {_safe(settings.amqp_url) if settings else ''}".strip(),
                            exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = _safe(settings.management_url) if settings else ""
        return _unreachable(f"the RabbitMQ management API {where}".strip(), exc)
    if isinstance(exc, socket.gaierror):
        return _unreachable(f"a host whose name does not resolve ({_services(settings)})", exc)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return _unreachable(f"a service in time ({_services(settings)})", exc)
    if isinstance(exc, OSError) and (
        exc.errno in _NETWORK_ERRNOS or isinstance(exc, ConnectionError)
        or str(exc).startswith("Multiple exceptions")
    ):
        return _unreachable(_services(settings), exc)
    return None


async def connect_db(settings: Settings) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        failure = explain(exc, settings)
        if failure is None:
            raise
        fail_with(failure)
        raise
    return conn


def run_async(fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = Settings.from_env()
    try:
        return asyncio.run(fn(settings))
    except BrokerAdminError as exc:
        failure = explain(exc, settings)
        if failure is not None:
            fail_with(failure)
        fail(f"RabbitMQ management API: {exc}")
        raise
    except (OSError, asyncpg.PostgresError, aiormq.exceptions.AMQPError) as exc:
        failure = explain(exc, settings)
        if failure is None:
            raise
        fail_with(failure)
        raise
