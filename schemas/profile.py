"""Validation against lienthong's strict edXML profile (``schemas/xsd/lienthong-strict.xsd``).

The XSD states the structural part of the rules :func:`schemas.parser.parse_package`
enforces; the rules XSD 1.0 cannot express are listed in :data:`PARSER_ONLY_RULES` (and in
the XSD's header comment). Parsing here has the same safety checks as the parser (no DTD,
no entities, no network, bounded size and depth). The schema is loaded once, on first use,
from the package data; this module does no other I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from importlib import resources
from typing import Any, cast

from lxml import etree

from schemas.parser import ParseLimits, parse_xml_safely
from schemas.reasons import PackageRejected, Reason
from schemas.safe_xml import hardened_parser

__all__ = ["PARSER_ONLY_RULES", "XSD_RULES", "load_schema", "validate_against_xsd"]

#: Reasons both the XSD and the parser enforce (a package breaking one is refused by both).
XSD_RULES: frozenset[Reason] = frozenset(
    {
        Reason.NOT_EDXML,
        Reason.MISSING_SENDER,
        Reason.MISSING_SENDER_NAME,
        Reason.NO_RECIPIENT,
        Reason.DUPLICATE_RECIPIENT,
        Reason.MISSING_CODE,
        Reason.BAD_DATE,
        Reason.UNKNOWN_BUSINESS_TYPE,
        Reason.UNKNOWN_STATUS_CODE,
        Reason.DESCRIPTION_TOO_LONG,
        Reason.ATTACHMENT_BAD_ENCODING,
    }
)

#: Reasons only the parser can decide (XSD 1.0 cannot express them).
PARSER_ONLY_RULES: frozenset[Reason] = frozenset(
    {
        Reason.DATE_IN_FUTURE,
        Reason.ATTACHMENT_MISSING,
        Reason.ATTACHMENT_UNDECLARED,
        Reason.ATTACHMENT_BAD_ZIP,
        Reason.STATUS_MISSING_REFERENCE,
        Reason.MISSING_TARGET_DOCUMENT,
        Reason.TOO_MANY_RECIPIENTS,
        Reason.TOO_MANY_ATTACHMENTS,
    }
)

_lock = threading.Lock()
_schema: etree.XMLSchema | None = None


def load_schema() -> etree.XMLSchema:
    """The compiled strict-profile schema (loaded once per process)."""
    global _schema
    if _schema is None:
        with _lock:
            if _schema is None:
                source = resources.files("schemas").joinpath("xsd/lienthong-strict.xsd")
                doc = etree.fromstring(source.read_bytes(), hardened_parser())
                _schema = etree.XMLSchema(doc)
    return _schema


def validate_against_xsd(data: bytes, *, limits: ParseLimits | None = None) -> list[str]:
    """Errors of ``data`` against the strict profile; an empty list means valid.

    Input the safe parser refuses (too large, not XML, a DTD, too deep) yields one error
    naming the reason.
    """
    try:
        root = parse_xml_safely(data, limits or ParseLimits())
    except PackageRejected as exc:
        return [f"{exc.reason.name}: {exc.detail or exc.reason.message_en}"]
    return validate_tree(root)


def validate_tree(root: etree._Element) -> list[str]:
    """Errors of an already parsed package against the strict profile."""
    schema = load_schema()
    # XMLSchema objects are not safe to share between threads while validating.
    with _lock:
        if schema.validate(root):
            return []
        log = cast(Iterable[Any], schema.error_log)
        return [f"line {e.line}: {e.message}" for e in log]
