"""The benchmark's workload: a national-axis-shaped directory and the packages it sends.

* 95 gateways, each serving one top-level agency (the Central Party Office, 31 ministries
  and government bodies, 63 provinces), like the 95 top-level nodes of the real axis.
* Documents of 5–10 KB built from the shared SDK samples (``../shared/edxml-samples``,
  overridable with ``LIENTHONG_SAMPLES``): a sample's header, trace and attachments with
  new sender, recipients, number and DocumentId, plus an appendix attachment that brings
  the package to its drawn size. Without the samples the packages are built from scratch
  with :func:`schemas.build_package` to the same sizes.
* Fan-out 1–5 recipients (uniform, mean 3), each on a different gateway.
* Recipients answer every copy with one status package, 01, 03 or 06 in turn.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from router.settings import Settings
from schemas import (
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    PackageRejected,
    PromulgationInfo,
    ResponseFor,
    StaffInfo,
    StatusCode,
    StatusPackage,
    build_package,
    new_attachment,
    parse_package,
)

__all__ = [
    "ANSWER_CODES",
    "BenchDocument",
    "BenchGateway",
    "Workload",
    "bench_directory",
    "samples_dir",
]

MIN_BYTES = 5 * 1024
MAX_BYTES = 10 * 1024
MAX_FANOUT = 5
ANSWER_CODES = (StatusCode.ARRIVED, StatusCode.ACCEPTED, StatusCode.DONE)
_VIETNAM = timezone(timedelta(hours=7))
_EDOC_TEMPLATES = ("edoc_new.derived.edxml", "real_vdxp_received_2025-10-13.derived.edxml")
_STATUS_TEMPLATE = "status_inbox_01.edxml"


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


def samples_dir() -> Path:
    """``LIENTHONG_SAMPLES``, else ``<repo>/../shared/edxml-samples``."""
    return Settings.from_env().samples_dir


def _load_edoc_templates(directory: Path) -> list[EdocPackage]:
    out: list[EdocPackage] = []
    for name in _EDOC_TEMPLATES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            pkg = parse_package(path.read_bytes()).package
        except PackageRejected:
            continue
        if isinstance(pkg, EdocPackage):
            out.append(pkg)
    return out


def _load_status_template(directory: Path) -> StatusPackage | None:
    path = directory / _STATUS_TEMPLATE
    if not path.is_file():
        return None
    try:
        pkg = parse_package(path.read_bytes()).package
    except PackageRejected:
        return None
    return pkg if isinstance(pkg, StatusPackage) else None


def _scratch_template() -> EdocPackage:
    return EdocPackage(
        sender=Organization(organ_id="000.00.00.G22", organ_name="Văn phòng Chính phủ"),
        recipients=(Organization(organ_id="000.00.00.H41", organ_name="UBND tỉnh Nghệ An"),),
        code=Code("1", "BENCH"),
        promulgation=PromulgationInfo("Hà Nội", date(2026, 1, 1)),
        document_type=DocumentType("1", "0", "Công văn"),
        subject="V/v đo hiệu năng trục liên thông",
        attachments=(
            new_attachment("cong-van.pdf", b"%PDF-1.4\n% bench\n", content_type="application/pdf"),
        ),
    )


class Workload:
    """Builds the packages of one benchmark run (deterministic for a given seed)."""

    def __init__(
        self,
        gateways: Sequence[BenchGateway],
        *,
        seed: int = 102,
        samples: Path | None = None,
    ) -> None:
        if len(gateways) < 2:
            raise ValueError("the workload needs at least two gateways")
        self.gateways = list(gateways)
        self.by_agency = {g.agency: g for g in self.gateways}
        self._rng = random.Random(seed)
        directory = samples if samples is not None else samples_dir()
        self.templates = _load_edoc_templates(directory)
        self.from_samples = bool(self.templates)
        if not self.templates:
            self.templates = [_scratch_template()]
        self._status_template = _load_status_template(directory)
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
        staff = self._status_template.staff_info if self._status_template else None
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
            staff_info=staff or StaffInfo(department="Văn thư", staff="Bench"),
        )
        return build_package(pkg)
