"""The ops service (``lienthong ops``): health probes, Prometheus metrics, the JSON API and
the dashboard, in one aiohttp application.

=====================  ======  ===============================================================
path                   auth    what
=====================  ======  ===============================================================
/healthz               none    the process is alive
/readyz                none    PostgreSQL + migrations current, AMQP, management API reachable
/metrics               none    Prometheus text (the gauges are refreshed in the background)
/ and /static/...      none    the dashboard (it asks for a token, kept in sessionStorage)
/api/openapi.json      none    the API description
/api/...               token   see :mod:`router.ops.api`
=====================  ======  ===============================================================

Every request gets a request id (``X-Request-Id``, taken from the request when it carries a
sane one), bound into the structlog context of everything logged while handling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiormq
import asyncpg
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from router import migrate
from router.broker_admin import BrokerAdmin, BrokerAdminError
from router.ops.api import add_api_routes
from router.ops.audit_api import add_audit_routes, record_tokens_loaded
from router.ops.auth import PRINCIPAL, TokenStore, auth_middleware
from router.ops.context import CTX, OpsContext, thresholds_from_env
from router.ops.errors import error_response, reason_for_status
from router.ops.gauges import GaugeRefresher
from router.ops.overview_api import add_overview_routes
from router.ops.statistics_api import add_statistics_routes
from router.ops.validation import validation_middleware
from router.security import posture
from router.settings import Settings
from schemas.reasons import OperationRefused, Reason

__all__ = ["STATIC_DIR", "create_app", "serve"]

log = structlog.get_logger("lienthong.ops")

STATIC_DIR = Path(__file__).with_name("static")
MAX_REQUEST_LINE = 64 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# What means "a service is away" (503, try again), as opposed to a bug (500): lost or
# refused connections, timeouts, PostgreSQL's connection and shutdown errors, the
# management API. A query PostgreSQL refuses for its content is a bug, never a 503.
DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    BrokerAdminError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.InterfaceError,
    aiormq.exceptions.AMQPConnectionError,
)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except OperationRefused as exc:
            response = error_response(exc.reason, exc.detail or None)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and the like go out as they are
                status = exc.status
                exc.headers["X-Request-Id"] = request_id
                raise
            # aiohttp's own refusals (no route, method, body size) in the one error shape
            response = error_response(
                reason_for_status(exc.status), exc.reason, status=exc.status
            )
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
        except DEPENDENCY_ERRORS as exc:
            log.warning("request.dependency_unavailable", error=repr(exc)[:300])
            response = error_response(Reason.OPS_UNAVAILABLE)
        except Exception:
            log.exception("request.failed")
            response = error_response(Reason.OPS_INTERNAL, status=500)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    finally:
        if request.path not in ("/healthz", "/metrics", "/readyz"):
            principal = request.get(PRINCIPAL)
            log.info(
                "request",
                method=request.method,
                path=request.path,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 1),
                actor=principal.name if principal else None,
            )
        structlog.contextvars.clear_contextvars()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    checks: dict[str, str] = {}

    async def postgres() -> None:
        async with ctx.conn() as conn:
            missing = await migrate.pending(conn)
        if missing:
            raise RuntimeError(
                "pending migrations: " + ", ".join(f"{m.version}_{m.name}" for m in missing)
            )

    async def amqp() -> None:
        await ctx.channel(connect_timeout=3)

    async def management() -> None:
        await ctx.admin.overview()

    for name, check in (("postgresql", postgres), ("rabbitmq", amqp), ("management", management)):
        try:
            await asyncio.wait_for(check(), 5)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"fail: {exc!r}"[:300]
    ready = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


async def metrics_handler(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(
    settings: Settings,
    *,
    tokens: TokenStore,
    pool: asyncpg.Pool | None = None,
    refresh_interval: float | None = 15.0,
    record_start: bool = True,
    snapshot_ttl: float = 2.0,
) -> web.Application:
    """The ops application. Without ``pool`` it opens (and closes) its own; with
    ``refresh_interval`` None the background gauge refresh is off (tests);
    ``snapshot_ttl``: seconds the broker's queue statistics are reused (tests: 0). At start it
    appends the tokens loaded and any weakened setting to the audit log."""
    app = web.Application(
        middlewares=[request_context, auth_middleware(tokens), validation_middleware],
        # a query in Vietnamese is 9 bytes a letter once percent-encoded: room for every
        # documented parameter at its longest (a longer request line is refused by the HTTP
        # layer itself, with a plain-text 400, before any of this code runs)
        handler_args={"max_line_size": MAX_REQUEST_LINE},
    )

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        own_pool = pool is None
        # min_size=0: start (and answer /healthz, /readyz 503) even while PostgreSQL is away
        db = pool or await asyncpg.create_pool(settings.database_url, min_size=0, max_size=8)
        admin = BrokerAdmin(settings.management_url)
        ctx = OpsContext(settings, db, admin, tokens, thresholds=thresholds_from_env(settings),
                         snapshot_ttl=snapshot_ttl)
        app[CTX] = ctx
        stop = asyncio.Event()
        recorder: asyncio.Task[None] | None = None
        if record_start:
            # the service starts (and answers 503) while PostgreSQL is away: the start is
            # audited as soon as the ledger can be written, never skipped
            recorder = asyncio.create_task(_record_start(ctx, tokens, settings, stop))
        refresher: asyncio.Task[None] | None = None
        if refresh_interval:
            gauges = GaugeRefresher(db, ctx.snapshot, thresholds=ctx.thresholds)
            refresher = asyncio.create_task(gauges.run(stop, refresh_interval))
        try:
            yield
        finally:
            stop.set()
            for task in (refresher, recorder):
                if task is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(task, 10)
            await ctx.close()
            await admin.close()
            if own_pool:
                await db.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC_DIR, show_index=False)
    add_api_routes(app)
    add_audit_routes(app)
    add_statistics_routes(app)
    add_overview_routes(app)
    return app


async def _record_start(
    ctx: OpsContext, tokens: TokenStore, settings: Settings, stop: asyncio.Event
) -> None:
    """Audit the tokens loaded and any weakened setting, retrying while the ledger is away."""
    delay = 0.5
    while not stop.is_set():
        try:
            async with ctx.conn() as conn:
                await record_tokens_loaded(conn, tokens)
                await posture.record_start(conn, "ops", settings, receipts_signed=None)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, web.HTTPException) as exc:
            log.warning("ops.start_not_audited_yet", error=repr(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 30.0)
        else:
            return


def serve(
    settings: Settings, *, host: str, port: int, tokens: TokenStore, refresh_interval: float
) -> None:
    """Run the ops service until interrupted."""
    if not len(tokens):
        log.warning(
            "ops.no_tokens",
            message_en="no API tokens configured (LIENTHONG_OPS_TOKENS): every /api call "
            "except /api/openapi.json will be refused",
            message_vi="chưa cấu hình mã truy cập (LIENTHONG_OPS_TOKENS)",
        )
    app = create_app(settings, tokens=tokens, refresh_interval=refresh_interval)
    log.info("ops.listening", host=host, port=port, tokens=len(tokens))
    web.run_app(app, host=host, port=port, print=None, access_log=None)
