"""Signature policy enforced by the router itself, end to end through RabbitMQ, with the
SDK signing; and the sender told about hub-side changes (revocation) without asking."""

from __future__ import annotations

import asyncio
import functools

from cryptography.hazmat.primitives import hashes

from router.directory.registry import AgencyRow
from router.security import certificates
from schemas import BusinessDocType
from schemas.signature import sign_package
from tests.factory import edoc
from tests.hub import Hub
from tests.pki import identity


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"])
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])


async def test_required_signature_is_enforced_by_the_router(hub: Hub) -> None:
    await _setup(hub)
    me, stranger = identity("vpcp-2026", "p256"), identity("someone-else", "rsa")
    async with hub.pool.acquire() as conn:
        await certificates.add_certificate(conn, "vpcp", me.cert_pem)
        await certificates.set_signature_policy(conn, "vpcp", "required")
    await hub.start_router()
    sign_theirs = functools.partial(sign_package, key_pem=stranger.key_pem,
                                    cert_pem=stranger.cert_pem)
    # one client per gateway (they share the receipts queue); the SDK signs every package
    async with hub.client("vpcp", sign=functools.partial(
            sign_package, key_pem=me.key_pem, cert_pem=me.cert_pem)) as vpcp, \
            hub.client("lgsp-nghean") as na:
        _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
        r = await vpcp.send(body)
        assert r is not None and r.type == "accepted", r
        vpcp._sign = None  # now as a gateway that does not sign, then with a stranger's key
        r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
        assert r is not None and r.reason and r.reason["reason"] == "SIGNATURE_REQUIRED"
        r = await vpcp.send(sign_theirs(edoc("000.00.00.G22", ["000.00.00.H41"])[1]))
        assert r is not None and r.reason and r.reason["reason"] == "CERTIFICATE_UNKNOWN"
        got = []
        async for m in na.inbox(timeout=2):
            async with m.process():
                got.append(m.body)
        assert len(got) == 1 and b"SignatureValue" in got[0]  # delivered as signed


async def test_sender_is_told_when_its_revocation_closes_deliveries(hub: Hub) -> None:
    await _setup(hub)
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        doc, body = edoc("000.00.00.G22", ["000.00.00.H41"])
        first = await vpcp.send(body)
        _, rev = edoc("000.00.00.G22", ["000.00.00.H41"], business=BusinessDocType.REVOKE,
                      target=doc.document_id)
        assert (await vpcp.send(rev)).type == "accepted"  # type: ignore[union-attr]
        it = vpcp.receipts()
        while True:
            event = await asyncio.wait_for(it.__anext__(), 10)
            if event.type == "delivery" and event.state == "revoked":
                break
        assert first is not None and event.hub_id == first.hub_id
        assert event.recipients[0].agency == "000.00.00.H41"


async def test_a_soon_expiring_certificate_is_accepted_with_a_warning(hub: Hub) -> None:
    """The sender hears, in the accepted receipt, that its certificate expires soon."""
    await _setup(hub)
    soon, fresh = identity("vpcp-old", "p256", days=10), identity("vpcp-new", "p256")
    async with hub.pool.acquire() as conn:
        await certificates.add_certificate(conn, "vpcp", soon.cert_pem)
        await certificates.add_certificate(conn, "vpcp", fresh.cert_pem)
        await certificates.set_signature_policy(conn, "vpcp", "required")
    await hub.start_router()
    async with hub.client("vpcp", sign=functools.partial(
            sign_package, key_pem=soon.key_pem, cert_pem=soon.cert_pem)) as vpcp:
        for _ in range(2):  # every package tells it, not only the first one
            r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
            assert r is not None and r.type == "accepted", r
            expiring = [w for w in r.warnings if w["warning"] == "CERTIFICATE_EXPIRING_SOON"]
            assert len(expiring) == 1, r.warnings
            assert "hết hạn" in expiring[0]["message_vi"]
            assert soon.cert.fingerprint(hashes.SHA256()).hex() in expiring[0]["detail"]
        vpcp._sign = functools.partial(sign_package, key_pem=fresh.key_pem,
                                       cert_pem=fresh.cert_pem)
        r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"])[1])
        assert r is not None and r.type == "accepted", r
        assert not [w for w in r.warnings if w["warning"] == "CERTIFICATE_EXPIRING_SOON"]
