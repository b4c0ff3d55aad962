"""Packages for tests, built with the project's own builder."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime

from schemas import (
    Business,
    BusinessDocType,
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    PromulgationInfo,
    ReplacementInfo,
    ResponseFor,
    StatusCode,
    StatusPackage,
    build_package,
    new_attachment,
)


def edoc(
    sender: str,
    recipients: Sequence[str],
    *,
    number: str | None = None,
    subject: str = "V/v kết nối, liên thông phần mềm quản lý văn bản",
    business: BusinessDocType = BusinessDocType.NEW,
    target: str | None = None,
    attachment: bytes | None = b"%PDF-1.4\n% test\n",
    due: date | None = None,
    extra_text: str = "",
    paper: str | None = None,
) -> tuple[EdocPackage, bytes]:
    number = number or uuid.uuid4().hex[:8]
    today = date(2026, 11, 20)
    doc_id = f"{sender},{today:%Y/%m/%d},{number}/VPCP-TTĐT"
    response_for: tuple[ResponseFor, ...] = ()
    biz = Business(doc_type=business, paper=paper)
    if business is BusinessDocType.REVOKE and target:
        response_for = (ResponseFor(organ_id=sender, document_id=target),)
        biz = Business(doc_type=business, reason="Thu hồi")
    elif business is BusinessDocType.UPDATE and target:
        biz = Business(doc_type=business, document_id=target, reason="Cập nhật")
    elif business is BusinessDocType.REPLACE and target:
        biz = Business(
            doc_type=business,
            reason="Thay thế",
            replacements=(ReplacementInfo(document_id=target, organ_ids=tuple(recipients)),),
        )
    pkg = EdocPackage(
        sender=Organization(organ_id=sender, organ_name=f"Cơ quan {sender}"),
        recipients=tuple(Organization(organ_id=r, organ_name=f"Cơ quan {r}") for r in recipients),
        code=Code(number, "VPCP-TTĐT"),
        promulgation=PromulgationInfo("Hà Nội", today),
        document_type=DocumentType("1", "0", "Công văn"),
        subject=subject + extra_text,
        document_id=doc_id,
        due_date=due,
        business=biz,
        response_for=response_for,
        attachments=(new_attachment("cong-van.pdf", attachment, content_type="application/pdf"),)
        if attachment
        else (),
    )
    return pkg, build_package(pkg)


def status(
    sender: str,
    about: EdocPackage,
    code: StatusCode | str,
    *,
    to: str | None = None,
    description: str | None = "Đã đến",
) -> tuple[StatusPackage, bytes]:
    pkg = StatusPackage(
        sender=Organization(organ_id=sender, organ_name=f"Cơ quan {sender}"),
        response_for=ResponseFor(
            organ_id=to or about.sender.organ_id,
            code=str(about.code),
            promulgation_date=about.promulgation.promulgation_date,
            document_id=about.document_id,
        ),
        status_code=StatusCode(code),
        description=description,
        timestamp=datetime(2026, 11, 20, 9, 30, 0),
    )
    return pkg, build_package(pkg)
