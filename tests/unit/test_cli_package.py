"""``lienthong package inspect`` and ``lienthong package build``."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli import main
from schemas import EdocPackage, StatusPackage, parse_package
from tests import packages


@pytest.fixture
def real(tmp_path: Path) -> Path:
    """The production-shaped own package, as a file."""
    path = tmp_path / "enterprise-alias.edxml"
    path.write_bytes(packages.package(packages.REAL))
    return path

EXAMPLE_SPEC = {
    "kind": "edoc",
    "from": {"organ_id": "000.00.00.G22", "organ_name": "Văn phòng Chính phủ"},
    "to": [
        {"organ_id": "000.00.00.H41", "organ_name": "UBND Tỉnh Nghệ An"},
        "000.00.00.H14",
    ],
    "code": {"number": "7816", "notation": "VPCP-TTĐT"},
    "promulgation_date": "2025/10/13",
    "place": "Hà Nội",
    "document_type": {"type": "1", "type_detail": "0", "type_name": "Công văn"},
    "subject": "V/v kết nối, liên thông phần mềm quản lý văn bản",
    "signer": {"position": "Chủ nhiệm", "full_name": "Trần Văn Sơn"},
    "due_date": "2025-11-01",
    "other_info": {"priority": 1, "page_amount": 2, "appendixes": ["Phụ lục I"]},
    "business": {"type": "new", "reason": "Văn bản điện tử mới", "paper": "0"},
    "trace_headers": [{"organ_id": "000.00.00.G22", "timestamp": "2025/10/13 10:25:18"}],
    "attachments": [
        {"path": "files/cong-van.pdf", "description": "Văn bản chính"},
        {"path": "files/phu-luc.doc", "zip": True, "content_id": "phu-luc-1"},
        {"name": "ghi-chu.txt", "data_base64": base64.b64encode(b"ghi chu").decode()},
    ],
}

STATUS_SPEC = {
    "kind": "status",
    "from": {"organ_id": "000.00.00.H41", "organ_name": "UBND Tỉnh Nghệ An"},
    "response_for": {
        "organ_id": "000.00.00.G22",
        "code": "7816/VPCP-TTĐT",
        "promulgation_date": "2025/10/13",
        "document_id": "000.00.00.G22,2025/10/13,7816/VPCP-TTĐT",
    },
    "status_code": "03",
    "description": "Đã tiếp nhận",
    "timestamp": "2025/10/13 11:00:00",
    "staff_info": {"department": "Văn thư", "staff": "Nguyễn Văn A"},
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_spec(tmp_path: Path, spec: Mapping[str, object]) -> Path:
    (tmp_path / "files").mkdir(exist_ok=True)
    (tmp_path / "files" / "cong-van.pdf").write_bytes(b"%PDF-1.4 cong van")
    (tmp_path / "files" / "phu-luc.doc").write_bytes(b"phu luc " * 100)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return path


# -- inspect -----------------------------------------------------------------------------------


def test_inspect_json_of_a_document(runner: CliRunner, real: Path) -> None:
    result = runner.invoke(main, ["package", "inspect", str(real), "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["kind"] == "edoc"
    assert s["from"] == "020100107370"
    assert s["to"] == ["G12", "000.00.00.G12"]
    assert s["document_id"] == "020100107370,2025/10/13,2440/PLX-HĐQT"
    assert s["code"] == "2440/PLX-HĐQT"
    assert s["business_type"] == 0
    assert s["status_code"] is None
    assert s["subject"] == "Vv xin phép cử cán bộ đi công tác nước ngoài"
    assert s["promulgation_date"] == "2025-10-13"
    assert s["due_date"] is None
    pdf, doc = s["attachments"]
    assert pdf["content_type"] == "application/pdf"
    assert pdf["size"] == 64
    assert len(pdf["sha256"]) == 64
    assert "file_name" not in pdf
    assert doc["zip_wrapped"]
    assert doc["file_name"].endswith(".doc")
    assert doc["file_size"] == 200
    assert {w["warning"] for w in s["warnings"]} == {
        "DUPLICATE_RECIPIENT_ALIAS",
        "TRACE_HEADER_WITHOUT_ORGAN",
    }


@pytest.mark.parametrize("name", packages.ALL)
@pytest.mark.parametrize(
    "variant",
    [packages.lf, packages.without_cid, packages.dotnet_variant, packages.default_namespace],
    ids=["lf", "no-cid", "dotnet", "default-namespace"],
)
def test_inspect_reads_every_producer_variant_alike(
    runner: CliRunner, name: str, variant: Callable[[bytes], bytes]
) -> None:
    data = packages.package(name)

    def inspect(body: bytes) -> object:
        result = runner.invoke(main, ["package", "inspect", "-", "--json"], input=body)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert inspect(variant(data)) == inspect(data)


def test_inspect_status_from_stdin(runner: CliRunner) -> None:
    data = packages.package("status_rejection_02")
    result = runner.invoke(main, ["package", "inspect", "-", "--json"], input=data)
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert s["kind"] == "status"
    assert s["status_code"] == "02"
    assert s["to"] == ["000.00.00.G22"]
    assert s["document_id"] == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert s["business_type"] is None
    assert s["attachments"] == []


def test_inspect_human(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "new.edxml"
    path.write_bytes(packages.package(packages.NEW))
    result = runner.invoke(main, ["package", "inspect", str(path)])
    assert result.exit_code == 0
    assert "74fass22/VPCP-TTĐT" in result.stdout
    assert "28.22.H17" in result.stdout
    assert "PLACEHOLDER_SIGNATURE" in result.stdout


def test_inspect_invalid_json(runner: CliRunner, real: Path) -> None:
    data = real.read_bytes().replace(b"<edXML:OrganId>020100107370</edXML:OrganId>", b"", 1)
    result = runner.invoke(main, ["package", "inspect", "-", "--json"], input=data)
    assert result.exit_code == 65
    err = json.loads(result.stdout)["error"]
    assert err["reason"] == "MISSING_SENDER"
    assert err["code"] == 1010
    assert err["message_vi"]
    assert err["message_en"]
    assert "From/OrganId" in err["detail"]


def test_inspect_invalid_human_goes_to_stderr(runner: CliRunner) -> None:
    result = runner.invoke(main, ["package", "inspect", "-"], input=b"not xml at all")
    assert result.exit_code == 65
    assert result.stdout == ""
    assert "MALFORMED_XML (1003)" in result.stderr
    assert "Tệp không phải XML hợp lệ" in result.stderr


def test_inspect_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["package", "inspect", str(tmp_path / "nope.edxml")])
    assert result.exit_code == 2
    assert "nope.edxml" in result.output


# -- build -------------------------------------------------------------------------------------


def test_build_example_document(runner: CliRunner, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, EXAMPLE_SPEC)
    out = tmp_path / "out.edxml"
    result = runner.invoke(main, ["package", "build", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\r\n')
    p = parse_package(data).package
    assert isinstance(p, EdocPackage)
    assert [r.organ_id for r in p.recipients] == ["000.00.00.H41", "000.00.00.H14"]
    assert p.document_id == "000.00.00.G22,2025/10/13,7816/VPCP-TTĐT"
    assert p.other_info is not None
    assert p.other_info.appendixes == ("Phụ lục I",)
    pdf, doc, txt = p.attachments
    assert pdf.data == b"%PDF-1.4 cong van"
    assert pdf.content_type == "application/pdf"
    assert pdf.name == "cong-van.pdf"
    assert pdf.description == "Văn bản chính"
    assert doc.zip_wrapped
    assert doc.content_id == "phu-luc-1"
    with zipfile.ZipFile(io.BytesIO(doc.data)) as z:
        assert z.read("phu-luc.doc") == b"phu luc " * 100
    assert txt.data == b"ghi chu"
    assert txt.content_type == "text/plain"
    # and inspect accepts it
    result = runner.invoke(main, ["package", "inspect", str(out), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["attachments"][1]["file_name"] == "phu-luc.doc"


@pytest.mark.parametrize(
    ("business", "extra"),
    [
        ({"type": "revoke"}, {"response_for": [{"document_id": "G22,2025/01/01,1/X"}]}),
        ({"type": 2, "document_id": "000.00.00.G22,2025/01/01,1/VPCP"}, {}),
        (
            {
                "type": "replace",
                "replacements": [
                    {"document_id": "A,2025/01/01,1/X", "organ_ids": ["000.00.00.H41"]}
                ],
            },
            {},
        ),
    ],
)
def test_build_other_business_types(
    runner: CliRunner, tmp_path: Path, business: dict[str, object], extra: dict[str, object]
) -> None:
    spec = write_spec(tmp_path, {**EXAMPLE_SPEC, "business": business, **extra})
    out = tmp_path / "out.edxml"
    result = runner.invoke(main, ["package", "build", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    p = parse_package(out.read_bytes()).package
    assert isinstance(p, EdocPackage)
    assert p.target_document_ids


def test_build_status_to_stdout(runner: CliRunner, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, STATUS_SPEC)
    result = runner.invoke(main, ["package", "build", str(spec), "-o", "-"])
    assert result.exit_code == 0, result.output
    p = parse_package(result.stdout_bytes).package
    assert isinstance(p, StatusPackage)
    assert p.status_code.value == "03"
    assert p.response_for.organ_id == "000.00.00.G22"


def test_build_refuses_a_package_that_breaks_a_rule(runner: CliRunner, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {**EXAMPLE_SPEC, "to": []})
    out = tmp_path / "out.edxml"
    result = runner.invoke(main, ["package", "build", str(spec), "-o", str(out)])
    assert result.exit_code == 65
    assert "NO_RECIPIENT" in result.stderr
    assert not out.exists()
    result = runner.invoke(main, ["package", "build", str(spec), "-o", str(out), "--no-check"])
    assert result.exit_code == 0
    assert out.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subjekt": "typo"}, "unknown key(s) subjekt"),
        ({"attachments": [{"path": "files/missing.pdf"}]}, "cannot read"),
        ({"attachments": [{"name": "x", "data_base64": "!!"}]}, "not valid base64"),
        ({"promulgation_date": "13 Oct"}, "not a date"),
        ({"business": {"type": "cancel"}}, "business.type"),
        ({"kind": "memo"}, "kind must be"),
    ],
)
def test_build_reports_spec_errors(
    runner: CliRunner, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    spec = write_spec(tmp_path, {**EXAMPLE_SPEC, **change})
    result = runner.invoke(main, ["package", "build", str(spec), "-o", str(tmp_path / "o")])
    assert result.exit_code == 65
    assert message in result.stderr


def test_build_help_documents_the_spec(runner: CliRunner) -> None:
    result = runner.invoke(main, ["package", "build", "--help"])
    assert result.exit_code == 0
    assert '"kind": "status"' in result.stdout
    assert "data_base64" in result.stdout
