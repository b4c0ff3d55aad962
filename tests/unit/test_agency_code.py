"""Agency codes (mã định danh) and DocumentIds: examples from edxml.md §6 and the samples,
plus property tests."""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.agency_code import (
    MAX_CODE_LENGTH,
    AgencyCode,
    CodeForm,
    DocumentIdParts,
    format_document_id,
    normalize,
    parse_document_id,
    tree_pattern,
    tree_regex,
)
from schemas.reasons import LienthongError, Reason
from tests import packages

# code, form, level1, level, parent
EXAMPLES: list[tuple[str, CodeForm, str | None, int | None, str | None]] = [
    ("000.00.00.A80", CodeForm.QCVN102, "A80", 1, None),
    ("000.00.00.G22", CodeForm.QCVN102, "G22", 1, None),
    ("000.00.00.G12", CodeForm.QCVN102, "G12", 1, None),
    ("000.00.00.H41", CodeForm.QCVN102, "H41", 1, None),
    ("000.00.00.H14", CodeForm.QCVN102, "H14", 1, None),
    ("001.00.00.H47", CodeForm.QCVN102, "H47", 2, "000.00.00.H47"),
    ("001.00.10.H47", CodeForm.QCVN102, "H47", 3, "000.00.10.H47"),
    ("001.01.10.H47", CodeForm.QCVN102, "H47", 4, "000.01.10.H47"),
    ("000.00.18.G12", CodeForm.QCVN102, "G12", 2, "000.00.00.G12"),
    ("000.00.04.G14", CodeForm.QCVN102, "G14", 2, "000.00.00.G14"),
    ("000.28.22.H17", CodeForm.QCVN102, "H17", 3, "000.00.22.H17"),
    ("28.22.H17", CodeForm.THREE_LEVEL, "H17", 3, "000.00.22.H17"),
    ("00.22.H17", CodeForm.THREE_LEVEL, "H17", 2, "000.00.00.H17"),
    ("G12", CodeForm.QD20, "G12", 1, None),
    ("H41", CodeForm.QD20, "H41", 1, None),
    ("G09.20", CodeForm.QD20, "G09", 2, "G09"),
    ("G09.20.05", CodeForm.QD20, "G09", 3, "G09.20"),
    ("020100107370", CodeForm.ENTERPRISE, None, None, None),
    ("02.29.W00", CodeForm.SYSTEM, "W00", None, None),
    ("00.53.W00", CodeForm.SYSTEM, "W00", None, None),
    ("VPCP-01", CodeForm.OTHER, None, None, None),
]


@pytest.mark.parametrize(("text", "form", "level1", "level", "parent"), EXAMPLES)
def test_examples(
    text: str, form: CodeForm, level1: str | None, level: int | None, parent: str | None
) -> None:
    code = AgencyCode.parse(text)
    assert code.text == text
    assert str(code) == text
    assert code.form is form
    assert code.level1 == level1
    assert code.level == level
    assert code.parent == parent
    assert code.level1_letter == (level1[0] if level1 else None)


def test_parent_chain_walks_to_level_one() -> None:
    chain = []
    code: AgencyCode | None = AgencyCode.parse("001.01.10.H47")
    while code is not None:
        chain.append((code.text, code.level))
        code = AgencyCode.parse(code.parent) if code.parent else None
    assert chain == [
        ("001.01.10.H47", 4),
        ("000.01.10.H47", 3),
        ("000.00.10.H47", 2),
        ("000.00.00.H47", 1),
    ]


def test_lower_level_moves_left() -> None:
    # Units are read nearest-to-level-1 first: CC (level 2), BB (level 3), AAA (level 4).
    assert AgencyCode.parse("004.03.02.G12").units == (2, 3, 4)
    assert AgencyCode.parse("28.22.H17").units == (22, 28)


@pytest.mark.parametrize(
    ("text", "suffix", "province", "ministry", "top"),
    [
        ("000.00.00.H41", "H41", True, False, True),
        ("28.22.H17", "H17", True, False, False),
        ("001.00.10.H47", "H47", True, False, False),
        ("000.00.00.G12", "G12", False, True, True),
        ("G12", "G12", False, True, True),
        ("000.00.18.G12", "G12", False, True, False),
        ("000.00.00.A80", "A80", False, False, True),
        ("020100107370", None, False, False, False),
        ("02.29.W00", None, False, False, False),
    ],
)
def test_tree_membership(
    text: str, suffix: str | None, province: bool, ministry: bool, top: bool
) -> None:
    code = AgencyCode.parse(text)
    assert code.province_suffix == suffix
    assert code.is_province is province
    assert code.is_ministry is ministry
    assert code.is_top_level is top


@pytest.mark.parametrize(
    ("text", "canonical", "aliases"),
    [
        ("G12", "000.00.00.G12", {"G12", "000.00.00.G12"}),
        ("000.00.00.G12", "000.00.00.G12", {"G12", "000.00.00.G12"}),
        ("000.00.00.H41", "000.00.00.H41", {"H41", "000.00.00.H41"}),
        ("001.00.10.H47", "001.00.10.H47", {"001.00.10.H47"}),
        ("28.22.H17", None, {"28.22.H17"}),
        ("G09.20", None, {"G09.20"}),
        ("020100107370", None, {"020100107370"}),
        ("02.29.W00", None, {"02.29.W00"}),
    ],
)
def test_canonical_and_aliases(text: str, canonical: str | None, aliases: set[str]) -> None:
    code = AgencyCode.parse(text)
    assert code.canonical_102 == canonical
    assert code.aliases() == aliases


def test_old_and_new_code_of_one_ministry_share_aliases() -> None:
    # The real 2025 package addresses Bộ Tài chính as both G12 and 000.00.00.G12.
    assert AgencyCode.parse("G12").aliases() == AgencyCode.parse("000.00.00.G12").aliases()


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("000.00.00.H41", "#.H41"),
        ("H41", "#.H41"),
        ("000.00.22.H17", "#.22.H17"),
        ("000.28.22.H17", "#.28.22.H17"),
        ("28.22.H17", "#.28.22.H17"),
        ("001.00.00.H47", "001.00.00.H47"),
        ("001.01.10.H47", "001.01.10.H47"),
        ("000.01.10.H47", "#.01.10.H47"),
        ("G09.20", "G09.20.#"),
        ("020100107370", "020100107370"),
        ("02.29.W00", "02.29.W00"),
    ],
)
def test_tree_pattern(text: str, pattern: str) -> None:
    assert tree_pattern(text) == pattern
    assert AgencyCode.parse(text).tree_pattern() == pattern


def _topic_match(pattern: str, key: str) -> bool:
    """A reference AMQP topic matcher (``*`` one word, ``#`` zero or more)."""

    def go(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(go(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] == "*" or p[0] == k[0]) and go(p[1:], k[1:])

    return go(pattern.split("."), key.split("."))


TREE_KEYS = [
    "000.00.00.H41",
    "H41",
    "000.00.05.H41",
    "001.00.05.H41",
    "000.00.00.H17",
    "000.00.22.H17",
    "000.28.22.H17",
    "28.22.H17",
    "003.28.22.H17",
    "000.27.22.H17",
    "00.22.H17",
    "000.00.23.H17",
    "001.00.00.H47",
    "001.00.10.H47",
    "000.00.10.H47",
    "020100107370",
    "02.29.W00",
    "G09",
    "G09.20",
    "G09.20.01",
    "G09.21",
]


@pytest.mark.parametrize(
    "ancestor",
    ["000.00.00.H41", "000.00.00.H17", "000.00.22.H17", "28.22.H17", "000.00.10.H47", "G09.20"],
)
def test_tree_pattern_is_the_subtree(ancestor: str) -> None:
    """The pattern matches a key exactly when walking the key's parents reaches ancestor."""
    anc = AgencyCode.parse(ancestor)
    anc_key = anc.canonical_102 or anc.text
    if anc.form is CodeForm.THREE_LEVEL:
        anc_key = "000." + anc.text
    for key in TREE_KEYS:
        node: AgencyCode | None = AgencyCode.parse(key)
        reached = False
        while node is not None:
            spelled = node.canonical_102 or node.text
            if node.form is CodeForm.THREE_LEVEL:
                spelled = "000." + node.text
            if spelled == anc_key:
                reached = True
                break
            node = AgencyCode.parse(node.parent) if node.parent else None
        assert _topic_match(tree_pattern(ancestor), key) is reached, key
        assert bool(re.fullmatch(tree_regex(ancestor), key)) is reached, key


def test_level_one_pattern_also_matches_non_codes_with_the_suffix() -> None:
    # Documented over-match: ``#`` cannot count words. Such keys are not valid codes.
    assert AgencyCode.parse("05.H41").form is CodeForm.OTHER
    assert _topic_match(tree_pattern("000.00.00.H41"), "05.H41")
    assert not _topic_match(tree_pattern("000.00.00.H41"), "000.00.00.H410")


@given(st.sampled_from(TREE_KEYS), st.sampled_from(TREE_KEYS))
def test_tree_regex_agrees_with_topic_pattern(code: str, key: str) -> None:
    assert bool(re.fullmatch(tree_regex(code), key)) == _topic_match(tree_pattern(code), key)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  000.00.00.g22 ", "000.00.00.G22"),
        ("\u00a0000.00.00.H41\u00a0", "000.00.00.H41"),
        ("000. 00.00 .H41", "000.00.00.H41"),
        ("\ufeffg12\u200b", "G12"),
        ("\t28.22.h17\r\n", "28.22.H17"),
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@given(st.text())
def test_normalize_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once
    assert not any(ch.isspace() for ch in once)


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "   ",
        "\u00a0",
        "000.00.00.G22;DROP",
        "000..00.G22",
        ".G22",
        "G22.",
        "mã-định-danh",
        "000.00.00.G22/1",
        "A" * (MAX_CODE_LENGTH + 1),
        "<OrganId/>",
    ],
)
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(LienthongError) as info:
        AgencyCode.parse(garbage)
    assert info.value.reason is Reason.BAD_AGENCY_CODE


def test_longest_legal_code_is_accepted() -> None:
    assert AgencyCode.parse("A" * MAX_CODE_LENGTH).form is CodeForm.OTHER


_word = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=5)
_codes = st.one_of(
    st.builds(
        "{:03d}.{:02d}.{:02d}.{}{:02d}".format,
        st.integers(0, 999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from("ABCDEFGHIJK"),
        st.integers(0, 99),
    ),
    st.builds(
        "{:02d}.{:02d}.{}{:02d}".format,
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from("ABCDEFGHIJK"),
        st.integers(0, 99),
    ),
    st.builds("{}{:02d}".format, st.sampled_from("ABCDEFGHIJK"), st.integers(0, 99)),
    st.from_regex(r"\A[0-9]{10,14}\Z"),
    st.lists(_word, min_size=1, max_size=6).map(".".join),
)


@given(_codes, st.sampled_from(["", " ", "\u00a0", "\t"]))
def test_parse_round_trips(text: str, pad: str) -> None:
    code = AgencyCode.parse(pad + text.lower() + pad)
    assert code.text == text
    assert AgencyCode.parse(str(code)) == code


@given(_codes)
def test_parent_is_one_level_up_in_the_same_tree(text: str) -> None:
    code = AgencyCode.parse(text)
    if code.parent is None:
        assert code.level in (1, None)
        return
    parent = AgencyCode.parse(code.parent)
    assert code.level is not None
    assert parent.level == code.level - 1
    assert parent.level1 == code.level1
    assert _topic_match(tree_pattern(parent), code.text)


@given(st.text(max_size=80))
def test_parse_never_fails_otherwise(text: str) -> None:
    reason = None
    try:
        code = AgencyCode.parse(text)
    except LienthongError as exc:
        reason = exc.reason
    else:
        assert code.text == normalize(text)
    assert reason in (None, Reason.BAD_AGENCY_CODE)


# --- DocumentId -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
            DocumentIdParts("000.00.00.G22", date(2015, 9, 30), "2015/09/30", "7816", "VPCP-TTĐT"),
        ),
        (
            "000.00.04.G14,2012/08/06,267/VPCP-TTĐT",
            DocumentIdParts("000.00.04.G14", date(2012, 8, 6), "2012/08/06", "267", "VPCP-TTĐT"),
        ),
        (
            "020100107370,2025/10/13,2440/PLX-HĐQT",
            DocumentIdParts("020100107370", date(2025, 10, 13), "2025/10/13", "2440", "PLX-HĐQT"),
        ),
        (  # the SDK samples really contain 30 February
            "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",
            DocumentIdParts("000.00.00.G22", None, "2014/02/30", "7806", "VPCP-TTĐT"),
        ),
        (
            " g12 ,2025/1/2,/QĐ-BTC/KHTC, bản 2",
            DocumentIdParts("G12", date(2025, 1, 2), "2025/1/2", "", "QĐ-BTC/KHTC, bản 2"),
        ),
        (
            "000.00.00.H41,2020-05-06,15",
            DocumentIdParts("000.00.00.H41", date(2020, 5, 6), "2020-05-06", "15", ""),
        ),
    ],
)
def test_parse_document_id(text: str, expected: DocumentIdParts) -> None:
    assert parse_document_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "5b8209a7-f5f8-4ada-b766-27c30a2eaf8b",
        "",
        "000.00.00.G22,2015/09/30",
        "000.00.00.G22,hôm nay,7816/VPCP",
        ",2015/09/30,7816/VPCP",
        "mã cơ quan?,2015/09/30,7816/VPCP",
    ],
)
def test_other_document_ids_give_none(text: str) -> None:
    assert parse_document_id(text) is None


def test_every_own_package_document_id_parses() -> None:
    found = []
    for name in packages.ALL:
        text = packages.package(name).decode()
        found += re.findall(r"<edXML:DocumentId>([^<]+)</edXML:DocumentId>", text)
    assert len(found) >= 10
    for text in found:
        parts = parse_document_id(text)
        assert parts is not None, text
        assert AgencyCode.parse(parts.organ_id).text == parts.organ_id


def test_every_own_package_organ_id_parses() -> None:
    found = set()
    for name in packages.ALL:
        text = packages.package(name).decode()
        found |= set(re.findall(r"<edXML:OrganId>([^<]+)</edXML:OrganId>", text))
    assert {"28.22.H17", "G12", "020100107370", "02.29.W00", "000.00.00.A80"} <= found
    for text in found:
        assert AgencyCode.parse(text).form is not CodeForm.OTHER, text


def test_format_document_id() -> None:
    assert (
        format_document_id(" 000.00.00.g22", date(2015, 9, 30), "7816", "VPCP-TTĐT")
        == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    )
    assert format_document_id("G12", "2014/02/30", "1", "") == "G12,2014/02/30,1"
    assert format_document_id("G12", date(987, 1, 2), "1", "X") == "G12,0987/01/02,1/X"


_field = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), max_size=12
)


@given(
    _codes,
    st.dates(min_value=date(1000, 1, 1)),
    _field.filter(lambda s: "/" not in s),
    _field,
)
def test_document_id_round_trips(organ: str, day: date, number: str, notation: str) -> None:
    text = format_document_id(organ, day, number, notation)
    parts = parse_document_id(text)
    assert parts == DocumentIdParts(
        organ, day, text.split(",")[1], number.strip(), notation.strip()
    )
    assert format_document_id(parts.organ_id, parts.date or parts.date_text, number, notation) == (
        text
    )
