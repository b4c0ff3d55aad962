"""Signature policy and the certificate registry, as the router applies them per package:
the certificates registered in the ledger, rotation with two certificates valid at once,
expiry, revocation, and every way a signature is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli.security import certs as certs_cli
from router.directory.registry import AgencyRow
from router.security import certificates
from router.security.audit import verify_chain
from router.security.signature_gate import SignatureGate
from schemas import PackageRejected, Reason, parse_package
from schemas.signature import certificate_fingerprint, sign_package
from tests import packages
from tests.factory import edoc
from tests.hub import Hub
from tests.pki import Identity, identity

NOW = dt.datetime.now(dt.UTC)


async def _directory(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("bo-tai-chinh", serves=["000.00.00.G12"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.G12", "Bộ Tài chính")])


async def _register(hub: Hub, gateway: str, who: Identity, **kw: dt.datetime) -> str:
    async with hub.pool.acquire() as conn:
        rec = await certificates.add_certificate(conn, gateway, who.cert_pem, **kw)
    return rec.fingerprint


async def _gate(hub: Hub) -> SignatureGate:
    gate = SignatureGate(hub.pool, refresh_seconds=30)
    await gate.refresh_if_stale()
    return gate


def _body(size: int = 0) -> bytes:
    return edoc("000.00.00.G22", ["000.00.00.G12"], attachment=os.urandom(size) if size else
                b"%PDF-1.4\n% test\n")[1]


def _signed(who: Identity, body: bytes | None = None) -> bytes:
    return sign_package(body or _body(), who.key_pem, who.cert_pem)


def _check(gate: SignatureGate, gateway: str, body: bytes, when: dt.datetime = NOW) -> None:
    has = parse_package(body).package.has_signature
    assert gate.check(gateway, body, has, when) == ()


def _reason(gate: SignatureGate, gateway: str, body: bytes,
            when: dt.datetime = NOW) -> Reason:
    has = parse_package(body).package.has_signature
    with pytest.raises(PackageRejected) as err:
        gate.check(gateway, body, has, when)
    return err.value.reason


async def test_rotation_with_two_valid_certificates_then_revocation(hub: Hub) -> None:
    await _directory(hub)
    old, new = identity("vpcp-2025", "rsa"), identity("vpcp-2026", "p256")
    old_fp = await _register(hub, "vpcp", old)
    await _register(hub, "vpcp", new)
    gate = await _gate(hub)
    _check(gate, "vpcp", _signed(old))
    _check(gate, "vpcp", _signed(new))  # both at once: no downtime while switching
    _check(gate, "vpcp", _body())  # verify-if-present: unsigned still passes
    async with hub.pool.acquire() as conn:
        await certificates.revoke_certificate(conn, old_fp[:12], reason="superseded")
    gate.invalidate()
    await gate.refresh_if_stale()
    later = dt.datetime.now(dt.UTC)
    assert _reason(gate, "vpcp", _signed(old), later) is Reason.CERTIFICATE_REVOKED
    _check(gate, "vpcp", _signed(old), NOW)  # revocation is not retroactive
    _check(gate, "vpcp", _signed(new), later)
    # every change is in the audit log, and the chain holds
    async with hub.pool.acquire() as conn:
        actions = [r["action"] for r in await conn.fetch(
            "SELECT action FROM audit_log WHERE action LIKE 'certificate.%' ORDER BY id")]
        assert actions == ["certificate.added", "certificate.added", "certificate.revoked"]
        assert (await verify_chain(conn)).ok


async def test_validity_windows(hub: Hub) -> None:
    await _directory(hub)
    expired = identity("old", "p256", start=NOW - dt.timedelta(days=40), days=10)
    future = identity("future", "p256")
    await _register(hub, "vpcp", expired)
    await _register(hub, "vpcp", future, not_before=NOW + dt.timedelta(days=2))
    gate = await _gate(hub)
    assert _reason(gate, "vpcp", _signed(expired)) is Reason.CERTIFICATE_EXPIRED
    assert _reason(gate, "vpcp", _signed(future)) is Reason.CERTIFICATE_EXPIRED
    _check(gate, "vpcp", _signed(future), NOW + dt.timedelta(days=3))  # valid later
    async with hub.pool.acquire() as conn:
        expiry = {fp: days for _, fp, days in await certificates.certificate_expiry(conn)}
    assert expiry[certificate_fingerprint(expired.cert)] < -29
    assert 363 < expiry[certificate_fingerprint(future.cert)] < 366  # valid from yesterday


async def test_unknown_and_foreign_certificates(hub: Hub) -> None:
    await _directory(hub)
    stranger, btc = identity("stranger", "p256"), identity("btc", "p256")
    await _register(hub, "bo-tai-chinh", btc)
    gate = await _gate(hub)
    assert _reason(gate, "vpcp", _signed(stranger)) is Reason.CERTIFICATE_UNKNOWN
    # a certificate registered for another gateway does not speak for this one
    with pytest.raises(PackageRejected) as err:
        gate.check("vpcp", _signed(btc), True, NOW)
    assert err.value.reason is Reason.CERTIFICATE_UNKNOWN
    assert "bo-tai-chinh" in err.value.detail
    # nor can a certificate be registered for two gateways
    async with hub.pool.acquire() as conn:
        with pytest.raises(certificates.LienthongError):
            await certificates.add_certificate(conn, "vpcp", btc.cert_pem)
        with pytest.raises(ValueError, match="2048"):
            await certificates.add_certificate(conn, "vpcp", identity("w", "rsa1024").cert_pem)


async def test_policies(hub: Hub) -> None:
    await _directory(hub)
    who = identity("vpcp", "rsa")
    await _register(hub, "vpcp", who)
    tampered = _signed(who).replace(b"V/v k", b"V/V k", 1)
    placeholder_only = packages.package(packages.NEW)
    gate = await _gate(hub)
    assert gate.policy("vpcp") == "verify-if-present"
    assert _reason(gate, "vpcp", tampered) is Reason.SIGNATURE_INVALID
    _check(gate, "vpcp", placeholder_only)

    async with hub.pool.acquire() as conn:
        await certificates.set_signature_policy(conn, "vpcp", "required")
    gate.invalidate()
    await gate.refresh_if_stale()
    assert _reason(gate, "vpcp", _body()) is Reason.SIGNATURE_REQUIRED
    # the SDK's placeholder <Signature> is not a signature
    assert _reason(gate, "vpcp", placeholder_only) is Reason.SIGNATURE_REQUIRED
    _check(gate, "vpcp", _signed(who))
    assert _reason(gate, "vpcp", tampered) is Reason.SIGNATURE_INVALID

    async with hub.pool.acquire() as conn:
        await certificates.set_signature_policy(conn, "vpcp", "off")
    gate.invalidate()
    await gate.refresh_if_stale()
    _check(gate, "vpcp", tampered)  # off: not looked at
    _check(gate, "vpcp", _body())


async def test_a_signature_hidden_outside_the_header_is_not_ignored(hub: Hub) -> None:
    """The parser sees no signature in the header; the gate still finds the moved one."""
    await _directory(hub)
    who = identity("vpcp", "p256")
    await _register(hub, "vpcp", who)
    signed = _signed(who)
    start = signed.index(b"<Signature ")
    end = signed.index(b"</Signature>") + len(b"</Signature>")
    sig = signed[start:end]
    moved = (signed[:start] + signed[end:]).replace(
        b"</AttachmentEncoded>", sig + b"</AttachmentEncoded>"
    )
    assert not parse_package(moved).package.has_signature
    gate = await _gate(hub)
    with pytest.raises(PackageRejected) as err:
        gate.check("vpcp", moved, False, NOW)
    assert err.value.reason is Reason.SIGNATURE_WRAPPING


async def test_a_new_gateway_is_loaded_without_waiting(hub: Hub) -> None:
    await _directory(hub)
    gate = await _gate(hub)
    await hub.add_gateway("ubnd-ha-noi", serves=["000.00.00.H01"])
    who = identity("hn", "p256")
    await _register(hub, "ubnd-ha-noi", who)
    await gate.refresh_if_stale(["ubnd-ha-noi"])
    gate.check("ubnd-ha-noi", _signed(who, edoc("000.00.00.H01", ["000.00.00.G22"])[1]),
               True, NOW)


async def test_certs_commands(hub: Hub, tmp_path: Path) -> None:
    await _directory(hub)
    env = {"LIENTHONG_DATABASE_URL": hub.settings.database_url}
    runner = CliRunner()
    who = identity("vpcp", "p256")
    _, cert_path = who.write(tmp_path, "vpcp")

    def run(*args: str) -> tuple[int, str]:
        r = runner.invoke(certs_cli, list(args), env=env)
        return r.exit_code, r.output

    code, out = await asyncio.to_thread(run, "add", "vpcp", str(cert_path))
    assert code == 0, out
    fp = certificate_fingerprint(who.cert)
    assert fp in out
    code, out = await asyncio.to_thread(run, "list", "vpcp", "--json")
    assert code == 0
    assert json.loads(out)[0]["state"] == "valid"
    code, out = await asyncio.to_thread(run, "add", "nobody", str(cert_path))
    assert code == 65  # refused (router/cli/exit_codes.py)
    assert "GATEWAY_UNKNOWN" in out
    code, out = await asyncio.to_thread(run, "policy", "vpcp", "required")
    assert code == 0
    code, out = await asyncio.to_thread(run, "revoke", fp[:10], "--reason", "test")
    assert code == 0, out
    code, out = await asyncio.to_thread(run, "list", "--json")
    assert json.loads(out)[0]["state"] == "revoked"
    code, out = await asyncio.to_thread(run, "expiry", "--days", "400", "--json")
    assert code == 0  # revoked certificates do not count
    async with hub.pool.acquire() as conn:
        policy = await conn.fetchval("SELECT signature_policy FROM gateways WHERE id = 'vpcp'")
    assert policy == "required"


@pytest.mark.parametrize("kind", ["rsa", "p256"])
async def test_verification_cost_per_10kb_package(hub: Hub, kind: str) -> None:
    await _directory(hub)
    who = identity(f"bench-{kind}", kind)
    await _register(hub, "vpcp", who)
    gate = await _gate(hub)
    body = _signed(who, _body(size=4300 if kind == "rsa" else 4800))
    assert 9_500 < len(body) < 10_500, len(body)
    n, best = 300, float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            gate.check("vpcp", body, True, NOW)
        best = min(best, (time.perf_counter() - t0) / n)
    print(f"\nsignature check, {len(body)} B package, {kind}: {best * 1e6:.0f} µs")
    assert best < 5e-3
