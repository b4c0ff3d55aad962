"""``lienthong package sign`` and ``lienthong package verify``: XML-DSig offline.

Attached to the ``package`` group by ``router.cli.package``::

    package.add_command(sign_cmd, "sign")
    package.add_command(verify_cmd, "verify")

Exit codes: 0 success (signed / valid), 2 refused with ``{"error": {...}}`` (the reason
code as JSON) on stdout, 1 an unexpected error.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from router.cli.exit_codes import EXIT_REJECTED
from schemas.reasons import PackageRejected, Reason
from schemas.signature import certificate_fingerprint, sign_package, verify_package

__all__ = ["sign_cmd", "verify_cmd"]

EXIT_REFUSED = EXIT_REJECTED  # router.cli.exit_codes


def _refused(exc: PackageRejected) -> NoReturn:
    click.echo(json.dumps({"error": exc.as_dict()}, ensure_ascii=False))
    sys.exit(EXIT_REFUSED)


@click.command("sign")
@click.argument("file", type=click.File("rb"))
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The private key (PEM, RSA >= 2048 or EC P-256).")
@click.option("--cert", "cert_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The certificate (PEM) the hub has registered for this gateway.")
@click.option("--password-env", metavar="VAR",
              help="Environment variable holding the key's passphrase, if encrypted.")
@click.option("-o", "--output", required=True,
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Where to write the signed package ('-' for stdout).")
def sign_cmd(file: Any, key_file: Path, cert_file: Path, password_env: str | None,
             output: Path) -> None:
    """Sign FILE (an edXML package) with an enveloped XML-DSig signature in edXMLHeader
    (exclusive c14n, RSA-SHA256 or ECDSA-SHA256, the certificate in KeyInfo)."""
    from router.settings import named_secret

    password = None
    if password_env:
        password = (named_secret(password_env) or "").encode() or None
    try:
        signed = sign_package(file.read(), key_file.read_bytes(), cert_file.read_bytes(),
                              password=password)
    except (ValueError, TypeError) as exc:
        click.echo(f"lienthong: cannot sign: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    if str(output) == "-":
        sys.stdout.buffer.write(signed)
        sys.stdout.buffer.flush()
    else:
        output.write_bytes(signed)
        click.echo(f"wrote {output} ({len(signed)} bytes)", err=True)


@click.command("verify")
@click.argument("file", type=click.File("rb"))
@click.option("--cert", "cert_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust only this certificate (PEM or DER; repeatable). Without it the "
                   "certificate in KeyInfo is used: integrity only, not identity.")
def verify_cmd(file: Any, cert_files: tuple[Path, ...]) -> None:
    """Verify FILE's XML signature. Exit 0 and a JSON summary when valid; exit 65 and
    {"error": {reason, code, message_vi, message_en, detail}} otherwise."""
    from router.security.certificates import load_certificate

    try:
        trusted = [load_certificate(p.read_bytes()) for p in cert_files]
    except ValueError as exc:
        click.echo(f"lienthong: cannot read certificate: {exc}", err=True)
        sys.exit(EXIT_REFUSED)
    try:
        result = verify_package(file.read(), trusted)
    except PackageRejected as exc:
        _refused(exc)
    if result is None:
        _refused(PackageRejected(Reason.SIGNATURE_REQUIRED, "the package carries no "
                                 "XML-DSig signature"))
    info, cert = result
    now = datetime.now(UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        _refused(PackageRejected(
            Reason.CERTIFICATE_EXPIRED,
            f"valid {cert.not_valid_before_utc.isoformat()} .. "
            f"{cert.not_valid_after_utc.isoformat()}",
        ))
    click.echo(json.dumps({
        "valid": True,
        "fingerprint": certificate_fingerprint(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "signature_method": info.signature_method,
        "trusted": bool(trusted),
    }, ensure_ascii=False, indent=2))
