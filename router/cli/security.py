"""``lienthong certs``, ``lienthong receipt``, ``lienthong audit`` and
``lienthong gateways rotate-credentials``: gateway identity and the hub's own evidence.

Exit codes: 0 success, 2 refused (invalid receipt, broken audit chain, unknown gateway or
certificate, bad input), 1 an unexpected error.
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from router.broker_admin import BrokerAdmin
from router.cli._services import connect_db, fail, run_async
from router.directory.credentials import rotate_credentials
from router.outbox.signing import HUB_KEY_ENV, ReceiptSigner, generate_hub_key
from router.security import certificates
from router.security.audit import verify_chain
from router.settings import Settings
from schemas.reasons import LienthongError
from schemas.receipt import ReceiptSignatureError, verify_receipt

__all__ = ["audit", "certs", "receipt", "rotate_credentials_cmd"]

EXIT_REFUSED = 2


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _refuse(exc: LienthongError) -> None:
    fail(f"{exc.reason.name}: {exc.reason.message_en} / {exc.reason.message_vi}"
         + (f" ({exc.detail})" if exc.detail else ""), EXIT_REFUSED)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    d = datetime.fromisoformat(value)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


# -- certs ------------------------------------------------------------------------------------


@click.group()
def certs() -> None:
    """Gateways' signing certificates (chứng thư số) and signature policies."""


@certs.command("add")
@click.argument("gateway_id")
@click.argument("cert_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--not-before", help="Start of validity (ISO 8601) if later than the cert's.")
@click.option("--not-after", help="End of validity (ISO 8601) if earlier than the cert's.")
def add_cert(gateway_id: str, cert_file: Path, not_before: str | None,
             not_after: str | None) -> None:
    """Register CERT_FILE (PEM or DER) for GATEWAY_ID. Several may be valid at once."""
    data = cert_file.read_bytes()

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            rec = await certificates.add_certificate(
                conn, gateway_id, data, not_before=_when(not_before),
                not_after=_when(not_after), actor=_actor(),
            )
        except LienthongError as exc:
            _refuse(exc)
            return
        except ValueError as exc:
            fail(f"{cert_file}: {exc}", EXIT_REFUSED)
            return
        finally:
            await conn.close()
        click.echo(f"certificate {rec.fingerprint}")
        click.echo(f"  gateway:  {rec.gateway_id}")
        click.echo(f"  subject:  {rec.subject}")
        click.echo(f"  key:      {rec.key_type}")
        click.echo(f"  valid:    {rec.not_before.isoformat()} .. {rec.not_after.isoformat()}")

    run_async(go)


@certs.command("list")
@click.argument("gateway_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def list_certs(gateway_id: str | None, as_json: bool) -> None:
    """Certificates, with their state now: valid, expired, not-yet-valid, revoked."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            rows = await certificates.list_certificates(conn, gateway_id)
        finally:
            await conn.close()
        now = datetime.now(UTC)
        if as_json:
            click.echo(json.dumps([r.as_dict(now) for r in rows], ensure_ascii=False, indent=2))
            return
        table = Table("gateway", "fingerprint", "subject", "key", "not after", "state")
        for r in rows:
            table.add_row(r.gateway_id, r.fingerprint[:16] + "…", r.subject, r.key_type,
                          r.not_after.strftime("%Y-%m-%d"), r.state(now))
        Console().print(table)

    run_async(go)


@certs.command("revoke")
@click.argument("fingerprint")
@click.option("--reason", default="", help="Why (key compromise, superseded, ...).")
def revoke_cert(fingerprint: str, reason: str) -> None:
    """Revoke a certificate (FINGERPRINT: the sha256, or its first 8+ hex digits)."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            rec = await certificates.revoke_certificate(
                conn, fingerprint, reason=reason, actor=_actor()
            )
        except LienthongError as exc:
            _refuse(exc)
            return
        finally:
            await conn.close()
        assert rec.revoked_at is not None
        click.echo(f"certificate {rec.fingerprint} of {rec.gateway_id} revoked at "
                   f"{rec.revoked_at.isoformat()}")

    run_async(go)


@certs.command("policy")
@click.argument("gateway_id")
@click.argument("policy", type=click.Choice(list(certificates.POLICIES)))
def set_policy(gateway_id: str, policy: str) -> None:
    """Set GATEWAY_ID's signature policy: required, verify-if-present (default) or off."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            await certificates.set_signature_policy(conn, gateway_id, policy, actor=_actor())
        except LienthongError as exc:
            _refuse(exc)
            return
        finally:
            await conn.close()
        click.echo(f"gateway {gateway_id}: signature policy {policy} (routers apply it "
                   "within 30 s)")

    run_async(go)


@certs.command("expiry")
@click.option("--days", default=30.0, show_default=True, help="Warn this many days ahead.")
@click.option("--json", "as_json", is_flag=True)
def expiry(days: float, as_json: bool) -> None:
    """Certificates expiring within --days (or expired). Exit 2 when there are any."""

    async def go(settings: Settings) -> list[tuple[str, str, float]]:
        conn = await connect_db(settings)
        try:
            return await certificates.expiring_certificates(conn, days)
        finally:
            await conn.close()

    found = run_async(go)
    if as_json:
        click.echo(json.dumps([{"gateway": g, "fingerprint": f, "days_left": round(d, 2)}
                               for g, f, d in found], indent=2))
    else:
        for g, f, d in found:
            click.echo(f"{g}  {f[:16]}…  {'expired' if d < 0 else f'{d:.1f} days left'}")
    if found:
        sys.exit(EXIT_REFUSED)


# -- receipts ---------------------------------------------------------------------------------


@click.group()
def receipt() -> None:
    """The hub's receipt-signing key (Ed25519) and offline receipt checks."""


def _key_path(path: Path | None) -> Path:
    if path is not None:
        return path
    env = Settings.from_env().hub_key
    if not env:
        fail(f"give --key or set {HUB_KEY_ENV}", EXIT_REFUSED)
    return Path(str(env))


@receipt.command("keygen")
@click.option("--key", "path", type=click.Path(dir_okay=False, path_type=Path),
              help=f"Where to write the private key (default: ${HUB_KEY_ENV}).")
def keygen(path: Path | None) -> None:
    """Create the hub's receipt-signing key (once; an existing file is never overwritten).
    Copy it to every router host and point LIENTHONG_HUB_KEY at it."""
    target = _key_path(path)
    try:
        signer = generate_hub_key(target)
    except FileExistsError:
        fail(f"{target} already exists: not overwritten", EXIT_REFUSED)
        return
    click.echo(f"hub key {signer.key_id} written to {target} (mode 0600)", err=True)
    click.echo(signer.public_key_pem().decode(), nl=False)


@receipt.command("public-key")
@click.option("--key", "path", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The private key file (default: ${HUB_KEY_ENV}).")
def public_key(path: Path | None) -> None:
    """Print the hub's public key (PEM): gateways pin it to verify receipts."""
    target = _key_path(path)
    try:
        signer = ReceiptSigner.from_file(target)
    except (OSError, ValueError, TypeError) as exc:
        fail(f"{target}: {exc}", EXIT_REFUSED)
        return
    click.echo(signer.public_key_pem().decode(), nl=False)


@receipt.command("verify")
@click.argument("file", type=click.File("rb"))
@click.option("--public-key", "public_key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The hub's public key (PEM), from `lienthong receipt public-key`.")
def verify_cmd(file: Any, public_key_file: Path) -> None:
    """Check that FILE (a receipt's JSON; '-' for stdin) was signed by the hub and not
    altered. Exit 0 valid, 2 otherwise."""
    data = file.read()
    try:
        obj = verify_receipt(data, public_key_file.read_bytes())
    except (ReceiptSignatureError, ValueError) as exc:
        click.echo(json.dumps({"valid": False, "error": str(exc)}, ensure_ascii=False))
        sys.exit(EXIT_REFUSED)
    click.echo(json.dumps({"valid": True, "receipt_id": obj.get("receipt_id"),
                           "type": obj.get("type"), "kid": obj["signature"].get("kid")},
                          ensure_ascii=False))


# -- audit ------------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The tamper-evident audit log (nhật ký kiểm toán)."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.option("--anchor", metavar="ID:HASH",
              help="A head printed earlier by `audit head`: the chain must still pass there.")
def verify_audit(as_json: bool, anchor: str | None) -> None:
    """Recompute the hash chain. Exit 0 intact; exit 2 naming each edited, deleted or
    reordered row."""
    anchor_v: tuple[int, bytes] | None = None
    if anchor:
        try:
            aid, ahash = anchor.split(":", 1)
            anchor_v = (int(aid), bytes.fromhex(ahash))
        except ValueError:
            fail("--anchor is ID:HEXHASH", EXIT_REFUSED)

    async def go(settings: Settings) -> Any:
        conn = await connect_db(settings)
        try:
            return await verify_chain(conn, anchor=anchor_v)
        finally:
            await conn.close()

    report = run_async(go)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        state = "intact" if report.ok else "BROKEN"
        click.echo(f"audit log {state}: {report.rows} rows, head {report.head_id} "
                   f"{(report.head_hash or '')[:16]}")
        for p in report.problems:
            click.echo(f"  {p.kind:<9} row {p.id}: {p.detail}")
        if report.truncated:
            click.echo("  ... more problems not listed")
    if not report.ok:
        sys.exit(EXIT_REFUSED)


@audit.command("head")
def head() -> None:
    """Print the chain's head as ID:HASH, to record outside the database."""

    async def go(settings: Settings) -> Any:
        conn = await connect_db(settings)
        try:
            return await conn.fetchrow("SELECT last_id, hash FROM audit_head")
        finally:
            await conn.close()

    row = run_async(go)
    click.echo(f"{row['last_id']}:{bytes(row['hash']).hex()}")


# -- gateways rotate-credentials --------------------------------------------------------------


@click.command("rotate-credentials")
@click.argument("gateway_id")
@click.option("--password", envvar="LIENTHONG_GATEWAY_PASSWORD", default=None,
              help="Set this password instead of generating one.")
def rotate_credentials_cmd(gateway_id: str, password: str | None) -> None:
    """Give a gateway a new AMQP password; its open connections are closed. Prints the
    password once."""

    async def go(settings: Settings) -> None:
        conn = await connect_db(settings)
        try:
            async with BrokerAdmin(settings.management_url) as admin:
                creds = await rotate_credentials(
                    conn, admin, settings.vhost, gateway_id, password=password,
                    actor=_actor(),
                )
        except LienthongError as exc:
            _refuse(exc)
            return
        finally:
            await conn.close()
        click.echo(f"gateway {gateway_id}: credentials rotated, open connections closed")
        click.echo(f"  AMQP user:     {creds.user}")
        click.echo(f"  AMQP password: {creds.password}   (shown once: store it now)")

    run_async(go)
