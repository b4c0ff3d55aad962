"""Statistics per agency and period, as the ministries report them (and rank provinces on
e-document use): sent, received, accepted, refused, done, revoked; median and p90 time to
01, 03 and 06; not-arrived and overdue counts.

A period selects documents by the time the hub received them (``received_at``) and
deliveries by the time they were created (the same moment). Times to 01/03/06 run from
the moment the copy was queued in the recipient's inbox to the moment the hub received the
recipient's first status package with that code (or a later one: a 03 implies the
document arrived). The whole report is one pass over the period's deliveries.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from router.ledger import Conn
from schemas.agency_code import normalize

__all__ = ["COLUMNS", "AgencyStats", "agency_report"]


@dataclass(frozen=True, slots=True)
class AgencyStats:
    agency: str
    name: str
    sent: int
    received: int
    accepted: int
    refused: int
    done: int
    revoked: int
    not_arrived: int
    overdue: int
    to_01_median_s: float | None
    to_01_p90_s: float | None
    to_03_median_s: float | None
    to_03_p90_s: float | None
    to_06_median_s: float | None
    to_06_p90_s: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


COLUMNS = tuple(AgencyStats.__dataclass_fields__)

_REPORT = """
WITH r AS (
    SELECT d.recipient_agency_id AS agency_id,
        count(*) AS received,
        count(d.accepted_at) AS accepted,
        count(d.refused_at) AS refused,
        count(d.done_at) AS done,
        count(*) FILTER (WHERE d.state = 'revoked') AS revoked,
        count(d.not_arrived_at) AS not_arrived,
        count(d.overdue_at) AS overdue,
        percentile_cont(0.5) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.arrived_at - d.queued_at)) AS a50,
        percentile_cont(0.9) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.arrived_at - d.queued_at)) AS a90,
        percentile_cont(0.5) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.accepted_at - d.queued_at)) AS c50,
        percentile_cont(0.9) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.accepted_at - d.queued_at)) AS c90,
        percentile_cont(0.5) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.done_at - d.queued_at)) AS d50,
        percentile_cont(0.9) WITHIN GROUP
            (ORDER BY extract(epoch FROM d.done_at - d.queued_at)) AS d90
    FROM deliveries d
    WHERE d.kind = 'edoc' AND d.created_at >= $1 AND d.created_at < $2
      AND ($3::bigint IS NULL OR d.recipient_agency_id = $3)
    GROUP BY d.recipient_agency_id),
s AS (
    SELECT sender_agency_id AS agency_id, count(*) AS sent
    FROM documents
    WHERE kind = 'edoc' AND received_at >= $1 AND received_at < $2
      AND ($3::bigint IS NULL OR sender_agency_id = $3)
    GROUP BY sender_agency_id)
SELECT a.code AS agency, a.name, COALESCE(s.sent, 0) AS sent,
       COALESCE(r.received, 0) AS received, COALESCE(r.accepted, 0) AS accepted,
       COALESCE(r.refused, 0) AS refused, COALESCE(r.done, 0) AS done,
       COALESCE(r.revoked, 0) AS revoked, COALESCE(r.not_arrived, 0) AS not_arrived,
       COALESCE(r.overdue, 0) AS overdue,
       r.a50, r.a90, r.c50, r.c90, r.d50, r.d90
FROM (SELECT agency_id FROM r UNION SELECT agency_id FROM s) ids
JOIN agencies a ON a.id = ids.agency_id
LEFT JOIN r ON r.agency_id = ids.agency_id
LEFT JOIN s ON s.agency_id = ids.agency_id
ORDER BY a.code
"""


async def agency_report(
    conn: Conn,
    *,
    start: datetime,
    end: datetime,
    agency: str | None = None,
) -> list[AgencyStats]:
    """One row per agency that sent or received documents in [start, end)."""
    agency_id = None
    if agency:
        agency_id = await conn.fetchval(
            "SELECT agency_id FROM agency_aliases WHERE alias = $1", normalize(agency)
        )
        if agency_id is None:
            return []
    rows = await conn.fetch(_REPORT, start, end, agency_id)

    def f(v: Any) -> float | None:
        return None if v is None else round(float(v), 3)

    return [
        AgencyStats(
            agency=r["agency"], name=r["name"], sent=r["sent"], received=r["received"],
            accepted=r["accepted"], refused=r["refused"], done=r["done"], revoked=r["revoked"],
            not_arrived=r["not_arrived"], overdue=r["overdue"],
            to_01_median_s=f(r["a50"]), to_01_p90_s=f(r["a90"]),
            to_03_median_s=f(r["c50"]), to_03_p90_s=f(r["c90"]),
            to_06_median_s=f(r["d50"]), to_06_p90_s=f(r["d90"]),
        )
        for r in rows
    ]
