"""The OpenAPI 3.1 document of the ops API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from router.ops.audit_api import AUDIT_PATHS
from router.ops.overview_api import OVERVIEW_PATHS
from router.ops.statistics_api import STATISTICS_PATHS

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return body


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request (bilingual message)",
        401: "Missing or invalid token",
        403: "An operator token is required",
        404: "Not found",
        409: "The filter differs from the one previewed",
        503: "A service the answer needs is unreachable",
    }
    return {str(c): _ok(text[c], _ERROR) for c in codes}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_TIME = {"type": "string", "format": "date-time"}
_OBJ = {"type": "object", "additionalProperties": True}


def openapi_document() -> dict[str, Any]:
    read: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lienthong ops API",
            "version": "1",
            "description": (
                "Operations API of the lienthong axis (trục liên thông văn bản). "
                "Send `Authorization: Bearer <token>`; tokens have the role `read` or "
                "`operator` (LIENTHONG_OPS_TOKENS). Only operators re-deliver, requeue or "
                "drop. Errors carry `message_vi` and `message_en`."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message_vi", "message_en"],
                    "properties": {
                        "error": {"type": "string"},
                        "message_vi": {"type": "string"},
                        "message_en": {"type": "string"},
                    },
                },
                "Gateway": {
                    "type": "object",
                    "properties": {
                        "gateway_id": {"type": "string"},
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "status": {"type": "string", "enum": ["active", "suspended"]},
                        "inbox_present": {"type": "boolean"},
                        "depth": {"type": "integer", "description": "messages in the inbox"},
                        "ready": {"type": "integer"},
                        "unacknowledged": {"type": "integer"},
                        "consumers": {"type": "integer"},
                        "publish_rate": {"type": "number", "description": "msg/s into inbox"},
                        "deliver_rate": {"type": "number", "description": "msg/s to consumer"},
                        "receipts_depth": {"type": "integer"},
                        "oldest_waiting_seconds": {"type": ["number", "null"]},
                        "oldest_unarrived_seconds": {"type": ["number", "null"]},
                        "last_seen": {"type": ["string", "null"], "format": "date-time"},
                        "health": {
                            "type": "string",
                            "enum": ["ok", "no_consumer", "backlog", "stale"],
                        },
                        "health_vi": {"type": "string"},
                        "health_en": {"type": "string"},
                    },
                },
                "RedeliveryFilter": {
                    "type": "object",
                    "properties": {
                        "states": {
                            "type": "array",
                            "items": {
                                "type": "string",
                                "enum": ["undeliverable", "queued", "submitted"],
                            },
                            "default": ["undeliverable"],
                        },
                        "recipient": {"type": "string", "description": "agency code or alias"},
                        "gateway": {"type": "string", "description": "recipient gateway id"},
                        "sender": {"type": "string"},
                        "reason_code": {"type": "integer"},
                        "since": _TIME,
                        "until": _TIME,
                        "not_arrived": {"type": "boolean"},
                        "delivery_ids": {"type": "array", "items": {"type": "string"}},
                        "hub_ids": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
        "security": read,
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "security": [],
                    "responses": {"200": _ok("alive", _OBJ)},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "PostgreSQL, RabbitMQ (AMQP and management API) reachable and "
                    "migrations current",
                    "security": [],
                    "responses": {"200": _ok("ready", _OBJ), "503": _ok("not ready", _OBJ)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "security": [],
                    "responses": {"200": {"description": "metrics",
                                          "content": {"text/plain": {}}}},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _ok("OpenAPI document", _OBJ)},
                }
            },
            "/api/gateways": {
                "get": {
                    "summary": "Health of every gateway (hệ thống kết nối): inbox depth, "
                    "consumers, rates, oldest waiting package, last seen",
                    "responses": {
                        "200": _ok(
                            "gateways",
                            {
                                "type": "object",
                                "properties": {
                                    "generated_at": _TIME,
                                    "elapsed_ms": {"type": "number"},
                                    "summary": _OBJ,
                                    "gateways": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Gateway"},
                                    },
                                },
                            },
                        ),
                        **_errors(401, 503),
                    },
                }
            },
            "/api/documents/{ident}": {
                "get": {
                    "summary": "Tracking timeline of a document by hub id or edXML DocumentId "
                    "(a DocumentId may match several documents)",
                    "parameters": [
                        {"name": "ident", "in": "path", "required": True,
                         "schema": {"type": "string"}}
                    ],
                    "responses": {"200": _ok("documents", _OBJ), **_errors(401, 404)},
                }
            },
            "/api/deliveries": {
                "get": {
                    "summary": "Deliveries, newest first: a ledger state or the operator lists "
                    "failed / not_arrived / overdue",
                    "parameters": [
                        _q("state", "ledger state, or failed | not_arrived | overdue"),
                        _q("recipient", "recipient agency code (any spelling)"),
                        _q("sender", "sender agency code (any spelling)"),
                        _q("gateway", "recipient gateway id"),
                        _q("since", "created at or after (ISO 8601)", _TIME),
                        _q("until", "created before (ISO 8601)", _TIME),
                        _q("limit", "at most (1..1000, default 100)", {"type": "integer"}),
                    ],
                    "responses": {"200": _ok("deliveries", _OBJ), **_errors(400, 401)},
                }
            },
            "/api/throughput": {
                "get": {
                    "summary": "Per-minute counts from the ledger: documents, status packages, "
                    "rejections",
                    "parameters": [_q("minutes", "window (1..1440, default 60)",
                                      {"type": "integer"})],
                    "responses": {"200": _ok("series", _OBJ), **_errors(400, 401)},
                }
            },
            "/api/parking": {
                "get": {
                    "summary": "Parked messages (khu cách ly)",
                    "parameters": [
                        _q("state", "parked (default) | requeued | dropped"),
                        _q("gateway", "gateway id"),
                        _q("reason", "reason name, e.g. POISON"),
                        _q("since", "parked at or after", _TIME),
                        _q("until", "parked before", _TIME),
                        _q("limit", "at most (1..1000)", {"type": "integer"}),
                    ],
                    "responses": {"200": _ok("parked messages", _OBJ), **_errors(400, 401)},
                }
            },
            "/api/parking/requeue": {
                "post": {
                    "summary": "Send parked messages back (operator)",
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object", "required": ["ids"],
                        "properties": {"ids": {"type": "array", "items": {"type": "string"}}},
                    }}}},
                    "responses": {"200": _ok("requeued count", _OBJ),
                                  **_errors(400, 401, 403)},
                }
            },
            "/api/parking/drop": {
                "post": {
                    "summary": "Mark parked messages dropped, with why (operator)",
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object", "required": ["ids", "why"],
                        "properties": {"ids": {"type": "array", "items": {"type": "string"}},
                                       "why": {"type": "string"}},
                    }}}},
                    "responses": {"200": _ok("dropped count", _OBJ),
                                  **_errors(400, 401, 403)},
                }
            },
            "/api/redeliveries": {
                "get": {
                    "summary": "Recent re-delivery jobs",
                    "parameters": [_q("limit", "at most (default 20)", {"type": "integer"})],
                    "responses": {"200": _ok("jobs", _OBJ), **_errors(401)},
                },
                "post": {
                    "summary": "Re-deliver in bulk. Without `confirm`: a dry run (counts per "
                    "recipient, a sample, and the `confirm` fingerprint; any token). With "
                    "`confirm` set to that fingerprint: run it (operator). 200 with the job "
                    "when it finished within 5 s, else 202 while it goes on.",
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "filter": {"$ref": "#/components/schemas/RedeliveryFilter"},
                            "rate": {"type": ["number", "null"],
                                     "description": "copies per second"},
                            "confirm": {"type": "string"},
                        },
                    }}}},
                    "responses": {
                        "200": _ok("dry run or finished job", _OBJ),
                        "202": _ok("job running", _OBJ),
                        **_errors(400, 401, 403, 409),
                    },
                },
            },
            "/api/redeliveries/{job_id}": {
                "get": {
                    "summary": "One re-delivery job",
                    "parameters": [
                        {"name": "job_id", "in": "path", "required": True,
                         "schema": {"type": "string", "format": "uuid"}}
                    ],
                    "responses": {"200": _ok("job", _OBJ), **_errors(400, 401, 404)},
                }
            },
            **AUDIT_PATHS,
            **STATISTICS_PATHS,
            **OVERVIEW_PATHS,
        },
    }
