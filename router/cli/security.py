"""``lienthong certs``, ``lienthong receipt``, ``lienthong audit`` and
``lienthong gateways rotate-credentials``: gateway identity and the hub's own evidence.

Exit codes: 0 success, 2 refused (invalid receipt, broken audit chain, unknown gateway or
certificate, bad input), 1 an unexpected error.
"""

from __future__ import annotations

import getpass
import json
import os
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
from router.security.audit import AuditEntry, list_entries, verify_chain
from router.settings import Settings
from schemas.audit_anchor import check_extends, verify_anchor
from schemas.reasons import LienthongError
from schemas.receipt import ReceiptSignatureError, verify_receipt

__all__ = ["audit", "certs", "cli_actor", "receipt", "rotate_credentials_cmd"]

EXIT_REFUSED = 2


def cli_actor() -> str:
    """Who runs a command, for the audit log: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


_actor = cli_actor


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
    env = os.environ.get(HUB_KEY_ENV)
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
@click.option("--extends", "earlier_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="For an audit anchor: an earlier anchor FILE must extend (give the "
                   "anchors in between too, if any). Repeatable.")
def verify_cmd(file: Any, public_key_file: Path, earlier_files: tuple[Path, ...]) -> None:
    """Check that FILE (a receipt's or an audit anchor's JSON; '-' for stdin) was signed by
    the hub and not altered; for an anchor with --extends, that it follows the earlier
    one. Exit 0 valid, 2 otherwise."""
    data = file.read()
    try:
        is_anchor = json.loads(data).get("type") == "audit.anchor"
    except (ValueError, AttributeError):
        is_anchor = False
    if is_anchor or earlier_files:
        _verify_anchor_cmd(data, public_key_file.read_bytes(), earlier_files)
        return
    try:
        obj = verify_receipt(data, public_key_file.read_bytes())
    except (ReceiptSignatureError, ValueError) as exc:
        click.echo(json.dumps({"valid": False, "error": str(exc)}, ensure_ascii=False))
        sys.exit(EXIT_REFUSED)
    click.echo(json.dumps({"valid": True, "receipt_id": obj.get("receipt_id"),
                           "type": obj.get("type"), "kid": obj["signature"].get("kid")},
                          ensure_ascii=False))


def _verify_anchor_cmd(data: bytes, key: bytes, earlier_files: tuple[Path, ...]) -> None:
    try:
        later = verify_anchor(data, key)
        earlier = sorted((verify_anchor(p.read_bytes(), key) for p in earlier_files),
                         key=lambda a: a.number)
        if earlier:
            check_extends(earlier[0], later, earlier[1:])
    except ValueError as exc:  # ReceiptSignatureError, AnchorMismatch, malformed
        click.echo(json.dumps({"valid": False, "error": str(exc)}, ensure_ascii=False))
        sys.exit(EXIT_REFUSED)
    click.echo(json.dumps({"valid": True, "type": "audit.anchor", "number": later.number,
                           "seq": later.seq, "hash": later.hash,
                           "extends": [a.number for a in earlier]}, ensure_ascii=False))


# -- audit ------------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The tamper-evident audit log (nhật ký kiểm toán)."""


def _hub_public_key(public_key_file: Path | None) -> bytes:
    """The hub's public key: --public-key, else derived from LIENTHONG_HUB_KEY."""
    if public_key_file is not None:
        return public_key_file.read_bytes()
    env = os.environ.get(HUB_KEY_ENV)
    if not env:
        fail(f"a signed anchor needs --public-key (or {HUB_KEY_ENV})", EXIT_REFUSED)
    try:
        return ReceiptSigner.from_file(str(env)).public_key_pem()
    except (OSError, ValueError, TypeError) as exc:
        fail(f"{env}: {exc}", EXIT_REFUSED)
        raise


def _read_anchor(value: str, public_key_file: Path | None) -> tuple[int, bytes]:
    """``--anchor``: ID:HEXHASH (from `audit head`) or a file holding a signed anchor (a
    gateway's copy), whose signature must verify."""
    if Path(value).is_file():
        data = Path(value).read_bytes()
        try:
            return verify_anchor(data, _hub_public_key(public_key_file)).head
        except ValueError as exc:
            fail(f"{value}: {exc}", EXIT_REFUSED)
            raise
    try:
        aid, ahash = value.split(":", 1)
        return int(aid), bytes.fromhex(ahash)
    except ValueError:
        fail(f"--anchor {value!r}: give a signed anchor file or ID:HEXHASH", EXIT_REFUSED)
        raise


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.option("--anchor", "anchor_values", metavar="FILE|ID:HASH", multiple=True,
              help="A signed anchor a gateway received (file), or a head printed earlier by "
                   "`audit head`: the chain must still pass there. Repeatable.")
@click.option("--public-key", "public_key_file",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"The hub's public key for signed anchors (default: from ${HUB_KEY_ENV}).")
def verify_audit(as_json: bool, anchor_values: tuple[str, ...],
                 public_key_file: Path | None) -> None:
    """Recompute the hash chain. Exit 0 intact; exit 2 naming each edited, deleted or
    reordered row, or each anchor the chain no longer passes through."""
    anchors_v = [_read_anchor(v, public_key_file) for v in anchor_values]

    async def go(settings: Settings) -> Any:
        conn = await connect_db(settings)
        try:
            report = await verify_chain(conn, anchor=anchors_v[0] if anchors_v else None)
            for extra in anchors_v[1:]:
                more = await verify_chain(conn, anchor=extra, max_problems=0)
                report.problems.extend(p for p in more.problems if p.kind == "anchor")
            return report
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


@audit.command("list")
@click.option("--since", help="Rows at or after this time (ISO 8601), e.g. 2026-11-21.")
@click.option("--actor", help="cli:alice, api:bob, router, ...; a trailing * is a prefix.")
@click.option("--action", help="gateway.added, agencies.imported, ...; a trailing . or * is a "
                               "prefix (gateway. = every gateway change).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_audit(since: str | None, actor: str | None, action: str | None, limit: int,
               as_json: bool) -> None:
    """Audit rows, newest first: who changed what, with the values before and after."""
    try:
        since_v = _when(since)
    except ValueError:
        fail(f"--since {since!r}: use ISO 8601", EXIT_REFUSED)
        return

    async def go(settings: Settings) -> list[AuditEntry]:
        conn = await connect_db(settings)
        try:
            return await list_entries(conn, since=since_v, actor=actor, action=action,
                                      limit=limit)
        finally:
            await conn.close()

    rows = run_async(go)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r.as_dict(), ensure_ascii=False))
        return
    table = Table("id", "at", "actor", "action", "subject", "details")
    for r in rows:
        details = json.dumps(r.details, ensure_ascii=False)
        table.add_row(str(r.id), r.at.strftime("%Y-%m-%d %H:%M:%S"), r.actor, r.action,
                      r.subject, details if len(details) <= 160 else details[:157] + "...")
    Console().print(table)


@audit.command("anchor")
def publish_anchor_cmd() -> None:
    """Sign the chain's head with the hub key now and send it to every gateway (routers do
    it every LIENTHONG_AUDIT_ANCHOR_SECONDS). Prints the anchor."""
    from router import amqp
    from router.security.anchors import publish_anchor
    from router.topology import RECEIPTS

    signer = ReceiptSigner.from_file(_key_path(None))

    async def go(settings: Settings) -> Any:
        import asyncpg

        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
        try:
            connection = await amqp.connect_once(settings.amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(RECEIPTS, ensure=False)
                return await publish_anchor(pool, exchange, signer, interval=0, force=True)
        finally:
            await pool.close()

    anchor = run_async(go)
    if anchor is None:
        fail("nothing to anchor (empty audit log) or another process is publishing", 1)
    click.echo(anchor.to_json().decode())


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
