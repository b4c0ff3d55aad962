"""The edXML builder: a typed package in, the bytes of an official-layout edXML file out.

The layout is the one the SDK samples use (see ``../shared/edxml-samples``)::

    <?xml version="1.0" encoding="UTF-8"?>
    <edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">
      <edXML:edXMLEnvelope xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016">
        <edXML:edXMLHeader> MessageHeader, TraceHeaderList (documents) </edXML:edXMLHeader>
        <edXML:edXMLBody> edXMLManifest/Reference* (documents) </edXML:edXMLBody>
      </edXML:edXMLEnvelope>
      <AttachmentEncoded> Attachment* with edXML:ContentTransferEncoded </AttachmentEncoded>
    </edXML>

UTF-8, CRLF line endings, two-space indentation, ``cid:`` ContentIds, base64 on one line.

``build_package`` writes what it is given: it checks only that the model can be written and
read back unchanged (text fields must be non-empty, carry no surrounding whitespace and only
characters XML allows; attachment sizes and hashes must match their data) and raises
``ValueError`` otherwise. It does not apply lienthong's routing rules; run
:func:`schemas.parser.parse_package` on the result for that. Timestamps are written to the
second; a time zone is not written.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
import uuid
import zipfile
from datetime import date, datetime
from io import BytesIO

from schemas.dates import format_date, format_timestamp
from schemas.model import (
    EDXML_NS,
    Attachment,
    Business,
    EdocPackage,
    Organization,
    OtherInfo,
    ResponseFor,
    StaffInfo,
    StatusPackage,
)
from schemas.parser import make_attachment

__all__ = ["build_package", "new_attachment"]

_CRLF = "\r\n"
_ILLEGAL_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _escape(text: str, field: str) -> str:
    if not text or text != text.strip():
        raise ValueError(
            f"{field}: text must be non-empty without surrounding whitespace (use None): "
            f"{text[:40]!r}"
        )
    if _ILLEGAL_XML_CHAR.search(text) is not None:
        raise ValueError(f"{field}: contains a character XML cannot carry")
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


class _Writer:
    """Writes ``edXML:``-prefixed (or unprefixed) elements, one per line."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[str] = ['<?xml version="1.0" encoding="UTF-8"?>']

    def open(self, depth: int, tag: str, attrs: str = "") -> None:
        self.lines.append(f"{'  ' * depth}<{tag}{attrs}>")

    def close(self, depth: int, tag: str) -> None:
        self.lines.append(f"{'  ' * depth}</{tag}>")

    def leaf(self, depth: int, tag: str, value: str | None, field: str | None = None) -> None:
        if value is None:
            return
        text = _escape(value, field or tag)
        end = tag.split(" ", 1)[0]
        self.lines.append(f"{'  ' * depth}<{tag}>{text}</{end}>")

    def date(self, depth: int, tag: str, value: date | None) -> None:
        if value is not None:
            self.lines.append(f"{'  ' * depth}<{tag}>{format_date(value)}</{tag}>")

    def timestamp(self, depth: int, tag: str, value: datetime | None) -> None:
        if value is not None:
            self.lines.append(f"{'  ' * depth}<{tag}>{format_timestamp(value)}</{tag}>")

    def number(self, depth: int, tag: str, value: int | None) -> None:
        if value is not None:
            self.lines.append(f"{'  ' * depth}<{tag}>{int(value)}</{tag}>")

    def bytes(self) -> bytes:
        return (_CRLF.join(self.lines) + _CRLF).encode("utf-8")


def build_package(package: EdocPackage | StatusPackage) -> bytes:
    """The edXML bytes of ``package`` (UTF-8, CRLF). Raises ``ValueError``, see module doc."""
    w = _Writer()
    w.open(0, "edXML", f' xmlns="{EDXML_NS}"')
    w.open(1, "edXML:edXMLEnvelope", f' xmlns:edXML="{EDXML_NS}"')
    w.open(2, "edXML:edXMLHeader")
    w.open(3, "edXML:MessageHeader")
    if isinstance(package, StatusPackage):
        _status_header(w, package)
        w.close(3, "edXML:MessageHeader")
        w.close(2, "edXML:edXMLHeader")
    elif isinstance(package, EdocPackage):
        _edoc_header(w, package)
        w.close(3, "edXML:MessageHeader")
        _trace_header_list(w, package)
        w.close(2, "edXML:edXMLHeader")
        _manifest(w, package.attachments)
    else:
        raise TypeError(f"not a package: {type(package).__name__}")
    w.close(1, "edXML:edXMLEnvelope")
    if isinstance(package, EdocPackage) and package.attachments:
        _attachments(w, package.attachments)
    w.close(0, "edXML")
    return w.bytes()


def _organization(w: _Writer, depth: int, tag: str, org: Organization) -> None:
    w.open(depth, tag)
    d = depth + 1
    w.leaf(d, "edXML:OrganId", org.organ_id, f"{tag}/OrganId")
    w.leaf(d, "edXML:OrganName", org.organ_name)
    w.leaf(d, "edXML:OrganizationInCharge", org.organization_in_charge)
    w.leaf(d, "edXML:OrganAdd", org.organ_add)
    w.leaf(d, "edXML:Email", org.email)
    w.leaf(d, "edXML:Telephone", org.telephone)
    w.leaf(d, "edXML:Fax", org.fax)
    w.leaf(d, "edXML:Website", org.website)
    w.close(depth, tag)


def _response_for(w: _Writer, depth: int, rf: ResponseFor) -> None:
    w.open(depth, "edXML:ResponseFor")
    d = depth + 1
    w.leaf(d, "edXML:OrganId", rf.organ_id)
    w.leaf(d, "edXML:Code", rf.code)
    w.date(d, "edXML:PromulgationDate", rf.promulgation_date)
    w.leaf(d, "edXML:DocumentId", rf.document_id)
    w.close(depth, "edXML:ResponseFor")


def _staff(w: _Writer, depth: int, staff: StaffInfo | None) -> None:
    if staff is None:
        return
    w.open(depth, "edXML:StaffInfo")
    d = depth + 1
    w.leaf(d, "edXML:Department", staff.department)
    w.leaf(d, "edXML:Staff", staff.staff)
    w.leaf(d, "edXML:Email", staff.email)
    w.leaf(d, "edXML:Mobile", staff.mobile)
    w.close(depth, "edXML:StaffInfo")


def _status_header(w: _Writer, p: StatusPackage) -> None:
    _organization(w, 4, "edXML:From", p.sender)
    _response_for(w, 4, p.response_for)
    _staff(w, 4, p.staff_info)
    w.leaf(4, "edXML:StatusCode", p.status_code.value)
    w.leaf(4, "edXML:Description", p.description)
    w.timestamp(4, "edXML:Timestamp", p.timestamp)


def _edoc_header(w: _Writer, p: EdocPackage) -> None:
    _organization(w, 4, "edXML:From", p.sender)
    for org in p.recipients:
        _organization(w, 4, "edXML:To", org)
    w.leaf(4, "edXML:DocumentId", p.document_id)
    w.open(4, "edXML:Code")
    w.leaf(5, "edXML:CodeNumber", p.code.code_number)
    w.leaf(5, "edXML:CodeNotation", p.code.code_notation)
    w.close(4, "edXML:Code")
    w.open(4, "edXML:PromulgationInfo")
    w.leaf(5, "edXML:Place", p.promulgation.place)
    w.date(5, "edXML:PromulgationDate", p.promulgation.promulgation_date)
    w.close(4, "edXML:PromulgationInfo")
    w.open(4, "edXML:DocumentType")
    w.leaf(5, "edXML:Type", p.document_type.type)
    w.leaf(5, "edXML:TypeDetail", p.document_type.type_detail)
    w.leaf(5, "edXML:TypeName", p.document_type.type_name)
    w.close(4, "edXML:DocumentType")
    w.leaf(4, "edXML:Subject", p.subject)
    w.leaf(4, "edXML:Content", p.content)
    if p.signer is not None:
        w.open(4, "edXML:SignerInfo")
        w.leaf(5, "edXML:Competence", p.signer.competence)
        w.leaf(5, "edXML:Position", p.signer.position)
        w.leaf(5, "edXML:FullName", p.signer.full_name)
        w.close(4, "edXML:SignerInfo")
    w.date(4, "edXML:DueDate", p.due_date)
    if p.other_info is not None:
        _other_info(w, p.other_info)
    for rf in p.response_for:
        _response_for(w, 4, rf)
    w.leaf(4, "edXML:SteeringType", p.steering_type)
    if p.to_places:
        w.open(4, "edXML:ToPlaces")
        for place in p.to_places:
            w.leaf(5, "edXML:Place", place, "ToPlaces/Place")
        w.close(4, "edXML:ToPlaces")


def _other_info(w: _Writer, o: OtherInfo) -> None:
    w.open(4, "edXML:OtherInfo")
    w.number(5, "edXML:Priority", o.priority)
    w.leaf(5, "edXML:SphereOfPromulgation", o.sphere_of_promulgation)
    w.leaf(5, "edXML:TyperNotation", o.typer_notation)
    w.number(5, "edXML:PromulgationAmount", o.promulgation_amount)
    w.number(5, "edXML:PageAmount", o.page_amount)
    w.leaf(5, "edXML:Direction", o.direction)
    if o.appendixes:
        w.open(5, "edXML:Appendixes")
        for appendix in o.appendixes:
            w.leaf(6, "edXML:Appendix", appendix, "Appendixes/Appendix")
        w.close(5, "edXML:Appendixes")
    w.close(4, "edXML:OtherInfo")


def _trace_header_list(w: _Writer, p: EdocPackage) -> None:
    w.open(3, "edXML:TraceHeaderList")
    for th in p.trace_headers:
        w.open(4, "edXML:TraceHeader")
        w.leaf(5, "edXML:OrganId", th.organ_id, "TraceHeader/OrganId")
        w.timestamp(5, "edXML:Timestamp", th.timestamp)
        w.close(4, "edXML:TraceHeader")
    _business(w, p.business)
    w.close(3, "edXML:TraceHeaderList")


def _business(w: _Writer, b: Business) -> None:
    w.open(4, "edXML:Bussiness")
    w.leaf(5, "edXML:DocumentId", b.document_id, "Bussiness/DocumentId")
    w.leaf(5, "edXML:BussinessDocType", str(int(b.doc_type)))
    w.leaf(5, "edXML:BussinessDocReason", b.reason)
    w.leaf(5, "edXML:Paper", b.paper)
    if b.document_info is not None:
        info = b.document_info
        w.open(5, "edXML:BussinessDocumentInfo")
        w.leaf(6, "edXML:DocumentInfo", info.document_info)
        w.leaf(6, "edXML:DocumentReceiver", info.document_receiver)
        if info.receivers:
            w.open(6, "edXML:ReceiverList")
            for r in info.receivers:
                w.open(7, "edXML:Receiver")
                w.leaf(8, "edXML:OrganId", r.organ_id, "Receiver/OrganId")
                w.leaf(8, "edXML:ReceiverType", r.receiver_type)
                w.close(7, "edXML:Receiver")
            w.close(6, "edXML:ReceiverList")
        w.close(5, "edXML:BussinessDocumentInfo")
    if b.replacements:
        w.open(5, "edXML:ReplacementInfoList")
        for ri in b.replacements:
            w.open(6, "edXML:ReplacementInfo")
            w.leaf(7, "edXML:DocumentId", ri.document_id, "ReplacementInfo/DocumentId")
            if ri.organ_ids:
                w.open(7, "edXML:OrganIdList")
                for organ_id in ri.organ_ids:
                    w.leaf(8, "edXML:OrganId", organ_id, "OrganIdList/OrganId")
                w.close(7, "edXML:OrganIdList")
            w.close(6, "edXML:ReplacementInfo")
        w.close(5, "edXML:ReplacementInfoList")
    _staff(w, 5, b.staff_info)
    w.close(4, "edXML:Bussiness")


def _check_attachment(a: Attachment) -> None:
    if not a.data:
        raise ValueError(f"attachment {a.content_id!r} has no data")
    if a.size != len(a.data) or a.sha256 != hashlib.sha256(a.data).hexdigest():
        raise ValueError(
            f"attachment {a.content_id!r}: size/sha256 do not match its data "
            "(create attachments with new_attachment)"
        )


def _manifest(w: _Writer, attachments: tuple[Attachment, ...]) -> None:
    w.open(2, "edXML:edXMLBody")
    if not attachments:
        w.lines.append('      <edXML:edXMLManifest version="1.0" />')
    else:
        w.open(3, "edXML:edXMLManifest", ' version="1.0"')
        for a in attachments:
            _check_attachment(a)
            w.open(4, "edXML:Reference")
            w.leaf(5, "edXML:ContentId", "cid:" + a.content_id, "ContentId")
            w.leaf(5, "edXML:ContentType", a.content_type)
            w.leaf(5, "edXML:Description", a.description)
            w.leaf(5, "edXML:AttachmentName", a.name)
            w.close(4, "edXML:Reference")
        w.close(3, "edXML:edXMLManifest")
    w.close(2, "edXML:edXMLBody")


def _attachments(w: _Writer, attachments: tuple[Attachment, ...]) -> None:
    w.open(1, "AttachmentEncoded")
    for a in attachments:
        w.open(2, "Attachment")
        w.leaf(3, "ContentId", "cid:" + a.content_id)
        w.leaf(3, "AttachmentName", a.name)
        w.leaf(3, "Description", a.description)
        w.leaf(3, "ContentType", a.content_type)
        encoded = base64.b64encode(a.data).decode("ascii")
        w.lines.append(
            f'      <edXML:ContentTransferEncoded xmlns:edXML="{EDXML_NS}">'
            f"{encoded}</edXML:ContentTransferEncoded>"
        )
        w.close(2, "Attachment")
    w.close(1, "AttachmentEncoded")


def new_attachment(
    name: str,
    data: bytes,
    *,
    content_type: str | None = None,
    description: str | None = None,
    zip_wrap: bool = False,
    content_id: str | None = None,
) -> Attachment:
    """An :class:`Attachment` for ``data`` named ``name``, ready for :func:`build_package`.

    ``zip_wrap=True`` stores a ZIP holding one entry (the file, named after the last path
    component of ``name``) with ContentType ``application/zip``, as the SDKs do. The content
    type is otherwise guessed from ``name``; the ContentId is a new UUID unless given.
    Size, SHA-256 and the ``file_*`` fields are computed exactly as the parser computes them.
    """
    if not data:
        raise ValueError("an attachment needs data")
    name = name.strip()
    if not name:
        raise ValueError("an attachment needs a name")
    if zip_wrap:
        entry = re.split(r"[/\\]", name)[-1] or "file"
        buffer = BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            info = zipfile.ZipInfo(entry, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        payload = buffer.getvalue()
        content_type = "application/zip"
    else:
        payload = data
        if content_type is None:
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    cid = (content_id or str(uuid.uuid4())).strip()
    if cid[:4].lower() == "cid:":
        cid = cid[4:].strip()
    if not cid:
        raise ValueError("an empty content_id")
    return make_attachment(
        cid, name, content_type, (description.strip() or None) if description else None, payload
    )
