"""The benchmark's workload: a national-axis-shaped directory and the packages it sends.

* 95 gateways, each serving one top-level agency (the Central Party Office, 31 ministries
  and government bodies, 63 provinces), like the 95 top-level nodes of the real axis.
* Documents of 5–10 KB built with :func:`schemas.build_package` from two templates shaped
  like the axis' traffic (the SDK examples' full header, a production-shaped package with a
  raw PDF and a ZIP-wrapped .doc), with new sender, recipients, number and DocumentId, plus
  an appendix attachment that brings the package to its drawn size.
* Fan-out 1–5 recipients (uniform, mean 3), each on a different gateway.
* Recipients answer every copy with one status package, 01, 03 or 06 in turn.
"""

from __future__ import annotations

import dataclasses
import io
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from schemas import (
    Business,
    BusinessDocType,
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    OtherInfo,
    PromulgationInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusPackage,
    TraceHeader,
    build_package,
    new_attachment,
)

__all__ = [
    "ANSWER_CODES",
    "BenchDocument",
    "BenchGateway",
    "Workload",
    "bench_directory",
]

MIN_BYTES = 5 * 1024
MAX_BYTES = 10 * 1024
MAX_FANOUT = 5
ANSWER_CODES = (StatusCode.ARRIVED, StatusCode.ACCEPTED, StatusCode.DONE)
_VIETNAM = timezone(timedelta(hours=7))


@dataclass(frozen=True, slots=True)
class BenchGateway:
    """A simulated gateway serving exactly one agency."""

    id: str
    agency: str
    name: str


@dataclass(frozen=True, slots=True)
class BenchDocument:
    """One document the load generator submits, and what its answers need."""

    sender: BenchGateway
    recipients: tuple[BenchGateway, ...]
    document_id: str
    code: str
    promulgation_date: date
    body: bytes


def bench_directory(n: int = 95) -> list[BenchGateway]:
    """The first ``n`` (at most 95) top-level nodes: A01, G01–G31, H01–H63."""
    nodes = [("A01", "Văn phòng Trung ương Đảng")]
    nodes += [(f"G{i:02d}", f"Bộ, ngành {i:02d}") for i in range(1, 32)]
    nodes += [(f"H{i:02d}", f"UBND tỉnh {i:02d}") for i in range(1, 64)]
    if not 2 <= n <= len(nodes):
        raise ValueError(f"the bench directory has 2 to {len(nodes)} gateways, not {n}")
    return [
        BenchGateway(id=f"gw-{suffix.lower()}", agency=f"000.00.00.{suffix}", name=name)
        for suffix, name in nodes[:n]
    ]


def _zip(entry: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo(entry, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return buf.getvalue()


_STAFF = StaffInfo("Văn thư văn phòng", "Nguyễn Thị Ngọc Trâm", "vanthu@gov.vn", "84912000001")


def _templates() -> list[EdocPackage]:
    """Two documents shaped like the axis' traffic, built with :func:`build_package`'s model:
    the SDK examples' full header (signer, other info, a trace hop, business staff) with one
    ZIP-wrapped attachment, and a production-shaped one with a raw PDF and a ZIP-wrapped .doc.
    Sender, recipients, number and dates are replaced per document."""
    placeholder = Organization(organ_id="000.00.00.G22", organ_name="Văn phòng Chính phủ")
    sdk = EdocPackage(
        sender=placeholder,
        recipients=(placeholder,),
        code=Code("1", "BENCH"),
        promulgation=PromulgationInfo("Hà Nội", date(2026, 1, 1)),
        document_type=DocumentType("1", "0", "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        content="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer=SignerInfo("TL. BỘ TRƯỞNG", "Cục trưởng Cục Chuyển đổi số", "Nguyễn Văn A"),
        to_places=("Các bộ và cơ quan ngang bộ", "Ủy ban nhân dân các tỉnh, thành phố"),
        other_info=OtherInfo(0, "Liên thông văn bản quốc gia", "TVC", 2, 22, "false",
                             ("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",)),
        steering_type="1",
        business=Business(BusinessDocType.NEW, reason="Văn bản điện tử mới", paper="0",
                          staff_info=_STAFF),
        trace_headers=(TraceHeader("000.00.00.G22", datetime(2026, 1, 1, 8, 0, 0)),),
        attachments=(new_attachment(
            "1896_QD-TTg.doc", _zip("1896_QD-TTg.edxml", b"<note>cong van</note>" * 8),
            content_type="application/zip", description="1896_QD-TTg.doc"),),
    )
    production = dataclasses.replace(
        sdk,
        document_type=DocumentType("71", "0", "Công văn"),
        subject="Vv xin phép cử cán bộ đi công tác nước ngoài",
        content=None,
        signer=SignerInfo(position="Chủ tịch HĐQT", full_name="Phạm Văn B"),
        to_places=(),
        steering_type="0",
        attachments=(
            new_attachment("CV_Approved.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n%%EOF\n" * 4,
                           content_type="application/pdf", description="File dinh kem 1"),
            new_attachment("CV.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" * 24,
                           zip_wrap=True, description="File dinh kem 2"),
        ),
    )
    return [sdk, production]


def _status_staff() -> StaffInfo:
    return StaffInfo("Phòng hành chính", "Văn thư", "vanthu@gov.vn", "84912000001")


class Workload:
    """Builds the packages of one benchmark run (deterministic for a given seed)."""

    def __init__(
        self,
        gateways: Sequence[BenchGateway],
        *,
        seed: int = 102,
    ) -> None:
        if len(gateways) < 2:
            raise ValueError("the workload needs at least two gateways")
        self.gateways = list(gateways)
        self.by_agency = {g.agency: g for g in self.gateways}
        self._rng = random.Random(seed)
        self.templates = _templates()
        # documents are dated yesterday (Vietnam time) so none is ever "in the future"
        self.today = (datetime.now(_VIETNAM) - timedelta(days=1)).date()
        self._answers = 0

    # documents -------------------------------------------------------------------------
    def document(self, tag: str, number: int) -> BenchDocument:
        """A new document; ``tag`` makes DocumentIds unique per run."""
        rng = self._rng
        sender = rng.choice(self.gateways)
        others = [g for g in self.gateways if g is not sender]
        fanout = min(rng.randint(1, MAX_FANOUT), len(others))
        recipients = tuple(rng.sample(others, fanout))
        template = rng.choice(self.templates)
        target = rng.randint(MIN_BYTES, MAX_BYTES)
        code = Code(f"{tag}{number}", "BENCH")
        document_id = f"{sender.agency},{self.today:%Y/%m/%d},{code}"
        pkg = dataclasses.replace(
            template,
            sender=Organization(organ_id=sender.agency, organ_name=sender.name),
            recipients=tuple(Organization(organ_id=r.agency, organ_name=r.name)
                             for r in recipients),
            code=code,
            document_id=document_id,
            promulgation=PromulgationInfo(template.promulgation.place, self.today),
            due_date=None,
            response_for=(),
        )
        body = build_package(pkg)
        missing = target - len(body)
        if missing > 0:
            # an appendix of incompressible bytes; base64 adds a third, the XML ~520 bytes
            pad = b"%PDF-1.4\n" + rng.randbytes(max(16, (missing - 520) * 3 // 4))
            appendix = new_attachment(f"phu-luc-{number}.pdf", pad,
                                      content_type="application/pdf")
            body = build_package(
                dataclasses.replace(pkg, attachments=(*pkg.attachments, appendix))
            )
        return BenchDocument(
            sender=sender,
            recipients=recipients,
            document_id=document_id,
            code=str(code),
            promulgation_date=self.today,
            body=body,
        )

    # answers ---------------------------------------------------------------------------
    def next_answer_code(self) -> StatusCode:
        code = ANSWER_CODES[self._answers % len(ANSWER_CODES)]
        self._answers += 1
        return code

    def status(self, doc: BenchDocument, recipient: BenchGateway, code: StatusCode) -> bytes:
        """The status package ``recipient`` sends back about ``doc``."""
        pkg = StatusPackage(
            sender=Organization(organ_id=recipient.agency, organ_name=recipient.name),
            response_for=ResponseFor(
                organ_id=doc.sender.agency,
                code=doc.code,
                promulgation_date=doc.promulgation_date,
                document_id=doc.document_id,
            ),
            status_code=code,
            description=f"Trạng thái {code.value} (đo hiệu năng)",
            timestamp=datetime.now(_VIETNAM).replace(tzinfo=None, microsecond=0),
            staff_info=_status_staff(),
        )
        return build_package(pkg)
