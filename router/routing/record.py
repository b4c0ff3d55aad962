"""The one batch transaction: write what ``router.routing.decide`` decided.

Documents, deliveries, status events, business effects, rejections and audit rows of a
batch in one transaction. The rows read under lock inside it (the deliveries a status acts
on, the documents already stored under a dedup key) go back to the decision step
(``check_transitions``, ``settle_clashes``): the rules stay there.

Most batches are written **in one statement** (:func:`_record_at_once`): no document of
theirs is stored yet and the deliveries their statuses act on are as the look-up read them
(``Facts.deliveries``). The statement inserts everything and moves those deliveries on
only where their state is still the one the decision saw; if a document was stored
meanwhile or a state moved, ``lienthong_batch_whole`` raises and nothing of the statement
stays: the batch is then written as before, in a transaction that locks what it reads.
The same rows either way; one round trip instead of four to six, and about a fifth less
time per package in this step (``python -m bench.compare … --latency``).

The big inserts name their columns once, in a ``NamedTuple`` whose field order is the
column order (never the insertion order of a dict): :func:`unnest_insert` builds the
statement from it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any, NamedTuple, get_type_hints

import asyncpg

from router import metrics
from router.ledger import Conn
from router.routing import decide, lifecycle
from router.routing.decide import (
    Clash,
    DeliveryState,
    Incoming,
    Plan,
    Rejection,
    Stored,
    derive_id,
)
from router.routing.lifecycle import apply_status
from router.routing.plan import (
    BatchPlan,
    Copy,
    OutgoingReceipt,
    PendingReceipt,
    accepted_receipt,
    document_id,
    new_copy,
    rejection_receipt,
    status_code,
    status_event,
)
from schemas import BusinessDocType, EdocPackage, StatusPackage

__all__ = ["BATCH_CHANGED", "DocumentRow", "Recorded", "RejectionRow", "record",
           "unnest_insert"]

# raised by lienthong_batch_whole (migration 0013): the one-statement write found the
# ledger changed since the look-up; the batch is written again under locks
BATCH_CHANGED = "LT409"
_DEADLOCK = "40P01"


class DocumentRow(NamedTuple):
    """One ``documents`` row; the field order is the column order of the insert."""

    hub_id: Annotated[uuid.UUID, "uuid"]
    kind: Annotated[str, "text"]
    dedup_key: Annotated[str, "text"]
    edxml_document_id: Annotated[str | None, "text"]
    sender_agency_id: Annotated[int, "bigint"]
    sender_code: Annotated[str, "text"]
    sender_gateway_id: Annotated[str, "text"]
    business_type: Annotated[int | None, "smallint"]
    status_code: Annotated[str | None, "text"]
    target_hub_id: Annotated[uuid.UUID | None, "uuid"]
    content_sha256: Annotated[bytes, "bytea"]
    size_bytes: Annotated[int, "int"]
    code_text: Annotated[str | None, "text"]
    subject: Annotated[str | None, "text"]
    promulgation_date: Annotated[date | None, "date"]
    due_date: Annotated[date | None, "date"]
    message_id: Annotated[str | None, "text"]
    warnings: Annotated[str, "jsonb"]
    body: Annotated[bytes, "bytea"]
    paper: Annotated[bool | None, "boolean"]


class RejectionRow(NamedTuple):
    """One ``rejections`` row; the field order is the column order of the insert."""

    id: Annotated[uuid.UUID, "uuid"]
    amqp_user: Annotated[str | None, "text"]
    gateway_id: Annotated[str | None, "text"]
    message_id: Annotated[str | None, "text"]
    routing_key: Annotated[str, "text"]
    reason: Annotated[str, "text"]
    reason_code: Annotated[int, "int"]
    detail: Annotated[str, "text"]
    size_bytes: Annotated[int, "int"]
    content_sha256: Annotated[bytes, "bytea"]
    body: Annotated[bytes | None, "bytea"]


def unnest_insert(table: str, row: type[tuple[Any, ...]], suffix: str = "", *,
                  first: int = 1) -> str:
    """``INSERT INTO table (c1, …) SELECT * FROM unnest($1::t1[], …)``: the columns and
    their PostgreSQL types are the fields of the ``NamedTuple`` ``row``, in their order;
    the parameters are numbered from ``first``."""
    fields: tuple[str, ...] = row._fields  # type: ignore[attr-defined]
    hints = get_type_hints(row, include_extras=True)
    casts = ", ".join(
        f"${i}::{hints[f].__metadata__[0]}[]" for i, f in enumerate(fields, start=first)
    )
    # identifiers and types come from this module's row classes, never from input
    sql = f"INSERT INTO {table} ({', '.join(fields)}) SELECT * FROM unnest({casts})"  # noqa: S608
    return f"{sql} {suffix}" if suffix else sql


def _placeholders(first: int, types: str) -> str:
    """``$first::t1[], $first+1::t2[], …`` for the space-separated ``types``."""
    return ", ".join(f"${i}::{t}[]" for i, t in enumerate(types.split(), start=first))


def _deliveries_sql(first: int, only_of: str = "") -> str:
    """The deliveries of the documents of a batch (their columns from ``$first``), each
    with state ``submitted``; ``only_of``: the CTE of the documents actually inserted."""
    where = f"WHERE t.h IN (SELECT hub_id FROM {only_of})" if only_of else ""  # noqa: S608
    return f"""INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code,
        gateway_id, copy_id, state, due_at, kind)
    SELECT i, h, a, c, g, cp, 'submitted', du, k
    FROM unnest({_placeholders(first, "uuid uuid bigint text text uuid date text")})
         AS t(i, h, a, c, g, cp, du, k) {where}
    ON CONFLICT DO NOTHING RETURNING id"""  # noqa: S608 (placeholders only)


_DOCUMENT_COLUMNS = len(DocumentRow._fields)
# documents, the deliveries of those inserted (a clash inserts none) and their first event,
# in one statement: a round trip less per batch (the deliveries' foreign key is checked
# at the end of the statement, when the documents are there)
_INSERT_DOCUMENTS = f"""WITH ins AS ({unnest_insert(
    "documents", DocumentRow, "ON CONFLICT (dedup_key) DO NOTHING RETURNING hub_id, dedup_key")}),
d AS ({_deliveries_sql(_DOCUMENT_COLUMNS + 1, only_of="ins")}),
e AS (INSERT INTO status_events (delivery_id, state) SELECT id, 'submitted' FROM d)
SELECT dedup_key FROM ins"""  # noqa: S608 (identifiers from this module only)
_REJECTION_COLUMNS = len(RejectionRow._fields)


def _audit_sql(first: int) -> str:
    """The batch's audit rows: actor, action, subject, details (``_audit_rows``)."""
    return f"""INSERT INTO audit_log (actor, action, subject, details)
    SELECT a, b, c, d::jsonb
    FROM unnest({_placeholders(first, "text text text text")}) AS u(a, b, c, d)"""  # noqa: S608


_DELIVERY_COLUMNS = 8  # the deliveries of the batch's documents (see _delivery_columns)
_EVENT_COLUMNS = 8  # status events of the batch's statuses (see _status_changes)
_UPDATE_COLUMNS = 7  # their deliveries' new state, and the state the decision saw


def _status_events_sql(first: int) -> str:
    return f"""INSERT INTO status_events (delivery_id, status_hub_id, status_code, state,
        issuer_code, description, event_time, flags)
    SELECT d, h, c, s, i, x, t, COALESCE(string_to_array(f, ','), '{{}}')
    FROM unnest({_placeholders(first, "uuid uuid text text text text timestamptz text")})
         AS u(d, h, c, s, i, x, t, f)"""  # noqa: S608 (placeholders only)


def _status_update_sql(first: int) -> str:
    """The deliveries' new state, where their state (and recall state) is still the one
    the decision saw (``w``, ``wr``: under the transaction's lock it always is)."""
    return f"""UPDATE deliveries d SET state = u.s, recall_state = u.r,
        last_status_code = u.c, updated_at = now(),
        arrived_at = CASE WHEN x.cs && '{{01,03,04,05,06}}'::text[]
                          THEN COALESCE(d.arrived_at, now()) ELSE d.arrived_at END,
        accepted_at = CASE WHEN x.cs && '{{03,04,05,06}}'::text[]
                           THEN COALESCE(d.accepted_at, now()) ELSE d.accepted_at END,
        refused_at = CASE WHEN '02' = ANY(x.cs) AND u.s = 'refused'
                          THEN COALESCE(d.refused_at, now()) ELSE d.refused_at END,
        done_at = CASE WHEN '06' = ANY(x.cs)
                       THEN COALESCE(d.done_at, now()) ELSE d.done_at END
    FROM unnest({_placeholders(first, "uuid text text text text text text")})
         AS u(i, s, r, c, cl, w, wr), LATERAL string_to_array(u.cl, ',') AS x(cs)
    WHERE d.id = u.i AND d.state = u.w AND d.recall_state IS NOT DISTINCT FROM u.wr"""  # noqa: S608


# the events and the deliveries' new state in one statement (inside the transaction)
_APPLY_STATUSES = f"""WITH e AS ({_status_events_sql(1)})
{_status_update_sql(_EVENT_COLUMNS + 1)}"""

# the batch's rejections and every audit row (accepted and rejected) in one statement, the
# last of the transaction: the audit chain's head stays locked only until the commit
_INSERT_REJECTIONS_AND_AUDIT = f"""WITH r AS ({unnest_insert(
    "rejections", RejectionRow, "ON CONFLICT (id) DO NOTHING")})
{_audit_sql(_REJECTION_COLUMNS + 1)}"""

_D = _DOCUMENT_COLUMNS + 1  # the deliveries' columns
_E = _D + _DELIVERY_COLUMNS  # the statuses' events
_U = _E + _EVENT_COLUMNS  # the statuses' deliveries
_R = _U + _UPDATE_COLUMNS  # the rejections
_A = _R + _REJECTION_COLUMNS  # the audit rows
_N = _A + 4  # how many documents, deliveries and status updates there must be
# the whole batch in one statement: the documents (none stored yet), their deliveries and
# first events, the statuses' events and their deliveries' new state (each delivery still
# as the decision saw it), the rejections and the audit rows. The counts checked at the
# end say whether all of it applied; if not, nothing did (lienthong_batch_whole raises).
# The CTEs the final SELECT does not read (the events, rejections and audit rows) run
# after it, the audit rows last: the chain's head is locked only until the statement ends.
_RECORD_AT_ONCE = f"""WITH ins AS ({unnest_insert(
    "documents", DocumentRow, "ON CONFLICT (dedup_key) DO NOTHING RETURNING hub_id")}),
d AS ({_deliveries_sql(_D)}),
e AS (INSERT INTO status_events (delivery_id, state) SELECT id, 'submitted' FROM d),
se AS ({_status_events_sql(_E)}),
su AS ({_status_update_sql(_U)} RETURNING d.id),
r AS ({unnest_insert("rejections", RejectionRow, "ON CONFLICT (id) DO NOTHING", first=_R)}),
a AS ({_audit_sql(_A)})
SELECT lienthong_batch_whole(
    (SELECT count(*) FROM ins) = ${_N} AND (SELECT count(*) FROM d) = ${_N + 1}
    AND (SELECT count(*) FROM su) = ${_N + 2})"""  # noqa: S608 (identifiers from this module only)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows to one list per column (what ``unnest`` takes)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[]] * width


@dataclass(slots=True)
class Recorded:
    accepted: list[Plan] = field(default_factory=list)
    duplicates: list[Clash] = field(default_factory=list)
    resumed: list[PendingReceipt] = field(default_factory=list)


async def record(
    conn: Conn,
    batch: Sequence[Incoming],
    decisions: decide.Decisions,
    plan: BatchPlan,
    *,
    max_body_bytes: int,
    known: Mapping[uuid.UUID, DeliveryState] | None = None,
) -> Recorded:
    """Write the batch; fills ``plan`` with the receipts it already knows (rejections,
    duplicates, status events) and the outcomes of rejections. ``known``: the deliveries
    the look-up read (``Facts.deliveries``); with them the batch is written in one
    statement when it can be (see the module's text), else in one transaction."""
    if known is not None:
        done = await _record_at_once(conn, batch, decisions, plan, known,
                                     max_body_bytes=max_body_bytes)
        if done is not None:
            metrics.BATCH_WRITES.labels("one_statement").inc()
            return done
    metrics.BATCH_WRITES.labels("transaction").inc()
    rejects = list(decisions.rejections)
    out = Recorded()
    async with conn.transaction():
        plans, locked = await _check_status_deliveries(conn, decisions.plans, rejects)
        out.accepted, out.duplicates = await _insert_documents(conn, plans, rejects)
        await _apply_statuses(conn, out.accepted, plan, locked)
        await _apply_business(conn, out.accepted, plan)
        rejected = _rejection_rows(batch, rejects, plan, max_body_bytes)
        out.resumed = await _resume(conn, out.duplicates, plan)
        await _insert_rejections_and_audit(conn, rejected, _audit_rows(out.accepted, rejects,
                                                                       batch))
    return out


async def _record_at_once(
    conn: Conn,
    batch: Sequence[Incoming],
    decisions: decide.Decisions,
    plan: BatchPlan,
    known: Mapping[uuid.UUID, DeliveryState],
    *,
    max_body_bytes: int,
) -> Recorded | None:
    """The batch in one statement, or None (nothing written) when it must be written under
    locks: a business package that closes documents, a dedup key twice in the batch, a
    status whose delivery the look-up did not find or whose transition it refuses, or,
    found by the statement itself, a document stored or a delivery moved meanwhile."""
    plans = decisions.plans
    if any(p.targets_closed for p in plans) or \
            len({p.dedup_key for p in plans}) != len(plans):
        return None
    states: dict[uuid.UUID, DeliveryState] = {}
    for p in plans:
        if p.status_delivery is not None:
            if p.status_delivery not in known:
                return None
            states[p.status_delivery] = known[p.status_delivery]
    _, refused = decide.check_transitions(
        plans, {i: (d.state, d.recall_state) for i, d in states.items()})
    if refused:
        return None
    events, updates, receipts = _status_changes(plans, states)
    rejects = list(decisions.rejections)
    scratch = BatchPlan(outcomes=list(plan.outcomes))  # plan changes only if it applied
    rejected = _rejection_rows(batch, rejects, scratch, max_body_bytes)
    deliveries = _delivery_columns(plans)
    try:
        await conn.fetchval(
            _RECORD_AT_ONCE,
            *_columns([_document_row(p) for p in plans], _DOCUMENT_COLUMNS),
            *deliveries, *events, *updates,
            *_columns(rejected, _REJECTION_COLUMNS),
            *_audit_rows(plans, rejects, batch),
            len(plans), len(deliveries[0]), len(updates[0]),
        )
    except asyncpg.PostgresError as exc:
        if exc.sqlstate not in (BATCH_CHANGED, _DEADLOCK):
            raise
        return None
    plan.outcomes[:] = scratch.outcomes
    plan.rejection_reasons += scratch.rejection_reasons
    plan.receipts += receipts
    plan.receipts += scratch.receipts
    return Recorded(accepted=list(plans))


async def _check_status_deliveries(
    conn: Conn, plans: list[Plan], rejects: list[Rejection]
) -> tuple[list[Plan], dict[uuid.UUID, DeliveryState]]:
    """Lock the deliveries status packages act on; the decision step refuses illegal
    transitions. Returns the plans kept and the locked deliveries as they were read."""
    ids = [p.status_delivery for p in plans if p.status_delivery is not None]
    if not ids:
        return plans, {}
    rows = await conn.fetch(
        """SELECT d.id, d.state, d.recall_state, d.recipient_code, a.code AS agency
           FROM deliveries d JOIN agencies a ON a.id = d.recipient_agency_id
           WHERE d.id = ANY($1) ORDER BY d.id FOR UPDATE OF d""",
        ids,
    )
    locked = {r["id"]: DeliveryState(r["state"], r["recall_state"], r["recipient_code"],
                                     r["agency"]) for r in rows}
    kept, refused = decide.check_transitions(
        plans, {i: (d.state, d.recall_state) for i, d in locked.items()}
    )
    rejects.extend(refused)
    return kept, locked


def _document_row(p: Plan) -> DocumentRow:
    pkg = p.parsed.package
    if isinstance(pkg, EdocPackage):
        doc_id, business, status = pkg.document_id, int(pkg.business_type), None
        code, subject = str(pkg.code) or None, pkg.subject
        promulgated, due = pkg.promulgation.promulgation_date, pkg.due_date
        paper = _PAPER.get((pkg.business.paper or "").strip())
    else:
        doc_id, business, status = pkg.response_for.document_id, None, pkg.status_code.value
        code, subject = pkg.response_for.code, pkg.description
        promulgated, due, paper = None, None, None
    return DocumentRow(
        hub_id=p.hub_id,
        kind=pkg.kind,
        dedup_key=p.dedup_key,
        edxml_document_id=doc_id,
        sender_agency_id=p.sender.id,
        sender_code=pkg.sender.organ_id,
        sender_gateway_id=p.gateway_id,
        business_type=business,
        status_code=status,
        target_hub_id=p.target.hub_id if p.target else None,
        content_sha256=p.msg.sha256,
        size_bytes=len(p.msg.body),
        code_text=code,
        subject=subject,
        promulgation_date=promulgated,
        due_date=due,
        message_id=p.msg.message_id,
        warnings=json.dumps([w.as_dict() for w in p.warnings], ensure_ascii=False),
        body=p.msg.body,
        paper=paper,
    )


# Bussiness/Paper: 1 = a paper copy goes alongside, 0 = electronic only; anything else unknown
_PAPER = {"1": True, "0": False}


async def _insert_documents(
    conn: Conn, plans: list[Plan], rejects: list[Rejection]
) -> tuple[list[Plan], list[Clash]]:
    if not plans:
        return [], []
    # the same dedup key twice in one batch: the later ones are duplicates
    first: dict[str, Plan] = {}
    unique: list[Plan] = []
    later: list[Plan] = []
    for p in plans:
        if p.dedup_key in first:
            later.append(p)
        else:
            first[p.dedup_key] = p
            unique.append(p)
    rows = await conn.fetch(
        _INSERT_DOCUMENTS,
        *_columns([_document_row(p) for p in unique], _DOCUMENT_COLUMNS),
        *_delivery_columns(unique),
    )
    inserted = {r["dedup_key"] for r in rows}
    accepted = [p for p in unique if p.dedup_key in inserted]
    clashes = [p for p in unique if p.dedup_key not in inserted] + later
    if not clashes:
        return accepted, []
    existing = await conn.fetch(
        """SELECT dedup_key, hub_id, content_sha256, message_id, sender_gateway_id
           FROM documents WHERE dedup_key = ANY($1)""",
        sorted({p.dedup_key for p in clashes}),
    )
    stored = {
        r["dedup_key"]: Stored(r["hub_id"], bytes(r["content_sha256"]), r["message_id"],
                               r["sender_gateway_id"])
        for r in existing
    }
    duplicates, refused = decide.settle_clashes(clashes, stored, first, later)
    rejects.extend(refused)
    return accepted, duplicates


def _delivery_columns(plans: list[Plan]) -> list[list[Any]]:
    """The ``deliveries`` columns of ``plans``' recipients (inserted with their documents
    by ``_INSERT_DOCUMENTS``, for the documents actually inserted)."""
    ids: list[uuid.UUID] = []
    hubs: list[uuid.UUID] = []
    agencies: list[int] = []
    codes: list[str] = []
    gws: list[str] = []
    copies: list[uuid.UUID] = []
    dues: list[Any] = []
    kinds: list[str] = []
    for p in plans:
        pkg = p.parsed.package
        due = pkg.due_date if isinstance(pkg, EdocPackage) else None
        for code, agency in p.recipients:
            dues.append(due)
            kinds.append(pkg.kind)
            assert agency.gateway_id is not None
            ids.append(derive_id("delivery", p.hub_id, agency.id))
            hubs.append(p.hub_id)
            agencies.append(agency.id)
            codes.append(code)
            gws.append(agency.gateway_id)
            copies.append(derive_id("copy", p.hub_id, agency.gateway_id))
    return [ids, hubs, agencies, codes, gws, copies, dues, kinds]


def _status_changes(
    accepted: Sequence[Plan], current: Mapping[uuid.UUID, DeliveryState]
) -> tuple[list[list[Any]], list[list[Any]], list[OutgoingReceipt]]:
    """What the accepted statuses write: their events (``_EVENT_COLUMNS`` columns), their
    deliveries' final state with the state each was in (``_UPDATE_COLUMNS`` columns), and
    the delivery events sent to the documents' senders. ``current``: the deliveries as
    read; the batch's statuses apply in order."""
    todo = [p for p in accepted if p.status_delivery is not None]
    events: list[list[Any]] = [[] for _ in range(_EVENT_COLUMNS)]
    receipts: list[OutgoingReceipt] = []
    state = {i: (current[i].state, current[i].recall_state)
             for i in (p.status_delivery for p in todo) if i is not None}
    codes: dict[uuid.UUID, list[str]] = {}
    for p in todo:
        pkg = p.parsed.package
        assert isinstance(pkg, StatusPackage) and p.status_delivery and p.target
        st, rc = state[p.status_delivery]
        t = apply_status(st, rc, pkg.status_code)
        state[p.status_delivery] = (t.state, t.recall_state)
        codes.setdefault(p.status_delivery, []).append(pkg.status_code.value)
        for column, value in zip(events, (
                p.status_delivery, p.hub_id, pkg.status_code.value, t.state, p.sender.code,
                pkg.description, _aware(pkg.timestamp),
                ",".join(t.flags) if t.flags else None), strict=True):
            column.append(value)
        if t.state != st or t.recall_state != rc:
            row = current[p.status_delivery]
            receipts.append(
                status_event(p, p.hub_id, row.recipient_code, row.agency, t.state))
    updates: list[list[Any]] = [
        list(state),
        [v[0] for v in state.values()],
        [v[1] for v in state.values()],
        [codes[k][-1] for k in state],
        [",".join(codes[k]) for k in state],
        [current[k].state for k in state],
        [current[k].recall_state for k in state],
    ]
    return events, updates, receipts


async def _apply_statuses(
    conn: Conn,
    accepted: list[Plan],
    plan: BatchPlan,
    current: Mapping[uuid.UUID, DeliveryState],
) -> None:
    """Record every status as an event and move its delivery on. ``current``: the
    deliveries as locked by ``_check_status_deliveries`` in this transaction (it also
    holds those of the batch's refused and duplicate statuses)."""
    if not any(p.status_delivery is not None for p in accepted):
        return
    events, updates, receipts = _status_changes(accepted, current)
    plan.receipts += receipts
    await conn.execute(_APPLY_STATUSES, *events, *updates)


async def _apply_business(conn: Conn, accepted: list[Plan], plan: BatchPlan) -> None:
    """Revoke (1) and replace (3) close the target document's deliveries."""
    hubs: list[uuid.UUID] = []
    states: list[str] = []
    for p in accepted:
        pkg = p.parsed.package
        if not isinstance(pkg, EdocPackage) or not p.targets_closed:
            continue
        new = (
            lifecycle.REVOKED
            if pkg.business_type is BusinessDocType.REVOKE
            else lifecycle.REPLACED
        )
        for h in p.targets_closed:
            hubs.append(h)
            states.append(new)
    if not hubs:
        return
    rows = await conn.fetch(
        """WITH u AS (
               UPDATE deliveries d SET state = x.s, updated_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS x(h, s)
               WHERE d.hub_id = x.h AND d.state NOT IN ('revoked', 'replaced', 'recalled')
               RETURNING d.id, d.state),
           e AS (INSERT INTO status_events (delivery_id, state)
                 SELECT id, state FROM u)
           SELECT id FROM u""",
        hubs,
        states,
    )
    from router.outbox.events import delivery_events

    plan.receipts += await delivery_events(conn, [r["id"] for r in rows], cause="closed")


def _rejection_rows(
    batch: Sequence[Incoming],
    rejects: list[Rejection],
    plan: BatchPlan,
    max_body_bytes: int,
) -> list[RejectionRow]:
    """The ``rejections`` rows of the batch; their outcomes and receipts go in ``plan``."""
    rows: list[RejectionRow] = []
    for r in rejects:
        msg = batch[r.index]
        rid = derive_id("rejection", msg.key)
        rows.append(
            RejectionRow(
                id=rid,
                amqp_user=msg.amqp_user,
                gateway_id=r.answer_gateway,
                message_id=msg.message_id,
                routing_key=msg.routing_key,
                reason=r.reason.name,
                reason_code=r.reason.code,
                detail=r.detail[:2000],
                size_bytes=len(msg.body),
                content_sha256=msg.sha256,
                body=msg.body if len(msg.body) <= max_body_bytes else None,
            )
        )
        plan.outcomes[r.index] = "rejected"
        plan.rejection_reasons.append(r.reason.name)
        if r.answer_gateway is not None or msg.reply_to:
            plan.receipts.append(rejection_receipt(r, msg, rid))
    return rows


async def _insert_rejections_and_audit(
    conn: Conn, rejected: list[RejectionRow], audit: list[list[str]]
) -> None:
    if rejected or audit[0]:
        await conn.execute(_INSERT_REJECTIONS_AND_AUDIT,
                           *_columns(rejected, _REJECTION_COLUMNS), *audit)


async def _resume(conn: Conn, duplicates: list[Clash], plan: BatchPlan) -> list[PendingReceipt]:
    """The same message again (a crash before the ack): finish what was left."""
    resumed = [(c.plan, c.hub_id) for c in duplicates if c.is_resume]
    if not resumed:
        return []
    rows = await conn.fetch(
        """SELECT d.id, d.hub_id, d.recipient_code, d.gateway_id, d.copy_id, d.state,
                  a.code AS agency
           FROM deliveries d JOIN agencies a ON a.id = d.recipient_agency_id
           WHERE d.hub_id = ANY($1) ORDER BY d.created_at, d.id""",
        [hub for _, hub in resumed],
    )
    by_hub: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for r in rows:
        by_hub.setdefault(r["hub_id"], []).append(r)
    out: list[PendingReceipt] = []
    for p, hub in resumed:
        copies: dict[str, Copy] = {}
        for r in by_hub.get(hub, []):
            if r["state"] == "submitted":
                c = copies.get(r["gateway_id"])
                if c is None:
                    c = copies[r["gateway_id"]] = new_copy(p, hub, r["gateway_id"],
                                                           r["copy_id"])
                c.delivery_ids.append(r["id"])
                c.recipients.append(r["agency"])
        plan.copies.extend(copies.values())
        out.append(
            accepted_receipt(
                p,
                hub,
                [(r["recipient_code"], r["agency"], r["gateway_id"], r["id"])
                 for r in by_hub.get(hub, [])],
                repeat=True,
            )
        )
    # a resumed status package also tells the document's sender again what it changed
    # (an event with the same receipt id: a sender that has it drops it); a status that
    # changed nothing was recorded with a flag and sent no event the first time either
    statuses = [p for p, _ in resumed if p.status_delivery is not None]
    if statuses:
        events = await conn.fetch(
            """SELECT e.status_hub_id, e.state, d.recipient_code, a.code AS agency
               FROM status_events e
               JOIN deliveries d ON d.id = e.delivery_id
               JOIN agencies a ON a.id = d.recipient_agency_id
               WHERE e.delivery_id = ANY($1) AND e.status_hub_id = ANY($2)
                 AND cardinality(e.flags) = 0""",
            [p.status_delivery for p in statuses],
            [hub for p, hub in resumed if p.status_delivery is not None],
        )
        by_status = {r["status_hub_id"]: r for r in events}
        for p, hub in resumed:
            ev = by_status.get(hub)
            if ev is not None:
                plan.receipts.append(
                    status_event(p, hub, ev["recipient_code"], ev["agency"], ev["state"]))
    return out


def _audit_rows(
    accepted: list[Plan], rejects: list[Rejection], batch: Sequence[Incoming]
) -> list[list[str]]:
    """The audit rows of the batch as four columns: actor, action, subject, details."""
    actors: list[str] = []
    actions: list[str] = []
    subjects: list[str] = []
    details: list[str] = []
    for p in accepted:
        actors.append(f"gateway:{p.gateway_id}")
        actions.append(f"{p.parsed.package.kind}.accepted")
        subjects.append(str(p.hub_id))
        details.append(
            json.dumps(
                {
                    "sha256": p.msg.sha256.hex(),
                    "sender": p.sender.code,
                    "recipients": [a.code for _, a in p.recipients],
                    "document_id": document_id(p.parsed),
                    "status_code": status_code(p.parsed),
                },
                ensure_ascii=False,
            )
        )
    for r in rejects:
        msg = batch[r.index]
        actors.append(f"amqp:{msg.amqp_user}")
        actions.append("package.rejected")
        subjects.append(str(derive_id("rejection", msg.key)))
        details.append(
            json.dumps({"reason": r.reason.name, "sha256": msg.sha256.hex(),
                        "detail": r.detail[:300]}, ensure_ascii=False)
        )
    return [actors, actions, subjects, details]


_VIETNAM = timezone(timedelta(hours=7))


def _aware(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    # edXML timestamps carry no zone: they are Vietnam time (UTC+7)
    if ts.tzinfo is None:
        return ts.replace(tzinfo=_VIETNAM)
    return ts.astimezone(UTC)

