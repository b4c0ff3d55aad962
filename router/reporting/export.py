"""The national statistics as files a ministry can publish: CSV (UTF-8 with a BOM, so a
spreadsheet opens Vietnamese names right) and XLSX (openpyxl). One row per unit, in rank
order, the headers in Vietnamese and English; times in hours, shares in percent."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font

from router.reporting.national import VIETNAM, UnitStats

__all__ = ["HEADERS", "csv_text", "table", "write_csv", "write_xlsx", "xlsx_bytes"]

# the columns, in the order of :func:`table`
HEADERS: tuple[str, ...] = (
    "Hạng / Rank",
    "Mã / Code",
    "Đơn vị / Unit",
    "Loại / Kind",
    "Đã gửi / Sent",
    "Gửi kèm giấy / Sent with paper",
    "Điện tử hoàn toàn (%) / Fully electronic (%)",
    "Đã nhận / Received",
    "Hoàn thành 06 / Done (06)",
    "Tỷ lệ 06 (%) / Done share (%)",
    "Quá hạn / Late",
    "Từ chối 02 / Refused (02)",
    "Thu hồi / Revoked",
    "Đến 01 trung vị (giờ) / To 01 median (h)",
    "Đến 01 p90 (giờ) / To 01 p90 (h)",
    "Tiếp nhận 03 trung vị (giờ) / To 03 median (h)",
    "Tiếp nhận 03 p90 (giờ) / To 03 p90 (h)",
    "Hoàn thành 06 trung vị (giờ) / To 06 median (h)",
    "Hoàn thành 06 p90 (giờ) / To 06 p90 (h)",
)


def _pct(v: float | None) -> float | None:
    return None if v is None else round(v * 100, 2)


def _hours(v: float | None) -> float | None:
    return None if v is None else round(v / 3600, 3)


def table(rows: Sequence[UnitStats]) -> list[list[object]]:
    """The rows as cells, in :data:`HEADERS` order."""
    return [
        [r.rank, r.unit, r.name, r.kind, r.sent, r.sent_paper, _pct(r.electronic_share),
         r.received, r.done, _pct(r.done_share), r.late, r.refused, r.revoked,
         _hours(r.to_01_median_s), _hours(r.to_01_p90_s), _hours(r.to_03_median_s),
         _hours(r.to_03_p90_s), _hours(r.to_06_median_s), _hours(r.to_06_p90_s)]
        for r in rows
    ]


def csv_text(rows: Sequence[UnitStats]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(HEADERS)
    for cells in table(rows):
        w.writerow(["" if c is None else c for c in cells])
    return out.getvalue()


def write_csv(path: Path, rows: Sequence[UnitStats]) -> None:
    path.write_text(csv_text(rows), encoding="utf-8-sig", newline="")


def xlsx_bytes(rows: Sequence[UnitStats], *, start: datetime, end: datetime) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Xep hang - Ranking"
    t0, t1 = start.astimezone(VIETNAM), end.astimezone(VIETNAM)
    ws.append([f"Thống kê trao đổi văn bản điện tử / Electronic document exchange: "
               f"{t0:%Y-%m-%d %H:%M} → {t1:%Y-%m-%d %H:%M} (giờ Việt Nam / Vietnam time)"])
    ws.append(list(HEADERS))
    for cell in ws[2]:
        cell.font = Font(bold=True)
    for cells in table(rows):
        ws.append(cells)
    ws.freeze_panes = "D3"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def write_xlsx(path: Path, rows: Sequence[UnitStats], *, start: datetime, end: datetime) -> None:
    path.write_bytes(xlsx_bytes(rows, start=start, end=end))
