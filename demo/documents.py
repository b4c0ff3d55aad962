"""The documents the demo sends, built with the project's own builder (schemas/builder.py).

All four business types (0 new, 1 revoke, 2 update, 3 replace), a province tree (Quảng Nam:
the province and two of its cities on one LGSP), the Decision 20 / QCVN 102 alias case (one
ministry addressed by ``G12`` and ``000.00.00.G12``: one delivery), a three-level commune
code, and attachments of several kinds and sizes (PDF, a ZIP-wrapped .doc, a .docx, a
spreadsheet, an image; from a few hundred bytes to about half a megabyte).
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

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
    TraceHeader,
    build_package,
    new_attachment,
)

__all__ = ["DemoDocument", "demo_documents", "document_id"]

_VIETNAM = timezone(timedelta(hours=7))
_STAFF = StaffInfo("Văn thư văn phòng", "Nguyễn Thị Ngọc Trâm", "vanthu@chinhphu.vn",
                   "84912000001")


@dataclass(frozen=True, slots=True)
class DemoDocument:
    label: str
    gateway: str  # the sending gateway
    body: bytes
    document_id: str


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, content in entries.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return buf.getvalue()


def _attachments(rng: random.Random) -> dict[str, Attachment]:
    pdf = b"%PDF-1.4\n% lienthong demo\n" + rng.randbytes(3000) + b"\n%%EOF\n"
    doc = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + rng.randbytes(40_000)
    docx = _zip({"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>",
                 "word/media/image1.bin": rng.randbytes(60_000)})
    xlsx = _zip({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>",
                 "xl/worksheets/sheet1.xml": rng.randbytes(450_000)})
    png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(12_000)
    return {
        "pdf": new_attachment("cong-van.pdf", pdf, content_type="application/pdf",
                              description="Công văn (bản PDF)"),
        "doc": new_attachment("du-thao.doc", doc, zip_wrap=True,
                              description="Dự thảo (bản Word, gói ZIP)"),
        "docx": new_attachment(
            "phu-luc.docx", docx, description="Phụ lục",
            content_type="application/vnd.openxmlformats-officedocument."
                         "wordprocessingml.document"),
        "xlsx": new_attachment(
            "so-lieu.xlsx", xlsx, description="Bảng số liệu",
            content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        "png": new_attachment("so-do.png", png, content_type="image/png",
                              description="Sơ đồ kết nối"),
    }


def document_id(sender: str, day: date, number: str, notation: str) -> str:
    return f"{sender},{day:%Y/%m/%d},{number}/{notation}"


def demo_documents(names: dict[str, str], *, seed: int = 102) -> list[DemoDocument]:
    """The demo's documents in sending order (a target is always sent before the document
    that updates, replaces or revokes it). ``names``: agency code → name."""
    rng = random.Random(seed)
    att = _attachments(rng)
    # dated yesterday (Vietnam time) so that no date is ever in the future
    day = (datetime.now(_VIETNAM) - timedelta(days=1)).date()
    now = datetime.now(_VIETNAM).replace(tzinfo=None, microsecond=0)

    def org(code: str) -> Organization:
        return Organization(code, names.get(code, code))

    def edoc(sender: str, to: tuple[str, ...], number: str, notation: str, subject: str,
             **more: object) -> tuple[EdocPackage, str]:
        doc_id = document_id(sender, day, number, notation)
        fields: dict[str, object] = dict(
            sender=org(sender), recipients=tuple(org(c) for c in to),
            code=Code(number, notation), promulgation=PromulgationInfo("Hà Nội", day),
            document_type=DocumentType("1", "0", "Công văn"), subject=subject,
            document_id=doc_id, content=subject,
            signer=SignerInfo("KT. BỘ TRƯỞNG CHỦ NHIỆM", "Phó Chủ nhiệm", "Nguyễn Văn An"),
            other_info=OtherInfo(0, "Liên thông văn bản quốc gia", "VT", 2, 3, "false"),
            steering_type="1",
            business=Business(BusinessDocType.NEW, reason="Văn bản điện tử mới", paper="0",
                              staff_info=_STAFF),
            trace_headers=(TraceHeader(sender, now),),
        )
        fields.update(more)
        return EdocPackage(**fields), doc_id  # type: ignore[arg-type]

    out: list[DemoDocument] = []

    def add(label: str, gateway: str, pkg: EdocPackage, doc_id: str) -> None:
        out.append(DemoDocument(label, gateway, build_package(pkg), doc_id))

    vpcp = "000.00.00.G22"
    a, a_id = edoc(vpcp, ("000.00.00.H41", "000.00.00.H14", "000.00.00.G17"), "1020",
                   "VPCP-KSTT", "V/v kết nối, liên thông phần mềm quản lý văn bản",
                   attachments=(att["pdf"], att["doc"]))
    add("A  VPCP → Nghệ An, Cao Bằng, Bộ Xây dựng (new, PDF + ZIP-wrapped .doc)", "vpcp",
        a, a_id)

    b, b_id = edoc(vpcp, ("000.00.00.H47", "000.00.01.H47", "000.00.02.H47", "000.00.00.G12"),
                   "1021", "VPCP-KSTT",
                   "V/v triển khai trục liên thông văn bản quốc gia lienthong",
                   attachments=(att["pdf"], att["docx"], att["xlsx"]))
    add("B  VPCP → Quảng Nam (LGSP: tỉnh, Tam Kỳ, Hội An) + Bộ Tài chính "
        "(.pdf, .docx, 0.5 MB .xlsx)", "vpcp", b, b_id)

    petrolimex = "020100107370"
    c, c_id = edoc(petrolimex, ("G12", "000.00.00.G12"), "2440", "PLX-HĐQT",
                   "Vv xin phép cử cán bộ đi công tác nước ngoài",
                   document_type=DocumentType("71", "0", "Công văn"),
                   signer=SignerInfo(position="Chủ tịch HĐQT", full_name="Trần Văn Bình"),
                   recipients=(Organization("G12", "Bộ Tài chính"),
                               Organization("000.00.00.G12", "Bộ tài chính (Mã cũ) (qd20)")),
                   attachments=(att["pdf"], att["doc"]))
    add("C  Petrolimex → Bộ Tài chính by its QCVN 102 and QĐ 20 codes (G12 + 000.00.00.G12: "
        "one delivery)", "petrolimex", c, c_id)

    d, d_id = edoc("000.00.00.A80", ("28.22.H17",), "15", "UBND",
                   "V/v kết nối phần mềm quản lý văn bản cấp xã",
                   attachments=(att["png"],))
    add("D  SDK demo software → xã Hòa Sơn (three-level code 28.22.H17, an image)",
        "sdk-demo", d, d_id)

    u, u_id = edoc(vpcp, ("000.00.00.H41", "000.00.00.H14"), "1020b", "VPCP-KSTT",
                   "V/v kết nối, liên thông phần mềm quản lý văn bản (cập nhật)",
                   business=Business(
                       BusinessDocType.UPDATE, a_id, "Cập nhật văn bản điện tử", "0", _STAFF,
                       BusinessDocumentInfo("1", "1", (Receiver("000.00.00.H41", "0"),
                                                       Receiver("000.00.00.H14", "1")))),
                   attachments=(att["pdf"],))
    add("U  VPCP updates A for Nghệ An and Cao Bằng (type 2)", "vpcp", u, u_id)

    old, old_id = edoc(vpcp, ("000.00.00.H41",), "1023", "VPCP-KSTT",
                       "V/v báo cáo tình hình kết nối (bản cũ)", attachments=(att["pdf"],))
    add("R1 VPCP → Nghệ An (to be replaced)", "vpcp", old, old_id)
    new, new_id = edoc(vpcp, ("000.00.00.H41",), "1024", "VPCP-KSTT",
                       "V/v báo cáo tình hình kết nối (thay thế)",
                       business=Business(BusinessDocType.REPLACE, None, "Văn bản thay thế",
                                         "0", _STAFF, replacements=(
                                             ReplacementInfo(old_id, ("000.00.00.H41",)),)),
                       attachments=(att["pdf"],))
    add("R2 VPCP replaces R1 (type 3)", "vpcp", new, new_id)

    gone, gone_id = edoc(vpcp, ("000.00.00.H14",), "1025", "VPCP-KSTT",
                         "V/v lịch họp trực tuyến (gửi nhầm)", attachments=(att["pdf"],))
    add("V1 VPCP → Cao Bằng (to be revoked)", "vpcp", gone, gone_id)
    revoke, revoke_id = edoc(
        vpcp, ("000.00.00.H14",), "1026", "VPCP-KSTT", "V/v thu hồi văn bản 1025/VPCP-KSTT",
        response_for=(ResponseFor(vpcp, "1025/VPCP-KSTT", day, gone_id),),
        business=Business(BusinessDocType.REVOKE, None, "Thu hồi văn bản điện tử", "0",
                          _STAFF))
    add("V2 VPCP revokes V1 (type 1)", "vpcp", revoke, revoke_id)
    return out
