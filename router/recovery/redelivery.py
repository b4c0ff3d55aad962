"""Batch re-delivery: send copies again to recipient gateways, safely and in bulk.

Operators pick deliveries with a :class:`RedeliveryFilter` (recipient agency or gateway,
sender, delivery state, reason, period, explicit ids), look at :func:`preview` (counts per
recipient and a sample), then :func:`run` it. A run:

* is recorded in ``redelivery_jobs`` (who, when, filter, counts, outcome) before it starts;
* walks the matching deliveries in id order, a batch at a time, publishing copies with
  pipelined confirms; each batch's ledger updates and the job's progress (cursor) are
  written in one transaction, so an interrupted job resumes where it stopped;
* keeps each copy's ``message_id`` (the hub's copy id) and headers: a gateway that already
  has a copy drops the new one as a duplicate;
* honours ``rate`` (copies per second) so a recovering gateway is not flooded;
* tells the senders each delivery's new state (signed ``delivery`` receipts, whoever
  started the job: the CLI or the ops API).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from router.ledger import Conn
from router.outbox.outbox import Outbox
from router.outbox.publish import MARK_SQL
from router.recovery import archive
from router.routing.batch import Copy
from schemas.agency_code import normalize
from schemas.reasons import Reason

__all__ = [
    "DEFAULT_STATES",
    "RedeliveryFilter",
    "RedeliveryJob",
    "RedeliveryPreview",
    "load_job",
    "preview",
    "resend_copies",
    "run",
]

DEFAULT_STATES = ("undeliverable",)
REDELIVERABLE = ("undeliverable", "queued", "submitted")


@dataclass(frozen=True, slots=True)
class RedeliveryFilter:
    """Which deliveries to send again. Empty fields do not filter."""

    states: tuple[str, ...] = DEFAULT_STATES
    recipient: str | None = None  # agency code or alias
    gateway: str | None = None  # recipient gateway id
    sender: str | None = None  # sender agency code or alias
    reason_code: int | None = None  # last_reason_code of the delivery
    since: datetime | None = None  # delivery created at or after
    until: datetime | None = None  # delivery created before
    not_arrived: bool = False  # only deliveries flagged "not arrived"
    delivery_ids: tuple[uuid.UUID, ...] = ()
    hub_ids: tuple[uuid.UUID, ...] = ()

    def __post_init__(self) -> None:
        bad = [s for s in self.states if s not in REDELIVERABLE]
        if bad:
            raise ValueError(
                f"cannot re-deliver deliveries in state {', '.join(bad)}: only "
                f"{', '.join(REDELIVERABLE)} (a recipient that answered already has it)"
            )

    def as_json(self) -> str:
        d = dataclasses.asdict(self)
        d["since"] = self.since.isoformat() if self.since else None
        d["until"] = self.until.isoformat() if self.until else None
        d["delivery_ids"] = [str(x) for x in self.delivery_ids]
        d["hub_ids"] = [str(x) for x in self.hub_ids]
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RedeliveryFilter:
        d = json.loads(text)
        return cls(
            states=tuple(d.get("states") or DEFAULT_STATES),
            recipient=d.get("recipient"),
            gateway=d.get("gateway"),
            sender=d.get("sender"),
            reason_code=d.get("reason_code"),
            since=datetime.fromisoformat(d["since"]) if d.get("since") else None,
            until=datetime.fromisoformat(d["until"]) if d.get("until") else None,
            not_arrived=bool(d.get("not_arrived")),
            delivery_ids=tuple(uuid.UUID(x) for x in d.get("delivery_ids") or ()),
            hub_ids=tuple(uuid.UUID(x) for x in d.get("hub_ids") or ()),
        )


_WHERE = """
    d.state = ANY($1::text[])
    AND ($2::text IS NULL OR d.recipient_agency_id =
         (SELECT agency_id FROM agency_aliases WHERE alias = $2))
    AND ($3::text IS NULL OR d.gateway_id = $3)
    AND ($4::text IS NULL OR doc.sender_agency_id =
         (SELECT agency_id FROM agency_aliases WHERE alias = $4))
    AND ($5::int IS NULL OR d.last_reason_code = $5)
    AND ($6::timestamptz IS NULL OR d.created_at >= $6)
    AND ($7::timestamptz IS NULL OR d.created_at < $7)
    AND (NOT $8::bool OR d.not_arrived_at IS NOT NULL)
    AND (cardinality($9::uuid[]) = 0 OR d.id = ANY($9::uuid[]))
    AND (cardinality($10::uuid[]) = 0 OR d.hub_id = ANY($10::uuid[]))
"""


def _args(flt: RedeliveryFilter) -> list[Any]:
    return [
        list(flt.states),
        normalize(flt.recipient) if flt.recipient else None,
        flt.gateway,
        normalize(flt.sender) if flt.sender else None,
        flt.reason_code,
        flt.since,
        flt.until,
        flt.not_arrived,
        list(flt.delivery_ids),
        list(flt.hub_ids),
    ]


@dataclass(slots=True)
class RedeliveryPreview:
    total: int
    per_recipient: list[dict[str, Any]]  # agency, name, gateway, count
    sample: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "per_recipient": self.per_recipient,
                "sample": self.sample}


async def preview(
    conn: Conn, flt: RedeliveryFilter, *, sample: int = 5
) -> RedeliveryPreview:
    """What :func:`run` would send: counts per recipient and a few examples."""
    rows = await conn.fetch(
        f"""SELECT a.code AS agency, a.name, d.gateway_id AS gateway, count(*) AS count
            FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
            JOIN agencies a ON a.id = d.recipient_agency_id
            WHERE {_WHERE}
            GROUP BY a.code, a.name, d.gateway_id ORDER BY count(*) DESC, a.code""",  # noqa: S608
        *_args(flt),
    )
    examples = await conn.fetch(
        f"""SELECT d.id AS delivery_id, d.hub_id, a.code AS recipient, d.gateway_id AS gateway,
                   d.state, doc.edxml_document_id AS document_id, doc.sender_code AS sender,
                   d.created_at, d.last_reason_code
            FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
            JOIN agencies a ON a.id = d.recipient_agency_id
            WHERE {_WHERE} ORDER BY d.created_at LIMIT {int(sample)}""",  # noqa: S608
        *_args(flt),
    )
    per = [dict(r) for r in rows]
    return RedeliveryPreview(
        total=sum(int(r["count"]) for r in per),
        per_recipient=per,
        sample=[{k: (str(v) if isinstance(v, uuid.UUID | datetime) else v)
                 for k, v in dict(r).items()} for r in examples],
    )


@dataclass(slots=True)
class RedeliveryJob:
    id: uuid.UUID
    actor: str
    filter: RedeliveryFilter
    rate: float | None
    state: str = "running"
    total: int = 0
    done: int = 0
    queued: int = 0
    undeliverable: int = 0
    cursor_id: uuid.UUID | None = None
    error: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    elapsed: float = field(default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "actor": self.actor,
            "filter": json.loads(self.filter.as_json()),
            "rate": self.rate,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "queued": self.queued,
            "undeliverable": self.undeliverable,
            "error": self.error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


async def load_job(conn: Conn, job_id: uuid.UUID) -> RedeliveryJob | None:
    r = await conn.fetchrow("SELECT * FROM redelivery_jobs WHERE id = $1", job_id)
    if r is None:
        return None
    return RedeliveryJob(
        id=r["id"], actor=r["actor"], filter=RedeliveryFilter.from_json(r["filter"]),
        rate=r["rate"], state=r["state"], total=r["total"], done=r["done"],
        queued=r["queued"], undeliverable=r["undeliverable"], cursor_id=r["cursor_id"],
        error=r["error"], created_at=r["created_at"], finished_at=r["finished_at"],
    )


Progress = Callable[[RedeliveryJob], None]


async def run(
    pool: asyncpg.Pool,
    outbox: Outbox,
    flt: RedeliveryFilter | None = None,
    *,
    actor: str,
    rate: float | None = None,
    batch_size: int = 500,
    resume: uuid.UUID | None = None,
    progress: Progress | None = None,
) -> RedeliveryJob:
    """Re-deliver what ``flt`` matches (or resume job ``resume``) through ``outbox``, and
    tell the senders each delivery's new state (signed ``delivery`` receipts). Returns
    the job."""
    async with pool.acquire() as conn:
        if resume is not None:
            job = await load_job(conn, resume)
            if job is None:
                raise KeyError(f"no re-delivery job {resume}")
            if job.state == "done":
                return job
            job.state = "running"
            await conn.execute(
                "UPDATE redelivery_jobs SET state = 'running', updated_at = now() WHERE id = $1",
                job.id,
            )
        else:
            assert flt is not None
            total = (await preview(conn, flt, sample=0)).total
            job = RedeliveryJob(id=uuid.uuid4(), actor=actor, filter=flt, rate=rate, total=total)
            await conn.execute(
                """INSERT INTO redelivery_jobs (id, actor, filter, rate, total)
                   VALUES ($1, $2, $3::jsonb, $4, $5)""",
                job.id, actor, flt.as_json(), rate, total,
            )
            await conn.execute(
                "INSERT INTO audit_log (actor, action, subject, details) "
                "VALUES ($1, 'redelivery.started', $2, $3::jsonb)",
                actor, str(job.id), flt.as_json(),
            )
    if rate:
        batch_size = max(1, min(batch_size, int(rate)))
    started = time.monotonic()
    sent_at_start = job.done
    try:
        while True:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    f"""SELECT d.id, d.hub_id, d.gateway_id, d.copy_id, a.code AS agency,
                               doc.kind, doc.body, doc.archive_ref, doc.content_sha256,
                               sa.code AS sender_code,
                               doc.edxml_document_id, doc.status_code
                        FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
                        JOIN agencies a ON a.id = d.recipient_agency_id
                        JOIN agencies sa ON sa.id = doc.sender_agency_id
                        WHERE {_WHERE} AND ($11::uuid IS NULL OR d.id > $11)
                        ORDER BY d.id LIMIT $12""",  # noqa: S608
                    *_args(job.filter), job.cursor_id, batch_size,
                )
            if not rows:
                break
            states = await outbox.copies(_copies(rows))
            ids = list(states)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    MARK_SQL, ids, [states[i] for i in ids], Reason.UNDELIVERABLE.code,
                    ["redelivered", f"job:{job.id}"],
                )
                job.cursor_id = rows[-1]["id"]
                job.done += len(rows)
                job.queued += sum(s == "queued" for s in states.values())
                job.undeliverable += sum(s == "undeliverable" for s in states.values())
                await conn.execute(
                    """UPDATE redelivery_jobs SET done = $2, queued = $3, undeliverable = $4,
                           cursor_id = $5, updated_at = now() WHERE id = $1""",
                    job.id, job.done, job.queued, job.undeliverable, job.cursor_id,
                )
            async with pool.acquire() as conn:  # tell the senders what changed
                await outbox.events(conn, ids, cause=f"redelivered:{job.id}")
            if progress:
                progress(job)
            if rate:
                # keep the average at or under `rate` copies per second
                ahead = (job.done - sent_at_start) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        job.state = "done"
    except (asyncio.CancelledError, KeyboardInterrupt):
        job.state = "interrupted"
        raise
    except Exception as exc:
        job.state = "failed"
        job.error = repr(exc)[:2000]
        raise
    finally:
        job.elapsed = time.monotonic() - started
        async with pool.acquire() as conn:
            await conn.execute(
                """UPDATE redelivery_jobs SET state = $2, error = $3, updated_at = now(),
                       finished_at = CASE WHEN $2 = 'done' THEN now() END
                   WHERE id = $1""",
                job.id, job.state, job.error,
            )
            await conn.execute(
                "INSERT INTO audit_log (actor, action, subject, details) "
                "VALUES ($1, $2, $3, $4::jsonb)",
                job.actor, f"redelivery.{job.state}", str(job.id),
                json.dumps({"done": job.done, "queued": job.queued,
                            "undeliverable": job.undeliverable}),
            )
    return job


def _body(row: asyncpg.Record) -> bytes:
    """The package as the sender sent it: from the ledger, or from its archive file
    (`lienthong archive`), checked against its SHA-256."""
    if row["body"] is not None:
        return bytes(row["body"])
    return archive.read_body(row["archive_ref"], bytes(row["content_sha256"]))


async def resend_copies(
    conn: Conn, outbox: Outbox, delivery_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Publish the copies of these deliveries once more, each with its original copy id,
    whatever their state, and leave the ledger as it is: a duplicate the recipient gateway
    must drop (the conformance check and the sandbox's ``duplicate`` fault). Returns the
    broker's outcome per delivery (queued | undeliverable)."""
    rows = await conn.fetch(
        """SELECT d.id, d.hub_id, d.gateway_id, d.copy_id, a.code AS agency,
                  doc.kind, doc.body, doc.archive_ref, doc.content_sha256,
                  sa.code AS sender_code,
                  doc.edxml_document_id, doc.status_code
           FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
           JOIN agencies a ON a.id = d.recipient_agency_id
           JOIN agencies sa ON sa.id = doc.sender_agency_id
           WHERE d.id = ANY($1::uuid[]) ORDER BY d.id""",
        list(delivery_ids),
    )
    return await outbox.copies(_copies(rows))


def _copies(rows: Sequence[asyncpg.Record]) -> list[Copy]:
    """One copy per (document, gateway), with the original copy id."""
    copies: dict[tuple[uuid.UUID, str], Copy] = {}
    for r in rows:
        key = (r["hub_id"], r["gateway_id"])
        c = copies.get(key)
        if c is None:
            c = copies[key] = Copy(
                gateway_id=r["gateway_id"],
                copy_id=r["copy_id"],
                hub_id=r["hub_id"],
                kind=r["kind"],
                body=_body(r),
                sender=r["sender_code"],
                document_id=r["edxml_document_id"],
                status_code=r["status_code"],
            )
        c.delivery_ids.append(r["id"])
        c.recipients.append(r["agency"])
    return list(copies.values())
