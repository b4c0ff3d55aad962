"""The demo directory (demo/agencies.csv, gateways.csv) is consistent.

A *top-level node* is a row with an empty ``parent`` whose code is a QCVN 102 level-1 code
``000.00.00.Xnn`` with X in A..K. The axis had 95 of them in 2019–2020: 31 ministries and
government bodies (G), 63 provinces (H01–H63) and the Central Party Office (A).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from schemas.agency_code import AgencyCode, CodeForm, normalize

DEMO = Path(__file__).resolve().parents[2] / "demo"
TOP_LEVEL = re.compile(r"000\.00\.00\.([A-K])(\d{2})")
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
KINDS = {"ministry", "province-platform", "agency", "enterprise"}
DEMO_MARK = " (dữ liệu demo)"


def _read(name: str) -> list[dict[str, str]]:
    with (DEMO / name).open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    assert header is not None
    assert rows, name
    return rows


@pytest.fixture(scope="module")
def agencies() -> list[dict[str, str]]:
    rows = _read("agencies.csv")
    assert list(rows[0]) == ["code", "name", "parent", "aliases", "gateway"]
    return rows


@pytest.fixture(scope="module")
def gateways() -> list[dict[str, str]]:
    rows = _read("gateways.csv")
    assert list(rows[0]) == ["id", "name", "kind"]
    return rows


def _aliases(row: dict[str, str]) -> list[str]:
    return [a for a in row["aliases"].split("|") if a]


def _is_top_level(row: dict[str, str]) -> bool:
    return not row["parent"] and TOP_LEVEL.fullmatch(row["code"]) is not None


def test_every_cell_is_clean(agencies: list[dict[str, str]]) -> None:
    for row in agencies:
        for key, value in row.items():
            assert value == value.strip(), (row["code"], key)
        assert row["name"], row["code"]
        assert row["gateway"], row["code"]


def test_every_code_parses_and_is_normalised(agencies: list[dict[str, str]]) -> None:
    for row in agencies:
        for text in [row["code"], *_aliases(row), *([row["parent"]] if row["parent"] else [])]:
            code = AgencyCode.parse(text)
            assert code.text == text, "not in normalised form: " + text
            assert code.form is not CodeForm.OTHER, text


def test_ninety_five_top_level_nodes(agencies: list[dict[str, str]]) -> None:
    top = [row for row in agencies if _is_top_level(row)]
    assert len(top) == 95
    letters = Counter(row["code"][-3] for row in top)
    assert letters == {"G": 31, "H": 63, "A": 1}
    numbers = {row["code"][-3:] for row in top}
    assert {f"G{n:02d}" for n in range(1, 32)} <= numbers
    assert {f"H{n:02d}" for n in range(1, 64)} <= numbers
    for row in top:
        assert AgencyCode.parse(row["code"]).level == 1


def test_the_only_other_roots_are_enterprises(agencies: list[dict[str, str]]) -> None:
    for row in agencies:
        if not row["parent"] and not _is_top_level(row):
            assert AgencyCode.parse(row["code"]).form is CodeForm.ENTERPRISE, row["code"]


def test_known_codes_and_names(agencies: list[dict[str, str]]) -> None:
    by_code = {row["code"]: row for row in agencies}
    assert by_code["000.00.00.G22"]["name"] == "Văn phòng Chính phủ"
    assert by_code["000.00.00.G22"]["gateway"] == "vpcp"
    assert by_code["000.00.00.G12"]["name"] == "Bộ Tài chính"
    assert by_code["000.00.00.H41"]["name"] == "UBND tỉnh Nghệ An"
    assert by_code["000.00.00.H14"]["name"] == "UBND tỉnh Cao Bằng"
    assert by_code["000.00.00.H47"]["name"] == "UBND tỉnh Quảng Nam"
    assert by_code["020100107370"]["name"] == "Tập đoàn Xăng dầu Việt Nam"
    for code in ["000.00.00.A80", "28.22.H17", "001.00.00.H47", "001.00.10.H47"]:
        assert code in by_code


def test_every_ministry_row_has_its_short_code_as_alias(agencies: list[dict[str, str]]) -> None:
    for row in agencies:
        if _is_top_level(row):
            assert set(_aliases(row)) == AgencyCode.parse(row["code"]).aliases() - {row["code"]}


def test_no_duplicate_codes_or_aliases(agencies: list[dict[str, str]]) -> None:
    keys: Counter[str] = Counter()
    for row in agencies:
        keys[normalize(row["code"])] += 1
        for alias in _aliases(row):
            keys[normalize(alias)] += 1
    assert [key for key, n in keys.items() if n > 1] == []


def test_parents_exist_and_agree_with_the_code(agencies: list[dict[str, str]]) -> None:
    codes = {row["code"] for row in agencies}
    for row in agencies:
        if not row["parent"]:
            continue
        assert row["parent"] in codes, row["code"]
        assert row["parent"] != row["code"]
        derived = AgencyCode.parse(row["code"]).parent
        if derived is not None:  # 000.00.00.A80 is a level-1 code the sample names a commune
            assert row["parent"] == derived, row["code"]


def test_no_parent_cycles(agencies: list[dict[str, str]]) -> None:
    parent = {row["code"]: row["parent"] for row in agencies}
    for code in parent:
        seen = set()
        while code:
            assert code not in seen, code
            seen.add(code)
            code = parent[code]


def test_gateways(agencies: list[dict[str, str]], gateways: list[dict[str, str]]) -> None:
    ids = [g["id"] for g in gateways]
    assert len(ids) == len(set(ids))
    for g in gateways:
        assert SLUG.fullmatch(g["id"]), g["id"]
        assert g["kind"] in KINDS, g
        assert g["name"], g["id"]
    used = {row["gateway"] for row in agencies}
    assert used == set(ids)  # every gateway used exists, and none is unused


def test_gateway_assignment(agencies: list[dict[str, str]], gateways: list[dict[str, str]]) -> None:
    kind = {g["id"]: g["kind"] for g in gateways}
    by_code = {row["code"]: row for row in agencies}
    ministry_gateways = [
        row["gateway"] for row in agencies if _is_top_level(row) and row["code"][-3] == "G"
    ]
    assert len(set(ministry_gateways)) == 31  # every ministry has its own gateway
    assert kind["vpcp"] == "agency"
    assert by_code["000.00.00.H41"]["gateway"] == "lgsp-nghean"
    assert kind["lgsp-nghean"] == "province-platform"
    assert kind[by_code["020100107370"]["gateway"]] == "enterprise"
    # Quảng Nam's platform serves its whole tree: at least 3 districts with 2 communes each.
    quangnam = [row for row in agencies if row["code"].endswith(".H47")]
    assert {row["gateway"] for row in quangnam} == {"lgsp-quangnam"}
    children = Counter(row["parent"] for row in quangnam)
    districts = [row["code"] for row in quangnam if row["parent"] == "000.00.00.H47"]
    assert sum(1 for d in districts if children[d] >= 2) >= 3
    for row in quangnam:
        code = AgencyCode.parse(row["code"])
        assert code.level is not None
        if row["parent"] == "000.00.00.H47":
            assert code.level == 2
        elif row["parent"]:
            assert code.level == 3


def test_demo_names_are_marked_consistently(agencies: list[dict[str, str]]) -> None:
    for row in agencies:
        assert row["name"].count(DEMO_MARK) <= 1
        assert DEMO_MARK not in row["name"] or row["name"].endswith(DEMO_MARK)
