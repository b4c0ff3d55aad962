"""The national statistics in the ops service: ``GET /api/statistics`` (the ranking as JSON,
or as a CSV or XLSX file with ``format``), what the dashboard's statistics page shows.
The figures and their order are :mod:`router.reporting.national`'s."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from router.ops.context import CTX
from router.reporting import export, national
from schemas.reasons import LienthongError, Reason

__all__ = ["STATISTICS_PATHS", "add_statistics_routes"]

_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _rejected(exc: LienthongError) -> web.Response:
    """400 in the ops API's error shape: the reason's name, code, both messages, detail."""
    r = exc.reason
    return web.json_response(
        {"error": "bad_parameter", "reason": r.name, "code": r.code,
         "message_vi": r.message_vi, "message_en": r.message_en, "detail": exc.detail},
        status=400, dumps=lambda x: json.dumps(x, ensure_ascii=False))


def _format(text: str) -> str:
    if text not in ("json", "csv", "xlsx"):
        raise LienthongError(Reason.BAD_REPORT_LEVEL, f"format {text[:20]!r}: json, csv, xlsx")
    return text


async def statistics(request: web.Request) -> web.StreamResponse:
    q = request.query
    try:
        if q.get("from") or q.get("to"):
            start, end = national.parse_period(q.get("from", ""), q.get("to", ""))
        else:
            start, end = national.current_quarter(datetime.now(UTC))
        level = national.parse_level(q.get("level") or "all")
        within = q.get("within") or None
        fmt = _format(q.get("format") or "json")
        async with request.app[CTX].conn() as conn:
            rows = await national.national_report(
                conn, start=start, end=end, level=level, within=within)
    except LienthongError as exc:
        return _rejected(exc)
    # shown and named in Vietnam time, as the period was asked for
    start, end = start.astimezone(national.VIETNAM), end.astimezone(national.VIETNAM)
    name = f"thong-ke-{start:%Y%m%d}-{end:%Y%m%d}"
    if fmt == "csv":
        return web.Response(
            body=export.csv_text(rows).encode("utf-8-sig"),
            content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if fmt == "xlsx":
        return web.Response(
            body=export.xlsx_bytes(rows, start=start, end=end), content_type=_XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})
    return web.json_response(
        {"from": start.isoformat(), "to": end.isoformat(), "level": level.value,
         "within": within, "units": [r.as_dict() for r in rows]},
        dumps=lambda x: json.dumps(x, ensure_ascii=False))


def add_statistics_routes(app: web.Application) -> None:
    app.router.add_get("/api/statistics", statistics)


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


_UNIT = {
    "type": "object",
    "properties": {name: ({"type": "string"} if name in ("unit", "name", "kind") else
                          {"type": ["number", "null"]}) for name in national.COLUMNS},
}

STATISTICS_PATHS: dict[str, Any] = {
    "/api/statistics": {
        "get": {
            "summary": "National statistics: level-1 units (ministries, provinces) ranked on "
                       "fully electronic sending, share handled to 06 and time to 06; or the "
                       "agencies of one tree",
            "parameters": [
                _q("from", "start, ISO 8601 (Vietnam time without a zone); default: the "
                           "current quarter"),
                _q("to", "end, exclusive; at most 366 days after from"),
                _q("level", "all, ministries (G) or provinces (H)",
                   {"type": "string", "enum": [lv.value for lv in national.Level]}),
                _q("within", "drill down: the agencies of this level-1 tree (H41, G12, ...)"),
                _q("format", "json (default), csv or xlsx (a file to download)",
                   {"type": "string", "enum": ["json", "csv", "xlsx"]}),
            ],
            "responses": {
                "200": {"description": "{from, to, level, within, units: [...]} in rank order",
                        "content": {
                            "application/json": {"schema": {
                                "type": "object",
                                "properties": {"units": {"type": "array", "items": _UNIT}}}},
                            "text/csv": {"schema": {"type": "string"}},
                            _XLSX: {"schema": {"type": "string", "format": "binary"}}}},
                "400": {"description": "bad period, level or unit (reason 7050, 7051)"},
                "401": {"description": "no token"},
            },
        }
    },
}
