"""The edXML builder: official layout, ZIP wrapping, and parse(build(model)) == model."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from datetime import date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from schemas import (
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
    build_package,
    new_attachment,
    parse_package,
)
from schemas.agency_code import normalize
from schemas.profile import validate_against_xsd
from tests import packages

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
E = "{" + NS + "}"
TODAY = date(2031, 1, 1)

VPCP = Organization("000.00.00.G22", "Văn phòng Chính phủ", email="vpcp@gov.vn")
NGHE_AN = Organization("000.00.00.H41", "UBND Tỉnh Nghệ An")
CAO_BANG = Organization("000.00.00.H14", "UBND Tỉnh Cao Bằng")
DOC_ID = "000.00.00.G22,2025/10/13,7816/VPCP-TTĐT"


def document(**kw: object) -> EdocPackage:
    base: dict[str, object] = {
        "sender": VPCP,
        "recipients": (NGHE_AN, CAO_BANG),
        "code": Code("7816", "VPCP-TTĐT"),
        "promulgation": PromulgationInfo("Hà Nội", date(2025, 10, 13)),
        "document_type": DocumentType("1", "0", "Công văn"),
        "subject": "V/v kết nối, liên thông phần mềm quản lý văn bản",
        "document_id": DOC_ID,
        "trace_headers": (TraceHeader("000.00.00.G22", datetime(2025, 10, 13, 10, 25, 18)),),
        "attachments": (new_attachment("cong-van.pdf", b"%PDF-1.4 test"),),
    }
    base.update(kw)
    return EdocPackage(**base)  # type: ignore[arg-type]


def roundtrip(p: EdocPackage | StatusPackage) -> EdocPackage | StatusPackage:
    return parse_package(build_package(p), today=TODAY).package


# -- layout -----------------------------------------------------------------------------------


def test_official_layout() -> None:
    data = build_package(document())
    text = data.decode("utf-8")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\r\n')
    assert "\n" not in text.replace("\r\n", "")  # CRLF everywhere, no bare LF
    assert text.endswith("</edXML>\r\n")
    assert f'<edXML xmlns="{NS}">' in text
    assert f'<edXML:edXMLEnvelope xmlns:edXML="{NS}">' in text
    # every element inside the envelope is edXML:-prefixed
    envelope = text[text.index("<edXML:edXMLEnvelope") : text.index("</edXML:edXMLEnvelope>")]
    assert not re.findall(r"<(?!edXML:|/edXML:)[A-Za-z]", envelope)
    assert '<edXML:edXMLManifest version="1.0">' in envelope
    assert "<edXML:ContentId>cid:" in envelope
    # attachments outside the envelope, children unprefixed except ContentTransferEncoded
    tail = text[text.index("</edXML:edXMLEnvelope>") :]
    assert "<AttachmentEncoded>" in tail
    assert "<Attachment>" in tail
    assert "<ContentId>cid:" in tail
    assert "<AttachmentName>cong-van.pdf</AttachmentName>" in tail
    assert f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">' in tail
    root = etree.fromstring(data)
    assert [c.tag for c in root] == [E + "edXMLEnvelope", E + "AttachmentEncoded"]


def test_status_layout_has_no_body_or_attachments() -> None:
    p = StatusPackage(
        sender=NGHE_AN,
        response_for=ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", date(2025, 10, 13), DOC_ID),
        status_code=StatusCode.ACCEPTED,
        description="Đã tiếp nhận",
        timestamp=datetime(2025, 10, 13, 11, 0, 0),
    )
    data = build_package(p)
    assert b"edXMLBody" not in data
    assert b"AttachmentEncoded" not in data
    assert b"<edXML:StatusCode>03</edXML:StatusCode>" in data
    assert b"<edXML:Timestamp>2025/10/13 11:00:00</edXML:Timestamp>" in data
    assert roundtrip(p) == p


def test_dates_are_written_year_first() -> None:
    data = build_package(document(due_date=date(2025, 11, 1)))
    assert b"<edXML:PromulgationDate>2025/10/13</edXML:PromulgationDate>" in data
    assert b"<edXML:DueDate>2025/11/01</edXML:DueDate>" in data
    assert b"<edXML:Timestamp>2025/10/13 10:25:18</edXML:Timestamp>" in data


def test_special_characters_survive() -> None:
    subject = "A & B < C > D \"E\" 'F' ]]> dòng 1\ndòng 2\r\ndòng 3\ttab"
    p = document(subject=subject)
    assert roundtrip(p) == p


@pytest.mark.parametrize("subject", ["", "  padded ", "bell\x07", "nul\x00", "\ufffe"])
def test_text_that_cannot_roundtrip_is_refused(subject: str) -> None:
    with pytest.raises(ValueError, match="Subject"):
        build_package(document(subject=subject))


def test_attachment_whose_hash_does_not_match_is_refused() -> None:
    good = new_attachment("a.pdf", b"%PDF-1.4")
    bad = Attachment(
        content_id="x",
        name="a.pdf",
        content_type="application/pdf",
        description=None,
        data=b"other",
        size=good.size,
        sha256=good.sha256,
    )
    with pytest.raises(ValueError, match="sha256"):
        build_package(document(attachments=(bad,)))


def test_timestamps_are_written_to_the_second() -> None:
    p = document(trace_headers=(TraceHeader("G22", datetime(2025, 1, 2, 3, 4, 5, 678901)),))
    back = roundtrip(p)
    assert isinstance(back, EdocPackage)
    assert back.trace_headers[0].timestamp == datetime(2025, 1, 2, 3, 4, 5)


# -- attachments ------------------------------------------------------------------------------


def test_new_attachment_plain() -> None:
    a = new_attachment("Công văn 12.pdf", b"%PDF-1.7 hello", description="Văn bản chính")
    assert a.content_type == "application/pdf"
    assert not a.zip_wrapped
    assert a.data == b"%PDF-1.7 hello"
    assert a.file_name == "Công văn 12.pdf"
    assert a.file_size == 14
    assert a.file_sha256 == a.sha256
    assert re.fullmatch(r"[0-9a-f-]{36}", a.content_id)


def test_new_attachment_zip_wrapped_holds_one_entry() -> None:
    content = "Nội dung văn bản".encode() * 100
    a = new_attachment("../../etc/phu-luc.doc", content, zip_wrap=True, content_id="cid:77")
    assert a.content_id == "77"
    assert a.content_type == "application/zip"
    assert a.zip_wrapped
    with zipfile.ZipFile(io.BytesIO(a.data)) as z:
        assert z.namelist() == ["phu-luc.doc"]  # no path components inside the ZIP
        assert z.read("phu-luc.doc") == content
    assert a.file_name == "phu-luc.doc"
    assert a.file_size == len(content)
    p = document(attachments=(a,))
    back = roundtrip(p)
    assert back == p
    assert b"<ContentType>application/zip</ContentType>" in build_package(p)


def test_new_attachment_refuses_empty_data() -> None:
    with pytest.raises(ValueError, match="data"):
        new_attachment("empty.txt", b"")


# -- the four business types and every status code -----------------------------------------------


BUSINESS_CASES = {
    "new": Business(BusinessDocType.NEW, reason="Văn bản điện tử mới", paper="0"),
    "revoke": Business(BusinessDocType.REVOKE, reason="Thu hồi văn bản điện tử"),
    "update": Business(
        BusinessDocType.UPDATE,
        document_id="000.00.00.G22,2025/10/01,7000/VPCP-TTĐT",
        document_info=BusinessDocumentInfo(
            "1", "1", (Receiver("000.00.00.H41", "0"), Receiver("000.00.00.H14", "1"))
        ),
        staff_info=StaffInfo("Văn thư", "Nguyễn Thị Ngọc Trâm", "vt@gov.vn", "0912000001"),
    ),
    "replace": Business(
        BusinessDocType.REPLACE,
        replacements=(
            ReplacementInfo("000.00.00.G22,2025/10/01,7000/VPCP-TTĐT", ("000.00.00.H41",)),
        ),
    ),
}


@pytest.mark.parametrize("kind", sorted(BUSINESS_CASES))
def test_business_types_roundtrip(kind: str) -> None:
    response_for: tuple[ResponseFor, ...] = ()
    if kind == "revoke":
        response_for = (ResponseFor("000.00.00.H41", "12/UBND", date(2025, 1, 1), "X,1,2"),)
    p = document(business=BUSINESS_CASES[kind], response_for=response_for)
    data = build_package(p)
    assert roundtrip(p) == p
    assert validate_against_xsd(data) == []


@pytest.mark.parametrize("code", list(StatusCode))
def test_every_status_code_roundtrips(code: StatusCode) -> None:
    p = StatusPackage(
        sender=NGHE_AN,
        response_for=ResponseFor(organ_id="000.00.00.G22", document_id=DOC_ID),
        status_code=code,
        staff_info=StaffInfo(staff="Văn thư"),
    )
    assert roundtrip(p) == p
    assert validate_against_xsd(build_package(p)) == []


@pytest.mark.parametrize("name", packages.ALL)
@pytest.mark.parametrize(
    "variant",
    [lambda d: d, packages.lf, packages.dotnet_variant, packages.default_namespace],
    ids=["as-built", "lf", "dotnet", "default-namespace"],
)
def test_own_packages_and_their_variants_rebuild_to_the_same_model(
    name: str, variant: Callable[[bytes], bytes]
) -> None:
    original = parse_package(variant(packages.package(name)), today=TODAY).package
    assert roundtrip(original) == original


# -- property: any model the builder accepts parses back to itself ------------------------------

VIETNAMESE = [
    "Văn phòng Chính phủ",
    "Ủy ban nhân dân",
    "tỉnh Nghệ An",
    "Sở Tài chính",
    "Bộ Nội vụ",
    "kết nối",
    "liên thông",
    "văn bản",
    "quản lý",
    "Hà Nội",
    "Đà Nẵng",
    "thành phố",
    "Quyết định",
    "Công văn",
    "về việc",
    "khẩn",
    "Nguyễn Thị Ngọc Trâm",
    "Phạm Văn Thanh",
    "ĐT",
    "TTĐT",
    "huyện Hòa Vang",
    "xã Hòa Tiến",
    "Trưởng phòng",
    "Chủ tịch",
]

vn_text = st.lists(st.sampled_from(VIETNAMESE), min_size=1, max_size=6).map(" ".join)
any_text = (
    st.text(
        alphabet=st.characters(
            exclude_categories=("Cs", "Cc", "Cn"), include_characters="\n\t&<>\"'"
        ),
        min_size=1,
        max_size=30,
    )
    .map(str.strip)
    .filter(bool)
)
text = st.one_of(vn_text, vn_text, any_text)
opt_text = st.none() | text
agency = st.one_of(
    st.from_regex(r"\A[0-9]{3}\.[0-9]{2}\.[0-9]{2}\.[A-K][0-9]{2}\Z"),
    st.from_regex(r"\A[0-9]{2}\.[0-9]{2}\.H[0-9]{2}\Z"),
    st.from_regex(r"\A[A-K][0-9]{2}\Z"),
    st.from_regex(r"\A0[0-9]{11}\Z"),
)
past_date = st.dates(min_value=date(1990, 1, 1), max_value=TODAY)
any_date = st.dates(min_value=date(1990, 1, 1), max_value=date(2040, 12, 31))
stamp = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31)).map(
    lambda d: d.replace(microsecond=0)
)
small_int = st.none() | st.integers(min_value=0, max_value=100_000)


@st.composite
def organization(draw: st.DrawFn, organ_id: st.SearchStrategy[str] = agency) -> Organization:
    return Organization(
        organ_id=draw(organ_id),
        organ_name=draw(text),
        organization_in_charge=draw(opt_text),
        organ_add=draw(opt_text),
        email=draw(st.none() | st.emails()),
        telephone=draw(st.none() | st.from_regex(r"\A\+?[0-9][0-9 ]{5,11}[0-9]\Z")),
        fax=draw(opt_text),
        website=draw(opt_text),
    )


@st.composite
def response_for(draw: st.DrawFn, need_document: bool = False) -> ResponseFor:
    rf = ResponseFor(
        organ_id=draw(st.none() | agency),
        code=draw(opt_text),
        promulgation_date=draw(st.none() | past_date),
        document_id=draw(text if need_document else opt_text),
    )
    return rf if rf != ResponseFor() else ResponseFor(document_id="X")


staff = st.none() | st.builds(StaffInfo, opt_text, opt_text, opt_text, opt_text)


@st.composite
def attachment(draw: st.DrawFn) -> Attachment:
    name = draw(text) + draw(st.sampled_from([".pdf", ".doc", ".docx", ".txt", ""]))
    return new_attachment(
        name,
        draw(st.binary(min_size=1, max_size=400)),
        content_type=draw(st.none() | st.sampled_from(["application/pdf", "text/plain"])),
        description=draw(opt_text),
        zip_wrap=draw(st.booleans()),
        content_id=draw(st.uuids().map(str)),
    )


@st.composite
def edoc_package(draw: st.DrawFn) -> EdocPackage:
    sender = draw(organization())
    recipients = draw(
        st.lists(organization(), min_size=1, max_size=5, unique_by=lambda o: normalize(o.organ_id))
    )
    doc_type = draw(st.sampled_from(list(BusinessDocType)))
    responses = draw(st.lists(response_for(), max_size=2))
    business_doc_id = draw(opt_text)
    replacements = draw(
        st.lists(
            st.builds(ReplacementInfo, text, st.lists(agency, max_size=3).map(tuple)),
            max_size=3,
        )
    )
    if doc_type is BusinessDocType.REVOKE:
        responses.append(draw(response_for(need_document=True)))
    elif doc_type is BusinessDocType.UPDATE and business_doc_id is None:
        business_doc_id = draw(text)
    elif doc_type is BusinessDocType.REPLACE and not replacements:
        replacements = [ReplacementInfo(draw(text), ())]
    receivers = st.lists(st.builds(Receiver, agency, st.none() | st.sampled_from(["0", "1"])))
    document_info = draw(
        st.none() | st.builds(BusinessDocumentInfo, opt_text, opt_text, receivers.map(tuple))
    )
    other_info = draw(
        st.none()
        | st.builds(
            OtherInfo,
            st.none() | st.integers(0, 4),
            opt_text,
            opt_text,
            small_int,
            small_int,
            st.none() | st.sampled_from(["true", "false"]),
            st.lists(text, max_size=3).map(tuple),
        )
    )
    attachments = draw(st.lists(attachment(), max_size=3, unique_by=lambda a: a.content_id))
    return EdocPackage(
        sender=sender,
        recipients=tuple(recipients),
        code=Code(draw(text), draw(opt_text)),
        promulgation=PromulgationInfo(draw(opt_text), draw(past_date)),
        document_type=DocumentType(draw(opt_text), draw(opt_text), draw(opt_text)),
        subject=draw(text),
        document_id=draw(opt_text),
        content=draw(opt_text),
        signer=draw(st.none() | st.builds(SignerInfo, opt_text, opt_text, opt_text)),
        due_date=draw(st.none() | any_date),
        to_places=tuple(draw(st.lists(text, max_size=3))),
        other_info=other_info,
        response_for=tuple(responses),
        steering_type=draw(st.none() | st.sampled_from(["0", "1", "2"])),
        business=Business(
            doc_type=doc_type,
            document_id=business_doc_id,
            reason=draw(opt_text),
            paper=draw(st.none() | st.sampled_from(["0", "1"])),
            staff_info=draw(staff),
            document_info=document_info,
            replacements=tuple(replacements),
        ),
        trace_headers=tuple(
            draw(
                st.lists(st.builds(TraceHeader, st.none() | agency, st.none() | stamp), max_size=4)
            )
        ),
        attachments=tuple(attachments),
    )


@st.composite
def status_package(draw: st.DrawFn) -> StatusPackage:
    rf = draw(response_for(need_document=True))
    if rf.organ_id is None:
        rf = ResponseFor(draw(agency), rf.code, rf.promulgation_date, rf.document_id)
    return StatusPackage(
        sender=draw(organization()),
        response_for=rf,
        status_code=draw(st.sampled_from(list(StatusCode))),
        description=draw(st.none() | text | st.just("Lý do: " + "x" * 990)),
        timestamp=draw(st.none() | stamp),
        staff_info=draw(staff),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(edoc_package(), status_package()))
def test_parse_of_build_is_identity(package: EdocPackage | StatusPackage) -> None:
    data = build_package(package)
    assert roundtrip(package) == package
    assert validate_against_xsd(data) == []
