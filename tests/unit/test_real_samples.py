"""The project checked against the real reference packages (``../shared/edxml-samples``):
the SDK examples of the national axis and a package a gateway downloaded from production.

These run whenever the packages are present, are mandatory under ``CI=true``, and are skipped
with the reason on a clone without them (tests/conftest.py ``real_samples``). Everything else
in the suite stands on the project's own packages (tests/packages.py).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import pytest

from schemas import (
    BusinessDocType,
    EdocPackage,
    StatusCode,
    StatusPackage,
    WarningCode,
    build_package,
    parse_package,
)
from schemas.agency_code import AgencyCode, CodeForm, parse_document_id
from schemas.profile import validate_against_xsd
from tests.conftest import REAL_SAMPLE_NAMES, real_sample

TODAY = date(2026, 1, 1)
NEW = "edoc_new.derived.edxml"
REAL = "real_vdxp_received_2025-10-13.derived.edxml"
BUSINESS_TYPES = {
    "edoc_new.derived.edxml": BusinessDocType.NEW,
    "edoc_revocation.derived.edxml": BusinessDocType.REVOKE,
    "edoc_update.derived.edxml": BusinessDocType.UPDATE,
    "edoc_replacement.derived.edxml": BusinessDocType.REPLACE,
    REAL: BusinessDocType.NEW,
}
STATUS_CODES = {
    "status_inbox_01.edxml": StatusCode.ARRIVED,
    "status_rejection_02.edxml": StatusCode.REFUSED,
    "status_acceptance_03.edxml": StatusCode.ACCEPTED,
    "status_finish_06.edxml": StatusCode.DONE,
    "status_cancellation_13.edxml": StatusCode.RECALL_REQUESTED,
}


def test_the_ten_reference_packages_are_there(real_samples: Path) -> None:
    assert sorted(p.name for p in real_samples.glob("*.edxml")) == list(REAL_SAMPLE_NAMES)


@pytest.mark.parametrize("name", REAL_SAMPLE_NAMES)
def test_every_reference_package_parses_and_is_xsd_valid(real_samples: Path, name: str) -> None:
    data = real_sample(real_samples, name)
    p = parse_package(data, today=TODAY).package
    if isinstance(p, StatusPackage):
        assert p.status_code is STATUS_CODES[name]
    else:
        assert isinstance(p, EdocPackage)
        assert p.business_type is BUSINESS_TYPES[name]
    assert validate_against_xsd(data) == []


@pytest.mark.parametrize("name", REAL_SAMPLE_NAMES)
def test_lf_line_endings_give_the_same_package(real_samples: Path, name: str) -> None:
    data = real_sample(real_samples, name)
    assert b"\r\n" in data
    lf = data.replace(b"\r\n", b"\n")
    assert parse_package(lf, today=TODAY).package == parse_package(data, today=TODAY).package


@pytest.mark.parametrize("name", REAL_SAMPLE_NAMES)
def test_reference_packages_rebuild_to_the_same_model(real_samples: Path, name: str) -> None:
    original = parse_package(real_sample(real_samples, name), today=TODAY).package
    rebuilt = build_package(original)
    assert parse_package(rebuilt, today=TODAY).package == original
    assert validate_against_xsd(rebuilt) == []


def test_sdk_placeholder_signature_is_not_a_signature(real_samples: Path) -> None:
    result = parse_package(real_sample(real_samples, NEW), today=TODAY)
    assert result.package.has_signature is False
    codes = {w.code for w in result.warnings}
    assert WarningCode.PLACEHOLDER_SIGNATURE in codes
    assert WarningCode.DOCUMENT_ID_SENDER_MISMATCH in codes
    p = result.package
    assert isinstance(p, EdocPackage)
    assert [r.organ_id for r in p.recipients] == ["28.22.H17"]


def test_real_production_package(real_samples: Path) -> None:
    result = parse_package(real_sample(real_samples, REAL), today=TODAY)
    p = result.package
    assert isinstance(p, EdocPackage)
    assert p.sender.organ_id == "020100107370"
    assert [r.organ_id for r in p.recipients] == ["G12", "000.00.00.G12"]
    assert p.document_type.type == "71"
    assert [t.organ_id for t in p.trace_headers] == ["020100107370", None, "02.29.W00"]
    assert p.trace_headers[2].timestamp == datetime(2025, 10, 13, 10, 40, 4)
    assert p.has_signature is False
    pdf, doc = p.attachments
    assert not pdf.zip_wrapped
    assert pdf.data.startswith(b"%PDF-")
    assert doc.zip_wrapped
    assert doc.file_name == "6616e890-1ad5-4696-8af5-f045919b1d7a.doc"
    codes = {w.code for w in result.warnings}
    assert codes == {WarningCode.DUPLICATE_RECIPIENT_ALIAS, WarningCode.TRACE_HEADER_WITHOUT_ORGAN}


def test_every_reference_document_id_and_organ_id_parses(real_samples: Path) -> None:
    ids: list[str] = []
    organs: set[str] = set()
    for name in REAL_SAMPLE_NAMES:
        text = real_sample(real_samples, name).decode()
        ids += re.findall(r"<edXML:DocumentId>([^<]+)</edXML:DocumentId>", text)
        organs |= set(re.findall(r"<edXML:OrganId>([^<]+)</edXML:OrganId>", text))
    assert len(ids) >= 10
    for text in ids:
        parts = parse_document_id(text)
        assert parts is not None, text
        assert AgencyCode.parse(parts.organ_id).text == parts.organ_id
    assert {"28.22.H17", "G12", "020100107370", "02.29.W00", "000.00.00.A80"} <= organs
    for text in organs:
        assert AgencyCode.parse(text).form is not CodeForm.OTHER, text
