"""Shared test configuration: where the real edXML reference packages live.

The suite stands on its own packages (tests/packages.py). The tests that check the real
packages (``../shared/edxml-samples`` beside the clone, or ``LIENTHONG_SAMPLES``) ask for the
``real_samples`` fixture: they run whenever the packages are present, fail under ``CI=true``
when they are absent, and are skipped, saying why, on a clone without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults import Faults
from tests.faults import install as install_faults

REPO = Path(__file__).resolve().parents[1]
SAMPLES = Path(os.environ.get("LIENTHONG_SAMPLES", REPO.parent / "shared" / "edxml-samples"))

# The ten reference packages (see INDEX.md beside them).
REAL_SAMPLE_NAMES = (
    "edoc_new.derived.edxml",
    "edoc_replacement.derived.edxml",
    "edoc_revocation.derived.edxml",
    "edoc_update.derived.edxml",
    "real_vdxp_received_2025-10-13.derived.edxml",
    "status_acceptance_03.edxml",
    "status_cancellation_13.edxml",
    "status_finish_06.edxml",
    "status_inbox_01.edxml",
    "status_rejection_02.edxml",
)


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """The folder of the real reference packages; skipped (failed under CI=true) without it."""
    if SAMPLES.is_dir():
        return SAMPLES
    message = (f"the real edXML reference packages are not at {SAMPLES} (a clone without "
               "../shared/edxml-samples; set LIENTHONG_SAMPLES to check against them)")
    if _ci():
        pytest.fail(f"{message}; they are mandatory under CI=true")
    pytest.skip(message)


def real_sample(folder: Path, name: str) -> bytes:
    return (folder / name).read_bytes()


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    """Fault injection in this test's in-process routers (see tests/faults.py)."""
    return install_faults(monkeypatch.setattr)
