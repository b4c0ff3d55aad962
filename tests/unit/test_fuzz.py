"""Mutation fuzzing: whatever bytes arrive, the parser returns a ParsedPackage or raises
PackageRejected, never anything else (and never through its internal-error safety net).

A seeded random mutator (reproducible; override with LIENTHONG_FUZZ_SEED and
LIENTHONG_FUZZ_CASES) applies byte flips, truncations, insertions, element deletions,
duplications, swaps, renames and text replacements to the own packages (tests/packages.py)
and to builder
output.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import date

from lxml import etree

from schemas import (
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    PackageRejected,
    ParsedPackage,
    PromulgationInfo,
    build_package,
    new_attachment,
    parse_package,
)
from schemas.profile import validate_against_xsd
from tests import packages

SEED = int(os.environ.get("LIENTHONG_FUZZ_SEED", "20251013"))
CASES = int(os.environ.get("LIENTHONG_FUZZ_CASES", "12000"))

JUNK_TEXT = [
    "",
    " ",
    "0",
    "1",
    "3",
    "7",
    "-1",
    "01",
    "09",
    "13",
    "99",
    "cid:",
    "cid:209",
    "PK",
    "UEsDBBQAAAAIAA==",
    "JVBERi0xLjQK",
    "====",
    "%%%",
    "2019/02/30",
    "30/12/2019",
    "2999/01/01",
    "0000/00/00",
    "2019-01-16T25:61:61",
    "x" * 1500,
    "đ" * 300,
    "\t\n",
    "&amp;",
    "]]>",
    "000.00.00.G22",
    "g22",
    " 000.00.00.g22 ",
    "\u200b",
    "A" * 100_000,
]


def corpus() -> list[bytes]:
    files = [packages.package(name) for name in packages.ALL]
    built = EdocPackage(
        sender=Organization("000.00.00.G22", "Văn phòng Chính phủ"),
        recipients=(Organization("000.00.00.H41", "UBND Tỉnh Nghệ An"),),
        code=Code("1", "VPCP"),
        promulgation=PromulgationInfo("Hà Nội", date(2025, 1, 1)),
        document_type=DocumentType("1"),
        subject="Thử",
        attachments=(
            new_attachment("a.pdf", b"%PDF-1.4 fuzz"),
            new_attachment("b.doc", b"doc" * 50, zip_wrap=True),
        ),
    )
    return [*files, build_package(built)]


Mutator = Callable[[random.Random, bytes], bytes]


def flip_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


def truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def insert_bytes(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    choices = [
        b"<",
        b">",
        b"&",
        b"<!--",
        b"]]>",
        b"\x00",
        b"\xff\xfe",
        b"<!DOCTYPE x>",
        b"<a>",
        b"</a>",
        b"&lol;",
        b"\xc3",
        bytes(rng.randrange(256) for _ in range(8)),
    ]
    return data[:at] + rng.choice(choices) + data[at:]


def duplicate_range(rng: random.Random, data: bytes) -> bytes:
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 400))
    return data[:b] + data[a:b] + data[b:]


def _tree_mutation(
    fn: Callable[[random.Random, etree._Element, list[etree._Element]], None],
) -> Mutator:
    def mutate(rng: random.Random, data: bytes) -> bytes:
        root = etree.fromstring(data)
        elements = [e for e in root.iter() if isinstance(e.tag, str)]
        fn(rng, root, elements)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    return mutate


def _delete(rng: random.Random, root: etree._Element, els: list[etree._Element]) -> None:
    el = rng.choice(els)
    parent = el.getparent()
    if parent is not None:
        parent.remove(el)


def _duplicate(rng: random.Random, root: etree._Element, els: list[etree._Element]) -> None:
    el = rng.choice(els)
    parent = el.getparent()
    if parent is not None:
        parent.insert(parent.index(el), etree.fromstring(etree.tostring(el)))


def _swap(rng: random.Random, root: etree._Element, els: list[etree._Element]) -> None:
    a, b = rng.choice(els), rng.choice(els)
    if a is b or a in b.iterancestors() or b in a.iterancestors():
        return
    pa, pb = a.getparent(), b.getparent()
    if pa is None or pb is None:
        return
    placeholder = etree.Element("placeholder")
    pa.replace(a, placeholder)
    pb.replace(b, a)
    pa.replace(placeholder, b)


def _move(rng: random.Random, root: etree._Element, els: list[etree._Element]) -> None:
    el = rng.choice(els)
    target = rng.choice(els)
    if el is target or el in target.iterancestors():
        return
    parent = el.getparent()
    if parent is not None:
        parent.remove(el)
        target.append(el)


def _text(rng: random.Random, root: etree._Element, els: list[etree._Element]) -> None:
    for _ in range(rng.randint(1, 3)):
        el = rng.choice(els)
        el.text = rng.choice(JUNK_TEXT)


def _rename(rng: random.Random, root: etree._Element, els: list[etree._Element]) -> None:
    el = rng.choice(els)
    other = rng.choice(els)
    el.tag = other.tag if rng.random() < 0.7 else "{urn:other}" + etree.QName(el).localname


MUTATORS: dict[str, Mutator] = {
    "flip": flip_bytes,
    "truncate": truncate,
    "insert": insert_bytes,
    "duplicate-bytes": duplicate_range,
    "delete-element": _tree_mutation(_delete),
    "duplicate-element": _tree_mutation(_duplicate),
    "swap-elements": _tree_mutation(_swap),
    "move-element": _tree_mutation(_move),
    "replace-text": _tree_mutation(_text),
    "rename-element": _tree_mutation(_rename),
}


def _outcome(data: bytes) -> str:
    """``accepted``, the reason name, or the detail of the parser's internal-error net; any
    other exception propagates and fails the test."""
    try:
        result = parse_package(data, today=date(2026, 1, 1))
    except PackageRejected as exc:
        if exc.detail.startswith("internal parser error"):
            return exc.detail
        return exc.reason.name
    assert isinstance(result, ParsedPackage)
    return "accepted"


def test_parser_never_raises_anything_else() -> None:
    rng = random.Random(SEED)
    seeds = corpus()
    names = sorted(MUTATORS)
    outcomes: Counter[str] = Counter()
    ran = 0
    started = time.perf_counter()
    while ran < CASES:
        data = rng.choice(seeds)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            mutator = MUTATORS[rng.choice(names)]
            try:
                data = mutator(rng, data)
            except etree.XMLSyntaxError:
                break  # a tree mutation on bytes an earlier byte mutation broke: keep them
            if not data:
                break
        ran += 1
        outcome = _outcome(data)
        assert not outcome.startswith("internal parser error"), (outcome, data[:2000])
        outcomes[outcome] += 1
        if ran % 10 == 0:
            errors = validate_against_xsd(data)
            assert isinstance(errors, list)
    elapsed = time.perf_counter() - started
    print(
        f"\nfuzz: {ran} mutated packages in {elapsed:.1f} s (seed {SEED}): "
        + ", ".join(f"{k} {v}" for k, v in outcomes.most_common())
    )
    assert ran >= 10_000
    # the mutator reaches both outcomes and a wide range of reasons
    assert outcomes["accepted"] > 100
    assert len(outcomes) >= 12
