"""Packages from a JSON description ("spec"), for ``lienthong package build`` and the SDK.

A document spec::

    {
      "kind": "edoc",
      "from": {"organ_id": "000.00.00.G22", "organ_name": "Văn phòng Chính phủ"},
      "to": [{"organ_id": "000.00.00.H41", "organ_name": "UBND Tỉnh Nghệ An"},
             "000.00.00.H14"],
      "code": {"number": "7816", "notation": "VPCP-TTĐT"},
      "promulgation_date": "2025/10/13",
      "place": "Hà Nội",
      "document_type": {"type": "1", "type_detail": "0", "type_name": "Công văn"},
      "subject": "V/v kết nối, liên thông phần mềm quản lý văn bản",
      "attachments": [
        {"path": "cong-van.pdf"},
        {"path": "phu-luc.doc", "zip": true, "description": "Phụ lục"},
        {"name": "note.txt", "data_base64": "aGVsbG8=", "content_type": "text/plain"}
      ]
    }

Optional document keys: ``document_id`` (default ``<from>,<yyyy/MM/dd>,<number>/<notation>``),
``content``, ``signer`` {competence, position, full_name}, ``due_date``, ``to_places`` [..],
``other_info`` {priority, sphere_of_promulgation, typer_notation, promulgation_amount,
page_amount, direction, appendixes [..]}, ``response_for`` [{organ_id, code,
promulgation_date, document_id}], ``steering_type``, ``trace_headers`` [{organ_id,
timestamp}], ``business`` {type: 0-3 or new/revoke/update/replace, document_id, reason, paper,
staff_info {department, staff, email, mobile}, document_info {document_info,
document_receiver, receivers [{organ_id, receiver_type}]}, replacements [{document_id,
organ_ids [..]}]}. ``code`` may also be a string ``"7816/VPCP-TTĐT"``; ``from``/``to``
entries may be a bare code string or carry any of organ_id, organ_name,
organization_in_charge, organ_add, email, telephone, fax, website.

An attachment gives either ``path`` (relative to the spec file's directory) or
``data_base64``, plus optional ``name`` (default: the file name), ``content_type`` (default:
guessed from the name), ``description``, ``zip`` (wrap in a one-entry ZIP) and
``content_id``.

A status spec::

    {"kind": "status", "from": {"organ_id": "000.00.00.H41", "organ_name": "UBND Tỉnh Nghệ An"},
     "response_for": {"organ_id": "000.00.00.G22", "code": "7816/VPCP-TTĐT",
                      "promulgation_date": "2025/10/13",
                      "document_id": "000.00.00.G22,2025/10/13,7816/VPCP-TTĐT"},
     "status_code": "03", "description": "Đã tiếp nhận", "timestamp": "2025/10/13 10:00:00",
     "staff_info": {"department": "Văn thư", "staff": "Nguyễn Văn A"}}

Dates are ``yyyy/MM/dd`` (ISO accepted); timestamps ``yyyy/MM/dd HH:mm:ss`` (ISO accepted).
Unknown keys are errors (they are usually typos). This module reads no files itself: the
caller passes ``read_file`` to load attachment paths.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path, PurePath
from typing import Any

from schemas.builder import new_attachment
from schemas.dates import format_date, parse_date, parse_timestamp
from schemas.model import (
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    OtherInfo,
    Package,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusPackage,
    TraceHeader,
)

__all__ = ["SpecError", "package_from_spec"]


class SpecError(ValueError):
    """The spec cannot be turned into a package; the message says where."""


_ORG_KEYS = (
    "organ_id",
    "organ_name",
    "organization_in_charge",
    "organ_add",
    "email",
    "telephone",
    "fax",
    "website",
)
_EDOC_KEYS = frozenset(
    {
        "kind",
        "from",
        "to",
        "code",
        "promulgation_date",
        "place",
        "document_id",
        "document_type",
        "subject",
        "content",
        "signer",
        "due_date",
        "to_places",
        "other_info",
        "response_for",
        "steering_type",
        "business",
        "trace_headers",
        "attachments",
    }
)
_STATUS_KEYS = frozenset(
    {"kind", "from", "response_for", "status_code", "description", "timestamp", "staff_info"}
)
_BUSINESS_NAMES = {t.name.lower(): t for t in BusinessDocType}


def package_from_spec(
    spec: Mapping[str, Any],
    base_dir: Path | None = None,
    *,
    read_file: Callable[[Path], bytes] | None = None,
) -> Package:
    """The package a spec describes (see the module docstring). Raises :class:`SpecError`.

    ``base_dir`` resolves relative attachment paths; ``read_file`` loads them (the CLI passes
    ``Path.read_bytes``; without it, specs with ``path`` attachments are refused).
    """
    if not isinstance(spec, Mapping):
        raise SpecError("the spec must be a JSON object")
    kind = spec.get("kind", "edoc")
    if kind == "status":
        _known(spec, _STATUS_KEYS, "spec")
        return _status(spec)
    if kind != "edoc":
        raise SpecError(f"kind must be 'edoc' or 'status', not {kind!r}")
    _known(spec, _EDOC_KEYS, "spec")
    return _edoc(spec, base_dir, read_file)


def _known(obj: Mapping[str, Any], allowed: frozenset[str] | tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(f"{where} must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{where} must be a list")
    return value


def _str(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SpecError(f"{where} must be a string")
    text = str(value).strip()
    return text or None


def _req(value: Any, where: str) -> str:
    text = _str(value, where)
    if text is None:
        raise SpecError(f"{where} is required")
    return text


def _int(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where} must be an integer") from None


def _date(value: Any, where: str) -> date | None:
    text = _str(value, where)
    if text is None:
        return None
    try:
        return parse_date(text)[0]
    except ValueError:
        raise SpecError(f"{where}: {text!r} is not a date (yyyy/MM/dd)") from None


def _timestamp(value: Any, where: str) -> datetime | None:
    text = _str(value, where)
    if text is None:
        return None
    stamp = parse_timestamp(text)
    if stamp is None:
        raise SpecError(f"{where}: {text!r} is not a timestamp (yyyy/MM/dd HH:mm:ss)")
    return stamp


def _org(value: Any, where: str) -> Organization:
    if isinstance(value, str):
        return Organization(organ_id=_req(value, where))
    obj = _obj(value, where)
    _known(obj, _ORG_KEYS, where)
    return Organization(
        organ_id=_req(obj.get("organ_id"), f"{where}.organ_id"),
        **{k: _str(obj.get(k), f"{where}.{k}") for k in _ORG_KEYS[1:]},
    )


def _staff(value: Any, where: str) -> StaffInfo | None:
    if value is None:
        return None
    obj = _obj(value, where)
    keys = ("department", "staff", "email", "mobile")
    _known(obj, keys, where)
    return StaffInfo(**{k: _str(obj.get(k), f"{where}.{k}") for k in keys})


def _response_for(value: Any, where: str) -> ResponseFor:
    obj = _obj(value, where)
    _known(obj, ("organ_id", "code", "promulgation_date", "document_id"), where)
    return ResponseFor(
        organ_id=_str(obj.get("organ_id"), f"{where}.organ_id"),
        code=_str(obj.get("code"), f"{where}.code"),
        promulgation_date=_date(obj.get("promulgation_date"), f"{where}.promulgation_date"),
        document_id=_str(obj.get("document_id"), f"{where}.document_id"),
    )


def _status(spec: Mapping[str, Any]) -> StatusPackage:
    raw = _req(spec.get("status_code"), "status_code")
    try:
        status_code = StatusCode(raw.zfill(2))
    except ValueError:
        codes = ", ".join(c.value for c in StatusCode)
        raise SpecError(f"status_code {raw!r} is not one of {codes}") from None
    if spec.get("response_for") is None:
        raise SpecError("response_for is required for a status")
    return StatusPackage(
        sender=_org(spec.get("from"), "from"),
        response_for=_response_for(spec["response_for"], "response_for"),
        status_code=status_code,
        description=_str(spec.get("description"), "description"),
        timestamp=_timestamp(spec.get("timestamp"), "timestamp"),
        staff_info=_staff(spec.get("staff_info"), "staff_info"),
    )


def _code(value: Any) -> Code:
    if isinstance(value, str):
        number, _, notation = value.strip().partition("/")
        return Code(number.strip() or None, notation.strip() or None)
    obj = _obj(value, "code")
    _known(obj, ("number", "notation"), "code")
    return Code(_str(obj.get("number"), "code.number"), _str(obj.get("notation"), "code.notation"))


def _edoc(
    spec: Mapping[str, Any], base_dir: Path | None, read_file: Callable[[Path], bytes] | None
) -> EdocPackage:
    sender = _org(spec.get("from"), "from")
    recipients = tuple(_org(v, f"to[{i}]") for i, v in enumerate(_list(spec.get("to"), "to")))
    if spec.get("code") is None:
        raise SpecError("code is required")
    code = _code(spec["code"])
    promulgation_date = _date(spec.get("promulgation_date"), "promulgation_date")
    if promulgation_date is None:
        raise SpecError("promulgation_date is required")
    document_id = _str(spec.get("document_id"), "document_id")
    if document_id is None:
        document_id = f"{sender.organ_id},{format_date(promulgation_date)},{code}"

    dt = _obj(spec.get("document_type") or {}, "document_type")
    _known(dt, ("type", "type_detail", "type_name"), "document_type")
    signer = None
    if spec.get("signer") is not None:
        s = _obj(spec["signer"], "signer")
        _known(s, ("competence", "position", "full_name"), "signer")
        signer = SignerInfo(**{k: _str(s.get(k), f"signer.{k}") for k in s})
    other_info = None
    if spec.get("other_info") is not None:
        o = _obj(spec["other_info"], "other_info")
        _known(
            o,
            (
                "priority",
                "sphere_of_promulgation",
                "typer_notation",
                "promulgation_amount",
                "page_amount",
                "direction",
                "appendixes",
            ),
            "other_info",
        )
        other_info = OtherInfo(
            priority=_int(o.get("priority"), "other_info.priority"),
            sphere_of_promulgation=_str(o.get("sphere_of_promulgation"), "other_info.sphere"),
            typer_notation=_str(o.get("typer_notation"), "other_info.typer_notation"),
            promulgation_amount=_int(o.get("promulgation_amount"), "other_info.amount"),
            page_amount=_int(o.get("page_amount"), "other_info.page_amount"),
            direction=_str(o.get("direction"), "other_info.direction"),
            appendixes=_strings(o.get("appendixes"), "other_info.appendixes"),
        )
    return EdocPackage(
        sender=sender,
        recipients=recipients,
        code=code,
        promulgation=PromulgationInfo(_str(spec.get("place"), "place"), promulgation_date),
        document_type=DocumentType(
            type=_str(dt.get("type"), "document_type.type"),
            type_detail=_str(dt.get("type_detail"), "document_type.type_detail"),
            type_name=_str(dt.get("type_name"), "document_type.type_name"),
        ),
        subject=_str(spec.get("subject"), "subject"),
        document_id=document_id,
        content=_str(spec.get("content"), "content"),
        signer=signer,
        due_date=_date(spec.get("due_date"), "due_date"),
        to_places=_strings(spec.get("to_places"), "to_places"),
        other_info=other_info,
        response_for=tuple(
            _response_for(v, f"response_for[{i}]")
            for i, v in enumerate(_list(spec.get("response_for"), "response_for"))
        ),
        steering_type=_str(spec.get("steering_type"), "steering_type"),
        business=_business(spec.get("business")),
        trace_headers=tuple(
            _trace_header(v, f"trace_headers[{i}]")
            for i, v in enumerate(_list(spec.get("trace_headers"), "trace_headers"))
        ),
        attachments=tuple(
            _attachment(v, f"attachments[{i}]", base_dir, read_file)
            for i, v in enumerate(_list(spec.get("attachments"), "attachments"))
        ),
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    out = []
    for i, v in enumerate(_list(value, where)):
        text = _str(v, f"{where}[{i}]")
        if text is not None:
            out.append(text)
    return tuple(out)


def _trace_header(value: Any, where: str) -> TraceHeader:
    obj = _obj(value, where)
    _known(obj, ("organ_id", "timestamp"), where)
    return TraceHeader(
        _str(obj.get("organ_id"), f"{where}.organ_id"),
        _timestamp(obj.get("timestamp"), f"{where}.timestamp"),
    )


def _business(value: Any) -> Business:
    if value is None:
        return Business()
    obj = _obj(value, "business")
    _known(
        obj,
        ("type", "document_id", "reason", "paper", "staff_info", "document_info", "replacements"),
        "business",
    )
    raw_type = obj.get("type", 0)
    doc_type: BusinessDocType | None
    if isinstance(raw_type, str) and raw_type.strip().lower() in _BUSINESS_NAMES:
        doc_type = _BUSINESS_NAMES[raw_type.strip().lower()]
    else:
        number = _int(raw_type, "business.type")
        doc_type = BusinessDocType(number) if number in (0, 1, 2, 3) else None
    if doc_type is None:
        raise SpecError(f"business.type {raw_type!r}: use 0-3 or new/revoke/update/replace")
    document_info = None
    if obj.get("document_info") is not None:
        di = _obj(obj["document_info"], "business.document_info")
        _known(di, ("document_info", "document_receiver", "receivers"), "business.document_info")
        receivers = []
        for i, r in enumerate(_list(di.get("receivers"), "business.document_info.receivers")):
            where = f"business.document_info.receivers[{i}]"
            ro = _obj(r, where)
            _known(ro, ("organ_id", "receiver_type"), where)
            receivers.append(
                Receiver(
                    _req(ro.get("organ_id"), f"{where}.organ_id"),
                    _str(ro.get("receiver_type"), f"{where}.receiver_type"),
                )
            )
        document_info = BusinessDocumentInfo(
            document_info=_str(di.get("document_info"), "business.document_info.document_info"),
            document_receiver=_str(di.get("document_receiver"), "business.document_receiver"),
            receivers=tuple(receivers),
        )
    replacements = []
    for i, r in enumerate(_list(obj.get("replacements"), "business.replacements")):
        where = f"business.replacements[{i}]"
        ro = _obj(r, where)
        _known(ro, ("document_id", "organ_ids"), where)
        replacements.append(
            ReplacementInfo(
                _req(ro.get("document_id"), f"{where}.document_id"),
                _strings(ro.get("organ_ids"), f"{where}.organ_ids"),
            )
        )
    return Business(
        doc_type=doc_type,
        document_id=_str(obj.get("document_id"), "business.document_id"),
        reason=_str(obj.get("reason"), "business.reason"),
        paper=_str(obj.get("paper"), "business.paper"),
        staff_info=_staff(obj.get("staff_info"), "business.staff_info"),
        document_info=document_info,
        replacements=tuple(replacements),
    )


def _attachment(
    value: Any,
    where: str,
    base_dir: Path | None,
    read_file: Callable[[Path], bytes] | None,
) -> Attachment:
    obj = _obj(value, where)
    _known(
        obj,
        ("path", "data_base64", "name", "content_type", "description", "zip", "content_id"),
        where,
    )
    path = _str(obj.get("path"), f"{where}.path")
    encoded = obj.get("data_base64")
    if (path is None) == (encoded is None):
        raise SpecError(f"{where}: give exactly one of path and data_base64")
    name = _str(obj.get("name"), f"{where}.name")
    if path is not None:
        if read_file is None:
            raise SpecError(f"{where}: no file reader was given for path {path!r}")
        full = (base_dir / path) if base_dir is not None else Path(path)
        try:
            data = read_file(full)
        except OSError as exc:
            raise SpecError(f"{where}: cannot read {full}: {exc.strerror or exc}") from None
        name = name or PurePath(path).name
    else:
        if not isinstance(encoded, str):
            raise SpecError(f"{where}.data_base64 must be a string")
        try:
            data = base64.b64decode("".join(encoded.split()), validate=True)
        except (binascii.Error, ValueError):
            raise SpecError(f"{where}.data_base64 is not valid base64") from None
        if name is None:
            raise SpecError(f"{where}: name is required with data_base64")
    zip_wrap = obj.get("zip", False)
    if not isinstance(zip_wrap, bool):
        raise SpecError(f"{where}.zip must be true or false")
    try:
        return new_attachment(
            name,
            data,
            content_type=_str(obj.get("content_type"), f"{where}.content_type"),
            description=_str(obj.get("description"), f"{where}.description"),
            zip_wrap=zip_wrap,
            content_id=_str(obj.get("content_id"), f"{where}.content_id"),
        )
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
