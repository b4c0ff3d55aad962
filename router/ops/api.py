"""The ops JSON API (``/api/...``), described by :mod:`router.ops.openapi`.

Requests reach these handlers already checked against the OpenAPI document
(:mod:`router.ops.validation`): handlers read typed values from ``request[PARAMS]`` and
``request[BODY]`` and call library functions (no SQL here). What an operator asked for
and cannot get is raised as :class:`OperationRefused` and answered, with its reason, in
the one error shape of :mod:`router.ops.errors`. Times are ISO 8601 with zone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from router import metrics, topology
from router.directory import lookup
from router.ledger import Conn
from router.ops.auth import PRINCIPAL, require_operator
from router.ops.context import CTX
from router.ops.errors import error_response
from router.ops.openapi import openapi_document
from router.ops.queue_health import gateway_health, summary
from router.ops.validation import BODY, PARAMS, parse_time
from router.recovery import parking, redelivery, redelivery_jobs
from router.reporting import tracking
from schemas.reasons import OperationRefused, Reason

__all__ = ["add_api_routes", "filter_fingerprint"]

log = structlog.get_logger("lienthong.ops")

# A confirmed re-delivery answers with the finished job when it ends within this time,
# otherwise 202 and the job goes on in the background (GET /api/redeliveries/{id}).
REDELIVERY_WAIT_SECONDS = 5.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        tracking.jsonable(data), status=status, dumps=lambda x: json.dumps(x, ensure_ascii=False)
    )


def _time(params: dict[str, Any], name: str) -> datetime | None:
    raw = params.get(name)
    return parse_time(raw) if raw is not None else None


async def _known(conn: Conn, *, gateway: str | None, agencies: Sequence[str | None]) -> None:
    """Refuse names the directory does not know (a typo would match nothing)."""
    if gateway is not None:
        await lookup.require_gateway(conn, gateway)
    for code in agencies:
        if code is not None:
            await lookup.require_agency(conn, code)


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def gateways(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    started = time.perf_counter()
    rows = await gateway_health(
        ctx.pool, ctx.snapshot, thresholds=ctx.thresholds, record_presence=False
    )
    return _json(
        {
            "generated_at": datetime.now(UTC),
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            "thresholds": {
                "backlog": ctx.thresholds.backlog,
                "stale_seconds": ctx.thresholds.stale_seconds,
            },
            "summary": summary(rows),
            "gateways": [g.as_dict() for g in rows],
        }
    )


async def document(request: web.Request) -> web.Response:
    ident: str = request[PARAMS]["ident"]
    async with request.app[CTX].conn() as conn:
        hub_ids = await tracking.find_document(conn, ident)
        found = [t for h in hub_ids if (t := await tracking.timeline(conn, h)) is not None]
    if not found:
        raise OperationRefused(Reason.OPS_DOCUMENT_NOT_FOUND, ident)
    return _json({"query": ident, "documents": [t.as_dict() for t in found]})


async def deliveries(request: web.Request) -> web.Response:
    p = request[PARAMS]
    limit = int(p.get("limit", 100))
    async with request.app[CTX].conn() as conn:
        await _known(conn, gateway=p.get("gateway"),
                     agencies=(p.get("recipient"), p.get("sender")))
        rows = await tracking.query_deliveries(
            conn,
            state=p.get("state"),
            recipient=p.get("recipient"),
            sender=p.get("sender"),
            gateway=p.get("gateway"),
            since=_time(p, "since"),
            until=_time(p, "until"),
            limit=limit,
        )
    return _json({"count": len(rows), "limit": limit, "deliveries": rows})


async def throughput(request: web.Request) -> web.Response:
    minutes = int(request[PARAMS].get("minutes", 60))
    async with request.app[CTX].conn() as conn:
        rows = await tracking.throughput(conn, minutes)
    return _json({"minutes": minutes, "series": rows})


async def parking_list(request: web.Request) -> web.Response:
    p = request[PARAMS]
    state = p.get("state", "parked")
    flt = parking.ParkedFilter(
        state=None if state == "all" else state,
        gateway=p.get("gateway"),
        reason=p.get("reason"),
        since=_time(p, "since"),
        until=_time(p, "until"),
        limit=int(p.get("limit", 100)),
    )
    ctx = request.app[CTX]
    async with ctx.conn() as conn:
        await _known(conn, gateway=flt.gateway, agencies=())
        rows = await parking.list_parked(conn, flt)
    queues = await ctx.snapshot.queues()
    waiting = int((queues.get(topology.PARKING) or {}).get("messages") or 0)
    return _json({"count": len(rows), "broker_waiting": waiting, "parked": rows})


def _ids(body: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(x) for x in body["ids"]]  # the document requires them, as UUIDs


@require_operator
async def parking_drop(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    body = request[BODY]
    async with request.app[CTX].conn() as conn:
        n = await parking.drop(conn, _ids(body), actor=principal.name, why=body["why"])
    log.info("parking.dropped", actor=principal.name, count=n)
    return _json({"dropped": n})


@require_operator
async def parking_requeue(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    ids = _ids(request[BODY])
    ctx = request.app[CTX]
    channel = await ctx.channel()
    async with ctx.conn() as conn:
        n = await parking.requeue(conn, channel, ids, actor=principal.name,
                                  hub_user=ctx.hub_user)
    log.info("parking.requeued", actor=principal.name, count=n)
    return _json({"requeued": n})


def filter_fingerprint(flt: redelivery.RedeliveryFilter) -> str:
    """What a confirmation must quote: proves the operator previewed this very filter."""
    canonical = json.dumps(json.loads(flt.as_json()), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _record_job(job: redelivery.RedeliveryJob) -> None:
    if job.queued:
        metrics.REDELIVERIES.labels("queued").inc(job.queued)
    if job.undeliverable:
        metrics.REDELIVERIES.labels("undeliverable").inc(job.undeliverable)
    if job.state == "failed":
        metrics.REDELIVERIES.labels("failed").inc()


async def redeliveries_post(request: web.Request) -> web.Response:
    """Dry run without ``confirm``; with ``confirm`` (the dry run's fingerprint), run."""
    principal = request[PRINCIPAL]
    ctx = request.app[CTX]
    body = request[BODY]
    # the document has checked the filter: from_json cannot fail on it (if it does, a bug)
    flt = redelivery.RedeliveryFilter.from_json(json.dumps(body.get("filter") or {}))
    rate = body.get("rate")
    async with ctx.conn() as conn:
        await _known(conn, gateway=flt.gateway, agencies=(flt.recipient, flt.sender))
    fingerprint = filter_fingerprint(flt)
    confirm = body.get("confirm")
    if not confirm:
        async with ctx.conn() as conn:
            pv = await redelivery.preview(conn, flt, sample=10)
        return _json(
            {
                "dry_run": True,
                "filter": json.loads(flt.as_json()),
                "preview": pv.as_dict(),
                "confirm": fingerprint,
                "message_vi": f"{pv.total} lượt chuyển sẽ được gửi lại. Xác nhận để thực hiện.",
                "message_en": f"{pv.total} deliveries would be re-sent. Confirm to run.",
            }
        )
    if not principal.is_operator:
        raise OperationRefused(Reason.OPS_FORBIDDEN, "only an operator token may re-deliver")
    if confirm != fingerprint:
        return error_response(Reason.OPS_PREVIEW_MISMATCH, confirm=fingerprint)
    outbox = await ctx.outbox()
    seen: list[redelivery.RedeliveryJob] = []

    async def job_task() -> redelivery.RedeliveryJob:
        job = await redelivery.run(
            ctx.pool, outbox, flt, actor=principal.name, rate=rate, progress=seen.append
        )
        _record_job(job)
        log.info("redelivery.finished", job=str(job.id), state=job.state, done=job.done,
                 queued=job.queued, undeliverable=job.undeliverable)
        return job

    task: asyncio.Task[redelivery.RedeliveryJob] = asyncio.create_task(job_task())
    ctx.jobs.add(task)
    task.add_done_callback(ctx.jobs.discard)
    log.info("redelivery.started", actor=principal.name, filter=json.loads(flt.as_json()))
    done, _ = await asyncio.wait({task}, timeout=REDELIVERY_WAIT_SECONDS)
    if done:
        try:
            job = task.result()
        except Exception as exc:
            log.exception("redelivery.failed")
            return error_response(Reason.OPS_REDELIVERY_FAILED, repr(exc)[:500])
        return _json({"dry_run": False, "job": job.as_dict()})
    running = seen[-1].as_dict() if seen else None
    return _json({"dry_run": False, "job": running, "running": True}, status=202)


async def redeliveries_list(request: web.Request) -> web.Response:
    limit = int(request[PARAMS].get("limit", 20))
    async with request.app[CTX].conn() as conn:
        jobs = await redelivery_jobs.recent_jobs(conn, limit)
    return _json({"jobs": [j.as_dict() for j in jobs]})


async def redelivery_get(request: web.Request) -> web.Response:
    job_id = uuid.UUID(request[PARAMS]["job_id"])
    async with request.app[CTX].conn() as conn:
        job = await redelivery_jobs.job(conn, job_id)
    return _json(job.as_dict())


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/api/gateways", gateways)
    app.router.add_get("/api/documents/{ident:.+}", document)
    app.router.add_get("/api/deliveries", deliveries)
    app.router.add_get("/api/throughput", throughput)
    app.router.add_get("/api/parking", parking_list)
    app.router.add_post("/api/parking/drop", parking_drop)
    app.router.add_post("/api/parking/requeue", parking_requeue)
    app.router.add_get("/api/redeliveries", redeliveries_list)
    app.router.add_post("/api/redeliveries", redeliveries_post)
    app.router.add_get("/api/redeliveries/{job_id}", redelivery_get)
