"""Signed audit anchors as a gateway checks them: signature, and a later anchor extending an
earlier one (no services: the anchors are built and signed here as the hub does)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli.security import receipt as receipt_cli
from router.outbox.signing import ReceiptSigner, generate_hub_key
from router.security.posture import weaknesses
from router.settings import Settings
from schemas.audit_anchor import AnchorMismatch, AuditAnchor, check_extends, verify_anchor
from schemas.receipt import ReceiptSignatureError


@pytest.fixture
def signer(tmp_path: Path) -> ReceiptSigner:
    return generate_hub_key(tmp_path / "hub.key")


def _chain(signer: ReceiptSigner, heads: list[tuple[int, str]]) -> list[AuditAnchor]:
    out: list[AuditAnchor] = []
    for n, (seq, h) in enumerate(heads, start=1):
        prev = (out[-1].number, out[-1].seq, out[-1].hash) if out else None
        a = AuditAnchor(number=n, seq=seq, hash=h, previous=prev)
        out.append(AuditAnchor.from_dict(signer.sign_object(a.unsigned_dict())))
    return out


HEADS = [(10, "aa" * 32), (25, "bb" * 32), (25, "bb" * 32), (40, "cc" * 32)]


def test_a_signed_anchor_verifies_after_the_wire(signer: ReceiptSigner) -> None:
    a = _chain(signer, HEADS)[1]
    got = verify_anchor(a.to_json(), signer.public_key_pem())
    assert got.head == (25, bytes.fromhex("bb" * 32))
    assert got.previous == (1, 10, "aa" * 32)


@pytest.mark.parametrize(("field", "value"), [("seq", 26), ("hash", "dd" * 32), ("number", 3)])
def test_an_altered_anchor_is_refused(signer: ReceiptSigner, field: str, value: object) -> None:
    obj = json.loads(_chain(signer, HEADS)[1].to_json())
    obj[field] = value
    with pytest.raises(ReceiptSignatureError, match="anchor"):
        verify_anchor(obj, signer.public_key_pem())


def test_a_receipt_is_not_an_anchor(signer: ReceiptSigner) -> None:
    obj = signer.sign_object({"receipt_id": "r1", "type": "accepted"})
    with pytest.raises(ValueError, match="not an audit anchor"):
        verify_anchor(obj, signer.public_key_pem())


def test_later_anchors_extend_earlier_ones(signer: ReceiptSigner) -> None:
    a = _chain(signer, HEADS)
    check_extends(a[0], a[1])
    check_extends(a[1], a[2])  # head unchanged: still extends
    check_extends(a[0], a[3], between=a[1:3])
    check_extends(a[2], a[2])


def test_a_gap_cannot_be_settled_by_the_gateway_alone(signer: ReceiptSigner) -> None:
    a = _chain(signer, HEADS)
    with pytest.raises(AnchorMismatch, match="missing"):
        check_extends(a[0], a[3])


def test_a_forked_history_is_caught(signer: ReceiptSigner) -> None:
    honest = _chain(signer, HEADS)
    # the operator rewrites the chain from row 11 on and signs new anchors over it
    forged = _chain(signer, [HEADS[0], (25, "ee" * 32), (40, "ff" * 32)])
    with pytest.raises(AnchorMismatch, match="two different heads"):
        check_extends(honest[1], forged[1])
    # a forged anchor 3 does not name the honest anchor 2 the gateway holds
    with pytest.raises(AnchorMismatch, match="does not name anchor 2"):
        check_extends(honest[1], forged[2])
    with pytest.raises(AnchorMismatch, match="older"):
        check_extends(honest[3], honest[0])


def test_a_cut_back_head_is_caught(signer: ReceiptSigner) -> None:
    a = _chain(signer, [(10, "aa" * 32), (8, "bb" * 32)])
    with pytest.raises(AnchorMismatch, match="cut back"):
        check_extends(a[0], a[1])
    b = _chain(signer, [(10, "aa" * 32), (10, "bb" * 32)])
    with pytest.raises(AnchorMismatch, match="rewritten"):
        check_extends(b[0], b[1])


def test_receipt_verify_checks_an_anchor_and_its_extension(
    signer: ReceiptSigner, tmp_path: Path
) -> None:
    a = _chain(signer, HEADS)
    pub = tmp_path / "hub.pub"
    pub.write_bytes(signer.public_key_pem())
    files = []
    for x in a:
        f = tmp_path / f"anchor-{x.number}.json"
        f.write_bytes(x.to_json())
        files.append(str(f))
    runner = CliRunner()
    ok = runner.invoke(receipt_cli, ["verify", files[3], "--public-key", str(pub),
                                     "--extends", files[0], "--extends", files[1],
                                     "--extends", files[2]])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["extends"] == [1, 2, 3]
    forged = _chain(signer, [HEADS[0], (25, "ee" * 32)])[1]
    (tmp_path / "forged.json").write_bytes(forged.to_json())
    bad = runner.invoke(receipt_cli, ["verify", str(tmp_path / "forged.json"),
                                      "--public-key", str(pub), "--extends", files[1]])
    assert bad.exit_code == 65
    assert "two different heads" in json.loads(bad.output)["error"]
    impostor = generate_hub_key(tmp_path / "impostor.key")
    (tmp_path / "impostor.json").write_bytes(_chain(impostor, HEADS)[0].to_json())
    bad = runner.invoke(receipt_cli, ["verify", str(tmp_path / "impostor.json"),
                                      "--public-key", str(pub)])
    assert bad.exit_code == 65


def test_weakened_settings_are_named() -> None:
    clear = Settings(amqp_url="amqp://u:p@h/v")
    tls = Settings(amqp_url="amqps://u:p@h:5671/v")
    assert weaknesses(tls, receipts_signed=True) == []
    assert weaknesses(clear, receipts_signed=False) == ["amqp_tls_off", "receipts_unsigned"]
    assert weaknesses(tls, receipts_signed=None) == []


def test_the_sdk_keeps_anchors_that_extend_and_flags_a_fork(signer: ReceiptSigner) -> None:
    from adapters import GatewayClient

    gw = GatewayClient("amqp://vpcp:x@127.0.0.1/lienthong",
                       hub_public_key=signer.public_key_pem())
    honest = _chain(signer, HEADS)
    assert gw.take_anchor(honest[0].to_json()) == honest[0]
    assert gw.take_anchor(honest[2].to_json()) == honest[2]  # 2 went to another client
    assert gw.last_anchor == honest[2] and gw.anchor_problems == []
    forged = _chain(signer, [*HEADS[:3], (40, "ff" * 32)])[3]
    forked = AuditAnchor.from_dict(signer.sign_object(
        AuditAnchor(4, 40, "ff" * 32, previous=(3, 25, "ee" * 32)).unsigned_dict()))
    assert gw.take_anchor(forked.to_json()) is None
    assert "does not name anchor 3" in gw.anchor_problems[0]
    assert gw.take_anchor(forged.to_json()) == forged
    assert gw.last_anchor == forged
