"""Dates and timestamps as edXML writes them.

The wire forms are ``yyyy/MM/dd`` for dates and ``yyyy/MM/dd HH:mm:ss`` for timestamps
(edxml.md §2). Readers are lenient: ISO forms (``yyyy-MM-dd``, ``yyyy-MM-ddTHH:mm:ss``),
one-digit months and days, and a trailing time on a date are accepted; ``dd/MM/yyyy`` is
accepted for dates but reported (the caller emits ``WarningCode.DATE_DAY_FIRST``).
"""

from __future__ import annotations

import re
from datetime import date, datetime

__all__ = ["format_date", "format_timestamp", "parse_date", "parse_timestamp"]

# year first: 2019/01/16, 2019-1-6, 2019/01/16 00:00:00, 2019-01-16T00:00:00
_YEAR_FIRST = re.compile(r"([0-9]{4})[/\-.]([0-9]{1,2})[/\-.]([0-9]{1,2})(?:[ T].*)?")
# day first: 16/01/2019, 16-01-2019 (optionally with a time)
_DAY_FIRST = re.compile(r"([0-9]{1,2})[/\-.]([0-9]{1,2})[/\-.]([0-9]{4})(?:[ T].*)?")
_TIMESTAMP = re.compile(
    r"(\d{4})[/\-](\d{1,2})[/\-](\d{1,2})"
    r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?)?"
    r"\s*(Z|[+\-]\d{2}:?\d{2})?",
    re.ASCII,
)
_TIMESTAMP_DAY_FIRST = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?", re.ASCII
)


def parse_date(text: str) -> tuple[date, bool]:
    """Read an edXML date. Returns ``(date, day_first)``; raises ``ValueError``.

    ``day_first`` is true when the text was written ``dd/MM/yyyy``.
    """
    # the XSD reads dates as xs:token: whitespace runs collapse to one space
    text = " ".join(text.split())
    m = _YEAR_FIRST.fullmatch(text)
    if m is not None:
        return date(int(m[1]), int(m[2]), int(m[3])), False
    m = _DAY_FIRST.fullmatch(text)
    if m is not None:
        return date(int(m[3]), int(m[2]), int(m[1])), True
    raise ValueError(f"not a date: {text[:40]!r}")


def parse_timestamp(text: str | None) -> datetime | None:
    """Read an edXML timestamp leniently; ``None`` when empty or unreadable (never raises).

    A time-zone suffix is dropped: edXML timestamps are local time (ICT) and the model keeps
    them naive.
    """
    if not text:
        return None
    text = text.strip()
    m = _TIMESTAMP.fullmatch(text)
    if m is not None:
        year, month, day = int(m[1]), int(m[2]), int(m[3])
    else:
        m = _TIMESTAMP_DAY_FIRST.fullmatch(text)
        if m is None:
            return None
        day, month, year = int(m[1]), int(m[2]), int(m[3])
    try:
        return datetime(year, month, day, int(m[4] or 0), int(m[5] or 0), int(m[6] or 0))
    except ValueError:
        return None


def format_date(value: date) -> str:
    """``yyyy/MM/dd``."""
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: datetime) -> str:
    """``yyyy/MM/dd HH:mm:ss`` (sub-second precision and time zone are not written)."""
    return (
        f"{value.year:04d}/{value.month:02d}/{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
