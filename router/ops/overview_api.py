"""The hub overview in the ops service: ``GET /api/overview`` (see :mod:`router.ops.overview`),
what the dashboard's top band and its red banner show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from router.ops.context import CTX
from router.ops.overview import HubWatch, WatchThresholds
from router.settings import Settings

__all__ = ["OVERVIEW_PATHS", "add_overview_routes", "watch_thresholds_from_env"]


def watch_thresholds_from_env(
    settings: Settings, *, ledger_ttl: float | None = None
) -> WatchThresholds:
    d = WatchThresholds()
    return WatchThresholds(growing_min=settings.ops_router_in_growing_min,
                           growing_seconds=settings.ops_router_in_growing_seconds,
                           ledger_ttl=d.ledger_ttl if ledger_ttl is None else ledger_ttl)


@dataclass
class _Holder:
    watch: HubWatch | None = None


_WATCH = web.AppKey("lienthong_overview", _Holder)


async def overview(request: web.Request) -> web.Response:
    holder = request.app[_WATCH]
    if holder.watch is None:
        ctx = request.app[CTX]
        # the queue snapshot's lifetime (0 in tests) bounds the ledger figures' too
        holder.watch = HubWatch(ctx.pool, ctx.admin, ctx.snapshot,
                                thresholds=watch_thresholds_from_env(
                                    ctx.settings, ledger_ttl=min(ctx.snapshot_ttl * 5, 10.0)))
    result = await holder.watch.overview()
    return web.json_response(result.as_dict(), dumps=lambda x: json.dumps(x, ensure_ascii=False))


def add_overview_routes(app: web.Application) -> None:
    app[_WATCH] = _Holder()
    app.router.add_get("/api/overview", overview)


_NUM = {"type": ["number", "null"]}

OVERVIEW_PATHS: dict[str, Any] = {
    "/api/overview": {
        "get": {
            "summary": "Is the axis routing right now: routers consuming lt.router.in, its "
                       "depth and oldest message, unroutable and parked counts, latency, "
                       "documents today, broker alarms, alerts firing, banner",
            "responses": {
                "200": {"description": "the overview", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {
                        "routers": {"type": "integer"},
                        "router_in_depth": {"type": "integer"},
                        "router_in_oldest_seconds": _NUM,
                        "router_in_growing": {"type": "boolean"},
                        "unroutable": {"type": "integer"},
                        "parked": {"type": "integer"},
                        "latency_p50_seconds": _NUM,
                        "latency_p99_seconds": _NUM,
                        "documents_today": {"type": "integer"},
                        "delivered_share_today": _NUM,
                        "broker_alarms": {"type": "array", "items": {"type": "string"}},
                        "alerts": {"type": "array", "items": {"type": "object"}},
                        "banner": {"type": "boolean"},
                    }}}}},
                "401": {"description": "no token"},
                "503": {"description": "PostgreSQL or RabbitMQ unreachable"},
            },
        }
    },
}
