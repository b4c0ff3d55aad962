"""Signed receipts: a gateway can prove a receipt came from the hub, unaltered."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from router.cli.security import receipt as receipt_cli
from router.outbox.signing import ReceiptSigner, generate_hub_key, hub_signer
from router.settings import Settings
from schemas.receipt import (
    Receipt,
    ReceiptSignatureError,
    RecipientOutcome,
    canonical_receipt_bytes,
    verify_receipt,
)


def _receipt() -> Receipt:
    return Receipt(
        receipt_id="0b9c",
        type="accepted",
        hub_id="5f0e",
        message_id="my-42",
        kind="edoc",
        document_id="000.00.00.G22,2026/11/21,12/VPCP-TTĐT",
        sender="000.00.00.G22",
        recipients=(RecipientOutcome("000.00.00.H41", "000.00.00.H41", "nghe-an", "c1d2",
                                     "queued"),),
        warnings=({"warning": "DUPLICATE_RECIPIENT_ALIAS", "detail": "G12 và 000.00.00.G12"},),
    )


@pytest.fixture
def hub_key(tmp_path: Path) -> tuple[ReceiptSigner, bytes]:
    signer = generate_hub_key(tmp_path / "hub.key")
    return signer, signer.public_key_pem()


def test_a_signed_receipt_verifies_after_the_wire(hub_key: tuple[ReceiptSigner, bytes]) -> None:
    signer, public = hub_key
    signed = signer.sign(_receipt())
    assert signed.signature is not None
    assert signed.signature["alg"] == "Ed25519"
    assert signed.signature["kid"] == signer.key_id
    wire = signed.to_json()
    obj = verify_receipt(wire, public)
    assert obj["receipt_id"] == "0b9c"
    # what the SDK rebuilds from the wire verifies too
    again = Receipt.from_json(wire)
    assert again.signature == signed.signature
    verify_receipt(again.as_dict(), public)
    # an unsigned receipt's JSON is unchanged by the new field
    assert "signature" not in json.loads(_receipt().to_json())


@pytest.mark.parametrize(
    ("field", "value"),
    [("type", "rejected"), ("hub_id", "ffff"), ("state", "delivered"), ("extra", "added")],
)
def test_any_change_breaks_the_signature(
    hub_key: tuple[ReceiptSigner, bytes], field: str, value: str
) -> None:
    signer, public = hub_key
    obj = json.loads(signer.sign(_receipt()).to_json())
    obj[field] = value
    with pytest.raises(ReceiptSignatureError, match="altered or forged"):
        verify_receipt(obj, public)


def test_unsigned_or_foreign_receipts_are_refused(
    hub_key: tuple[ReceiptSigner, bytes], tmp_path: Path
) -> None:
    _, public = hub_key
    with pytest.raises(ReceiptSignatureError, match="not signed"):
        verify_receipt(_receipt().to_json(), public)
    impostor = generate_hub_key(tmp_path / "impostor.key")
    forged = impostor.sign(_receipt()).to_json()
    with pytest.raises(ReceiptSignatureError, match="signed by hub key"):
        verify_receipt(forged, public)
    # the same forgery without a kid still fails on the signature itself
    obj = json.loads(forged)
    del obj["signature"]["kid"]
    with pytest.raises(ReceiptSignatureError, match="altered or forged"):
        verify_receipt(obj, public)


def test_canonical_form_is_sorted_compact_utf8_without_signature() -> None:
    data = {"b": 1, "a": "Việt", "signature": {"value": "x"}}
    assert canonical_receipt_bytes(data) == '{"a":"Việt","b":1}'.encode()


def test_signing_is_fast_enough_for_the_hot_path(hub_key: tuple[ReceiptSigner, bytes]) -> None:
    signer, _ = hub_key
    r = _receipt()
    n = 2000
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            signer.sign(r)
        best = min(best, (time.perf_counter() - t0) / n)
    # Ed25519 itself is ~50 µs; canonical JSON adds ~10 µs. Generous bound for a busy CI.
    assert best < 1e-3, f"{best * 1e6:.0f} µs per receipt"


def test_hub_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "hub.key"
    signer = generate_hub_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        generate_hub_key(path)
    assert ReceiptSigner.from_file(path).key_id == signer.key_id
    loaded = hub_signer(Settings(hub_key=str(path)))
    assert loaded is not None and loaded.key_id == signer.key_id
    assert hub_signer(Settings(hub_key=str(path))) is loaded  # read once per process
    assert hub_signer(Settings()) is None
    with pytest.raises(FileNotFoundError):
        hub_signer(Settings(hub_key=str(tmp_path / "missing.key")))


def test_receipt_cli_keygen_public_key_and_verify(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "hub.key"
    made = runner.invoke(receipt_cli, ["keygen", "--key", str(key)])
    assert made.exit_code == 0, made.output
    again = runner.invoke(receipt_cli, ["keygen", "--key", str(key)])
    assert again.exit_code == 65
    shown = runner.invoke(receipt_cli, ["public-key"], env={"LIENTHONG_HUB_KEY": str(key)})
    assert shown.exit_code == 0
    assert shown.output.startswith("-----BEGIN PUBLIC KEY-----")
    pub = tmp_path / "hub.pub"
    pub.write_text(shown.output)

    good = tmp_path / "receipt.json"
    good.write_bytes(ReceiptSigner.from_file(key).sign(_receipt()).to_json())
    ok = runner.invoke(receipt_cli, ["verify", str(good), "--public-key", str(pub)])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["valid"] is True

    bad = tmp_path / "bad.json"
    bad.write_bytes(good.read_bytes().replace(b'"accepted"', b'"rejected"'))
    refused = runner.invoke(receipt_cli, ["verify", str(bad), "--public-key", str(pub)])
    assert refused.exit_code == 65
    assert json.loads(refused.output)["valid"] is False
