"""Connections the commands open: the ledger pool and the management API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import click

from router.broker_admin import BrokerAdminError
from router.settings import Settings

__all__ = ["connect_db", "fail", "run_async"]

T = TypeVar("T")


def fail(message: str, code: int = 1) -> None:
    click.echo(f"lienthong: {message}", err=True)
    raise SystemExit(code)


async def connect_db(settings: Settings) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(settings.database_url)
    except (OSError, asyncpg.PostgresError) as exc:
        fail(
            f"cannot reach PostgreSQL at {settings.database_url} ({exc}).\n"
            "  Is it running? `make setup` starts it; set LIENTHONG_DATABASE_URL otherwise."
        )
        raise
    return conn


def run_async(fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = Settings.from_env()
    try:
        return asyncio.run(fn(settings))
    except BrokerAdminError as exc:
        fail(f"RabbitMQ management API: {exc}")
        raise


