"""SignatureGate tells the sender, in every receipt, that its certificate expires soon."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import asyncpg
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from router.security.signature_gate import SignatureGate
from schemas.reasons import PackageRejected, Reason, WarningCode
from schemas.signature import certificate_fingerprint, sign_package
from tests.factory import edoc
from tests.pki import Identity, identity


def _gate(*ids: Identity, warn_days: float = 30.0) -> SignatureGate:
    gate = SignatureGate(cast(asyncpg.Pool, None), warn_days=warn_days)
    rows: list[dict[str, Any]] = [
        {"id": "vpcp", "signature_policy": "required",
         "fingerprint": certificate_fingerprint(i.cert),
         "der": i.cert.public_bytes(Encoding.DER), "not_before": i.cert.not_valid_before_utc,
         "not_after": i.cert.not_valid_after_utc, "revoked_at": None}
        for i in ids
    ]
    gate._load(rows)  # type: ignore[arg-type]
    return gate


def _signed(who: Identity) -> bytes:
    return sign_package(edoc("000.00.00.G22", ["000.00.00.H41"])[1], key_pem=who.key_pem,
                        cert_pem=who.cert_pem)


def _codes(ws: tuple[Any, ...]) -> list[WarningCode]:
    return [w.code for w in ws]


@pytest.fixture(scope="module")
def soon() -> Identity:
    return identity("vpcp-old", "p256", days=10)


def test_every_package_signed_with_a_soon_expiring_certificate_is_warned(soon: Identity) -> None:
    gate = _gate(soon)
    now = dt.datetime.now(dt.UTC)
    body = _signed(soon)
    for _ in range(2):
        ws = gate.check("vpcp", body, True, now)
        assert _codes(ws) == [WarningCode.CERTIFICATE_EXPIRING_SOON]
        assert certificate_fingerprint(soon.cert) in ws[0].detail
        assert ws[0].as_dict()["message_en"].startswith("The certificate that signed")


def test_a_certificate_with_time_left_or_a_shorter_setting_is_not_warned(soon: Identity) -> None:
    now = dt.datetime.now(dt.UTC)
    fresh = identity("vpcp-new", "p256", days=365)
    assert gate_check(_gate(fresh), fresh, now) == []
    assert gate_check(_gate(soon, warn_days=5), soon, now) == []


def test_an_expired_certificate_is_still_refused(soon: Identity) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=11)
    with pytest.raises(PackageRejected) as caught:
        _gate(soon).check("vpcp", _signed(soon), True, later)
    assert caught.value.reason is Reason.CERTIFICATE_EXPIRED


def gate_check(gate: SignatureGate, who: Identity, now: dt.datetime) -> list[WarningCode]:
    return _codes(gate.check("vpcp", _signed(who), True, now))
