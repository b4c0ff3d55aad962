"""Logs are JSON lines: tracebacks kept, the libraries' stdlib loggers included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from router.logs import configure_logging

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import logging, structlog
from router.logs import configure_logging
configure_logging("INFO")
log = structlog.get_logger()
try:
    1 / 0
except ZeroDivisionError:
    log.exception("router.batch_failed", size=3)
logging.getLogger("aiormq.connection").warning("Connection lost %s", "127.0.0.1:5672")
logging.getLogger("asyncpg.pool").debug("hidden below INFO")
try:
    {}["missing"]
except KeyError:
    logging.getLogger("aiohttp.server").exception("Error handling request")
logging.getLogger("aio_pika.robust_connection").info("reconnecting")
"""


def _lines() -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stderr == ""
    return [json.loads(line) for line in done.stdout.splitlines()]  # every line is JSON


def test_log_exception_keeps_the_traceback() -> None:
    first = _lines()[0]
    assert first["event"] == "router.batch_failed" and first["level"] == "error"
    assert "Traceback (most recent call last)" in first["exception"]
    assert "ZeroDivisionError: division by zero" in first["exception"]
    assert "exc_info" not in first


def test_library_loggers_come_out_as_json() -> None:
    lines = _lines()[1:]
    assert [(x["logger"], x["level"]) for x in lines] == [
        ("aiormq.connection", "warning"),
        ("aiohttp.server", "error"),
        ("aio_pika.robust_connection", "info"),
    ]
    assert lines[0]["event"] == "Connection lost 127.0.0.1:5672"
    assert "KeyError: 'missing'" in lines[1]["exception"]
    assert all("timestamp" in x for x in lines)


def test_an_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose")
