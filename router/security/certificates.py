"""The certificate registry: which certificates each gateway signs its packages with.

A gateway may have several certificates valid at once, so it can roll to a new key
without downtime: ``lienthong certs add`` the new one, switch the signer, then
``lienthong certs revoke`` the old one. Each certificate has a validity window (the
certificate's own, or a narrower one given at registration) and may be revoked; the router
(``router.security.signature_gate``) refuses signatures made with an unknown, expired or revoked
certificate. Certificates are named by the SHA-256 of their DER encoding (lowercase hex).

Each gateway also has a signature policy: ``required``, ``verify-if-present`` (the
default) or ``off``. Every change is written to the audit log.

No chain validation is done: the registry pins each gateway's certificates (self-signed,
VNPT-CA or Ban Cơ yếu issued alike), which is what decides trust on the axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, get_args

import asyncpg
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from router.security import audit
from schemas.reasons import LienthongError, Reason
from schemas.signature import certificate_fingerprint

__all__ = [
    "DEFAULT_POLICY",
    "CertificateRecord",
    "SignaturePolicy",
    "add_certificate",
    "certificate_expiry",
    "expiring_certificates",
    "list_certificates",
    "load_certificate",
    "resolve_fingerprint",
    "revoke_certificate",
    "set_signature_policy",
]

log = structlog.get_logger("lienthong.certificates")

SignaturePolicy = Literal["required", "verify-if-present", "off"]
POLICIES: Final[tuple[str, ...]] = get_args(SignaturePolicy)
DEFAULT_POLICY: Final[SignaturePolicy] = "verify-if-present"
_EC_CURVES = (ec.SECP256R1, ec.SECP384R1)


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    fingerprint: str
    gateway_id: str
    subject: str
    issuer: str
    serial: str
    key_type: str
    not_before: datetime
    not_after: datetime
    added_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None

    def state(self, now: datetime) -> str:
        """``valid``, ``revoked``, ``expired`` or ``not-yet-valid`` at ``now``."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if now < self.not_before:
            return "not-yet-valid"
        if now > self.not_after:
            return "expired"
        return "valid"

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def as_dict(self, now: datetime | None = None) -> dict[str, object]:
        now = now or datetime.now(UTC)
        return {
            "fingerprint": self.fingerprint,
            "gateway": self.gateway_id,
            "subject": self.subject,
            "issuer": self.issuer,
            "serial": self.serial,
            "key_type": self.key_type,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "added_at": self.added_at.isoformat() if self.added_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "revoked_reason": self.revoked_reason,
            "state": self.state(now),
            "days_left": round(self.days_left(now), 2),
        }


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate from PEM or DER bytes. Raises ValueError."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def key_type(cert: x509.Certificate) -> str:
    """``RSA-2048``, ``EC-secp256r1``; raises ValueError for keys lienthong refuses."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"RSA key of {key.key_size} bits: at least 2048 are required")
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _EC_CURVES):
            raise ValueError(  # noqa: TRY004 - a bad certificate is a value error
                f"EC curve {key.curve.name}: use P-256 or P-384"
            )
        return f"EC-{key.curve.name}"
    raise ValueError(f"unsupported key type {type(key).__name__}: use RSA or ECDSA")


def _record(r: asyncpg.Record) -> CertificateRecord:
    return CertificateRecord(
        fingerprint=r["fingerprint"],
        gateway_id=r["gateway_id"],
        subject=r["subject"],
        issuer=r["issuer"],
        serial=r["serial"],
        key_type=r["key_type"],
        not_before=r["not_before"],
        not_after=r["not_after"],
        added_at=r["added_at"],
        revoked_at=r["revoked_at"],
        revoked_reason=r["revoked_reason"],
    )


async def add_certificate(
    conn: asyncpg.Connection,
    gateway_id: str,
    data: bytes,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    actor: str = "operator",
) -> CertificateRecord:
    """Register a certificate (PEM or DER) for ``gateway_id``. Re-adding is harmless.

    ``not_before``/``not_after`` narrow the certificate's own validity window (they can
    never widen it). Raises ValueError for an unreadable certificate or a weak key,
    LienthongError(GATEWAY_UNKNOWN) for an unknown gateway and
    LienthongError(CERTIFICATE_UNKNOWN) when the certificate belongs to another gateway.
    """
    cert = load_certificate(data)
    ktype = key_type(cert)
    start = max(cert.not_valid_before_utc, not_before or cert.not_valid_before_utc)
    end = min(cert.not_valid_after_utc, not_after or cert.not_valid_after_utc)
    if start >= end:
        raise ValueError(f"empty validity window {start.isoformat()} .. {end.isoformat()}")
    fp = certificate_fingerprint(cert)
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM gateways WHERE id = $1", gateway_id) is None:
            raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
        prior = await conn.fetchrow(
            "SELECT gateway_id, not_before, not_after FROM certificates WHERE fingerprint = $1",
            fp,
        )
        owner = prior["gateway_id"] if prior is not None else None
        if owner is not None and owner != gateway_id:
            raise LienthongError(
                Reason.CERTIFICATE_UNKNOWN,
                f"certificate {fp[:16]}… is already registered for gateway {owner}",
            )
        row = await conn.fetchrow(
            """INSERT INTO certificates (fingerprint, gateway_id, subject, issuer, serial,
                                         key_type, not_before, not_after, der)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (fingerprint) DO UPDATE
                   SET not_before = EXCLUDED.not_before, not_after = EXCLUDED.not_after
               RETURNING *""",
            fp,
            gateway_id,
            cert.subject.rfc4514_string(),
            cert.issuer.rfc4514_string(),
            format(cert.serial_number, "x"),
            ktype,
            start,
            end,
            cert.public_bytes(serialization.Encoding.DER),
        )
        assert row is not None
        await audit.append(
            conn,
            actor,
            "certificate.added" if prior is None else "certificate.updated",
            gateway_id,
            {"fingerprint": fp, "subject": row["subject"], "issuer": row["issuer"],
             "before": None if prior is None else {
                 "not_before": prior["not_before"].isoformat(),
                 "not_after": prior["not_after"].isoformat()},
             "after": {"not_before": start.isoformat(), "not_after": end.isoformat()}},
        )
    return _record(row)


async def list_certificates(
    conn: asyncpg.Connection, gateway_id: str | None = None
) -> list[CertificateRecord]:
    rows = await conn.fetch(
        """SELECT * FROM certificates WHERE $1::text IS NULL OR gateway_id = $1
           ORDER BY gateway_id, not_after""",
        gateway_id,
    )
    return [_record(r) for r in rows]


async def resolve_fingerprint(conn: asyncpg.Connection, prefix: str) -> str:
    """The full fingerprint for a prefix of at least 8 hex digits (``sha256:`` allowed)."""
    p = prefix.lower().removeprefix("sha256:").replace(":", "")
    if len(p) < 8:
        raise LienthongError(Reason.CERTIFICATE_UNKNOWN, "give at least 8 hex digits")
    rows = await conn.fetch(
        "SELECT fingerprint FROM certificates WHERE fingerprint LIKE $1 || '%' LIMIT 2", p
    )
    if not rows:
        raise LienthongError(Reason.CERTIFICATE_UNKNOWN, prefix)
    if len(rows) > 1:
        raise LienthongError(Reason.CERTIFICATE_UNKNOWN, f"{prefix} names several certificates")
    fingerprint: str = rows[0]["fingerprint"]
    return fingerprint


async def revoke_certificate(
    conn: asyncpg.Connection,
    fingerprint: str,
    *,
    reason: str = "",
    at: datetime | None = None,
    actor: str = "operator",
) -> CertificateRecord:
    """Revoke a certificate from ``at`` (now by default). Revoking again keeps the first
    revocation time. Raises LienthongError(CERTIFICATE_UNKNOWN)."""
    async with conn.transaction():
        fp = await resolve_fingerprint(conn, fingerprint)
        prior = await conn.fetchrow(
            "SELECT revoked_at, revoked_reason FROM certificates WHERE fingerprint = $1 "
            "FOR UPDATE",
            fp,
        )
        assert prior is not None
        row = await conn.fetchrow(
            """UPDATE certificates
               SET revoked_at = COALESCE(revoked_at, $2),
                   revoked_reason = COALESCE(revoked_reason, $3)
               WHERE fingerprint = $1 RETURNING *""",
            fp,
            at or datetime.now(UTC),
            reason or None,
        )
        assert row is not None
        await audit.append(
            conn,
            actor,
            "certificate.revoked",
            row["gateway_id"],
            {"fingerprint": fp, "reason": reason,
             "before": {"revoked_at": prior["revoked_at"].isoformat()
                        if prior["revoked_at"] else None,
                        "revoked_reason": prior["revoked_reason"]},
             "after": {"revoked_at": row["revoked_at"].isoformat(),
                       "revoked_reason": row["revoked_reason"]}},
        )
    return _record(row)


async def set_signature_policy(
    conn: asyncpg.Connection, gateway_id: str, policy: str, *, actor: str = "operator"
) -> None:
    """Set a gateway's signature policy: required, verify-if-present or off."""
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: use one of {', '.join(POLICIES)}")
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT signature_policy FROM gateways WHERE id = $1 FOR UPDATE", gateway_id
        )
        if old is None:
            raise LienthongError(Reason.GATEWAY_UNKNOWN, gateway_id)
        await conn.execute(
            "UPDATE gateways SET signature_policy = $2, updated_at = now() WHERE id = $1",
            gateway_id,
            policy,
        )
        await audit.append(
            conn, actor, "gateway.signature_policy", gateway_id,
            {"before": {"signature_policy": old}, "after": {"signature_policy": policy}},
        )


async def certificate_expiry(conn: asyncpg.Connection) -> list[tuple[str, str, float]]:
    """(gateway, fingerprint, days until not_after) for every certificate not revoked.

    Negative days: already expired. For the metrics (a gauge per certificate)."""
    rows = await conn.fetch(
        """SELECT gateway_id, fingerprint,
                  extract(epoch FROM (not_after - now())) / 86400.0 AS days
           FROM certificates WHERE revoked_at IS NULL OR revoked_at > now()
           ORDER BY not_after"""
    )
    return [(r["gateway_id"], r["fingerprint"], float(r["days"])) for r in rows]


async def expiring_certificates(
    conn: asyncpg.Connection, within_days: float = 30.0
) -> list[tuple[str, str, float]]:
    """Certificates that expire within ``within_days`` (or have expired), logged as
    warnings: ``certificate_expiring`` with gateway, fingerprint and days left."""
    out = [e for e in await certificate_expiry(conn) if e[2] <= within_days]
    for gateway, fp, days in out:
        log.warning(
            "certificate_expiring" if days >= 0 else "certificate_expired",
            gateway=gateway,
            fingerprint=fp,
            days_left=round(days, 2),
        )
    return out
