"""Requests checked against the OpenAPI document before any handler sees them.

For every documented operation, :func:`validation_middleware` reads the query string, the
path parameters and the JSON body, turns query text into the documented types, validates
all of it with the document's own JSON schemas (``jsonschema``, draft 2020-12, formats
``date-time`` and ``uuid`` enforced) and answers a bad request with a 400 and a reason
(``OPS_BAD_PARAMETER``, ``OPS_BAD_BODY``, ``OPS_BAD_FILTER``, ``OPS_WHY_REQUIRED``).
Handlers read the checked values from ``request[PARAMS]`` and ``request[BODY]``: they never
parse input themselves, so a bug of theirs (a ``KeyError``) stays a bug (a 500), never a 400.

Unknown query parameters, a parameter given twice, text with NUL or unpaired surrogates
(PostgreSQL cannot store either) are refused too.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jsonschema
from aiohttp import web

from router.ops.openapi import openapi_document
from schemas.reasons import OperationRefused, Reason

__all__ = ["BODY", "PARAMS", "operation_specs", "parse_time", "validation_middleware"]

PARAMS = web.RequestKey("lienthong_params", dict[str, Any])
BODY = web.RequestKey("lienthong_body", dict[str, Any])

_INTEGER = re.compile(r"[+-]?\d{1,18}")
_DETAIL_CHARS = 300

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with its offset, representable in UTC; ValueError otherwise."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("a time needs its UTC offset (e.g. +07:00 or Z)")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range") from exc


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_time(value: object) -> bool:
    return not isinstance(value, str) or bool(parse_time(value))


@_FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value))


@dataclass(frozen=True, slots=True)
class OperationSpec:
    """What one documented operation accepts."""

    query: jsonschema.protocols.Validator
    query_types: dict[str, Any]  # parameter name -> its schema's "type"
    path: jsonschema.protocols.Validator
    body: jsonschema.protocols.Validator | None
    body_required: bool


def _validator(schema: dict[str, Any], components: dict[str, Any]) -> Any:
    # the operation's schema with the document's components beside it: "#/components/..."
    # references resolve against this root
    root = {**schema, "components": components}
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    cls.check_schema(root)
    return cls(root, format_checker=_FORMATS)


def _object_schema(params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {p["name"]: p.get("schema", {}) for p in params},
        "required": [p["name"] for p in params if p.get("required")],
        "additionalProperties": False,
    }


@cache
def operation_specs() -> dict[tuple[str, str], OperationSpec]:
    """(path template, method) -> its spec, for every operation in the document."""
    doc = openapi_document()
    components = doc.get("components", {})
    specs: dict[tuple[str, str], OperationSpec] = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            params = op.get("parameters", [])
            query = [p for p in params if p["in"] == "query"]
            in_path = [p for p in params if p["in"] == "path"]
            body_schema = None
            request_body = op.get("requestBody")
            if request_body:
                body_schema = request_body["content"]["application/json"]["schema"]
            specs[(path, method.upper())] = OperationSpec(
                query=_validator(_object_schema(query), components),
                query_types={p["name"]: p.get("schema", {}).get("type") for p in query},
                path=_validator(_object_schema(in_path), components),
                body=_validator(body_schema, components) if body_schema else None,
                body_required=bool(request_body and request_body.get("required")),
            )
    return specs


def _coerce(raw: str, kind: Any) -> Any:
    """Query text as the documented type; left as text when it is not one (the schema
    then says what is wrong)."""
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds and _INTEGER.fullmatch(raw):
        return int(raw)
    if "number" in kinds:
        try:
            number = float(raw)
        except ValueError:
            return raw
        if math.isfinite(number):
            return int(number) if number.is_integer() and "integer" in kinds else number
    if "boolean" in kinds and raw in ("true", "false"):
        return raw == "true"
    return raw


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _check_text(value: Any, reason: Reason) -> None:
    for text in _strings(value):
        if "\x00" in text:
            raise OperationRefused(reason, "text must not contain NUL (U+0000)")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise OperationRefused(reason, "text must be valid Unicode") from exc


def _refuse(validator: Any, instance: Any, reason: Reason, where: str) -> None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return
    location = "/".join(str(p) for p in error.absolute_path)
    if where == "body" and error.absolute_path:
        first = error.absolute_path[0]
        if first == "filter":
            reason = Reason.OPS_BAD_FILTER
        elif first == "why":
            reason = Reason.OPS_WHY_REQUIRED
    message = error.message
    if len(message) > _DETAIL_CHARS:
        message = message[:_DETAIL_CHARS] + "…"
    raise OperationRefused(reason, f"{where} {location}: {message}" if location
                           else f"{where}: {message}")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def _read_body(request: web.Request, spec: OperationSpec) -> dict[str, Any]:
    raw = await request.read()  # bounded by the application's client_max_size (413)
    if not raw:
        if spec.body_required:
            raise OperationRefused(Reason.OPS_BAD_BODY, "a JSON body is required")
        return {}
    try:
        body = json.loads(raw, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise OperationRefused(Reason.OPS_BAD_BODY, "the body is not JSON") from exc
    _check_text(body, Reason.OPS_BAD_BODY)
    assert spec.body is not None
    _refuse(spec.body, body, Reason.OPS_BAD_BODY, "body")
    if not isinstance(body, dict):  # every documented body is an object
        raise OperationRefused(Reason.OPS_BAD_BODY, "the body must be a JSON object")
    return body


@web.middleware
async def validation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    info = request.match_info
    route = info.route
    if route.resource is None:  # no route: aiohttp's 404 / 405
        return await handler(request)
    method = "GET" if request.method == "HEAD" else request.method  # aiohttp's implicit HEAD
    spec = operation_specs().get((route.resource.canonical, method))
    if spec is None:  # not an API operation (dashboard, static files)
        return await handler(request)
    query: dict[str, Any] = {}
    for name in request.query:
        values = request.query.getall(name)
        if len(values) > 1:
            raise OperationRefused(Reason.OPS_BAD_PARAMETER, f"{name}: given more than once")
        query[name] = _coerce(values[0], spec.query_types.get(name))
    _check_text(query, Reason.OPS_BAD_PARAMETER)
    _refuse(spec.query, query, Reason.OPS_BAD_PARAMETER, "query")
    path = dict(info)
    _check_text(path, Reason.OPS_BAD_PARAMETER)
    _refuse(spec.path, path, Reason.OPS_BAD_PARAMETER, "path")
    request[PARAMS] = {**query, **path}
    request[BODY] = await _read_body(request, spec) if spec.body is not None else {}
    return await handler(request)
