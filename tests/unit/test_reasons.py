"""The closed set of reason codes: stable, unique, bilingual."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas import LienthongError, PackageRejected, Reason, ValidationWarning, WarningCode
from schemas.reasons import RESERVED, RETIRED_CODES


def test_numeric_codes_are_unique() -> None:
    codes = [r.code for r in Reason]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.name)
def test_every_reason_is_bilingual_and_grouped(reason: Reason) -> None:
    assert reason.message_vi.strip()
    assert reason.message_en.strip()
    assert reason.message_vi != reason.message_en
    assert 1000 <= reason.code < 6000 or 7000 <= reason.code < 8000  # 7xxx: the SDK's own
    assert Reason.from_code(reason.code) is reason


@pytest.mark.parametrize("code", list(WarningCode), ids=lambda w: w.name)
def test_every_warning_is_bilingual(code: WarningCode) -> None:
    assert code.message_vi.strip()
    assert code.message_en.strip()


@pytest.mark.parametrize(
    ("reason", "axis_code"),
    [
        (Reason.EMPTY_PACKAGE, 10),
        (Reason.MALFORMED_XML, 10),
        (Reason.RECIPIENT_UNKNOWN, 18),
        (Reason.SENDER_NOT_REGISTERED, 19),
        (Reason.NOT_EDXML, 22),
        (Reason.MISSING_SENDER, 22),
        (Reason.RECIPIENT_LOCKED, 23),
        (Reason.PROCESSING_ERROR, 21),
    ],
)
def test_axis_codes_of_the_familiar_failures(reason: Reason, axis_code: int) -> None:
    assert reason.axis_code == axis_code
    assert reason.as_dict()["axis_code"] == axis_code


def test_unknown_code() -> None:
    with pytest.raises(KeyError):
        Reason.from_code(9999)


def test_as_dict_shape() -> None:
    d = Reason.DUPLICATE_RECIPIENT.as_dict("G12 twice")
    assert d == {
        "reason": "DUPLICATE_RECIPIENT",
        "code": 1013,
        "message_vi": Reason.DUPLICATE_RECIPIENT.message_vi,
        "message_en": Reason.DUPLICATE_RECIPIENT.message_en,
        "axis_code": 22,
        "detail": "G12 twice",
    }
    assert "detail" not in Reason.DOCUMENT_UNKNOWN.as_dict()
    assert "axis_code" not in Reason.DOCUMENT_UNKNOWN.as_dict()


def test_errors_carry_their_reason() -> None:
    warning = ValidationWarning(WarningCode.DATE_DAY_FIRST, "16/01/2019")
    exc = PackageRejected(Reason.BAD_DATE, "PromulgationDate", warnings=(warning,))
    assert isinstance(exc, LienthongError)
    assert exc.as_dict()["reason"] == "BAD_DATE"
    assert exc.as_dict()["detail"] == "PromulgationDate"
    assert "BAD_DATE (1015)" in str(exc)
    assert exc.warnings[0].as_dict() == {
        "warning": "DATE_DAY_FIRST",
        "message_vi": WarningCode.DATE_DAY_FIRST.message_vi,
        "message_en": WarningCode.DATE_DAY_FIRST.message_en,
        "detail": "16/01/2019",
    }


def test_delivery_failures_are_retried_and_file_failures_are_final() -> None:
    assert not Reason.UNDELIVERABLE.final
    assert not Reason.PROCESSING_ERROR.final
    assert Reason.MALFORMED_XML.final
    assert Reason.NO_RECIPIENT.final


_ROOT = Path(__file__).resolve().parents[2]


def _raised_names() -> set[str]:
    """Every ``Reason.NAME`` the shipped code (router, schemas, adapters) refers to,
    outside the module that defines them."""
    names: set[str] = set()
    for package in ("router", "schemas", "adapters"):
        for path in (_ROOT / package).rglob("*.py"):
            if path == _ROOT / "schemas" / "reasons.py":
                continue
            names.update(re.findall(r"Reason\.([A-Z][A-Z0-9_]+)",
                                    path.read_text(encoding="utf-8")))
    return names


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.name)
def test_every_reason_is_raised_somewhere_or_reserved(reason: Reason) -> None:
    if reason in RESERVED:
        assert RESERVED[reason].strip(), "a reserved reason says why it is kept"
        assert reason.name not in _raised_names(), "raised now: take it off RESERVED"
    else:
        assert reason.name in _raised_names(), (
            f"{reason.name} is raised nowhere: use it, reserve it, or retire its code")


def test_retired_codes_are_never_reused() -> None:
    live = {r.code for r in Reason}
    assert RETIRED_CODES and not live & set(RETIRED_CODES)
    assert not {r.name for r in Reason} & set(RETIRED_CODES.values())
    with pytest.raises(KeyError):
        Reason.from_code(5002)
