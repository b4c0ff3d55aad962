"""``lienthong package``: inspect and build edXML packages offline (no broker, no database).

Exit codes: 0 success, 2 the package (or spec) is refused, 1 an unexpected error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from router.cli.exit_codes import EXIT_REJECTED
from schemas.builder import build_package
from schemas.parser import ParsedPackage, parse_package
from schemas.reasons import PackageRejected, ValidationWarning
from schemas.spec import SpecError, package_from_spec
from schemas.summary import summarize

__all__ = ["package"]

EXIT_REFUSED = EXIT_REJECTED  # router.cli.exit_codes


@click.group()
def package() -> None:
    """Inspect and build edXML packages (QCVN 102:2016)."""


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2)


@package.command()
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def inspect(file: Any, as_json: bool) -> None:
    """Check FILE (an edXML package; '-' reads stdin) and summarise it.

    Exit 0 and a summary when the package is valid; exit 65 and the reason when it is refused
    (with --json as {"error": {reason, code, message_vi, message_en, detail}, "warnings": [...]}
    on stdout, otherwise in words on stderr).
    """
    data: bytes = file.read()
    try:
        parsed = parse_package(data)
    except PackageRejected as exc:
        _refused(exc, as_json)
    summary = summarize(parsed)
    if as_json:
        click.echo(_dump(summary))
    else:
        click.echo(_human(parsed, summary))


def _refused(exc: PackageRejected, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(_dump({"error": exc.as_dict(), "warnings": [w.as_dict() for w in exc.warnings]}))
    else:
        r = exc.reason
        lines = [
            f"REFUSED {r.name} ({r.code})",
            f"  {r.message_vi}",
            f"  {r.message_en}",
        ]
        if exc.detail:
            lines.append(f"  detail: {exc.detail}")
        lines.extend(_warning_lines(exc.warnings))
        click.echo("\n".join(lines), err=True)
    sys.exit(EXIT_REFUSED)


def _warning_lines(warnings: tuple[ValidationWarning, ...]) -> list[str]:
    return [
        f"  warning {w.code.name}: {w.code.message_en}" + (f" ({w.detail})" if w.detail else "")
        for w in warnings
    ]


def _human(parsed: ParsedPackage, s: dict[str, Any]) -> str:
    lines = []
    if s["kind"] == "edoc":
        lines.append(f"edoc  {s['code'] or '-'}  ({s['business_type_name']})")
        lines.append(f"  from:        {s['from']}  {s['from_name'] or ''}".rstrip())
        for code in s["to"]:
            lines.append(f"  to:          {code}")
        lines.append(f"  document id: {s['document_id'] or '-'}")
        lines.append(f"  subject:     {s['subject'] or '-'}")
        lines.append(f"  promulgated: {s['promulgation_date'] or '-'}")
        if s["due_date"]:
            lines.append(f"  due:         {s['due_date']}")
        for target in s["target_document_ids"]:
            lines.append(f"  target:      {target}")
        for a in s["attachments"]:
            line = f"  attachment:  {a['name'] or a['content_id']}  {a['content_type'] or '?'}"
            line += f"  {a['size']} bytes  sha256 {a['sha256'][:16]}…"
            if a["zip_wrapped"] and a.get("file_name"):
                line += f"  (zip: {a['file_name']}, {a['file_size']} bytes)"
            lines.append(line)
    else:
        lines.append(f"status {s['status_code']}  from {s['from']}  {s['from_name'] or ''}")
        lines.append(f"  to:          {', '.join(s['to']) or '-'}")
        lines.append(f"  document id: {s['document_id'] or '-'}")
        if s["description"]:
            lines.append(f"  description: {s['description']}")
        if s["timestamp"]:
            lines.append(f"  timestamp:   {s['timestamp']}")
    lines.append(f"  signature:   {'XML-DSig' if s['has_signature'] else 'none'}")
    lines.extend(_warning_lines(parsed.warnings))
    return "\n".join(lines)


_BUILD_HELP = """Build an edXML package from SPEC (a JSON file) into FILE.

\b
Document spec (attachment paths are relative to the spec file):
  {"kind": "edoc",
   "from": {"organ_id": "000.00.00.G22", "organ_name": "Văn phòng Chính phủ"},
   "to": [{"organ_id": "000.00.00.H41", "organ_name": "UBND Tỉnh Nghệ An"}],
   "code": {"number": "7816", "notation": "VPCP-TTĐT"},
   "promulgation_date": "2025/10/13", "place": "Hà Nội",
   "document_type": {"type": "1", "type_name": "Công văn"},
   "subject": "V/v ...",
   "business": {"type": "new"},
   "attachments": [{"path": "cong-van.pdf"},
                   {"path": "phu-luc.doc", "zip": true},
                   {"name": "a.txt", "data_base64": "aGVsbG8="}]}

\b
Status spec:
  {"kind": "status",
   "from": {"organ_id": "000.00.00.H41", "organ_name": "UBND Tỉnh Nghệ An"},
   "response_for": {"organ_id": "000.00.00.G22",
                    "document_id": "000.00.00.G22,2025/10/13,7816/VPCP-TTĐT"},
   "status_code": "03", "description": "Đã tiếp nhận"}

Every key: README.md, "Package specs". The result is parsed back and refused (exit 65, nothing
written) if it breaks a lienthong rule, unless --no-check is given.
"""


@package.command(help=_BUILD_HELP)
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Where to write the package ('-' for stdout).",
)
@click.option("--no-check", is_flag=True, help="Write the package even if it breaks a rule.")
def build(spec: Path, output: Path, no_check: bool) -> None:
    try:
        raw = json.loads(spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        _spec_error(f"{spec}: {exc}")
    try:
        pkg = package_from_spec(raw, spec.parent, read_file=Path.read_bytes)
        data = build_package(pkg)
    except (SpecError, ValueError) as exc:
        _spec_error(str(exc))
    if not no_check:
        try:
            parsed = parse_package(data)
        except PackageRejected as exc:
            _refused(exc, as_json=False)
        for line in _warning_lines(parsed.warnings):
            click.echo(line.strip(), err=True)
    if str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(data)
        click.echo(f"wrote {output} ({len(data)} bytes)", err=True)


def _spec_error(message: str) -> NoReturn:
    click.echo(f"invalid spec: {message}", err=True)
    sys.exit(EXIT_REFUSED)


def _attach_signing() -> None:
    from router.cli.package_sign import sign_cmd, verify_cmd

    package.add_command(sign_cmd, "sign")
    package.add_command(verify_cmd, "verify")


_attach_signing()
