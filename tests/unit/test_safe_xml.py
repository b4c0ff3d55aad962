"""The XML protections live in one place (schemas/safe_xml.py), every parse path uses them,
and a DocumentId is read by one function with one set of rules."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from lxml import etree

from schemas import WarningCode, parse_package
from schemas.agency_code import parse_document_id
from schemas.safe_xml import hardened_parser
from tests.factory import edoc

REPO = Path(__file__).resolve().parents[2]


def test_the_lxml_parser_is_configured_in_one_place() -> None:
    makers = []
    for folder in ("schemas", "router", "adapters"):
        for path in (REPO / folder).rglob("*.py"):
            if re.search(r"XMLParser\(", path.read_text("utf-8")):
                makers.append(str(path.relative_to(REPO)))
    assert makers == ["schemas/safe_xml.py"]


@pytest.mark.parametrize("huge", [False, True])
@pytest.mark.parametrize("keep_comments", [False, True])
def test_every_variant_leaves_external_entities_unresolved(
    huge: bool, keep_comments: bool
) -> None:
    parser = hardened_parser(huge=huge, keep_comments=keep_comments)
    external = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                b"<r>&x;</r>")
    root = etree.fromstring(external, parser)
    assert "root:" not in "".join(root.itertext())  # not expanded
    assert etree.fromstring(b"<r><!--c--><?pi x?></r>", parser).__len__() == (
        2 if keep_comments else 0)


def test_each_thread_has_its_own_parser() -> None:
    seen: list[etree.XMLParser] = []
    t = threading.Thread(target=lambda: seen.append(hardened_parser()))
    t.start()
    t.join()
    assert seen[0] is not hardened_parser()
    assert hardened_parser() is hardened_parser()


def _with_document_id(document_id: str) -> bytes:
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    new, n = re.subn(rb"<edXML:DocumentId>[^<]*</edXML:DocumentId>",
                     b"<edXML:DocumentId>" + document_id.encode() + b"</edXML:DocumentId>",
                     body, count=1)
    assert n == 1
    return new


@pytest.mark.parametrize(
    ("document_id", "standard", "same_sender"),
    [
        ("000.00.00.G22,2026/11/20,12/VPCP-TTĐT", True, True),
        ("000.00.00.G22,2026-11-20,12/VPCP-TTĐT", True, True),  # dashes: a date all the same
        ("000.00.00.G22,2026/1/2,12/VPCP", True, True),  # no leading zeros
        (" 000.00.00.g22 , 2026/11/20 , 12/VPCP", True, True),  # spaces, lower case
        ("000.00.00.G22,2014/02/30,1/x", True, True),  # a date that is no day, kept as written
        ("000.00.00.H41,2026/11/20,12/UBND", True, False),  # another agency's code
        ("not a code!,2026/11/20,12/VPCP", False, False),  # not an agency code at all
        ("000.00.00.G22,20.11.2026,12/VPCP", False, False),  # not a date
        ("6f1c0e0e-3b7a-4f7e-9a51-0c7c2f0d7e11", False, False),  # a producer's UUID
    ],
)
def test_document_id_rules_are_the_same_everywhere(
    document_id: str, standard: bool, same_sender: bool
) -> None:
    parts = parse_document_id(document_id)
    assert (parts is not None) is standard
    codes = {w.code for w in parse_package(_with_document_id(document_id)).warnings}
    assert (WarningCode.DOCUMENT_ID_NONSTANDARD in codes) is (not standard)
    mismatch = WarningCode.DOCUMENT_ID_SENDER_MISMATCH in codes
    assert mismatch is (standard and not same_sender)
