"""National statistics (issue #16): who exchanges documents electronically, how fast they
handle them, and who still sends a paper copy alongside, per ministry and per province,
ranked as the ministry publishes each quarter.

Units
=====

A *unit* is the whole tree under a level-1 code (``000.00.00.G12`` Bộ Tài chính with every
agency below it, ``000.00.00.H41`` UBND tỉnh Nghệ An with its departments, districts and
communes). The tree of an agency is read from its code (:attr:`AgencyCode.province_suffix`);
an agency whose code says nothing (an enterprise, an unclassified code) belongs to the tree
of the nearest ancestor the directory names (``parent_code``) that has one, else it is a
unit of its own. The drill-down view (``within``) gives one row per agency of one tree.

Figures (a period [start, end) selects documents by the time the hub received them and
deliveries by the time they were created — the same moment)
==============================================================================

- ``sent``: documents (edoc packages) the unit's agencies sent; ``sent_paper``: those whose
  ``Bussiness/Paper`` is 1 (a paper copy goes alongside); every other one (0 or not stated)
  counts as fully electronic. ``electronic_share`` = (sent - sent_paper) / sent.
- ``received``: deliveries to the unit's agencies; ``done``: those with a 06;
  ``done_share`` = done / received.
- ``to_01/03/06``: median and p90 seconds from the copy queued in the recipient's inbox to
  the hub receiving the recipient's first status with that code (or a later one).
- ``late``: deliveries with a DueDate that got their 06 after it, or none while still open
  once it passed (refused, revoked, replaced and recalled ones are not late). The DueDate
  ends at midnight, Vietnam time, as for the deadline sweep.
- ``refused`` (02) and ``revoked`` deliveries.

Ranking: electronic share first (higher is better), then share handled to 06, then median
time to 06 (lower is better), then code; units that sent nothing rank last.

The report is one pass over the period's documents and one over its deliveries, grouped by
unit in PostgreSQL (the percentiles need every value of a unit); the directory is read once
to map agencies to units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Any

from router.ledger import Conn
from schemas.agency_code import AgencyCode
from schemas.reasons import LienthongError, Reason

__all__ = [
    "COLUMNS",
    "MAX_PERIOD",
    "VIETNAM",
    "Level",
    "UnitStats",
    "canonical",
    "current_quarter",
    "national_report",
    "parse_level",
    "parse_period",
    "rank",
    "unit_kind",
    "unit_of",
]


VIETNAM = timezone(timedelta(hours=7))
MAX_PERIOD = timedelta(days=366)


def _moment(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=VIETNAM)


def parse_period(start: str, end: str) -> tuple[datetime, datetime]:
    """[start, end) from ISO 8601 dates or times; without a zone they are Vietnam time.

    Raises :class:`LienthongError` (:attr:`Reason.BAD_REPORT_PERIOD`) when either does
    not parse, start is not before end, or the period is longer than :data:`MAX_PERIOD`.
    """
    try:
        t0, t1 = _moment(start).astimezone(UTC), _moment(end).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise LienthongError(Reason.BAD_REPORT_PERIOD, str(exc)[:200]) from None
    if not t0 < t1:
        raise LienthongError(Reason.BAD_REPORT_PERIOD, f"{start} is not before {end}")
    if t1 - t0 > MAX_PERIOD:
        raise LienthongError(Reason.BAD_REPORT_PERIOD, f"{start} → {end} is over 366 days")
    return t0, t1


def current_quarter(now: datetime) -> tuple[datetime, datetime]:
    """The quarter ``now`` is in, Vietnam time, up to the end of today: the default period."""
    today = now.astimezone(VIETNAM).date()
    first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return (datetime.combine(first, time(), VIETNAM),
            datetime.combine(today + timedelta(days=1), time(), VIETNAM))


def parse_level(text: str) -> Level:
    """:class:`Level` from its value; :attr:`Reason.BAD_REPORT_LEVEL` otherwise."""
    try:
        return Level(text)
    except ValueError:
        raise LienthongError(Reason.BAD_REPORT_LEVEL, text[:64]) from None


class Level(Enum):
    """Which level-1 units a ranking shows (the drill-down takes ``within`` instead)."""

    ALL = "all"
    MINISTRIES = "ministries"  # level-1 letter G: bộ, ngành, cơ quan Chính phủ
    PROVINCES = "provinces"  # level-1 letter H: tỉnh, thành phố trực thuộc TW


@dataclass(frozen=True, slots=True)
class UnitStats:
    rank: int
    unit: str
    name: str
    kind: str  # ministry | province | other | agency
    sent: int
    sent_paper: int
    electronic_share: float | None
    received: int
    done: int
    done_share: float | None
    late: int
    refused: int
    revoked: int
    to_01_median_s: float | None
    to_01_p90_s: float | None
    to_03_median_s: float | None
    to_03_p90_s: float | None
    to_06_median_s: float | None
    to_06_p90_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = tuple(UnitStats.__dataclass_fields__)


def _level1(code: str) -> str | None:
    try:
        c = AgencyCode.parse(code)
    except LienthongError:
        return None
    return c.province_suffix


def unit_of(code: str, parents: dict[str, str | None]) -> str:
    """The unit (a level-1 code in its four-field spelling) an agency's figures go to.

    ``parents``: code → parent_code as the directory states them, to place agencies whose
    code says nothing. Cycles and long chains stop after 8 steps.
    """
    here: str | None = code
    for _ in range(8):
        if here is None:
            break
        top = _level1(here)
        if top is not None:
            return f"000.00.00.{top}"
        here = parents.get(here)
    return code


def unit_kind(unit: str) -> str:
    """ministry (G), province (H) or other, from the unit's level-1 letter."""
    top = _level1(unit)
    if top is None:
        return "other"
    return {"G": "ministry", "H": "province"}.get(top[0], "other")


_REPORT = """
WITH m AS (SELECT * FROM unnest($3::bigint[], $4::text[]) AS m(agency_id, unit)),
r AS (
    SELECT m.unit,
        count(*) AS received,
        count(d.done_at) AS done,
        count(d.refused_at) AS refused,
        count(*) FILTER (WHERE d.state = 'revoked') AS revoked,
        count(*) FILTER (
            WHERE d.due_at IS NOT NULL
              AND d.state NOT IN ('refused', 'revoked', 'replaced', 'recalled')
              AND COALESCE(d.done_at, $5)
                  >= (d.due_at + 1)::timestamp AT TIME ZONE 'UTC' - interval '7 hours'
        ) AS late,
        percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.arrived_at - d.queued_at)) AS t01,
        percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.accepted_at - d.queued_at)) AS t03,
        percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.done_at - d.queued_at)) AS t06
    FROM deliveries d JOIN m ON m.agency_id = d.recipient_agency_id
    WHERE d.kind = 'edoc' AND d.created_at >= $1 AND d.created_at < $2
    GROUP BY m.unit),
s AS (
    SELECT m.unit, count(*) AS sent, count(*) FILTER (WHERE doc.paper) AS sent_paper
    FROM documents doc JOIN m ON m.agency_id = doc.sender_agency_id
    WHERE doc.kind = 'edoc' AND doc.received_at >= $1 AND doc.received_at < $2
    GROUP BY m.unit)
SELECT COALESCE(r.unit, s.unit) AS unit, COALESCE(s.sent, 0) AS sent,
       COALESCE(s.sent_paper, 0) AS sent_paper, COALESCE(r.received, 0) AS received,
       COALESCE(r.done, 0) AS done, COALESCE(r.late, 0) AS late,
       COALESCE(r.refused, 0) AS refused, COALESCE(r.revoked, 0) AS revoked,
       r.t01, r.t03, r.t06
FROM r FULL JOIN s ON s.unit = r.unit
"""


async def canonical(conn: Conn, code: str) -> str:
    """The directory's code for ``code`` (any alias: ``G12``, ``BTC``), else its normalised
    text; :attr:`Reason.BAD_REPORT_LEVEL` when it is not a code at all."""
    try:
        text = str(AgencyCode.parse(code))
    except LienthongError:
        raise LienthongError(Reason.BAD_REPORT_LEVEL, code[:64]) from None
    known = await conn.fetchval(
        "SELECT a.code FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id "
        "WHERE al.alias = $1", text)
    return str(known) if known is not None else text


async def national_report(
    conn: Conn,
    *,
    start: datetime,
    end: datetime,
    level: Level = Level.ALL,
    within: str | None = None,
    now: datetime | None = None,
) -> list[UnitStats]:
    """Ranked rows for [start, end): one per level-1 unit of ``level`` that sent or
    received documents, or, with ``within`` (any code of a tree, e.g. ``H41``), one per
    agency of that tree. ``now``: when open deliveries are judged late (default: end)."""
    agencies = await conn.fetch("SELECT id, code, name, parent_code FROM agencies")
    parents = {r["code"]: r["parent_code"] for r in agencies}
    names = {r["code"]: r["name"] for r in agencies}
    units = {r["id"]: unit_of(r["code"], parents) for r in agencies}
    if within is not None:
        tree = unit_of(await canonical(conn, within), parents)
        keep = {i for i, u in units.items() if u == tree}
        code_of = {r["id"]: r["code"] for r in agencies}
        mapping = {i: code_of[i] for i in keep}
    else:
        wanted = {Level.MINISTRIES: "ministry", Level.PROVINCES: "province"}.get(level)
        mapping = {i: u for i, u in units.items() if wanted is None or unit_kind(u) == wanted}
    if not mapping:
        return []
    rows = await conn.fetch(
        _REPORT, start, end, list(mapping), list(mapping.values()), now or end
    )
    return rank(

            {
                **{k: r[k] for k in ("unit", "sent", "sent_paper", "received", "done", "late",
                                     "refused", "revoked")},
                "name": names.get(r["unit"], r["unit"]),
                "kind": "agency" if within is not None else unit_kind(r["unit"]),
                "t01": r["t01"], "t03": r["t03"], "t06": r["t06"],
            }
            for r in rows

    )


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _p(v: list[float | None] | None, i: int) -> float | None:
    x = None if v is None else v[i]
    return None if x is None else round(float(x), 3)


def rank(rows: Iterable[dict[str, Any]]) -> list[UnitStats]:
    """Order and number the rows (see the module docstring for the order)."""
    built = [
        UnitStats(
            rank=0, unit=r["unit"], name=r["name"], kind=r["kind"], sent=r["sent"],
            sent_paper=r["sent_paper"],
            electronic_share=_share(r["sent"] - r["sent_paper"], r["sent"]),
            received=r["received"], done=r["done"], done_share=_share(r["done"], r["received"]),
            late=r["late"], refused=r["refused"], revoked=r["revoked"],
            to_01_median_s=_p(r["t01"], 0), to_01_p90_s=_p(r["t01"], 1),
            to_03_median_s=_p(r["t03"], 0), to_03_p90_s=_p(r["t03"], 1),
            to_06_median_s=_p(r["t06"], 0), to_06_p90_s=_p(r["t06"], 1),
        )
        for r in rows
    ]

    def key(u: UnitStats) -> tuple[int, float, float, float, str]:
        inf = float("inf")
        return (
            0 if u.sent else 1,
            -(u.electronic_share or 0.0),
            -(u.done_share or 0.0),
            u.to_06_median_s if u.to_06_median_s is not None else inf,
            u.unit,
        )

    built.sort(key=key)
    return [
        UnitStats(**{**u.as_dict(), "rank": i}) for i, u in enumerate(built, start=1)
    ]
