"""Parse + validate each own package (tests/packages.py) and generated ~10 KB and ~1 MB documents.

Two groups: ``parse`` (parse_package: XML safety checks, model, every lienthong rule) and
``parse+xsd`` (the same plus validation against the strict-profile XSD).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from schemas import (
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    PromulgationInfo,
    build_package,
    new_attachment,
    parse_package,
)
from schemas.profile import validate_against_xsd
from tests import packages

TODAY = date(2026, 1, 1)


def generated(total_bytes: int) -> bytes:
    """A document with two recipients and a PDF plus a ZIP-wrapped attachment, padded so the
    whole package is about ``total_bytes``."""
    base = EdocPackage(
        sender=Organization("000.00.00.G22", "Văn phòng Chính phủ", email="vpcp@gov.vn"),
        recipients=(
            Organization("000.00.00.H41", "UBND Tỉnh Nghệ An"),
            Organization("000.00.00.H14", "UBND Tỉnh Cao Bằng"),
        ),
        code=Code("7816", "VPCP-TTĐT"),
        promulgation=PromulgationInfo("Hà Nội", date(2025, 10, 13)),
        document_type=DocumentType("1", "0", "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        document_id="000.00.00.G22,2025/10/13,7816/VPCP-TTĐT",
    )
    overhead = len(build_package(base)) + 1200
    raw = max(1, (total_bytes - overhead) * 3 // 4)
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * (raw // 2 // 256 + 1)
    doc = "Nội dung phụ lục. ".encode() * (raw // 2 // 20 + 1)
    attachments = (
        new_attachment("cong-van.pdf", pdf[: raw // 2]),
        new_attachment("phu-luc.doc", doc[: raw // 2], zip_wrap=True),
    )
    return build_package(
        EdocPackage(
            **{
                **{f: getattr(base, f) for f in base.__dataclass_fields__ if f != "kind"},
                "attachments": attachments,
            }
        )
    )


INPUTS: dict[str, bytes] = {name: packages.package(name) for name in packages.ALL}
INPUTS["generated-10KB"] = generated(10 * 1024)
INPUTS["generated-1MB"] = generated(1024 * 1024)


def _parse(data: bytes) -> Any:
    return parse_package(data, today=TODAY)


def _parse_and_xsd(data: bytes) -> Any:
    parsed = parse_package(data, today=TODAY)
    errors = validate_against_xsd(data)
    assert not errors, errors
    return parsed


@pytest.mark.parametrize("name", list(INPUTS))
@pytest.mark.parametrize(
    ("group", "fn"), [("parse", _parse), ("parse+xsd", _parse_and_xsd)], ids=["parse", "xsd"]
)
def test_codec(benchmark: Any, name: str, group: str, fn: Callable[[bytes], Any]) -> None:
    data = INPUTS[name]
    benchmark.group = group
    benchmark.extra_info["bytes"] = len(data)
    result = benchmark(fn, data)
    assert result.package.kind in ("edoc", "status")
