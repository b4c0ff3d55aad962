"""Shared test configuration: where the shared edXML samples live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults import Faults
from tests.faults import install as install_faults

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("LIENTHONG_SAMPLES", REPO.parent / "shared" / "edxml-samples"))


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.fail(f"the shared edXML samples are missing at {SAMPLES} (set LIENTHONG_SAMPLES)")
    return SAMPLES


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    """Fault injection in this test's in-process routers (see tests/faults.py)."""
    return install_faults(monkeypatch.setattr)


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()
