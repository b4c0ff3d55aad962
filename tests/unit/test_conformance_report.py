"""The conformance report and the sandbox's revocation: pure logic, no services."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.conformance import CHECKS, Check, ConformanceReport, _documents
from router.sandbox import _revocation
from schemas import BusinessDocType, EdocPackage, build_package, parse_package
from tests.factory import edoc


def _report(*passed: bool) -> ConformanceReport:
    r = ConformanceReport("gw-a", "000.00.00.G22", "conformance", "lienthong-sandbox-dev",
                          datetime(2026, 12, 1, 1, 0, tzinfo=UTC),
                          datetime(2026, 12, 1, 1, 1, tzinfo=UTC))
    r.checks = [Check(name, ok, [f"evidence of {name}"])
                for name, ok in zip(CHECKS, passed, strict=False)]
    return r


def test_a_report_passes_only_when_every_check_passes() -> None:
    assert _report(True, True, True, True, True).passed
    failing = _report(True, False, True, False, True)
    assert not failing.passed
    assert failing.failed() == ["answers-01", "legal-transitions"]
    assert not ConformanceReport("g", "a", "c", "v", datetime.now(UTC)).passed  # no checks


def test_the_report_shows_each_check_with_its_evidence_in_both_languages() -> None:
    text = _report(True, False, True, True, True).render()
    assert "[PASS] acks-every-copy" in text and "[FAIL] answers-01" in text
    assert "Trả lời 01 (đã đến) trong thời hạn / answers 01 (arrived) within the limit" in text
    assert "    evidence of answers-01" in text
    assert text.rstrip().endswith("KHÔNG ĐẠT / FAILED: answers-01")
    data = json.loads(_report(True, True, True, True, True).to_json())
    assert data["passed"] is True and len(data["checks"]) == 5
    assert data["checks"][1]["title_en"] == "answers 01 (arrived) within the limit"


def test_the_scenario_documents_cover_every_business_type_and_are_valid() -> None:
    docs = _documents("000.00.00.A80", "000.00.00.G22", "abcdef12")
    kinds = [pkg.business_type for _, pkg in docs]
    assert set(kinds) == set(BusinessDocType)
    for _, pkg in docs:
        parsed = parse_package(build_package(pkg)).package
        assert isinstance(parsed, EdocPackage)
    # the update, the replacement and the revocation point at documents sent before them
    ids = [pkg.document_id for _, pkg in docs]
    for _, pkg in docs[3:]:
        assert set(pkg.target_document_ids) <= set(ids[: ids.index(pkg.document_id)])
        assert pkg.target_document_ids


def test_the_sandbox_revokes_the_original_document() -> None:
    original, _ = edoc("000.00.00.G22", ["000.00.00.H41"])
    revoke = _revocation(original)
    parsed = parse_package(build_package(revoke)).package
    assert isinstance(parsed, EdocPackage)
    assert parsed.business_type is BusinessDocType.REVOKE
    assert parsed.target_document_ids == (original.document_id,)
    assert parsed.document_id != original.document_id


@pytest.mark.parametrize("name", ["Dev", "a-b", "", "x" * 40])
async def test_a_sandbox_name_must_fit_a_vhost_and_a_database(name: str, tmp_path: Path) -> None:
    from router.sandbox import sandbox_up
    from router.settings import Settings
    from schemas.reasons import OperationRefused, Reason

    with pytest.raises(OperationRefused) as refused:
        await sandbox_up(Settings(), name, tmp_path)
    assert refused.value.reason is Reason.SETTING_INVALID
