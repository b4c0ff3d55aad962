"""What the router asks about each package's XML signature.

::

    gate = SignatureGate(pool)
    ...
    await gate.refresh_if_stale()                       # once per batch: cheap when fresh
    warnings = gate.check(gateway_id, body, parsed.package.has_signature, now)
    # raises PackageRejected(SIGNATURE_REQUIRED | SIGNATURE_INVALID | SIGNATURE_WRAPPING |
    #                        CERTIFICATE_UNKNOWN | CERTIFICATE_EXPIRED | CERTIFICATE_REVOKED)
    # returns (CERTIFICATE_EXPIRING_SOON,) when the signing certificate expires within
    # ``warn_days`` (LIENTHONG_CERT_WARN_DAYS): the sender reads it in its receipt

Policies and certificates of every gateway are loaded in one query and cached for
``refresh_seconds``: a certificate added, revoked or a policy changed takes effect on every
router within that time (``invalidate()`` forces the next refresh). ``check`` is pure CPU.

The decision, per gateway policy:

=================  ============================  =========================================
policy             package without signature     package with a signature
=================  ============================  =========================================
off                accepted                      accepted, not looked at
verify-if-present  accepted                      verified (any failure refuses it)
required           SIGNATURE_REQUIRED            verified
=================  ============================  =========================================

"Without signature" means no element ``Signature`` in the XML-DSig namespace anywhere: the
SDK samples' placeholder in the edXML namespace counts as none (the parser warns
PLACEHOLDER_SIGNATURE). A package that mentions the XML-DSig namespace is inspected even
when the parser saw no signature in the header, so a Signature hidden deeper in the
document is refused as SIGNATURE_WRAPPING rather than ignored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from router.security.certificates import DEFAULT_POLICY
from schemas.reasons import PackageRejected, Reason, ValidationWarning, WarningCode
from schemas.signature import DSIG_NS, SignatureInfo, find_signature, verify_signature

__all__ = ["SignatureGate"]

log = structlog.get_logger("lienthong.signature")

_MARKER = DSIG_NS.encode()
_NO_WARNINGS: tuple[ValidationWarning, ...] = ()


@dataclass(frozen=True, slots=True)
class _Trusted:
    fingerprint: str
    public_key: CertificatePublicKeyTypes
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None


@dataclass(slots=True)
class _Gateway:
    policy: str
    certs: dict[str, _Trusted] = field(default_factory=dict)


_QUERY = """
SELECT g.id, g.signature_policy, c.fingerprint, c.der, c.not_before, c.not_after,
       c.revoked_at
FROM gateways g LEFT JOIN certificates c ON c.gateway_id = g.id
"""


class SignatureGate:
    """Signature policy and certificate checks for the router's batches."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        refresh_seconds: float = 30.0,
        warn_days: float = 30.0,
    ) -> None:
        self._pool = pool
        self._refresh_seconds = refresh_seconds
        self._warn_days = warn_days
        self._gateways: dict[str, _Gateway] = {}
        self._owner: dict[str, str] = {}  # fingerprint -> gateway
        self._keys: dict[str, CertificatePublicKeyTypes] = {}  # parsed once per process
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._warned: set[str] = set()
        self._absent: set[str] = set()  # ids asked for but not found at the last load

    def invalidate(self) -> None:
        """Reload on the next :meth:`refresh_if_stale`."""
        self._loaded_at = float("-inf")

    async def refresh_if_stale(
        self,
        gateway_ids: Iterable[str] = (),
        *,
        conn: asyncpg.Connection | PoolConnectionProxy[Any] | None = None,
    ) -> None:
        """Reload policies and certificates when older than ``refresh_seconds``, or when
        one of ``gateway_ids`` is not known yet (a gateway added since the last load).
        ``conn``: a connection the caller already holds (else one is taken from the pool).
        """
        wanted = [g for g in gateway_ids if g not in self._gateways]
        if self._fresh() and all(g in self._absent for g in wanted):
            return
        async with self._lock:
            wanted = [g for g in wanted if g not in self._gateways]
            if self._fresh() and all(g in self._absent for g in wanted):
                return  # another task has just reloaded
            if conn is not None:
                rows = await conn.fetch(_QUERY)
            else:
                async with self._pool.acquire() as own:
                    rows = await own.fetch(_QUERY)
            self._load(rows)
            self._loaded_at = time.monotonic()
            # an id still unknown is not looked up again before the next periodic reload
            self._absent = {g for g in wanted if g not in self._gateways}

    def _fresh(self) -> bool:
        return time.monotonic() - self._loaded_at < self._refresh_seconds

    def _load(self, rows: Iterable[asyncpg.Record]) -> None:
        gateways: dict[str, _Gateway] = {}
        owner: dict[str, str] = {}
        for r in rows:
            gw = gateways.get(r["id"])
            if gw is None:
                gw = gateways[r["id"]] = _Gateway(r["signature_policy"])
            fp = r["fingerprint"]
            if fp is None:
                continue
            key = self._keys.get(fp)
            if key is None:
                key = self._keys[fp] = x509.load_der_x509_certificate(
                    bytes(r["der"])
                ).public_key()
            gw.certs[fp] = _Trusted(fp, key, r["not_before"], r["not_after"], r["revoked_at"])
            owner[fp] = r["id"]
        self._gateways = gateways
        self._owner = owner

    def policy(self, gateway_id: str) -> str:
        gw = self._gateways.get(gateway_id)
        return gw.policy if gw is not None else DEFAULT_POLICY

    def check(
        self, gateway_id: str, body: bytes, has_signature: bool, now: datetime
    ) -> tuple[ValidationWarning, ...]:
        """Apply ``gateway_id``'s policy to one package. Raises PackageRejected."""
        gw = self._gateways.get(gateway_id)
        policy = gw.policy if gw is not None else DEFAULT_POLICY
        if policy == "off":
            return _NO_WARNINGS
        info = find_signature(body) if has_signature or _MARKER in body else None
        if info is None:
            if policy == "required":
                raise PackageRejected(
                    Reason.SIGNATURE_REQUIRED, f"gateway {gateway_id} must sign its packages"
                )
            return _NO_WARNINGS
        certs = gw.certs if gw is not None else {}
        fp = info.fingerprint
        if fp is None:
            return self._expiry_warnings(
                gateway_id, self._verify_any(gateway_id, info, certs, now), now
            )
        trusted = certs.get(fp)
        if trusted is None:
            other = self._owner.get(fp)
            raise PackageRejected(
                Reason.CERTIFICATE_UNKNOWN,
                f"certificate sha256:{fp} is not registered for gateway {gateway_id}"
                + (f" (it is {other}'s)" if other else ""),
            )
        self._check_window(trusted, now)
        verify_signature(info, trusted.public_key)
        return self._expiry_warnings(gateway_id, trusted, now)

    @staticmethod
    def _check_window(t: _Trusted, now: datetime) -> None:
        if t.revoked_at is not None and t.revoked_at <= now:
            raise PackageRejected(
                Reason.CERTIFICATE_REVOKED,
                f"certificate sha256:{t.fingerprint} revoked at {t.revoked_at.isoformat()}",
            )
        if now < t.not_before or now > t.not_after:
            raise PackageRejected(
                Reason.CERTIFICATE_EXPIRED,
                f"certificate sha256:{t.fingerprint} is valid {t.not_before.isoformat()}"
                f" .. {t.not_after.isoformat()}",
            )

    def _verify_any(
        self, gateway_id: str, info: SignatureInfo, certs: dict[str, _Trusted], now: datetime
    ) -> _Trusted:
        """KeyInfo names no certificate: try the gateway's currently valid ones; returns
        the one that verifies."""
        valid = [
            t
            for t in certs.values()
            if (t.revoked_at is None or t.revoked_at > now) and t.not_before <= now <= t.not_after
        ]
        if not valid:
            raise PackageRejected(
                Reason.CERTIFICATE_UNKNOWN,
                f"no certificate in KeyInfo and gateway {gateway_id} has no valid certificate",
            )
        for t in valid:
            try:
                verify_signature(info, t.public_key)
            except PackageRejected:
                continue
            return t
        raise PackageRejected(
            Reason.SIGNATURE_INVALID,
            f"no certificate in KeyInfo and none of {gateway_id}'s certificates verifies it",
        )

    def _expiry_warnings(
        self, gateway_id: str, t: _Trusted, now: datetime
    ) -> tuple[ValidationWarning, ...]:
        """CERTIFICATE_EXPIRING_SOON for every package signed with a certificate that
        expires within ``warn_days`` (logged once per certificate and process)."""
        days = (t.not_after - now).total_seconds() / 86400
        if days > self._warn_days:
            return _NO_WARNINGS
        if t.fingerprint not in self._warned:
            self._warned.add(t.fingerprint)
            log.warning(
                "certificate_expiring",
                gateway=gateway_id,
                fingerprint=t.fingerprint,
                days_left=round(days, 2),
            )
        return (
            ValidationWarning(
                WarningCode.CERTIFICATE_EXPIRING_SOON,
                f"certificate sha256:{t.fingerprint} expires {t.not_after.isoformat()}"
                f" ({max(days, 0):.0f} days left; gateway {gateway_id})",
            ),
        )
