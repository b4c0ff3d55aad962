"""Codec micro-benchmarks (pytest-benchmark). Not part of the default test run.

Run with ``.venv/bin/pytest tests/bench --benchmark-only`` (the Makefile's ``bench-codec``).
The tests here are collected only when this directory is named on the command line or
``--benchmark-only`` is given, so a plain ``pytest`` does not run them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def _named_explicitly(config: pytest.Config) -> bool:
    base = Path(config.invocation_params.dir)
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        target = (base / arg.split("::", 1)[0]).resolve()
        if target == _HERE or _HERE in target.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == Path(__file__):
        return None
    if config.getoption("benchmark_only", default=False) or _named_explicitly(config):
        return None
    return True
