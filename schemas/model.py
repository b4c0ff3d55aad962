"""The typed model of an edXML package (QCVN 102:2016), documents and status packages.

Field names follow the edXML element names in snake_case. Everything optional in real
traffic is optional here; empty elements become ``None`` (or an empty tuple). The model is
immutable: the parser builds it, the builder writes it, the router reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum, StrEnum
from typing import Literal

__all__ = [
    "Appendixes",
    "Attachment",
    "Business",
    "BusinessDocType",
    "BusinessDocumentInfo",
    "Code",
    "DocumentType",
    "EdocPackage",
    "Organization",
    "OtherInfo",
    "Package",
    "PackageKind",
    "PromulgationInfo",
    "Receiver",
    "ReplacementInfo",
    "ResponseFor",
    "SignerInfo",
    "StaffInfo",
    "StatusCode",
    "StatusPackage",
    "TraceHeader",
]

EDXML_NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"

PackageKind = Literal["edoc", "status"]


class BusinessDocType(IntEnum):
    """Bussiness/BussinessDocType."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


class StatusCode(StrEnum):
    """MessageHeader/StatusCode of a status package (edxml.md §5). Closed set."""

    ARRIVED = "01"
    REFUSED = "02"
    ACCEPTED = "03"
    ASSIGNED = "04"
    PROCESSING = "05"
    DONE = "06"
    RECALL_REQUESTED = "13"
    RECALL_AGREED = "15"
    RECALL_REFUSED = "16"

    @property
    def sent_by_sender(self) -> bool:
        """13 is sent by the document's sender; every other code by a recipient."""
        return self is StatusCode.RECALL_REQUESTED


@dataclass(frozen=True, slots=True)
class Organization:
    """From, To (and ResponseFor's organisation)."""

    organ_id: str
    organ_name: str | None = None
    organization_in_charge: str | None = None
    organ_add: str | None = None
    email: str | None = None
    telephone: str | None = None
    fax: str | None = None
    website: str | None = None


@dataclass(frozen=True, slots=True)
class Code:
    code_number: str | None
    code_notation: str | None

    def __str__(self) -> str:
        """Shown as ``7816/VPCP-TTĐT`` (số/ký hiệu)."""
        parts = [p for p in (self.code_number, self.code_notation) if p]
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class PromulgationInfo:
    place: str | None
    promulgation_date: date | None


@dataclass(frozen=True, slots=True)
class DocumentType:
    type: str | None = None  # 1/2 in SDK samples, 71 in real traffic: not restricted
    type_detail: str | None = None
    type_name: str | None = None


@dataclass(frozen=True, slots=True)
class SignerInfo:
    competence: str | None = None
    position: str | None = None
    full_name: str | None = None


@dataclass(frozen=True, slots=True)
class Appendixes:
    appendix: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OtherInfo:
    priority: int | None = None  # 0-4
    sphere_of_promulgation: str | None = None
    typer_notation: str | None = None
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: str | None = None
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponseFor:
    organ_id: str | None = None
    code: str | None = None
    promulgation_date: date | None = None
    document_id: str | None = None


@dataclass(frozen=True, slots=True)
class StaffInfo:
    department: str | None = None
    staff: str | None = None
    email: str | None = None
    mobile: str | None = None


@dataclass(frozen=True, slots=True)
class TraceHeader:
    organ_id: str | None
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class Receiver:
    organ_id: str
    receiver_type: str | None = None


@dataclass(frozen=True, slots=True)
class BusinessDocumentInfo:
    """Bussiness/BussinessDocumentInfo (update, type 2)."""

    document_info: str | None = None
    document_receiver: str | None = None
    receivers: tuple[Receiver, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplacementInfo:
    """Bussiness/ReplacementInfoList/ReplacementInfo (replace, type 3)."""

    document_id: str
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Business:
    """TraceHeaderList/Bussiness (sic)."""

    doc_type: BusinessDocType = BusinessDocType.NEW
    document_id: str | None = None
    reason: str | None = None  # BussinessDocReason
    paper: str | None = None
    staff_info: StaffInfo | None = None
    document_info: BusinessDocumentInfo | None = None
    replacements: tuple[ReplacementInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class Attachment:
    """A manifest Reference joined with its Attachment.

    ``data`` is the decoded payload as sent (ZIP bytes when ZIP-wrapped); ``file_name``,
    ``file_size`` and ``file_sha256`` describe the real file (the ZIP's single entry when
    wrapped, otherwise the payload itself).
    """

    content_id: str  # without a leading "cid:"
    name: str | None
    content_type: str | None
    description: str | None
    data: bytes = field(repr=False)
    size: int  # decoded payload size in bytes
    sha256: str  # hex SHA-256 of the decoded payload
    zip_wrapped: bool = False
    file_name: str | None = None
    file_size: int | None = None
    file_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class EdocPackage:
    """A document package (edoc)."""

    sender: Organization
    recipients: tuple[Organization, ...]
    code: Code
    promulgation: PromulgationInfo
    document_type: DocumentType
    subject: str | None
    document_id: str | None = None
    content: str | None = None
    signer: SignerInfo | None = None
    due_date: date | None = None
    to_places: tuple[str, ...] = ()
    other_info: OtherInfo | None = None
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: str | None = None
    business: Business = field(default_factory=Business)
    trace_headers: tuple[TraceHeader, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    has_signature: bool = False  # a Signature element in the XML-DSig namespace

    kind: PackageKind = field(default="edoc", init=False)

    @property
    def business_type(self) -> BusinessDocType:
        return self.business.doc_type

    @property
    def target_document_ids(self) -> tuple[str, ...]:
        """DocumentIds of the documents this one revokes, updates or replaces."""
        bt = self.business.doc_type
        if bt is BusinessDocType.REVOKE:
            return tuple(r.document_id for r in self.response_for if r.document_id)
        if bt is BusinessDocType.UPDATE:
            return (self.business.document_id,) if self.business.document_id else ()
        if bt is BusinessDocType.REPLACE:
            return tuple(r.document_id for r in self.business.replacements)
        return ()


@dataclass(frozen=True, slots=True)
class StatusPackage:
    """A status package: an answer about one document, routed to ResponseFor/OrganId."""

    sender: Organization
    response_for: ResponseFor
    status_code: StatusCode
    description: str | None = None
    timestamp: datetime | None = None
    staff_info: StaffInfo | None = None
    has_signature: bool = False

    kind: PackageKind = field(default="status", init=False)


Package = EdocPackage | StatusPackage
