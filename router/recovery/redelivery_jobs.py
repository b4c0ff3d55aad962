"""Looking up re-delivery jobs for operators: recent jobs, one job by id.

(A reader's companion to :mod:`router.recovery.redelivery`, which runs the jobs; kept
apart so the ops API and the CLI read jobs without SQL of their own.)
"""

from __future__ import annotations

import uuid

from router.ledger import Conn
from router.recovery.redelivery import RedeliveryJob, load_job
from schemas.reasons import OperationRefused, Reason

__all__ = ["job", "recent_jobs"]


async def recent_jobs(conn: Conn, limit: int = 20) -> list[RedeliveryJob]:
    """The newest ``limit`` jobs (1..200), newest first."""
    limit = max(1, min(int(limit), 200))
    ids = await conn.fetch(
        "SELECT id FROM redelivery_jobs ORDER BY created_at DESC, id LIMIT $1", limit
    )
    jobs = [await load_job(conn, r["id"]) for r in ids]
    return [j for j in jobs if j is not None]


async def job(conn: Conn, job_id: uuid.UUID) -> RedeliveryJob:
    """Job ``job_id``; :class:`OperationRefused` (OPS_JOB_NOT_FOUND) when there is none."""
    found = await load_job(conn, job_id)
    if found is None:
        raise OperationRefused(Reason.OPS_JOB_NOT_FOUND, f"job {job_id}")
    return found
