"""The test suite's own edXML packages: built with the project's builder, with the layout
quirks producers write added by hand from the format's facts (docs/edxml.md).

Ten packages mirror the shapes of the reference packages the project is checked against
(``../shared/edxml-samples``; those are read only by the tests that check the real packages):
the four business types (0 new, 1 revoke, 2 update, 3 replace), status packages 01, 02, 03,
06 and 13, and a production-shaped document from an enterprise to a ministry addressed by
its new and its old code. The variants parsers must accept are functions of any package:
LF line endings, ``cid:`` left out, the .NET SDK's layout, the default namespace only.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from functools import cache

from lxml import etree

from schemas import (
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
)
from schemas.model import EDXML_NS

__all__ = [
    "ALL",
    "EDOCS",
    "NEW",
    "REAL",
    "REPLACE",
    "REVOKE",
    "STATUSES",
    "UPDATE",
    "default_namespace",
    "dotnet_variant",
    "lf",
    "package",
    "without_cid",
]

NEW = "edoc_new"
REVOKE = "edoc_revocation"
UPDATE = "edoc_update"
REPLACE = "edoc_replacement"
REAL = "edoc_enterprise_alias"  # production-shaped: enterprise sender, G12 + 000.00.00.G12
STATUSES = {
    "status_inbox_01": StatusCode.ARRIVED,
    "status_rejection_02": StatusCode.REFUSED,
    "status_acceptance_03": StatusCode.ACCEPTED,
    "status_finish_06": StatusCode.DONE,
    "status_cancellation_13": StatusCode.RECALL_REQUESTED,
}
EDOCS = (NEW, REVOKE, UPDATE, REPLACE, REAL)
ALL = (*EDOCS, *STATUSES)

DOCUMENT_ID = "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
REAL_PDF_CID = "90112bb5-7977-4346-b60a-2f71f88cb4c8"
REAL_DOC_CID = "cbc23df4-48c1-4b34-8b1a-2a58e6aa2b41"
REAL_DOC_ENTRY = "6616e890-1ad5-4696-8af5-f045919b1d7a.doc"
NEW_ZIP_ENTRY = "32da2890-1a55-4ccd-9ac9-cd0d98559e67.edxml"

VPCP = Organization(
    "000.00.00.G22", "Văn phòng Chính phủ", "Văn phòng Chính phủ",
    "Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội", "vpcp@gov.vn", "8043100", "048989898789",
    "vpcp.vn",
)
NGHE_AN = Organization(
    "000.00.00.H41", "UBND Tỉnh Nghệ An", "UBND Tỉnh Nghệ An",
    "Số 03, đường Trường Thi, Thành phố Vinh, Tỉnh Nghệ An", "nghean@gov.vn", "0383 840418",
    "0383 843049", "www.nghean.vn",
)
CAO_BANG = Organization(
    "000.00.00.H14", "UBND Tỉnh Cao Bằng", "UBND Tỉnh Cao Bằng",
    "Thành phố Cao Bằng, Tỉnh Cao Bằng", "caobang@gov.vn", "02063852139",
)
HAI_PHONG = Organization("000.00.00.G17", "Sở Thông tin truyền thông Hải Phòng")
OFFICE_STAFF = StaffInfo("Văn thư văn phòng", "Nguyễn Thị Ngọc Trâm", "vanthuvanphong@gov.vn",
                         "84912000001")

# The SDK samples' <Signature>: no XML-DSig namespace, dummy values (edxml.md §7).
PLACEHOLDER_SIGNATURE = (
    b"      <Signature>\r\n"
    b"        <SignedInfo>\r\n"
    b'          <CanonicalizationMethod Algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315" />\r\n'  # noqa: E501
    b'          <SignatureMethod Algorithm="http://www.w3.org/2000/09/xmldsig#rsa-sha1" />\r\n'
    b'          <Reference URI="">\r\n'
    b"            <DigestValue>AAAAAAAAAAAAAAAAAAAAAAAAAAA=</DigestValue>\r\n"
    b"          </Reference>\r\n"
    b"        </SignedInfo>\r\n"
    b"        <SignatureValue>AAAA</SignatureValue>\r\n"
    b"        <KeyInfo><X509Data><X509SubjectName>CN=user05</X509SubjectName></X509Data></KeyInfo>\r\n"  # noqa: E501
    b"      </Signature>\r\n"
)


def _zip(entry: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return buf.getvalue()


def _sdk_document(business: Business, **changes: object) -> EdocPackage:
    """The SDK examples' document: VPCP's 7816/VPCP-TTĐT with one ZIP-wrapped attachment
    whose entry name differs from the attachment's name."""
    inner = "<?xml version='1.0'?><note>Công văn 1896/QĐ-TTg (tệp thử)</note>".encode()
    fields: dict[str, object] = dict(
        sender=VPCP,
        recipients=(NGHE_AN, CAO_BANG, HAI_PHONG),
        code=Code("7816", "VPCP-TTĐT"),
        promulgation=PromulgationInfo("Hà Nội", date(2018, 9, 28)),
        document_type=DocumentType("1", "0", "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        document_id=DOCUMENT_ID,
        content="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer=SignerInfo("TL. BO TRUONG", "Cuc truong cuc ung dung cong nghe thong tin",
                          "Nguyen Thanh Phuc"),
        due_date=date(2018, 9, 28),
        to_places=("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP"),
        other_info=OtherInfo(0, "Liên thông văn bản quốc gia", "TVC", 2, 22, "false",
                             ("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",)),
        steering_type="1",
        business=business,
        trace_headers=(TraceHeader("000.00.00.G22", datetime(2018, 9, 28)),),
        attachments=(new_attachment(
            "1896_QD-TTg_m_294779.doc", _zip(NEW_ZIP_ENTRY, inner),
            content_type="application/zip", description="1896_QD-TTg_m_294779.doc",
            content_id="209"),),
    )
    fields.update(changes)
    return EdocPackage(**fields)  # type: ignore[arg-type]


def _with_placeholder_signature(data: bytes) -> bytes:
    end = b"    </edXML:edXMLHeader>"
    assert data.count(end) == 1
    return data.replace(end, PLACEHOLDER_SIGNATURE + end)


def _business_first(data: bytes) -> bytes:
    """Bussiness before the TraceHeaders, as production traffic has it."""
    start = data.index(b"        <edXML:Bussiness>")
    close = b"</edXML:Bussiness>\r\n"
    end = data.index(close) + len(close)
    block, rest = data[start:end], data[:start] + data[end:]
    anchor = b"<edXML:TraceHeaderList>\r\n"
    at = rest.index(anchor) + len(anchor)
    return rest[:at] + block + rest[at:]


def _edoc_new() -> bytes:
    pkg = _sdk_document(
        Business(BusinessDocType.NEW, "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",
                 "Văn bản điện tử mới", "0", OFFICE_STAFF),
        # a commune of Đà Nẵng (three-level code); the DocumentId names G22 while From is A80
        sender=Organization("000.00.00.A80",
                            "UBND xã Hòa Tiến - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
                            "UBND xã Hòa Tiến - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
                            email="vpcp@gov.vn"),
        recipients=(Organization("28.22.H17",
                                 "UBND xã Hòa Sơn - UBND huyện Hòa Vang - Thành phố Đà Nẵng"),),
        code=Code("74fass22", "VPCP-TTĐT"),
        promulgation=PromulgationInfo("Hà Nội", date(2019, 1, 16)),
    )
    return _with_placeholder_signature(build_package(pkg))


def _edoc_revocation() -> bytes:
    pkg = _sdk_document(
        Business(BusinessDocType.REVOKE, None, "Thu hồi văn bản điện tử", "0", OFFICE_STAFF),
        response_for=(ResponseFor("000.00.00.H14", "267/VPCP-TTĐT", date(2018, 9, 28),
                                  "000.00.04.G14,2012/08/06,267/VPCP-TTĐT"),),
    )
    return _with_placeholder_signature(build_package(pkg))


def _edoc_update() -> bytes:
    info = BusinessDocumentInfo("1", "1", (Receiver("000.00.00.H41", "0"),
                                           Receiver("000.00.00.H14", "1")))
    pkg = _sdk_document(
        Business(BusinessDocType.UPDATE, "000.00.00.G22,2014/02/30,7806/VPCP-TTĐT",
                 "Cập nhật văn bản điện tử", "0", OFFICE_STAFF, info),
    )
    return _with_placeholder_signature(build_package(pkg))


def _edoc_replacement() -> bytes:
    replaced = ReplacementInfo("000.00.00.G22,2014/01/30,7806/VPCP-TTĐT",
                               ("000.00.00.H41", "000.00.00.H14"))
    pkg = _sdk_document(
        Business(BusinessDocType.REPLACE, None, "Văn bản thay thế", "0", OFFICE_STAFF,
                 replacements=(replaced, replaced)),
    )
    return _with_placeholder_signature(build_package(pkg))


def _edoc_enterprise_alias() -> bytes:
    """What production traffic looks like (edxml.md §4, §6): an enterprise sender code, one
    ministry addressed by its new (G12) and its old QĐ 20 code, DocumentType 71, Bussiness
    before the TraceHeaders, a hop without OrganId, one stamped by a system code, no
    Signature, a raw PDF and a ZIP-wrapped .doc."""
    name = "CV gửi BTC vv đi công tác (28.11-9.12)"
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\ntrailer<<>>\n%%EOF\n"
    doc = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"lienthong test document\x00" * 8
    pkg = EdocPackage(
        sender=Organization("020100107370", "Tập đoàn Xăng dầu Việt Nam",
                            "Tập đoàn Xăng dầu Việt Nam", "Tập đoàn Xăng dầu Việt Nam",
                            "petrolimex@chinhphu.vn"),
        recipients=(Organization("G12", "Bộ Tài chính", "Bộ Tài chính"),
                    Organization("000.00.00.G12", "Bộ tài chính (Mã cũ) (qd20)",
                                 "TLTVBQG_CDMDD_QD20")),
        code=Code("2440", "PLX-HĐQT"),
        promulgation=PromulgationInfo("Hà Nội", date(2025, 10, 13)),
        document_type=DocumentType("71", "0", "Công văn"),
        subject="Vv xin phép cử cán bộ đi công tác nước ngoài",
        document_id="020100107370,2025/10/13,2440/PLX-HĐQT",
        content="Vv xin phép cử cán bộ đi công tác nước ngoài",
        signer=SignerInfo(None, "Chủ tịch HĐQT", "Phạm Văn Thanh"),
        other_info=OtherInfo(0, "Liên thông văn bản quốc gia", "TVC", 0, 0, "false"),
        steering_type="0",
        business=Business(BusinessDocType.NEW, None, "Văn bản điện tử mới", "0",
                          StaffInfo(None, "Nhân viên văn thư", "vanthu@example.vn")),
        trace_headers=(TraceHeader("020100107370", datetime(2025, 10, 13, 10, 25, 18)),
                       TraceHeader(None, datetime(2025, 10, 13, 10, 27, 35)),
                       TraceHeader("02.29.W00", datetime(2025, 10, 13, 10, 40, 4))),
        attachments=(
            new_attachment(f"1- {name}_Approved.pdf", pdf, content_type="application/pdf",
                           description="File dinh kem 1", content_id=REAL_PDF_CID),
            new_attachment(REAL_DOC_ENTRY, doc, zip_wrap=True,
                           description="File dinh kem 2", content_id=REAL_DOC_CID),
        ),
    )
    data = build_package(pkg)
    # the ZIP keeps the file's stored name; the attachment carries the human one
    data = data.replace(f"<edXML:AttachmentName>{REAL_DOC_ENTRY}<".encode(),
                        f"<edXML:AttachmentName>1- {name}.doc<".encode())
    data = data.replace(f"<AttachmentName>{REAL_DOC_ENTRY}<".encode(),
                        f"<AttachmentName>1- {name}.doc<".encode())
    return _business_first(data)


def _status(code: StatusCode, description: str) -> bytes:
    recall = code is StatusCode.RECALL_REQUESTED
    sender = VPCP if recall else NGHE_AN
    pkg = StatusPackage(
        sender=sender,
        response_for=ResponseFor("000.00.00.H41" if recall else "000.00.00.G22",
                                 "7816/VPCP-TTĐT", date(2015, 9, 30), DOCUMENT_ID),
        status_code=code,
        description=description,
        timestamp=datetime(2015, 9, 20, 11, 8, 36),
        staff_info=StaffInfo("Phong hanh chinh", "Nguyen thi ngoc tram", "ngoctram@nghean.vn",
                             "84912000001"),
    )
    return build_package(pkg)


_DESCRIPTIONS = {
    StatusCode.ARRIVED: "Văn thư: Đã đến - Phần mềm QLVB đã nhận nhưng văn thư chưa xử lý",
    StatusCode.REFUSED: "Văn thư: Từ chối không tiếp nhận văn bản điện tử",
    StatusCode.ACCEPTED: "Văn thư: Tiếp nhận văn bản điện tử, vào sổ văn bản đến",
    StatusCode.DONE: "Văn thư: Ban hành văn bản đến, hoàn thành xử lý",
    StatusCode.RECALL_REQUESTED: "Văn thư yêu cầu lấy lại văn bản điện tử kèm lý do",
}


@cache
def package(name: str) -> bytes:
    """The bytes of the own package ``name`` (one of :data:`ALL`): UTF-8, CRLF."""
    makers = {NEW: _edoc_new, REVOKE: _edoc_revocation, UPDATE: _edoc_update,
              REPLACE: _edoc_replacement, REAL: _edoc_enterprise_alias}
    if name in makers:
        return makers[name]()
    code = STATUSES[name]
    return _status(code, _DESCRIPTIONS[code])


# -- the variants producers write --------------------------------------------------------------

E = "{" + EDXML_NS + "}"


def lf(data: bytes) -> bytes:
    """LF line endings instead of CRLF."""
    return data.replace(b"\r\n", b"\n")


def without_cid(data: bytes) -> bytes:
    """ContentIds without the ``cid:`` prefix on both sides."""
    return data.replace(b">cid:", b">")


def default_namespace(data: bytes) -> bytes:
    """Every element in the default namespace, no ``edXML:`` prefix anywhere."""
    root = etree.fromstring(data)
    new_root = etree.Element(E + "edXML", nsmap={None: EDXML_NS})  # type: ignore[dict-item]
    new_root.text, new_root[:] = root.text, list(root)
    out = etree.tostring(new_root, xml_declaration=True, encoding="UTF-8")
    return out.replace(f' xmlns:edXML="{EDXML_NS}"'.encode(), b"").replace(b"edXML:", b"")


def dotnet_variant(data: bytes) -> bytes:
    """What the .NET SDK writes: xsi/xsd declarations on the root, attributes on
    TraceHeaderList, xlink attributes on Reference, Attachment children in another order,
    ContentIds without ``cid:``."""
    root = etree.fromstring(data)
    nsmap = {
        None: EDXML_NS,
        "xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsd": "http://www.w3.org/2001/XMLSchema",
        "xlink": "http://www.w3.org/1999/xlink",
    }
    new_root = etree.Element(E + "edXML", nsmap=nsmap)  # type: ignore[arg-type]
    for child in list(root):
        new_root.append(child)
    thl = new_root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}TraceHeaderList")
    if thl is not None:
        thl.set("Version", "1.0")
        thl.set("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation",
                f"{EDXML_NS} edXML.xsd")
    for ref in new_root.iter(E + "Reference"):
        ref.set("{http://www.w3.org/1999/xlink}type", "simple")
        cid = ref.findtext(E + "ContentId") or ""
        ref.set("{http://www.w3.org/1999/xlink}href", "cid:" + cid.removeprefix("cid:"))
    for att in new_root.iter(E + "Attachment"):
        children = list(att)
        for c in children:
            att.remove(c)
        for c in reversed(children):
            att.append(c)
    for el in new_root.iter(E + "ContentId"):
        el.text = (el.text or "").replace("cid:", "")
    return etree.tostring(new_root, xml_declaration=True, encoding="utf-8")
