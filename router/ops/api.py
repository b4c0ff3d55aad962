"""The ops JSON API (``/api/...``), described by :mod:`router.ops.openapi`.

Errors are JSON ``{"error", "message_vi", "message_en"}``. Times are ISO 8601 with zone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from router import metrics, topology
from router.ops.auth import PRINCIPAL, error_response, require_operator
from router.ops.context import CTX
from router.ops.openapi import openapi_document
from router.ops.queue_health import gateway_health, summary
from router.recovery import parking, redelivery
from router.reporting import tracking

__all__ = ["add_api_routes", "filter_fingerprint"]

log = structlog.get_logger("lienthong.ops")

# A confirmed re-delivery answers with the finished job when it ends within this time,
# otherwise 202 and the job goes on in the background (GET /api/redeliveries/{id}).
REDELIVERY_WAIT_SECONDS = 5.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        tracking.jsonable(data), status=status, dumps=lambda x: json.dumps(x, ensure_ascii=False)
    )


def _bad_request(vi: str, en: str) -> web.Response:
    return error_response(400, "bad_request", vi, en)


def _time_param(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    value = int(raw) if raw else default
    return max(lo, min(value, hi))


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
    ident = request.match_info["ident"]
    async with request.app[CTX].conn() as conn:
        hub_ids = await tracking.find_document(conn, ident)
        found = [t for h in hub_ids if (t := await tracking.timeline(conn, h)) is not None]
    if not found:
        return error_response(
            404,
            "not_found",
            f"Không tìm thấy văn bản {ident}",
            f"No document {ident} (hub id or edXML DocumentId)",
        )
    return _json({"query": ident, "documents": [t.as_dict() for t in found]})


async def deliveries(request: web.Request) -> web.Response:
    q = request.query
    try:
        since = _time_param(request, "since")
        until = _time_param(request, "until")
        limit = _int_param(request, "limit", 100, 1, 1000)
    except ValueError:
        return _bad_request(
            "Tham số không hợp lệ (since/until: thời gian ISO 8601, limit: số)",
            "Bad parameter (since/until: ISO 8601 time, limit: a number)",
        )
    async with request.app[CTX].conn() as conn:
        try:
            rows = await tracking.query_deliveries(
                conn,
                state=q.get("state") or None,
                recipient=q.get("recipient") or None,
                sender=q.get("sender") or None,
                gateway=q.get("gateway") or None,
                since=since,
                until=until,
                limit=limit,
            )
        except ValueError as exc:
            return _bad_request(f"Trạng thái không hợp lệ: {exc}", f"Bad state: {exc}")
    return _json({"count": len(rows), "limit": limit, "deliveries": rows})


async def throughput(request: web.Request) -> web.Response:
    try:
        minutes = _int_param(request, "minutes", 60, 1, 24 * 60)
    except ValueError:
        return _bad_request("minutes phải là số", "minutes must be a number")
    async with request.app[CTX].conn() as conn:
        rows = await tracking.throughput(conn, minutes)
    return _json({"minutes": minutes, "series": rows})


async def parking_list(request: web.Request) -> web.Response:
    try:
        flt = parking.ParkedFilter(
            state=request.query.get("state", "parked") or None,
            gateway=request.query.get("gateway") or None,
            reason=request.query.get("reason") or None,
            since=_time_param(request, "since"),
            until=_time_param(request, "until"),
            limit=_int_param(request, "limit", 100, 1, 1000),
        )
    except ValueError:
        return _bad_request("Tham số không hợp lệ", "Bad parameter")
    ctx = request.app[CTX]
    async with ctx.conn() as conn:
        rows = await parking.list_parked(conn, flt)
    queues = await ctx.snapshot.queues()
    waiting = int((queues.get(topology.PARKING) or {}).get("messages") or 0)
    return _json({"count": len(rows), "broker_waiting": waiting, "parked": rows})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError("body is not JSON") from exc
    if not isinstance(body, dict):
        raise TypeError("body must be a JSON object")
    return body


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be an object")
    return value


def _rate(raw: Any) -> float | None:
    if raw in (None, ""):
        return None
    rate = float(raw)
    if rate <= 0:
        raise ValueError("rate must be positive")
    return rate


def _ids(body: dict[str, Any]) -> list[uuid.UUID]:
    raw = body.get("ids")
    if not isinstance(raw, list) or not raw:
        raise ValueError("ids: a non-empty list of parked message ids")
    return [uuid.UUID(str(x)) for x in raw]


@require_operator
async def parking_drop(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    try:
        body = await _json_body(request)
        ids = _ids(body)
        why = str(body.get("why") or "")
    except (ValueError, TypeError) as exc:
        return _bad_request(f"Yêu cầu không hợp lệ: {exc}", f"Bad request: {exc}")
    if not why.strip():
        return _bad_request(
            "Hãy ghi lý do hủy (why), được lưu trong nhật ký kiểm toán",
            "Say why (why): it is kept in the audit log",
        )
    async with request.app[CTX].conn() as conn:
        n = await parking.drop(conn, ids, actor=principal.name, why=why)
    log.info("parking.dropped", actor=principal.name, count=n)
    return _json({"dropped": n})


@require_operator
async def parking_requeue(request: web.Request) -> web.Response:
    principal = request[PRINCIPAL]
    try:
        ids = _ids(await _json_body(request))
    except (ValueError, TypeError) as exc:
        return _bad_request(f"Yêu cầu không hợp lệ: {exc}", f"Bad request: {exc}")
    ctx = request.app[CTX]
    channel = await ctx.channel()
    async with ctx.conn() as conn:
        n = await parking.requeue(conn, channel, ids, actor=principal.name)
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
    try:
        body = await _json_body(request)
        flt = redelivery.RedeliveryFilter.from_json(json.dumps(_object(body, "filter")))
        rate = _rate(body.get("rate"))
    except (ValueError, TypeError, KeyError) as exc:
        return _bad_request(f"Bộ lọc không hợp lệ: {exc}", f"Bad filter: {exc}")
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
        return error_response(
            403,
            "forbidden",
            "Chỉ người vận hành (operator) được gửi lại",
            "Only an operator token may re-deliver",
        )
    if confirm != fingerprint:
        return error_response(
            409,
            "preview_mismatch",
            "Bộ lọc đã thay đổi so với lần xem trước: hãy xem trước lại rồi xác nhận",
            "The filter differs from the one previewed: preview again, then confirm",
            confirm=fingerprint,
        )
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
            return error_response(
                500, "redelivery_failed", "Gửi lại thất bại", "Re-delivery failed",
                detail=repr(exc)[:500],
            )
        return _json({"dry_run": False, "job": job.as_dict()})
    running = seen[-1].as_dict() if seen else None
    return _json({"dry_run": False, "job": running, "running": True}, status=202)


async def redeliveries_list(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", 20, 1, 200)
    async with request.app[CTX].conn() as conn:
        rows = await conn.fetch(
            """SELECT id, created_at, actor, filter, rate, state, total, done, queued,
                      undeliverable, updated_at, finished_at, error
                 FROM redelivery_jobs ORDER BY created_at DESC LIMIT $1""",
            limit,
        )
    jobs = [{**dict(r), "filter": json.loads(r["filter"])} for r in rows]
    return _json({"jobs": jobs})


async def redelivery_get(request: web.Request) -> web.Response:
    try:
        job_id = uuid.UUID(request.match_info["job_id"])
    except ValueError:
        return _bad_request("Mã công việc không hợp lệ", "Bad job id")
    async with request.app[CTX].conn() as conn:
        job = await redelivery.load_job(conn, job_id)
    if job is None:
        return error_response(404, "not_found", "Không có công việc này", "No such job")
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
