"""A JSON-ready summary of a parsed package, as ``lienthong package inspect --json`` prints it
and the router and the SDK report it.

Keys (always present; ``null`` when not applicable):

``kind``               ``"edoc"`` or ``"status"``
``from``               the sender's agency code (From/OrganId); ``from_name`` its name
``to``                 list of recipient codes; for a status, ``[ResponseFor/OrganId]``
``document_id``        DocumentId; for a status, the DocumentId it answers
``code``               ``"số/ký hiệu"``; for a status, ResponseFor/Code
``business_type``      0 new, 1 revoke, 2 update, 3 replace (documents); ``business_type_name``
``target_document_ids`` documents a revoke/update/replace changes
``status_code``        ``"01"`` ... ``"16"`` (status packages); ``description``, ``timestamp``
``subject``            trích yếu (documents)
``promulgation_date``  ISO ``yyyy-mm-dd``; ``due_date`` likewise
``attachments``        list of {content_id, name, content_type, size, sha256, zip_wrapped},
                       plus file_name/file_size/file_sha256 when ZIP-wrapped
``has_signature``      true only for an XML-DSig signature
``warnings``           list of {warning, message_vi, message_en, detail}
"""

from __future__ import annotations

from typing import Any

from schemas.model import Attachment, EdocPackage
from schemas.parser import ParsedPackage

__all__ = ["attachment_summary", "summarize"]


def attachment_summary(a: Attachment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "content_id": a.content_id,
        "name": a.name,
        "content_type": a.content_type,
        "size": a.size,
        "sha256": a.sha256,
        "zip_wrapped": a.zip_wrapped,
    }
    if a.zip_wrapped:
        out["file_name"] = a.file_name
        out["file_size"] = a.file_size
        out["file_sha256"] = a.file_sha256
    return out


def summarize(parsed: ParsedPackage) -> dict[str, Any]:
    """The JSON summary of ``parsed`` (see the module docstring for the keys)."""
    p = parsed.package
    warnings = [w.as_dict() for w in parsed.warnings]
    if isinstance(p, EdocPackage):
        return {
            "kind": "edoc",
            "from": p.sender.organ_id,
            "from_name": p.sender.organ_name,
            "to": [r.organ_id for r in p.recipients],
            "document_id": p.document_id,
            "code": str(p.code) or None,
            "business_type": int(p.business_type),
            "business_type_name": p.business_type.name.lower(),
            "target_document_ids": list(p.target_document_ids),
            "status_code": None,
            "description": None,
            "timestamp": None,
            "subject": p.subject,
            "promulgation_date": _iso(p.promulgation.promulgation_date),
            "due_date": _iso(p.due_date),
            "attachments": [attachment_summary(a) for a in p.attachments],
            "has_signature": p.has_signature,
            "warnings": warnings,
        }
    rf = p.response_for
    return {
        "kind": "status",
        "from": p.sender.organ_id,
        "from_name": p.sender.organ_name,
        "to": [rf.organ_id] if rf.organ_id else [],
        "document_id": rf.document_id,
        "code": rf.code,
        "business_type": None,
        "business_type_name": None,
        "target_document_ids": [],
        "status_code": p.status_code.value,
        "description": p.description,
        "timestamp": p.timestamp.isoformat() if p.timestamp else None,
        "subject": None,
        "promulgation_date": _iso(rf.promulgation_date),
        "due_date": None,
        "attachments": [],
        "has_signature": p.has_signature,
        "warnings": warnings,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
