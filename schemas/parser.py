"""The edXML parser: bytes in, a typed :class:`~schemas.model.EdocPackage` or
:class:`~schemas.model.StatusPackage` out, or :class:`~schemas.reasons.PackageRejected`.

Tolerant on structure (element order, ``cid:`` prefixes, CRLF/LF, empty optional elements,
the .NET SDK's extra attributes and declarations), strict where routing depends on it
(sender, recipients, code, dates, business type, status code, attachments). Safe on hostile
input: size is checked before parsing, DTDs and entities are refused, depth and element
count are bounded, and ZIP-wrapped attachments are inflated with a byte budget.

``parse_package`` raises :class:`PackageRejected` and nothing else. It does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import io
import re
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO, NoReturn

from lxml import etree

from schemas.agency_code import normalize as normalize_code
from schemas.agency_code import parse_document_id
from schemas.dates import parse_date, parse_timestamp
from schemas.model import (
    EDXML_NS,
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    OtherInfo,
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
from schemas.reasons import PackageRejected, Reason, ValidationWarning, WarningCode
from schemas.safe_xml import hardened_parser

__all__ = [
    "DSIG_NS",
    "ParseLimits",
    "ParsedPackage",
    "StreamedPayload",
    "inspect_attachment_payload",
    "make_attachment",
    "normalize_code",
    "parse_package",
    "parse_streamed_tree",
    "strip_cid",
]

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
_NSP = "{" + EDXML_NS + "}"
_NSP_LEN = len(_NSP)
_DSIG_SIGNATURE = "{" + DSIG_NS + "}Signature"

MAX_DESCRIPTION = 1000
_ZIP_CONTENT_TYPES = frozenset({"application/zip", "application/x-zip-compressed"})
_BARE_LEVEL1 = re.compile(r"[A-Z][0-9]{2}")
# '<!' followed by a markup declaration keyword: DOCTYPE, ENTITY, ELEMENT, ATTLIST, NOTATION
_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_WHITESPACE = {9: None, 10: None, 13: None, 32: None}
_STATUS_CODES = {c.value: c for c in StatusCode}
_BUSINESS_TYPES = {str(int(t)): t for t in BusinessDocType}


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds applied before and while parsing; each breach has its own reason."""

    max_bytes: int = 30 * 1024 * 1024
    max_depth: int = 64
    max_recipients: int = 500
    max_attachments: int = 100
    max_elements: int = 200_000
    #: bytes a ZIP-wrapped attachment may inflate to (ZIP bombs stop here)
    max_unzipped_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ParsedPackage:
    package: EdocPackage | StatusPackage
    warnings: tuple[ValidationWarning, ...]


_DEFAULT_LIMITS = ParseLimits()


def strip_cid(content_id: str) -> str:
    """ContentId without a leading ``cid:`` (the Java SDK writes it, the .NET SDK does not)."""
    content_id = content_id.strip()
    if content_id[:4].lower() == "cid:":
        return content_id[4:].strip()
    return content_id


@lru_cache(maxsize=8)
def _too_deep(max_depth: int) -> etree.XPath:
    return etree.XPath("boolean(" + "/*" * (max_depth + 1) + ")")


_COUNT_ELEMENTS = etree.XPath("count(//*)")


def parse_xml_safely(data: bytes, limits: ParseLimits = _DEFAULT_LIMITS) -> etree._Element:
    """Parse ``data`` into an element tree with every safety check of :func:`parse_package`
    (size, DTD/entities, depth, element count). Raises :class:`PackageRejected`.
    """
    if len(data) > limits.max_bytes:
        raise PackageRejected(
            Reason.PACKAGE_TOO_LARGE, f"{len(data)} bytes > limit {limits.max_bytes}"
        )
    if not data or data.isspace():
        raise PackageRejected(Reason.EMPTY_PACKAGE)
    if b"<!" in data and _DECLARATION.search(data) is not None:
        raise PackageRejected(
            Reason.FORBIDDEN_XML_CONSTRUCT, "a DOCTYPE or markup declaration is present"
        )
    try:
        root = etree.fromstring(data, hardened_parser())
    except etree.XMLSyntaxError as exc:
        message = str(exc)
        if "Text node too long" in message or "Huge input lookup" in message:
            # A legitimate attachment over libxml2's 10 MB text-node limit. Entities and DTDs
            # were refused above and the size is bounded, so a second pass that lifts only
            # that limit is safe; the DTD check below runs again on the result.
            try:
                root = etree.fromstring(data, hardened_parser(huge=True))
            except etree.XMLSyntaxError as exc2:
                raise _syntax_rejection(str(exc2)) from None
        else:
            raise _syntax_rejection(message) from None
    except ValueError as exc:  # e.g. unicode strings with an encoding declaration
        raise PackageRejected(Reason.MALFORMED_XML, str(exc)[:200]) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise PackageRejected(Reason.FORBIDDEN_XML_CONSTRUCT, "a DOCTYPE is present")
    if _too_deep(limits.max_depth)(root):
        raise PackageRejected(
            Reason.XML_TOO_COMPLEX, f"elements nested deeper than {limits.max_depth} levels"
        )
    count = _COUNT_ELEMENTS(root)
    if isinstance(count, float) and count > limits.max_elements:
        raise PackageRejected(
            Reason.XML_TOO_COMPLEX, f"{int(count)} elements > limit {limits.max_elements}"
        )
    return root


def _syntax_rejection(message: str) -> PackageRejected:
    first = message.splitlines()[0][:300] if message else "not XML"
    lowered = first.lower()
    if "depth" in lowered:
        return PackageRejected(Reason.XML_TOO_COMPLEX, first)
    if "entity" in lowered and ("loop" in lowered or "amplification" in lowered):
        return PackageRejected(Reason.FORBIDDEN_XML_CONSTRUCT, first)
    return PackageRejected(Reason.MALFORMED_XML, first)


# -- tree helpers ---------------------------------------------------------------------------

_Index = dict[str, list[etree._Element]]


# full tag -> local name, for tags in the edXML namespace or none (bounded: hostile input can
# invent any number of tag names)
_LOCAL_NAMES: dict[object, str] = {}
_LOCAL_NAMES_MAX = 512


def _local_name(tag: object) -> str | None:
    if type(tag) is not str:
        return None  # comments, processing instructions, entities
    if tag[0] == "{":
        if not tag.startswith(_NSP):
            return None
        name = tag[_NSP_LEN:]
    else:
        name = tag
    if len(_LOCAL_NAMES) < _LOCAL_NAMES_MAX:
        _LOCAL_NAMES[tag] = name
    return name


def _index(el: etree._Element) -> _Index:
    """Children in the edXML namespace (or no namespace), by local name, in document order."""
    out: _Index = {}
    names = _LOCAL_NAMES
    for child in el:
        tag = child.tag
        name = names.get(tag)
        if name is None:
            name = _local_name(tag)
            if name is None:
                continue
        found = out.get(name)
        if found is None:
            out[name] = [child]
        else:
            found.append(child)
    return out


def _text(el: etree._Element) -> str | None:
    t = el.text
    if t is None:
        return None
    t = t.strip()
    return t or None


def _get(idx: _Index, name: str) -> str | None:
    found = idx.get(name)
    return _text(found[0]) if found else None


def _one(idx: _Index, name: str) -> etree._Element | None:
    found = idx.get(name)
    return found[0] if found else None


class _Warnings:
    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[ValidationWarning] = []

    def add(self, code: WarningCode, detail: str = "") -> None:
        self.items.append(ValidationWarning(code, detail))

    def reject(self, reason: Reason, detail: str = "") -> NoReturn:
        raise PackageRejected(reason, detail, warnings=tuple(self.items))


# -- entry point ----------------------------------------------------------------------------


def parse_package(
    data: bytes,
    *,
    limits: ParseLimits = _DEFAULT_LIMITS,
    today: _dt.date | None = None,
) -> ParsedPackage:
    """Parse and check one edXML package. Raises :class:`PackageRejected` and nothing else."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PackageRejected(Reason.MALFORMED_XML, "the package must be bytes")
    data = bytes(data)
    return _checked(parse_xml_safely(data, limits), limits, today, None)


def parse_streamed_tree(
    root: etree._Element,
    streamed: Sequence[StreamedPayload],
    *,
    limits: ParseLimits = _DEFAULT_LIMITS,
    today: _dt.date | None = None,
) -> ParsedPackage:
    """:func:`parse_package`'s checks on the skeleton ``schemas.streaming`` built (every
    attachment payload replaced by its index in ``streamed``). Raises PackageRejected."""
    return _checked(root, limits, today, streamed)


def _checked(root: etree._Element, limits: ParseLimits, today: _dt.date | None,
             streamed: Sequence[StreamedPayload] | None) -> ParsedPackage:
    """Every rule over a parsed tree; PackageRejected and nothing else."""
    w = _Warnings()
    try:
        package = _parse_root(root, limits, today or _dt.date.today(), w, streamed)
    except (PackageRejected, MemoryError):
        raise
    except Exception as exc:  # a safety net: the fuzz test asserts it is never reached
        raise PackageRejected(
            Reason.NOT_EDXML,
            f"internal parser error: {type(exc).__name__}: {exc}"[:300],
            warnings=tuple(w.items),
        ) from None
    return ParsedPackage(package, tuple(w.items))


def _parse_root(
    root: etree._Element, limits: ParseLimits, today: _dt.date, w: _Warnings,
    streamed: Sequence[StreamedPayload] | None = None,
) -> EdocPackage | StatusPackage:
    if root.tag != _NSP + "edXML":
        w.reject(Reason.NOT_EDXML, f"the root element is {_describe(root.tag)}, not edXML")
    root_idx = _index(root)
    envelope = _one(root_idx, "edXMLEnvelope")
    if envelope is None:
        w.reject(Reason.NOT_EDXML, "edXMLEnvelope is missing")
    env_idx = _index(envelope)
    header = _one(env_idx, "edXMLHeader")
    if header is None:
        w.reject(Reason.NOT_EDXML, "edXMLEnvelope/edXMLHeader is missing")
    header_idx = _index(header)
    mh = header_idx.get("MessageHeader")
    if not mh:
        w.reject(Reason.NOT_EDXML, "edXMLHeader/MessageHeader is missing")
    if len(mh) > 1:
        w.reject(Reason.NOT_EDXML, "more than one MessageHeader")
    mh_idx = _index(mh[0])

    has_signature = _signature(header, envelope, root, w)

    froms = mh_idx.get("From")
    if not froms:
        w.reject(Reason.MISSING_SENDER, "MessageHeader/From is missing")
    if len(froms) > 1:
        w.reject(Reason.NOT_EDXML, "more than one From")
    sender_idx = _index(froms[0])
    sender_id = _get(sender_idx, "OrganId")
    if sender_id is None:
        w.reject(Reason.MISSING_SENDER, "From/OrganId is missing or empty")
    if _get(sender_idx, "OrganName") is None:
        w.reject(Reason.MISSING_SENDER_NAME, "From/OrganName is missing or empty")
    sender = _organization(sender_idx, sender_id)

    description = _get(mh_idx, "Description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        w.reject(Reason.DESCRIPTION_TOO_LONG, f"{len(description)} characters > {MAX_DESCRIPTION}")

    if "StatusCode" in mh_idx:
        if "To" in mh_idx:
            w.reject(Reason.NOT_EDXML, "MessageHeader has both StatusCode and To")
        return _parse_status(mh_idx, sender, description, has_signature, w)
    return _parse_edoc(
        root_idx, env_idx, header_idx, mh_idx, sender, has_signature, limits, today, w,
        streamed,
    )


def _describe(tag: object) -> str:
    return repr(tag) if isinstance(tag, str) else "not an element"


def _signature(
    header: etree._Element, envelope: etree._Element, root: etree._Element, w: _Warnings
) -> bool:
    """True only for a Signature in the XML-DSig namespace; the SDK placeholder warns."""
    real = False
    placeholder = False
    for parent in (header, envelope, root):
        for child in parent:
            tag = child.tag
            if type(tag) is not str or not tag.endswith("Signature"):
                continue
            if tag == _DSIG_SIGNATURE:
                real = True
            elif tag in (_NSP + "Signature", "Signature"):
                placeholder = True
    if placeholder and not real:
        w.add(
            WarningCode.PLACEHOLDER_SIGNATURE,
            "Signature is not in the XML-DSig namespace (http://www.w3.org/2000/09/xmldsig#)",
        )
    return real


def _organization(idx: _Index, organ_id: str) -> Organization:
    return Organization(
        organ_id=organ_id,
        organ_name=_get(idx, "OrganName"),
        organization_in_charge=_get(idx, "OrganizationInCharge"),
        organ_add=_get(idx, "OrganAdd"),
        email=_get(idx, "Email"),
        telephone=_get(idx, "Telephone"),
        fax=_get(idx, "Fax"),
        website=_get(idx, "Website"),
    )


def _date(text: str | None, where: str, w: _Warnings) -> _dt.date | None:
    if text is None:
        return None
    try:
        value, day_first = parse_date(text)
    except ValueError:
        w.reject(Reason.BAD_DATE, f"{where}: {text[:40]!r}")
    if day_first:
        w.add(WarningCode.DATE_DAY_FIRST, f"{where}: {text}")
    return value


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _staff(el: etree._Element | None) -> StaffInfo | None:
    if el is None:
        return None
    idx = _index(el)
    return StaffInfo(
        department=_get(idx, "Department"),
        staff=_get(idx, "Staff"),
        email=_get(idx, "Email"),
        mobile=_get(idx, "Mobile"),
    )


def _response_for(el: etree._Element, w: _Warnings) -> ResponseFor:
    idx = _index(el)
    return ResponseFor(
        organ_id=_get(idx, "OrganId"),
        code=_get(idx, "Code"),
        promulgation_date=_date(_get(idx, "PromulgationDate"), "ResponseFor/PromulgationDate", w),
        document_id=_get(idx, "DocumentId"),
    )


# -- status packages ------------------------------------------------------------------------


def _parse_status(
    mh_idx: _Index,
    sender: Organization,
    description: str | None,
    has_signature: bool,
    w: _Warnings,
) -> StatusPackage:
    raw_code = _get(mh_idx, "StatusCode")
    status_code = _STATUS_CODES.get(raw_code or "")
    if status_code is None:
        w.reject(Reason.UNKNOWN_STATUS_CODE, f"StatusCode {raw_code!r}")
    rf_el = _one(mh_idx, "ResponseFor")
    if rf_el is None:
        w.reject(Reason.STATUS_MISSING_REFERENCE, "ResponseFor is missing")
    response_for = _response_for(rf_el, w)
    if response_for.organ_id is None:
        w.reject(Reason.STATUS_MISSING_REFERENCE, "ResponseFor/OrganId is missing or empty")
    if response_for.document_id is None:
        w.reject(Reason.STATUS_MISSING_REFERENCE, "ResponseFor/DocumentId is missing or empty")
    return StatusPackage(
        sender=sender,
        response_for=response_for,
        status_code=status_code,
        description=description,
        timestamp=parse_timestamp(_get(mh_idx, "Timestamp")),
        staff_info=_staff(_one(mh_idx, "StaffInfo")),
        has_signature=has_signature,
    )


# -- documents ------------------------------------------------------------------------------


def _parse_edoc(
    root_idx: _Index,
    env_idx: _Index,
    header_idx: _Index,
    mh_idx: _Index,
    sender: Organization,
    has_signature: bool,
    limits: ParseLimits,
    today: _dt.date,
    w: _Warnings,
    streamed: Sequence[StreamedPayload] | None = None,
) -> EdocPackage:
    recipients = _recipients(mh_idx, limits, w)

    code_el = _one(mh_idx, "Code")
    if code_el is None:
        w.reject(Reason.MISSING_CODE, "MessageHeader/Code is missing")
    code_idx = _index(code_el)
    code = Code(_get(code_idx, "CodeNumber"), _get(code_idx, "CodeNotation"))
    if code.code_number is None:
        w.reject(Reason.MISSING_CODE, "Code/CodeNumber is missing or empty")

    pi_el = _one(mh_idx, "PromulgationInfo")
    pi_idx = _index(pi_el) if pi_el is not None else {}
    raw_date = _get(pi_idx, "PromulgationDate")
    if raw_date is None:
        w.reject(Reason.BAD_DATE, "PromulgationInfo/PromulgationDate is missing or empty")
    promulgation_date = _date(raw_date, "PromulgationDate", w)
    if promulgation_date is not None and promulgation_date > today + _dt.timedelta(days=1):
        w.reject(
            Reason.DATE_IN_FUTURE,
            f"PromulgationDate {promulgation_date.isoformat()} is after {today.isoformat()}",
        )

    document_id = _get(mh_idx, "DocumentId")
    if document_id is not None:
        _check_document_id(document_id, sender.organ_id, w)

    dt_el = _one(mh_idx, "DocumentType")
    dt_idx = _index(dt_el) if dt_el is not None else {}
    signer_el = _one(mh_idx, "SignerInfo")
    signer = None
    if signer_el is not None:
        s_idx = _index(signer_el)
        signer = SignerInfo(
            competence=_get(s_idx, "Competence"),
            position=_get(s_idx, "Position"),
            full_name=_get(s_idx, "FullName"),
        )

    to_places: tuple[str, ...] = ()
    tp_el = _one(mh_idx, "ToPlaces")
    if tp_el is not None:
        to_places = _texts(_index(tp_el).get("Place"))

    response_for: list[ResponseFor] = []
    for rf_el in mh_idx.get("ResponseFor", ()):
        rf = _response_for(rf_el, w)
        if rf == ResponseFor():
            w.add(WarningCode.EMPTY_OPTIONAL_FIELD, "ResponseFor")
            continue
        response_for.append(rf)

    subject = _get(mh_idx, "Subject")
    if subject is None:
        w.add(WarningCode.EMPTY_OPTIONAL_FIELD, "Subject")

    business, trace_headers = _trace_header_list(_one(header_idx, "TraceHeaderList"), w)

    package = EdocPackage(
        sender=sender,
        recipients=recipients,
        code=code,
        promulgation=PromulgationInfo(_get(pi_idx, "Place"), promulgation_date),
        document_type=DocumentType(
            type=_get(dt_idx, "Type"),
            type_detail=_get(dt_idx, "TypeDetail"),
            type_name=_get(dt_idx, "TypeName"),
        ),
        subject=subject,
        document_id=document_id,
        content=_get(mh_idx, "Content"),
        signer=signer,
        due_date=_date(_get(mh_idx, "DueDate"), "DueDate", w),
        to_places=to_places,
        other_info=_other_info(_one(mh_idx, "OtherInfo")),
        response_for=tuple(response_for),
        steering_type=_get(mh_idx, "SteeringType"),
        business=business,
        trace_headers=trace_headers,
        attachments=_attachments(root_idx, env_idx, limits, w, streamed),
        has_signature=has_signature,
    )
    if package.business_type is not BusinessDocType.NEW and not package.target_document_ids:
        where = {
            BusinessDocType.REVOKE: "MessageHeader/ResponseFor/DocumentId",
            BusinessDocType.UPDATE: "Bussiness/DocumentId",
            BusinessDocType.REPLACE: "Bussiness/ReplacementInfoList/ReplacementInfo",
        }[package.business_type]
        w.reject(
            Reason.MISSING_TARGET_DOCUMENT,
            f"BussinessDocType {int(package.business_type)} needs {where}",
        )
    return package


def _texts(elements: list[etree._Element] | None) -> tuple[str, ...]:
    if not elements:
        return ()
    out = []
    for el in elements:
        t = _text(el)
        if t is not None:
            out.append(t)
    return tuple(out)


def _recipients(mh_idx: _Index, limits: ParseLimits, w: _Warnings) -> tuple[Organization, ...]:
    to_elements = mh_idx.get("To")
    if not to_elements:
        w.reject(Reason.NO_RECIPIENT, "MessageHeader has no To")
    if len(to_elements) > limits.max_recipients:
        w.reject(Reason.TOO_MANY_RECIPIENTS, f"{len(to_elements)} > limit {limits.max_recipients}")
    recipients = []
    seen: dict[str, str] = {}
    for i, el in enumerate(to_elements, 1):
        idx = _index(el)
        organ_id = _get(idx, "OrganId")
        if organ_id is None:
            w.reject(Reason.NO_RECIPIENT, f"To #{i} has no OrganId")
        key = normalize_code(organ_id)
        if key in seen:
            w.reject(Reason.DUPLICATE_RECIPIENT, f"{organ_id!r} and {seen[key]!r} name one agency")
        seen[key] = organ_id
        recipients.append(_organization(idx, organ_id))
    for key in seen:
        if _BARE_LEVEL1.fullmatch(key) and ("000.00.00." + key) in seen:
            w.add(WarningCode.DUPLICATE_RECIPIENT_ALIAS, f"{key} and 000.00.00.{key}")
    return tuple(recipients)


def _check_document_id(document_id: str, sender_id: str, w: _Warnings) -> None:
    """Warnings about a DocumentId, read by the one parser of DocumentIds
    (:func:`schemas.agency_code.parse_document_id`)."""
    parts = parse_document_id(document_id)
    if parts is None:
        w.add(WarningCode.DOCUMENT_ID_NONSTANDARD, document_id)
        return
    if parts.organ_id != normalize_code(sender_id):
        w.add(WarningCode.DOCUMENT_ID_SENDER_MISMATCH, f"{parts.organ_id} != {sender_id}")


def _other_info(el: etree._Element | None) -> OtherInfo | None:
    if el is None:
        return None
    idx = _index(el)
    appendixes: tuple[str, ...] = ()
    app_el = _one(idx, "Appendixes")
    if app_el is not None:
        appendixes = _texts(_index(app_el).get("Appendix"))
    return OtherInfo(
        priority=_int(_get(idx, "Priority")),
        sphere_of_promulgation=_get(idx, "SphereOfPromulgation"),
        typer_notation=_get(idx, "TyperNotation"),
        promulgation_amount=_int(_get(idx, "PromulgationAmount")),
        page_amount=_int(_get(idx, "PageAmount")),
        direction=_get(idx, "Direction"),
        appendixes=appendixes,
    )


def _trace_header_list(
    el: etree._Element | None, w: _Warnings
) -> tuple[Business, tuple[TraceHeader, ...]]:
    if el is None:
        return Business(), ()
    idx = _index(el)
    traces: list[TraceHeader] = []
    for th in idx.get("TraceHeader", ()):
        th_idx = _index(th)
        organ_id = _get(th_idx, "OrganId")
        if organ_id is None:
            w.add(WarningCode.TRACE_HEADER_WITHOUT_ORGAN, f"TraceHeader #{len(traces) + 1}")
        traces.append(TraceHeader(organ_id, parse_timestamp(_get(th_idx, "Timestamp"))))
    businesses = idx.get("Bussiness")
    if not businesses:
        return Business(), tuple(traces)
    if len(businesses) > 1:
        w.reject(Reason.NOT_EDXML, "more than one Bussiness")
    return _business(_index(businesses[0]), w), tuple(traces)


def _business(idx: _Index, w: _Warnings) -> Business:
    raw_type = _get(idx, "BussinessDocType")
    doc_type = BusinessDocType.NEW
    if raw_type is not None:
        found = _BUSINESS_TYPES.get(raw_type)
        if found is None:
            w.reject(Reason.UNKNOWN_BUSINESS_TYPE, f"BussinessDocType {raw_type!r}")
        doc_type = found

    document_info = None
    bdi_el = _one(idx, "BussinessDocumentInfo")
    if bdi_el is not None:
        bdi_idx = _index(bdi_el)
        receivers: list[Receiver] = []
        rl_el = _one(bdi_idx, "ReceiverList")
        if rl_el is not None:
            for r_el in _index(rl_el).get("Receiver", ()):
                r_idx = _index(r_el)
                organ_id = _get(r_idx, "OrganId")
                if organ_id is None:
                    w.add(WarningCode.EMPTY_OPTIONAL_FIELD, "ReceiverList/Receiver/OrganId")
                    continue
                receivers.append(Receiver(organ_id, _get(r_idx, "ReceiverType")))
        document_info = BusinessDocumentInfo(
            document_info=_get(bdi_idx, "DocumentInfo"),
            document_receiver=_get(bdi_idx, "DocumentReceiver"),
            receivers=tuple(receivers),
        )

    replacements: list[ReplacementInfo] = []
    ril_el = _one(idx, "ReplacementInfoList")
    if ril_el is not None:
        for ri_el in _index(ril_el).get("ReplacementInfo", ()):
            ri_idx = _index(ri_el)
            doc_id = _get(ri_idx, "DocumentId")
            if doc_id is None:
                w.reject(Reason.MISSING_TARGET_DOCUMENT, "ReplacementInfo/DocumentId is missing")
            organ_ids: tuple[str, ...] = ()
            oil_el = _one(ri_idx, "OrganIdList")
            if oil_el is not None:
                organ_ids = _texts(_index(oil_el).get("OrganId"))
            replacements.append(ReplacementInfo(doc_id, organ_ids))

    return Business(
        doc_type=doc_type,
        document_id=_get(idx, "DocumentId"),
        reason=_get(idx, "BussinessDocReason"),
        paper=_get(idx, "Paper"),
        staff_info=_staff(_one(idx, "StaffInfo")),
        document_info=document_info,
        replacements=tuple(replacements),
    )


# -- attachments ----------------------------------------------------------------------------


def _attachments(
    root_idx: _Index, env_idx: _Index, limits: ParseLimits, w: _Warnings,
    streamed: Sequence[StreamedPayload] | None = None,
) -> tuple[Attachment, ...]:
    references: list[etree._Element] = []
    body = _one(env_idx, "edXMLBody")
    if body is not None:
        manifest = _one(_index(body), "edXMLManifest")
        if manifest is not None:
            references = _index(manifest).get("Reference", [])
    encoded: list[etree._Element] = []
    containers = (*root_idx.get("AttachmentEncoded", ()), *env_idx.get("AttachmentEncoded", ()))
    for container in containers:
        encoded.extend(_index(container).get("Attachment", ()))
    count = max(len(references), len(encoded))
    if count > limits.max_attachments:
        w.reject(Reason.TOO_MANY_ATTACHMENTS, f"{count} > limit {limits.max_attachments}")

    by_cid: dict[str, _Index] = {}
    for i, att in enumerate(encoded, 1):
        a_idx = _index(att)
        raw = _get(a_idx, "ContentId")
        if raw is None or not strip_cid(raw):
            w.reject(Reason.ATTACHMENT_UNDECLARED, f"Attachment #{i} has no ContentId")
        cid = strip_cid(raw)
        if cid in by_cid:
            w.reject(Reason.ATTACHMENT_UNDECLARED, f"ContentId {cid!r} appears on two Attachments")
        by_cid[cid] = a_idx

    out: list[Attachment] = []
    declared: set[str] = set()
    for i, ref in enumerate(references, 1):
        r_idx = _index(ref)
        raw = _get(r_idx, "ContentId")
        if raw is None or not strip_cid(raw):
            w.reject(Reason.ATTACHMENT_MISSING, f"manifest Reference #{i} has no ContentId")
        cid = strip_cid(raw)
        if cid in declared:
            w.reject(Reason.ATTACHMENT_MISSING, f"ContentId {cid!r} is declared twice")
        declared.add(cid)
        found = by_cid.get(cid)
        if found is None:
            w.reject(Reason.ATTACHMENT_MISSING, f"no Attachment for ContentId {cid!r}")
        out.append(_attachment(cid, r_idx, found, limits, w, streamed))
    for cid in by_cid:
        if cid not in declared:
            w.reject(Reason.ATTACHMENT_UNDECLARED, f"ContentId {cid!r} is not in the manifest")
    return tuple(out)


def _attachment(
    cid: str, r_idx: _Index, a_idx: _Index, limits: ParseLimits, w: _Warnings,
    streamed: Sequence[StreamedPayload] | None = None,
) -> Attachment:
    name = _get(r_idx, "AttachmentName") or _get(a_idx, "AttachmentName")
    content_type = _get(r_idx, "ContentType") or _get(a_idx, "ContentType")
    description = _get(r_idx, "Description") or _get(a_idx, "Description")
    payload_el = _one(a_idx, "ContentTransferEncoded")
    text = payload_el.text if payload_el is not None else None
    if streamed is not None:
        # schemas.streaming decoded and hashed the payload as it streamed by; the skeleton
        # holds its index in ``streamed`` instead of the text (absent: no payload at all)
        payload = streamed[int(text)] if text and text.isdigit() else None
        return _streamed_attachment(cid, name, content_type, description, payload,
                                    limits, w)
    if not text or text.isspace():
        w.reject(Reason.ATTACHMENT_MISSING, f"Attachment {cid!r} carries no data")
    data = _decode_base64(text)
    if data is None:
        w.reject(Reason.ATTACHMENT_BAD_ENCODING, f"Attachment {cid!r}")
    try:
        return make_attachment(
            cid, name, content_type, description, data, limits.max_unzipped_bytes
        )
    except _ZipTooLarge as exc:
        w.reject(Reason.PACKAGE_TOO_LARGE, f"Attachment {cid!r}: {exc}")
    except ValueError as exc:
        w.reject(Reason.ATTACHMENT_BAD_ZIP, f"Attachment {cid!r}: {exc}")


def _streamed_attachment(
    cid: str, name: str | None, content_type: str | None, description: str | None,
    payload: StreamedPayload | None, limits: ParseLimits, w: _Warnings,
) -> Attachment:
    """The same checks and reasons as :func:`_attachment`, on a payload that was decoded and
    hashed while it streamed (``data`` stays empty: the bytes are in the caller's store)."""
    if payload is None or payload.empty:
        w.reject(Reason.ATTACHMENT_MISSING, f"Attachment {cid!r} carries no data")
    if payload.bad_encoding:
        w.reject(Reason.ATTACHMENT_BAD_ENCODING, f"Attachment {cid!r}")
    declared = (content_type or "").split(";")[0].strip().lower() in _ZIP_CONTENT_TYPES
    try:
        if payload.spool is None and declared:  # a ZIP starts with PK: this one is not
            w.reject(Reason.ATTACHMENT_BAD_ZIP,
                     f"Attachment {cid!r}: the payload is not a ZIP archive")
        if payload.spool is None:
            info = PayloadInfo(payload.sha256, False)
        else:
            payload.spool.seek(0)
            info = _inspect_zip(payload.spool, payload.sha256, declared,
                                limits.max_unzipped_bytes)
    except _ZipTooLarge as exc:
        w.reject(Reason.PACKAGE_TOO_LARGE, f"Attachment {cid!r}: {exc}")
    except ValueError as exc:
        w.reject(Reason.ATTACHMENT_BAD_ZIP, f"Attachment {cid!r}: {exc}")
    wrapped = info.zip_wrapped
    return Attachment(
        content_id=cid, name=name, content_type=content_type, description=description,
        data=b"", size=payload.size, sha256=info.sha256, zip_wrapped=wrapped,
        file_name=info.file_name if wrapped else name,
        file_size=info.file_size if wrapped else payload.size,
        file_sha256=info.file_sha256 if wrapped else info.sha256,
    )


@dataclass(slots=True)
class StreamedPayload:
    """An attachment payload decoded and hashed as it streamed (``schemas.streaming``):
    its size and hex SHA-256, and, when it starts like a ZIP, a file object holding the
    decoded bytes (the caller's spool) for the ZIP checks."""

    size: int = 0
    sha256: str = ""
    empty: bool = True
    bad_encoding: bool = False
    spool: BinaryIO | None = None


def make_attachment(
    content_id: str,
    name: str | None,
    content_type: str | None,
    description: str | None,
    data: bytes,
    max_unzipped_bytes: int = _DEFAULT_LIMITS.max_unzipped_bytes,
) -> Attachment:
    """An :class:`Attachment` for a decoded payload, with size, hashes and the unwrapped
    file's details. Raises ``ValueError`` for a corrupt ZIP declared as ``application/zip``.
    """
    info = inspect_attachment_payload(data, content_type, max_unzipped_bytes)
    wrapped = info.zip_wrapped
    return Attachment(
        content_id=content_id,
        name=name,
        content_type=content_type,
        description=description,
        data=data,
        size=len(data),
        sha256=info.sha256,
        zip_wrapped=wrapped,
        file_name=info.file_name if wrapped else name,
        file_size=info.file_size if wrapped else len(data),
        file_sha256=info.file_sha256 if wrapped else info.sha256,
    )


def _decode_base64(text: str) -> bytes | None:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        pass
    try:
        return base64.b64decode(text.translate(_WHITESPACE), validate=True)
    except (binascii.Error, ValueError):
        return None


class _ZipTooLarge(ValueError):
    pass


# everything zipfile and zlib raise on corrupt, truncated, encrypted or exotic archives
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    OverflowError,
    zlib.error,
)


@dataclass(frozen=True, slots=True)
class PayloadInfo:
    sha256: str
    zip_wrapped: bool
    file_name: str | None = None
    file_size: int | None = None
    file_sha256: str | None = None


def inspect_attachment_payload(
    data: bytes, content_type: str | None, max_unzipped_bytes: int
) -> PayloadInfo:
    """Hash the payload and, when it is ZIP-wrapped, the single file inside.

    A payload is ZIP-wrapped when its ContentType is ``application/zip`` (it must then be a
    readable ZIP, else ``ValueError``) or when it starts with ``PK`` and is a readable ZIP
    holding exactly one file (a raw .docx or .xlsx is a ZIP too, and is left alone).
    """
    digest = hashlib.sha256(data).hexdigest()
    declared = (content_type or "").split(";")[0].strip().lower() in _ZIP_CONTENT_TYPES
    if not declared and not data.startswith(b"PK"):
        return PayloadInfo(digest, False)
    return _inspect_zip(io.BytesIO(data), digest, declared, max_unzipped_bytes)


def _inspect_zip(
    fh: BinaryIO, digest: str, declared: bool, max_unzipped_bytes: int
) -> PayloadInfo:
    try:
        with zipfile.ZipFile(fh) as archive:
            entries = [i for i in archive.infolist() if not i.is_dir()]
            if len(entries) != 1:
                if declared:
                    if not entries:
                        raise ValueError("the ZIP holds no file")
                    return PayloadInfo(digest, True)
                return PayloadInfo(digest, False)
            entry = entries[0]
            size, file_digest = _hash_entry(archive, entry, max_unzipped_bytes)
            return PayloadInfo(digest, True, entry.filename, size, file_digest)
    except _ZipTooLarge:
        raise
    except _ZIP_ERRORS as exc:
        if declared:
            raise ValueError(f"{type(exc).__name__}: {exc}"[:200]) from None
        return PayloadInfo(digest, False)


def _hash_entry(
    archive: zipfile.ZipFile, entry: zipfile.ZipInfo, max_bytes: int
) -> tuple[int, str]:
    """Size and SHA-256 of one entry, inflated in chunks and never beyond ``max_bytes``."""
    if entry.file_size > max_bytes:
        raise _ZipTooLarge(f"the ZIP entry declares {entry.file_size} bytes")
    h = hashlib.sha256()
    size = 0
    with archive.open(entry) as fh:
        while chunk := fh.read(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                raise _ZipTooLarge(f"the ZIP entry inflates beyond {max_bytes} bytes")
            h.update(chunk)
    return size, h.hexdigest()
