"""The OpenAPI 3.1 document of the VXP compatibility API, served at
``{endpoint}/openapi.json`` (no authentication: it holds no data)."""

from __future__ import annotations

from typing import Any

__all__ = ["OPERATION_DOCS", "openapi_document"]

_ENVELOPE = {"$ref": "#/components/schemas/Envelope"}
_SIGNED = ["systemid", "timestamp", "sign-header-key", "sign-header", "hash-header"]

# operation -> (method, summary, parameters (XroadVnpt-<name>), answer fields)
OPERATION_DOCS: dict[str, tuple[str, str, list[str], dict[str, Any]]] = {
    "sendEdoc": (
        "post", "Send a document or a status package (answers after the hub's receipt)",
        ["from", "servicetype", "messagetype", "to", "hash-file"],
        {"DocId": {"type": "string", "description": "the hub id of the package"},
         "receipt": {"enum": ["accepted", "duplicate"]},
         "warnings": {"type": "array", "items": {"type": "object"}}},
    ),
    "getReceivedEdocList": (
        "post", "Documents (or statuses) in the mailbox not yet marked done",
        ["servicetype", "messagetype", "pageSize", "pageIndex"],
        {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Received"}}},
    ),
    "getEdoc": ("post", "One package, base64", ["docId"],
                {"docId": {"type": "string"}, "data": {"type": "string",
                                                       "contentEncoding": "base64"}}),
    "downloadEdoc": ("get", "One package, streamed (the bytes, not an envelope)", ["docId"], {}),
    "updateStatus": ("post", "Transport acknowledgement: processing, done (final) or fail",
                     ["docId", "status"], {}),
    "getSentEdocList": (
        "post", "What this system sent, one row per recipient",
        ["docId", "fromDate", "toDate", "pageSize", "pageIndex"],
        {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Sent"}}},
    ),
    "countReceiveEdoc": ("get", "Documents waiting", [], {"count": {"type": "integer"}}),
    "countReceiveStatus": ("get", "Status packages waiting", [], {"count": {"type": "integer"}}),
    "getAgenciesList": (
        "post", "Agencies in the hub's published directory (deleted ones left out)", [],
        {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Agency"}}},
    ),
    "getAgenciesListQD20": (
        "post", "Agencies by QĐ 20 code; level 1 = no parent, 2 = their children, ...",
        ["level"],
        {"data": {"type": "array", "items": {"$ref": "#/components/schemas/AgencyQD20"}}},
    ),
    "getSynchronizeUnit": (
        "post", "Every agency with its feed version, deleted ones included (deleted=true)",
        [], {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Unit"}}},
    ),
    "registerAgency": (
        "post", "Register (or rename) an agency of the system's gateway; JSON body {id, pcode, "
        "code, name, mail, mobile, fax} (code and name required; id, mail, mobile, fax not "
        "kept). Only when the hub's operators allow the gateway to manage agencies and its "
        "serves patterns cover the code: otherwise FAIL 21 (AGENCY_MANAGEMENT_NOT_ALLOWED, "
        "AGENCY_NOT_SERVED, AGENCY_OF_ANOTHER_GATEWAY)", [], {},
    ),
    "deleteAgency": (
        "post", "Delete an agency of the system's gateway (the same conditions as "
        "registerAgency; an unknown code is FAIL 21 OPS_UNKNOWN_AGENCY)", ["AgencyCode"], {},
    ),
}


def _header(name: str, required: bool = False) -> dict[str, Any]:
    return {"name": f"XroadVnpt-{name}", "in": "header", "required": required,
            "schema": {"type": "string"}}


def _operation(name: str) -> dict[str, Any]:
    method, summary, params, fields = OPERATION_DOCS[name]
    answer = {"allOf": [_ENVELOPE, {"type": "object", "properties": fields}]}
    op: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "parameters": [_header(n, n in ("systemid", "sign-header", "hash-header"))
                       for n in _SIGNED] + [_header(p) for p in params],
        "responses": {"200": {
            "description": "An envelope: status OK, or FAIL with ErrorCode and a bilingual "
                           "ErrorDesc (non-ASCII escaped)",
            "content": {"application/json": {"schema": answer}},
        }},
    }
    if name == "sendEdoc":
        op["requestBody"] = {"required": True, "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                         "description": "the edXML file (a trailing CRLF, "
                                                        "as the Java SDK writes, is allowed); "
                                                        "over the large-package threshold it "
                                                        "is spooled to disk and sent in "
                                                        "chunks, up to the large limit"},
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file_doc": {"type": "string", "format": "binary"}}}},
        }}
    if name == "downloadEdoc":
        op["responses"]["200"]["content"]["application/octet-stream"] = {
            "schema": {"type": "string", "format": "binary"}}
    return {method: op}


def openapi_document() -> dict[str, Any]:
    s = {"type": "string"}
    i = {"type": "integer"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "lienthong VXP compatibility API",
            "version": "1",
            "description": (
                "The current axis's gateway API as the vendor SDK (SDKVXP) calls it. Every "
                "parameter is an XroadVnpt-<name> header; XroadVnpt-hash-header is the hex "
                "HMAC-SHA256 of the XroadVnpt-sign-header text with the system's secret; the "
                "body is bound by XroadVnpt-hash-file (SHA-256, padded or unpadded hex)."
            ),
        },
        "paths": {f"/{name}": _operation(name) for name in OPERATION_DOCS},
        "components": {"schemas": {
            "Envelope": {"type": "object", "required": ["status", "ErrorCode", "ErrorDesc"],
                         "properties": {"status": {"enum": ["OK", "FAIL"]},
                                        "ErrorCode": s, "ErrorDesc": s,
                                        "reason": s, "reasonCode": {"type": "integer"}}},
            "Received": {"type": "object", "properties": {k: s for k in (
                "docId", "serviceType", "messageType", "created_time", "updated_time",
                "from", "to", "status", "status_desc", "documentId", "statusCode")}},
            "Sent": {"type": "object", "properties": {k: s for k in (
                "senderDocId", "receiverDocId", "fromCode", "toCode", "title", "notation",
                "sentTime", "receivedTime", "sendStatus", "sendStatusDesc", "receiveStatus",
                "receiveStatusDesc", "messageType", "serviceType")}},
            "Agency": {"type": "object", "properties": {
                "id": i, "code": s, "pid": i, "name": s, "mail": s, "oldCode": s}},
            "AgencyQD20": {"type": "object", "properties": {
                "id": i, "code": s, "pid": i, "name": s, "mail": s, "code102": s}},
            "Unit": {"type": "object", "properties": {
                "id": i, "code": s, "pid": i, "name": s, "mail": s, "version": i,
                "centerCode": s, "deleted": {"type": "boolean"}, "modifyDate": s,
                "isAgency": {"type": "boolean"}}},
        }},
    }
