"""The hub signs every receipt and status event it emits (Ed25519).

The signature covers :func:`schemas.receipt.canonical_receipt_bytes` — the receipt's JSON
object with keys sorted, no whitespace, UTF-8, without the ``signature`` member — and is
carried in the receipt itself::

    "signature": {"alg": "Ed25519", "kid": "3f9a0c…", "value": "<base64, 64 bytes>"}

``kid`` is the first 16 hex digits of SHA-256 of the raw public key, so gateways can keep
the old and the new hub key while the hub rolls its key.

Key management: the private key is a PKCS#8 PEM file whose path is ``LIENTHONG_HUB_KEY``.
It is created once, explicitly, with ``lienthong receipt keygen`` (mode 0600; never
overwritten) and copied to every router host — routers never generate keys by themselves,
so two hosts can never sign with different keys by accident. Without ``LIENTHONG_HUB_KEY``
receipts go out unsigned (and :func:`load_signer` says so in the log); with it set but the
file unreadable, :func:`load_signer` raises: a router must not start half-configured.
``lienthong receipt public-key`` prints the public key that gateways pin;
``lienthong receipt verify FILE --public-key PEM`` checks one receipt offline.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from router.settings import Settings
from schemas.receipt import Receipt, receipt_key_id

__all__ = ["HUB_KEY_ENV", "ReceiptSigner", "generate_hub_key", "load_signer"]

HUB_KEY_ENV = "LIENTHONG_HUB_KEY"

log = structlog.get_logger("lienthong.receipts")


class ReceiptSigner:
    """Signs receipts with the hub's Ed25519 key. Pure CPU (~50 µs per receipt)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = receipt_key_id(raw)

    @classmethod
    def from_pem(cls, data: bytes) -> ReceiptSigner:
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("the hub key must be an Ed25519 private key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | Path) -> ReceiptSigner:
        return cls.from_pem(Path(path).read_bytes())

    def sign(self, receipt: Receipt) -> Receipt:
        """The same receipt with its ``signature`` set (any previous one is replaced)."""
        value = self._key.sign(receipt.canonical_bytes())
        return dataclasses.replace(
            receipt,
            signature={
                "alg": "Ed25519",
                "kid": self.key_id,
                "value": base64.b64encode(value).decode(),
            },
        )

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_hub_key(path: str | Path) -> ReceiptSigner:
    """Create a new hub key file (0600). Refuses to overwrite an existing file."""
    p = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # FileExistsError if there
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    return ReceiptSigner(key)


def load_signer(environ: Mapping[str, str] | None = None) -> ReceiptSigner | None:
    """The hub's signer from ``LIENTHONG_HUB_KEY``; None (and a warning) when unset.

    Raises OSError / ValueError / TypeError when the variable is set but the key cannot be
    used.
    """
    path = Settings.from_env(environ).hub_key
    if not path:
        log.warning("receipts_unsigned", hint=f"set {HUB_KEY_ENV} (lienthong receipt keygen)")
        return None
    signer = ReceiptSigner.from_file(path)
    log.info("receipt_signing", key_id=signer.key_id)
    return signer
