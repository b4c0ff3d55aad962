"""The CLI's catch-all names the real failure: a missing file, a refused login, an
unreachable host and a missing database each get their own bilingual message and exit code
(against the real RabbitMQ and PostgreSQL)."""

from __future__ import annotations

import uuid

import aio_pika
import aiormq.exceptions
import pytest
from click.testing import CliRunner

from router.broker_admin import BrokerAdmin, BrokerAdminError
from router.cli import main
from router.cli._services import (
    EXIT_DATABASE_MISSING,
    EXIT_LOGIN_REFUSED,
    EXIT_MISSING_FILE,
    EXIT_UNREACHABLE,
    explain,
)
from tests.hub import require_services

CATCH_ALL = "cannot reach RabbitMQ or PostgreSQL"


@pytest.fixture(autouse=True)
def _services() -> None:
    require_services()


def _db_status(database_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["db", "status"],
                                env={"LIENTHONG_DATABASE_URL": database_url})
    return result.exit_code, result.output


def test_missing_database_is_named() -> None:
    name = f"lienthong_absent_{uuid.uuid4().hex[:8]}"
    code, out = _db_status(f"postgresql://postgres@127.0.0.1:5432/{name}")
    assert code == EXIT_DATABASE_MISSING, out
    assert f'database "{name}" does not exist' in out
    assert "cơ sở dữ liệu không tồn tại" in out
    assert CATCH_ALL not in out


def test_refused_database_login_is_named() -> None:
    code, out = _db_status("postgresql://no_such_role_lienthong@127.0.0.1:5432/postgres")
    assert code == EXIT_LOGIN_REFUSED, out
    assert "PostgreSQL refused the login" in out
    assert "từ chối đăng nhập" in out


def test_unreachable_host_is_named() -> None:
    code, out = _db_status("postgresql://postgres@127.0.0.1:1/lienthong")
    assert code == EXIT_UNREACHABLE, out
    assert "cannot reach" in out
    assert "không kết nối được" in out
    assert "does not exist" not in out


async def test_refused_amqp_login_is_named() -> None:
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError) as info:
        await aio_pika.connect("amqp://guest:wrong-password@127.0.0.1:5672/")
    failure = explain(info.value)
    assert failure is not None
    assert failure.exit_code == EXIT_LOGIN_REFUSED
    assert "RabbitMQ refused the login" in failure.message_en
    assert "RabbitMQ từ chối đăng nhập" in failure.message_vi


async def test_unreachable_amqp_host_is_named() -> None:
    with pytest.raises(aiormq.exceptions.AMQPConnectionError) as info:
        await aio_pika.connect("amqp://guest:guest@127.0.0.1:1/")
    failure = explain(info.value)
    assert failure is not None
    assert failure.exit_code == EXIT_UNREACHABLE
    assert "cannot reach RabbitMQ" in failure.message_en


async def test_refused_management_login_is_named() -> None:
    admin = BrokerAdmin("http://guest:wrong-password@127.0.0.1:15672")
    try:
        with pytest.raises(BrokerAdminError) as info:
            await admin.put_vhost(f"lienthong-absent-{uuid.uuid4().hex[:8]}")
    finally:
        await admin.close()
    failure = explain(info.value)
    assert failure is not None
    assert failure.exit_code == EXIT_LOGIN_REFUSED
    assert "management API refused the login" in failure.message_en


def test_missing_file_is_named_not_a_service() -> None:
    missing = f"/nonexistent-{uuid.uuid4().hex}/edoc_update.derived.edxml"
    with pytest.raises(FileNotFoundError) as info:
        open(missing, "rb")  # noqa: SIM115 - the real error a missing file raises
    failure = explain(info.value)
    assert failure is not None
    assert failure.exit_code == EXIT_MISSING_FILE
    assert missing in failure.message_en and missing in failure.message_vi
    assert "reach" not in failure.message_en
