"""The OpenAPI 3.1 document of the ops API, served at ``/api/openapi.json``."""

from __future__ import annotations

from typing import Any

from router.ops.audit_api import AUDIT_PATHS
from router.ops.overview_api import OVERVIEW_PATHS
from router.ops.statistics_api import STATISTICS_PATHS
from router.recovery.redelivery import DEFAULT_STATES, REDELIVERABLE
from router.reporting.tracking import DELIVERY_STATES, LISTS

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"description": description}
    if schema is not None:
        body["content"] = {"application/json": {"schema": schema}}
    return body


_ERROR_TEXT = {
    400: "Bad request: a parameter, the body or the filter is not valid (reason 6001-6005, "
    "6016)",
    401: "Missing or invalid token (reason 6010)",
    403: "An operator token is required (reason 6011)",
    404: "Not found (reason 6006-6008)",
    409: "The filter differs from the one previewed (reason 6012)",
    413: "The request body is too large (reason 6017)",
    500: "The re-delivery failed (reason 6015)",
    503: "A service the answer needs is unreachable (reason 6013)",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _ok(_ERROR_TEXT[c], _ERROR) for c in codes}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or _TEXT,
    }


def _limit(default: int, most: int) -> dict[str, Any]:
    return _q("limit", f"at most (1..{most}, default {default})",
              {"type": "integer", "minimum": 1, "maximum": most, "default": default})


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 500}
_UUID = {"type": "string", "format": "uuid"}
_UUIDS = {**_array(_UUID), "maxItems": 10_000}
_OBJ = {"type": "object", "additionalProperties": True}
_COUNT = {"type": "integer", "minimum": 0}
_ROWS = _array(_OBJ)
_PARKING_STATES = ["parked", "requeued", "dropped", "all"]


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_REDELIVERY_JOB = _object(
    ["id", "actor", "filter", "state", "total", "done", "queued", "undeliverable"],
    id=_UUID,
    actor={"type": "string"},
    filter={"$ref": "#/components/schemas/RedeliveryFilter"},
    rate={"type": ["number", "null"]},
    state={"type": "string", "enum": ["running", "done", "failed", "interrupted"]},
    total=_COUNT,
    done=_COUNT,
    queued=_COUNT,
    undeliverable=_COUNT,
    error={"type": ["string", "null"]},
    created_at=_TIME_OR_NULL,
    updated_at=_TIME_OR_NULL,
    finished_at=_TIME_OR_NULL,
)


def openapi_document() -> dict[str, Any]:
    read: list[dict[str, list[str]]] = [{"bearer": []}]
    api_errors = (400, 401, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lienthong ops API",
            "version": "1",
            "description": (
                "Operations API of the lienthong axis (trục liên thông văn bản). "
                "Send `Authorization: Bearer <token>`; tokens have the role `read` or "
                "`operator` (LIENTHONG_OPS_TOKENS). Only operators re-deliver, requeue or "
                "drop. Requests are checked against this document: unknown parameters and "
                "values outside their schema are refused with 400. Errors carry a reason "
                "(`reason`, `code`: 6xxx) and `message_vi`, `message_en`."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "reason", "code", "message_vi", "message_en"],
                    "properties": {
                        "error": {"type": "string"},
                        "reason": {"type": "string", "description": "reason name"},
                        "code": {"type": "integer", "description": "reason code (6xxx)"},
                        "message_vi": {"type": "string"},
                        "message_en": {"type": "string"},
                        "detail": {"type": "string", "description": "what was wrong"},
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
                        "intake_depth": {"type": "integer", "description":
                                         "packages it submitted waiting in its intake "
                                         "queue lt.router.in.<id> for the routers"},
                        "oldest_waiting_seconds": {"type": ["number", "null"]},
                        "oldest_unarrived_seconds": {"type": ["number", "null"]},
                        "last_seen": _TIME_OR_NULL,
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
                    "additionalProperties": False,
                    "properties": {
                        "states": {
                            **_array({"type": "string", "enum": list(REDELIVERABLE)}),
                            "default": list(DEFAULT_STATES),
                            "description": "empty: the default",
                        },
                        "recipient": {**_TEXT, "description": "agency code or alias"},
                        "gateway": {**_TEXT, "description": "recipient gateway id"},
                        "sender": {**_TEXT, "description": "agency code or alias"},
                        "reason_code": {"type": "integer", "minimum": 1000, "maximum": 9999},
                        "since": _TIME,
                        "until": _TIME,
                        "not_arrived": {"type": "boolean"},
                        "delivery_ids": _UUIDS,
                        "hub_ids": _UUIDS,
                    },
                },
                "RedeliveryJob": _REDELIVERY_JOB,
            },
        },
        "security": read,
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "security": [],
                    "responses": {"200": _ok("alive", _OBJ), **_errors(400)},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "PostgreSQL, RabbitMQ (AMQP and management API) reachable and "
                    "migrations current",
                    "security": [],
                    "responses": {"200": _ok("ready", _OBJ), "503": _ok("not ready", _OBJ),
                                  **_errors(400)},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics (text exposition format)",
                    "security": [],
                    "responses": {"200": {"description": "metrics",
                                          "content": {"text/plain": {}}},
                                  **_errors(400)},
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _ok("OpenAPI document", _OBJ), **_errors(400)},
                }
            },
            "/api/gateways": {
                "get": {
                    "summary": "Health of every gateway (hệ thống kết nối): inbox depth, "
                    "consumers, rates, oldest waiting package, last seen",
                    "responses": {
                        "200": _ok(
                            "gateways",
                            _object(
                                ["generated_at", "summary", "gateways"],
                                generated_at=_TIME,
                                elapsed_ms={"type": "number"},
                                thresholds=_OBJ,
                                summary=_OBJ,
                                gateways=_array({"$ref": "#/components/schemas/Gateway"}),
                            ),
                        ),
                        **_errors(*api_errors),
                    },
                }
            },
            "/api/documents/{ident}": {
                "get": {
                    "summary": "Tracking timeline of a document by hub id or edXML DocumentId "
                    "(a DocumentId may match several documents)",
                    "parameters": [
                        {"name": "ident", "in": "path", "required": True, "schema": _TEXT}
                    ],
                    "responses": {
                        "200": _ok("documents", _object(
                            ["query", "documents"], query={"type": "string"},
                            documents={**_ROWS, "minItems": 1})),
                        **_errors(*api_errors, 404),
                    },
                }
            },
            "/api/deliveries": {
                "get": {
                    "summary": "Deliveries, newest first: a ledger state or the operator lists "
                    "failed / not_arrived / overdue",
                    "parameters": [
                        _q("state", "ledger state, or failed | not_arrived | overdue",
                           {"type": "string", "enum": [*LISTS, *DELIVERY_STATES]}),
                        _q("recipient", "recipient agency code (any spelling)"),
                        _q("sender", "sender agency code (any spelling)"),
                        _q("gateway", "recipient gateway id"),
                        _q("since", "created at or after (ISO 8601 with offset)", _TIME),
                        _q("until", "created before (ISO 8601 with offset)", _TIME),
                        _limit(100, 1000),
                    ],
                    "responses": {
                        "200": _ok("deliveries", _object(
                            ["count", "limit", "deliveries"], count=_COUNT,
                            limit={"type": "integer"}, deliveries=_ROWS)),
                        **_errors(*api_errors),
                    },
                }
            },
            "/api/throughput": {
                "get": {
                    "summary": "Per-minute counts from the ledger: documents, status packages, "
                    "rejections",
                    "parameters": [_q("minutes", "window (1..1440, default 60)",
                                      {"type": "integer", "minimum": 1, "maximum": 1440,
                                       "default": 60})],
                    "responses": {
                        "200": _ok("series", _object(
                            ["minutes", "series"], minutes={"type": "integer"},
                            series=_array(_object(
                                ["minute", "edoc", "status", "rejected"], minute=_TIME,
                                edoc=_COUNT, status=_COUNT, rejected=_COUNT)))),
                        **_errors(*api_errors),
                    },
                }
            },
            "/api/parking": {
                "get": {
                    "summary": "Parked messages (khu cách ly)",
                    "parameters": [
                        _q("state", "parked (default) | requeued | dropped | all",
                           {"type": "string", "enum": _PARKING_STATES, "default": "parked"}),
                        _q("gateway", "gateway id"),
                        _q("reason", "reason name, e.g. POISON"),
                        _q("since", "parked at or after (ISO 8601 with offset)", _TIME),
                        _q("until", "parked before (ISO 8601 with offset)", _TIME),
                        _limit(100, 1000),
                    ],
                    "responses": {
                        "200": _ok("parked messages", _object(
                            ["count", "broker_waiting", "parked"], count=_COUNT,
                            broker_waiting=_COUNT, parked=_ROWS)),
                        **_errors(*api_errors),
                    },
                }
            },
            "/api/parking/requeue": {
                "post": {
                    "summary": "Send parked messages back (operator): a submission through "
                    "validation again, on behalf of its gateway; a copy to its gateway's inbox",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {
                            "type": "object", "required": ["ids"],
                            "additionalProperties": False,
                            "properties": {"ids": {**_UUIDS, "minItems": 1,
                                                   "maxItems": 1000}},
                        }}}},
                    "responses": {"200": _ok("requeued count",
                                             _object(["requeued"], requeued=_COUNT)),
                                  **_errors(*api_errors, 403, 413)},
                }
            },
            "/api/parking/drop": {
                "post": {
                    "summary": "Mark parked messages dropped, with why (operator)",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {
                            "type": "object", "required": ["ids", "why"],
                            "additionalProperties": False,
                            "properties": {
                                "ids": {**_UUIDS, "minItems": 1, "maxItems": 1000},
                                "why": {"type": "string", "pattern": "\\S",
                                        "maxLength": 2000,
                                        "description": "kept in the audit log"},
                            },
                        }}}},
                    "responses": {"200": _ok("dropped count",
                                             _object(["dropped"], dropped=_COUNT)),
                                  **_errors(*api_errors, 403, 413)},
                }
            },
            "/api/redeliveries": {
                "get": {
                    "summary": "Recent re-delivery jobs, newest first",
                    "parameters": [_limit(20, 200)],
                    "responses": {
                        "200": _ok("jobs", _object(
                            ["jobs"], jobs=_array({"$ref": "#/components/schemas/RedeliveryJob"})
                        )),
                        **_errors(*api_errors),
                    },
                },
                "post": {
                    "summary": "Re-deliver in bulk. Without `confirm`: a dry run (counts per "
                    "recipient, a sample, and the `confirm` fingerprint; any token). With "
                    "`confirm` set to that fingerprint: run it (operator). 200 with the job "
                    "when it finished within 5 s, else 202 while it goes on. A gateway or "
                    "agency the directory does not know is refused (6004, 6005).",
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "filter": {"$ref": "#/components/schemas/RedeliveryFilter"},
                            "rate": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                     "maximum": 1_000_000, "description": "copies per second"},
                            "confirm": {"type": "string", "minLength": 1, "maxLength": 64},
                        },
                    }}}},
                    "responses": {
                        "200": _ok("dry run or finished job", _OBJ),
                        "202": _ok("job running", _OBJ),
                        **_errors(*api_errors, 403, 409, 413, 500),
                    },
                },
            },
            "/api/redeliveries/{job_id}": {
                "get": {
                    "summary": "One re-delivery job",
                    "parameters": [
                        {"name": "job_id", "in": "path", "required": True, "schema": _UUID}
                    ],
                    "responses": {
                        "200": _ok("job", {"$ref": "#/components/schemas/RedeliveryJob"}),
                        **_errors(*api_errors, 404),
                    },
                }
            },
            **AUDIT_PATHS,
            **STATISTICS_PATHS,
            **OVERVIEW_PATHS,
        },
    }
