"""The edXML parser on the suite's own packages (tests/packages.py), on the variants
producers write, and on every rule that refuses a package."""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from collections.abc import Callable
from datetime import date, datetime

import pytest
from lxml import etree

from schemas import (
    BusinessDocType,
    EdocPackage,
    PackageRejected,
    ParseLimits,
    Reason,
    StatusCode,
    StatusPackage,
    WarningCode,
    parse_package,
)
from tests.packages import (
    ALL,
    NEW,
    REAL,
    REPLACE,
    REVOKE,
    STATUSES,
    UPDATE,
    default_namespace,
    dotnet_variant,
    package,
    without_cid,
)

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
E = "{" + NS + "}"
TODAY = date(2026, 1, 1)


sample = package
STATUS = "status_acceptance_03"
ALL_SAMPLES = ALL
EDOCS_WITH_ATTACHMENTS = (NEW, REVOKE, UPDATE, REPLACE, REAL)


def parse(data: bytes, **kw: object) -> EdocPackage | StatusPackage:
    kw.setdefault("today", TODAY)
    return parse_package(data, **kw).package  # type: ignore[arg-type]


def edoc(data: bytes) -> EdocPackage:
    p = parse(data)
    assert isinstance(p, EdocPackage)
    return p


def status(data: bytes) -> StatusPackage:
    p = parse(data)
    assert isinstance(p, StatusPackage)
    return p


def warnings_of(data: bytes) -> set[WarningCode]:
    return {w.code for w in parse_package(data, today=TODAY).warnings}


# -- XML editing helpers ----------------------------------------------------------------------


def path(*steps: str) -> str:
    return "/".join(E + s for s in steps)


MH = ("edXMLEnvelope", "edXMLHeader", "MessageHeader")
BUSINESS = ("edXMLEnvelope", "edXMLHeader", "TraceHeaderList", "Bussiness")


def edit(data: bytes, fn: Callable[[etree._Element], object]) -> bytes:
    root = etree.fromstring(data)
    fn(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def remove(*steps: str) -> Callable[[etree._Element], None]:
    def fn(root: etree._Element) -> None:
        found = root.findall(path(*steps))
        assert found, steps
        for el in found:
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)

    return fn


def set_text(value: str, *steps: str) -> Callable[[etree._Element], None]:
    def fn(root: etree._Element) -> None:
        el = root.find(path(*steps))
        assert el is not None, steps
        el.text = value

    return fn


def rejected(data: bytes, **kw: object) -> PackageRejected:
    with pytest.raises(PackageRejected) as info:
        parse(data, **kw)
    return info.value


# -- the own packages -------------------------------------------------------------------------


def test_the_own_packages_cover_every_business_type_and_status() -> None:
    kinds = {(p := parse(sample(n))).kind: p for n in ALL_SAMPLES}
    assert set(kinds) == {"edoc", "status"}
    assert {edoc(sample(n)).business_type for n in (NEW, REVOKE, UPDATE, REPLACE)} == set(
        BusinessDocType
    )
    assert {status(sample(n)).status_code for n in STATUSES} == set(STATUSES.values())


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_every_sample_parses(name: str) -> None:
    result = parse_package(sample(name), today=TODAY)
    expected_kind = "status" if name.startswith("status") else "edoc"
    assert result.package.kind == expected_kind


def test_edoc_new_fields() -> None:
    p = edoc(sample(NEW))
    assert p.sender.organ_id == "000.00.00.A80"
    assert p.sender.organ_name is not None
    assert p.sender.organ_name.startswith("UBND xã Hòa Tiến")
    assert p.sender.email == "vpcp@gov.vn"
    assert [r.organ_id for r in p.recipients] == ["28.22.H17"]
    assert p.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert str(p.code) == "74fass22/VPCP-TTĐT"
    assert p.promulgation.place == "Hà Nội"
    assert p.promulgation.promulgation_date == date(2019, 1, 16)
    assert p.document_type.type == "1"
    assert p.document_type.type_name == "Công văn"
    assert p.subject == "V/v kết nối, liên thông phần mềm quản lý văn bản"
    assert p.signer is not None
    assert p.signer.full_name == "Nguyen Thanh Phuc"
    assert p.due_date == date(2018, 9, 28)
    assert p.other_info is not None
    assert p.other_info.priority == 0
    assert p.other_info.page_amount == 22
    assert p.other_info.appendixes == (
        "Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",
    )
    assert p.steering_type == "1"
    assert p.to_places == ("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP")
    assert p.business_type is BusinessDocType.NEW
    assert p.business.staff_info is not None
    assert p.business.staff_info.staff == "Nguyễn Thị Ngọc Trâm"
    assert p.trace_headers[0].organ_id == "000.00.00.G22"
    assert p.trace_headers[0].timestamp == datetime(2018, 9, 28, 0, 0, 0)
    (att,) = p.attachments
    assert att.content_id == "209"
    assert att.name == "1896_QD-TTg_m_294779.doc"
    assert att.content_type == "application/zip"
    assert att.zip_wrapped
    assert att.file_name == "32da2890-1a55-4ccd-9ac9-cd0d98559e67.edxml"
    assert att.sha256 == hashlib.sha256(att.data).hexdigest()
    assert att.size == len(att.data)
    with zipfile.ZipFile(io.BytesIO(att.data)) as z:
        inner = z.read(z.namelist()[0])
    assert att.file_size == len(inner)
    assert att.file_sha256 == hashlib.sha256(inner).hexdigest()


def test_sdk_placeholder_signature_is_not_a_signature() -> None:
    result = parse_package(sample(NEW), today=TODAY)
    assert result.package.has_signature is False
    codes = [w.code for w in result.warnings]
    assert WarningCode.PLACEHOLDER_SIGNATURE in codes
    # the sample's DocumentId names G22 while From is A80
    assert WarningCode.DOCUMENT_ID_SENDER_MISMATCH in codes


def test_revocation_names_its_target_in_response_for() -> None:
    p = edoc(sample(REVOKE))
    assert p.business_type is BusinessDocType.REVOKE
    assert len(p.recipients) == 3
    assert p.response_for[0].organ_id == "000.00.00.H14"
    assert p.response_for[0].code == "267/VPCP-TTĐT"
    assert p.response_for[0].promulgation_date == date(2018, 9, 28)
    assert p.target_document_ids == ("000.00.04.G14,2012/08/06,267/VPCP-TTĐT",)


def test_update_names_its_target_and_receivers() -> None:
    p = edoc(sample(UPDATE))
    assert p.business_type is BusinessDocType.UPDATE
    assert p.target_document_ids == ("000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",)
    info = p.business.document_info
    assert info is not None
    assert info.document_info == "1"
    assert info.document_receiver == "1"
    assert [(r.organ_id, r.receiver_type) for r in info.receivers] == [
        ("000.00.00.H41", "0"),
        ("000.00.00.H14", "1"),
    ]


def test_replacement_lists_replaced_documents() -> None:
    p = edoc(sample(REPLACE))
    assert p.business_type is BusinessDocType.REPLACE
    assert len(p.business.replacements) == 2
    first = p.business.replacements[0]
    assert first.document_id == "000.00.00.G22,2014/01/30,7806/VPCP-TTĐT"
    assert first.organ_ids == ("000.00.00.H41", "000.00.00.H14")


def test_real_production_package() -> None:
    result = parse_package(sample(REAL), today=TODAY)
    p = result.package
    assert isinstance(p, EdocPackage)
    assert p.sender.organ_id == "020100107370"
    assert [r.organ_id for r in p.recipients] == ["G12", "000.00.00.G12"]
    assert p.document_type.type == "71"
    # Bussiness came before the TraceHeaders; one hop has no OrganId
    assert [t.organ_id for t in p.trace_headers] == ["020100107370", None, "02.29.W00"]
    assert p.trace_headers[2].timestamp == datetime(2025, 10, 13, 10, 40, 4)
    assert p.has_signature is False
    pdf, doc = p.attachments
    assert not pdf.zip_wrapped
    assert pdf.data.startswith(b"%PDF-")
    assert pdf.file_name == pdf.name
    assert pdf.file_sha256 == pdf.sha256
    assert pdf.file_size == pdf.size
    assert doc.zip_wrapped
    assert doc.file_name == "6616e890-1ad5-4696-8af5-f045919b1d7a.doc"
    codes = {w.code for w in result.warnings}
    assert codes == {WarningCode.DUPLICATE_RECIPIENT_ALIAS, WarningCode.TRACE_HEADER_WITHOUT_ORGAN}


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("status_inbox_01", StatusCode.ARRIVED),
        ("status_rejection_02", StatusCode.REFUSED),
        ("status_acceptance_03", StatusCode.ACCEPTED),
        ("status_finish_06", StatusCode.DONE),
        ("status_cancellation_13", StatusCode.RECALL_REQUESTED),
    ],
)
def test_status_samples(name: str, code: StatusCode) -> None:
    p = status(sample(name))
    assert p.status_code is code
    assert p.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert p.response_for.promulgation_date == date(2015, 9, 30)
    assert p.response_for.code == "7816/VPCP-TTĐT"
    assert p.timestamp == datetime(2015, 9, 20, 11, 8, 36)
    assert p.description
    assert p.staff_info is not None
    assert p.staff_info.mobile == "84912000001"
    if code is StatusCode.RECALL_REQUESTED:
        assert p.sender.organ_id == "000.00.00.G22"
        assert p.response_for.organ_id == "000.00.00.H41"
    else:
        assert p.sender.organ_id == "000.00.00.H41"
        assert p.response_for.organ_id == "000.00.00.G22"


# -- leniency -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_lf_line_endings_give_the_same_package(name: str) -> None:
    data = sample(name)
    assert b"\r\n" in data
    assert parse(data.replace(b"\r\n", b"\n")) == parse(data)


@pytest.mark.parametrize("name", ALL_SAMPLES)
def test_default_namespace_without_prefixes_gives_the_same_package(name: str) -> None:
    data = sample(name)
    variant = default_namespace(data)
    assert b"edXML:" not in variant
    assert parse(variant) == parse(data)


@pytest.mark.parametrize("name", EDOCS_WITH_ATTACHMENTS)
def test_content_ids_without_cid_give_the_same_package(name: str) -> None:
    data = sample(name)
    assert b">cid:" in data
    assert parse(without_cid(data)) == parse(data)


def _reverse_children(*steps: str) -> Callable[[etree._Element], None]:
    def fn(root: etree._Element) -> None:
        el = root.find(path(*steps))
        assert el is not None
        children = list(el)
        for c in children:
            el.remove(c)
        for c in reversed(children):
            el.append(c)

    return fn


@pytest.mark.parametrize("name", [NEW, REVOKE, UPDATE, REPLACE, REAL, STATUS])
def test_element_order_does_not_matter(name: str) -> None:
    data = sample(name)

    def shuffle(root: etree._Element) -> None:
        # reverse the order of the distinct child names everywhere, keeping repeated
        # elements (To, TraceHeader, Reference, ...) in their order
        for el in root.iter():
            if len(el) > 1 and el.tag != E + "edXML":
                children = list(el)
                first: dict[object, int] = {}
                for i, c in enumerate(children):
                    first.setdefault(c.tag, i)
                for c in children:
                    el.remove(c)
                for c in sorted(children, key=lambda c: -first[c.tag]):
                    el.append(c)

    assert parse(edit(data, shuffle)) == parse(data)


def test_bussiness_before_or_after_trace_headers() -> None:
    data = sample(NEW)
    moved = edit(data, _reverse_children("edXMLEnvelope", "edXMLHeader", "TraceHeaderList"))
    assert moved.index(b"Bussiness>") < moved.index(b"TraceHeader>")
    assert parse(moved) == parse(data)


def test_cid_prefix_is_optional_on_either_side() -> None:
    data = sample(REAL)
    without = data.replace(b">cid:", b">")
    assert parse(without) == parse(data)
    only_manifest = edit(
        data,
        set_text(
            "90112bb5-7977-4346-b60a-2f71f88cb4c8", "AttachmentEncoded", "Attachment", "ContentId"
        ),
    )
    assert parse(only_manifest) == parse(data)


def test_empty_optional_elements_become_none() -> None:
    data = sample(NEW)
    for tag in (b"DueDate", b"Content", b"SteeringType"):
        start = data.index(b"<edXML:" + tag + b">")
        end = data.index(b"</edXML:" + tag + b">")
        data = data[:start] + b"<edXML:" + tag + b" />" + data[end + len(tag) + 9 :]
    p = edoc(data)
    assert p.due_date is None
    assert p.content is None
    assert p.steering_type is None


def test_missing_optional_sections() -> None:
    data = edit(sample(NEW), remove(*MH, "OtherInfo"))
    data = edit(data, remove(*MH, "SignerInfo"))
    data = edit(data, remove(*MH, "ToPlaces"))
    data = edit(data, remove("edXMLEnvelope", "edXMLHeader", "TraceHeaderList"))
    p = edoc(data)
    assert p.other_info is None
    assert p.signer is None
    assert p.to_places == ()
    assert p.business_type is BusinessDocType.NEW
    assert p.trace_headers == ()


@pytest.mark.parametrize("name", [NEW, REAL, UPDATE])
def test_dotnet_variant_parses_to_the_same_package(name: str) -> None:
    data = sample(name)
    variant = dotnet_variant(data)
    assert b"xmlns:xsi" in variant
    assert b"xlink:href" in variant
    assert b"<ContentId>cid:" not in variant
    assert parse(variant) == parse(data)


def test_xmldsig_signature_counts_as_signature() -> None:
    def add_signature(root: etree._Element) -> None:
        header = root.find(path("edXMLEnvelope", "edXMLHeader"))
        assert header is not None
        placeholder = header.find(E + "Signature")
        if placeholder is not None:
            header.remove(placeholder)
        sig = etree.SubElement(header, f"{{{DSIG}}}Signature", nsmap={None: DSIG})  # type: ignore[dict-item]
        etree.SubElement(sig, f"{{{DSIG}}}SignedInfo")

    result = parse_package(edit(sample(NEW), add_signature), today=TODAY)
    assert result.package.has_signature is True
    assert WarningCode.PLACEHOLDER_SIGNATURE not in {w.code for w in result.warnings}


def test_no_signature_no_warning() -> None:
    data = edit(sample(NEW), remove("edXMLEnvelope", "edXMLHeader", "Signature"))
    result = parse_package(data, today=TODAY)
    assert result.package.has_signature is False
    assert WarningCode.PLACEHOLDER_SIGNATURE not in {w.code for w in result.warnings}


def test_base64_with_line_breaks_is_accepted() -> None:
    data = sample(REAL)
    p = edoc(data)

    def wrap(root: etree._Element) -> None:
        for el in root.iter(E + "ContentTransferEncoded"):
            text = el.text or ""
            el.text = "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))

    assert edoc(edit(data, wrap)).attachments == p.attachments


def test_uuid_document_id_is_only_a_warning() -> None:
    data = edit(sample(REAL), set_text("3f1c2d5e-6b7a-4c8d-9e0f-1a2b3c4d5e6f", *MH, "DocumentId"))
    assert WarningCode.DOCUMENT_ID_NONSTANDARD in warnings_of(data)


# -- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "day_first"),
    [
        ("2019/01/16", date(2019, 1, 16), False),
        ("2019-01-16", date(2019, 1, 16), False),
        ("2019/1/6", date(2019, 1, 6), False),
        ("2019/01/16 00:00:00", date(2019, 1, 16), False),
        ("16/01/2019", date(2019, 1, 16), True),
    ],
)
def test_promulgation_date_forms(text: str, expected: date, day_first: bool) -> None:
    data = edit(sample(NEW), set_text(text, *MH, "PromulgationInfo", "PromulgationDate"))
    result = parse_package(data, today=TODAY)
    assert isinstance(result.package, EdocPackage)
    assert result.package.promulgation.promulgation_date == expected
    assert (WarningCode.DATE_DAY_FIRST in {w.code for w in result.warnings}) is day_first


@pytest.mark.parametrize("text", ["2019/02/30", "yesterday", "2019/13/01", "16.01.19"])
def test_unreadable_promulgation_date_is_refused(text: str) -> None:
    data = edit(sample(NEW), set_text(text, *MH, "PromulgationInfo", "PromulgationDate"))
    assert rejected(data).reason is Reason.BAD_DATE


def test_missing_promulgation_date_is_refused() -> None:
    data = edit(sample(NEW), remove(*MH, "PromulgationInfo", "PromulgationDate"))
    assert rejected(data).reason is Reason.BAD_DATE


def test_future_promulgation_date() -> None:
    data = edit(sample(NEW), set_text("2026/01/02", *MH, "PromulgationInfo", "PromulgationDate"))
    assert edoc(data).promulgation.promulgation_date == date(2026, 1, 2)  # today + 1: fine
    data = edit(sample(NEW), set_text("2026/01/03", *MH, "PromulgationInfo", "PromulgationDate"))
    assert rejected(data).reason is Reason.DATE_IN_FUTURE
    # the default "today" is the real date
    with pytest.raises(PackageRejected) as info:
        parse_package(
            edit(sample(NEW), set_text("2999/01/01", *MH, "PromulgationInfo", "PromulgationDate"))
        )
    assert info.value.reason is Reason.DATE_IN_FUTURE


def test_bad_due_date_is_refused_but_empty_is_fine() -> None:
    assert rejected(edit(sample(NEW), set_text("soon", *MH, "DueDate"))).reason is Reason.BAD_DATE
    assert edoc(edit(sample(NEW), set_text("", *MH, "DueDate"))).due_date is None


def test_timestamps_are_lenient() -> None:
    trace = ("edXMLEnvelope", "edXMLHeader", "TraceHeaderList", "TraceHeader", "Timestamp")
    p = edoc(edit(sample(NEW), set_text("not a time", *trace)))
    assert p.trace_headers[0].timestamp is None
    p = edoc(edit(sample(NEW), set_text("2018-09-28T07:30:05", *trace)))
    assert p.trace_headers[0].timestamp == datetime(2018, 9, 28, 7, 30, 5)
    p = edoc(edit(sample(NEW), set_text("2018-09-28T07:30:05.123+07:00", *trace)))
    assert p.trace_headers[0].timestamp == datetime(2018, 9, 28, 7, 30, 5)
    s = status(edit(sample(STATUS), set_text("??", *MH, "Timestamp")))
    assert s.timestamp is None


# -- strict rules -----------------------------------------------------------------------------


def _duplicate_first_to(root: etree._Element) -> None:
    mh = root.find(path(*MH))
    assert mh is not None
    to = mh.find(E + "To")
    assert to is not None
    copy = etree.fromstring(etree.tostring(to))
    organ = copy.find(E + "OrganId")
    assert organ is not None
    organ.text = "  " + (organ.text or "").lower() + " "  # same agency after normalisation
    mh.insert(mh.index(to) + 1, copy)


def _second_from(root: etree._Element) -> None:
    mh = root.find(path(*MH))
    assert mh is not None
    frm = mh.find(E + "From")
    assert frm is not None
    mh.insert(0, etree.fromstring(etree.tostring(frm)))


def _drop_attachment(root: etree._Element) -> None:
    enc = root.find(E + "AttachmentEncoded")
    assert enc is not None
    enc.remove(enc[0])


def _drop_reference(root: etree._Element) -> None:
    manifest = root.find(path("edXMLEnvelope", "edXMLBody", "edXMLManifest"))
    assert manifest is not None
    manifest.remove(manifest[0])


def _corrupt_zip(root: etree._Element) -> None:
    el = root.find(path("AttachmentEncoded", "Attachment", "ContentTransferEncoded"))
    assert el is not None
    data = bytearray(base64.b64decode(el.text or ""))
    data[40:80] = b"\x00" * 40
    el.text = base64.b64encode(bytes(data)).decode()


CASES: list[tuple[str, str, Callable[[etree._Element], object], Reason]] = [
    ("no From/OrganId", NEW, remove(*MH, "From", "OrganId"), Reason.MISSING_SENDER),
    ("empty From/OrganId", NEW, set_text("  ", *MH, "From", "OrganId"), Reason.MISSING_SENDER),
    ("no From", STATUS, remove(*MH, "From"), Reason.MISSING_SENDER),
    ("no From/OrganName", NEW, remove(*MH, "From", "OrganName"), Reason.MISSING_SENDER_NAME),
    ("two From", NEW, _second_from, Reason.NOT_EDXML),
    ("no To", REVOKE, remove(*MH, "To"), Reason.NO_RECIPIENT),
    ("To without OrganId", NEW, remove(*MH, "To", "OrganId"), Reason.NO_RECIPIENT),
    ("duplicate To", NEW, _duplicate_first_to, Reason.DUPLICATE_RECIPIENT),
    ("no Code", NEW, remove(*MH, "Code"), Reason.MISSING_CODE),
    ("no CodeNumber", NEW, remove(*MH, "Code", "CodeNumber"), Reason.MISSING_CODE),
    (
        "bad business type",
        NEW,
        set_text("7", *BUSINESS, "BussinessDocType"),
        Reason.UNKNOWN_BUSINESS_TYPE,
    ),
    ("bad status code", STATUS, set_text("09", *MH, "StatusCode"), Reason.UNKNOWN_STATUS_CODE),
    ("empty status code", STATUS, set_text("", *MH, "StatusCode"), Reason.UNKNOWN_STATUS_CODE),
    (
        "status without DocumentId",
        STATUS,
        remove(*MH, "ResponseFor", "DocumentId"),
        Reason.STATUS_MISSING_REFERENCE,
    ),
    (
        "status without ResponseFor/OrganId",
        STATUS,
        remove(*MH, "ResponseFor", "OrganId"),
        Reason.STATUS_MISSING_REFERENCE,
    ),
    (
        "status without ResponseFor",
        STATUS,
        remove(*MH, "ResponseFor"),
        Reason.STATUS_MISSING_REFERENCE,
    ),
    (
        "long description",
        STATUS,
        set_text("x" * 1001, *MH, "Description"),
        Reason.DESCRIPTION_TOO_LONG,
    ),
    ("revoke without target", REVOKE, remove(*MH, "ResponseFor"), Reason.MISSING_TARGET_DOCUMENT),
    (
        "update without target",
        UPDATE,
        remove(*BUSINESS, "DocumentId"),
        Reason.MISSING_TARGET_DOCUMENT,
    ),
    (
        "replace without target",
        REPLACE,
        remove(*BUSINESS, "ReplacementInfoList"),
        Reason.MISSING_TARGET_DOCUMENT,
    ),
    (
        "ReplacementInfo without DocumentId",
        REPLACE,
        remove(*BUSINESS, "ReplacementInfoList", "ReplacementInfo", "DocumentId"),
        Reason.MISSING_TARGET_DOCUMENT,
    ),
    ("attachment missing", REAL, _drop_attachment, Reason.ATTACHMENT_MISSING),
    ("attachment undeclared", REAL, _drop_reference, Reason.ATTACHMENT_UNDECLARED),
    (
        "attachment without data",
        NEW,
        remove("AttachmentEncoded", "Attachment", "ContentTransferEncoded"),
        Reason.ATTACHMENT_MISSING,
    ),
    (
        "bad base64",
        NEW,
        set_text("@@not base64@@", "AttachmentEncoded", "Attachment", "ContentTransferEncoded"),
        Reason.ATTACHMENT_BAD_ENCODING,
    ),
    (
        "truncated base64",
        NEW,
        set_text("UEsDBBQ", "AttachmentEncoded", "Attachment", "ContentTransferEncoded"),
        Reason.ATTACHMENT_BAD_ENCODING,
    ),
    ("corrupt zip", NEW, _corrupt_zip, Reason.ATTACHMENT_BAD_ZIP),
    ("no envelope", STATUS, remove("edXMLEnvelope"), Reason.NOT_EDXML),
    ("no MessageHeader", STATUS, remove(*MH), Reason.NOT_EDXML),
]


@pytest.mark.parametrize(
    ("name", "mutate", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_refuses(
    name: str, mutate: Callable[[etree._Element], object], reason: Reason
) -> None:
    exc = rejected(edit(sample(name), mutate))
    assert exc.reason is reason, exc
    assert exc.detail


def test_description_of_exactly_1000_characters_is_fine() -> None:
    assert status(edit(sample(STATUS), set_text("đ" * 1000, *MH, "Description"))).description


def test_rejection_carries_warnings_seen_so_far() -> None:
    data = edit(sample(NEW), remove(*MH, "Code"))
    exc = rejected(data)
    assert WarningCode.PLACEHOLDER_SIGNATURE in {w.code for w in exc.warnings}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Reason.EMPTY_PACKAGE),
        (b" \r\n\t", Reason.EMPTY_PACKAGE),
        (b"%PDF-1.4 not xml", Reason.MALFORMED_XML),
        (b"<edXML xmlns='http://www.mic.gov.vn/TBT/QCVN_102_2016'>", Reason.MALFORMED_XML),
        (b"<html><body/></html>", Reason.NOT_EDXML),
        (b"<edXML><edXMLEnvelope/></edXML>", Reason.NOT_EDXML),  # no namespace
        (b"<e:edXML xmlns:e='urn:other'/>", Reason.NOT_EDXML),
    ],
)
def test_not_edxml(data: bytes, reason: Reason) -> None:
    assert rejected(data).reason is reason


def test_wrong_namespace_is_not_edxml() -> None:
    data = sample(NEW).replace(NS.encode(), b"http://example.org/edxml")
    assert rejected(data).reason is Reason.NOT_EDXML


# -- ZIP payloads ---------------------------------------------------------------------------


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in entries.items():
            z.writestr(name, content)
    return buf.getvalue()


def _with_payload(payload: bytes, content_type: str) -> bytes:
    def fn(root: etree._Element) -> None:
        for el in root.iter(E + "ContentType"):
            el.text = content_type
        enc = root.find(path("AttachmentEncoded", "Attachment", "ContentTransferEncoded"))
        assert enc is not None
        enc.text = base64.b64encode(payload).decode()

    return edit(sample(NEW), fn)


def test_docx_is_not_unwrapped() -> None:
    docx = _zip({"[Content_Types].xml": b"<x/>", "word/document.xml": b"<w/>"})
    ct = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    (att,) = edoc(_with_payload(docx, ct)).attachments
    assert not att.zip_wrapped
    assert att.file_sha256 == att.sha256


def test_pk_payload_with_one_entry_is_unwrapped_whatever_its_type() -> None:
    (att,) = edoc(_with_payload(_zip({"cv.pdf": b"%PDF-1.7 x"}), "application/pdf")).attachments
    assert att.zip_wrapped
    assert att.file_name == "cv.pdf"
    assert att.file_size == 10


def test_declared_zip_must_be_a_zip() -> None:
    assert rejected(_with_payload(b"%PDF-1.4", "application/zip")).reason is (
        Reason.ATTACHMENT_BAD_ZIP
    )


def test_zip_bomb_stops_at_the_budget() -> None:
    bomb = _zip({"big.bin": b"\0" * 5_000_000})
    assert len(bomb) < 10_000
    data = _with_payload(bomb, "application/zip")
    exc = rejected(data, limits=ParseLimits(max_unzipped_bytes=1_000_000))
    assert exc.reason is Reason.PACKAGE_TOO_LARGE
    (att,) = edoc(data).attachments  # the default budget is larger
    assert att.file_size == 5_000_000


# -- limits ---------------------------------------------------------------------------------


def test_limits() -> None:
    data = sample(REVOKE)
    assert rejected(data, limits=ParseLimits(max_recipients=2)).reason is (
        Reason.TOO_MANY_RECIPIENTS
    )
    assert edoc(data).recipients  # 3 recipients, default limit 500
    real = sample(REAL)
    assert rejected(real, limits=ParseLimits(max_attachments=1)).reason is (
        Reason.TOO_MANY_ATTACHMENTS
    )
    assert rejected(real, limits=ParseLimits(max_bytes=len(real) - 1)).reason is (
        Reason.PACKAGE_TOO_LARGE
    )
    assert rejected(real, limits=ParseLimits(max_elements=50)).reason is Reason.XML_TOO_COMPLEX
    assert rejected(real, limits=ParseLimits(max_depth=5)).reason is Reason.XML_TOO_COMPLEX
