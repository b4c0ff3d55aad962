"""System secrets and gateway AMQP URLs, encrypted at rest.

HMAC verification needs each system's secret itself (a hash would not do), so the façade
stores it encrypted with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a
key that lives only in the façade's environment (``LIENTHONG_VXP_SECRET_KEY``). A copy of
the façade's database alone reveals no secret. (Deriving each secret from a master key
instead would need no storage, but one leaked master key would then give every system's
secret, past and future, and a rotation would need a counter per system anyway.)
"""

from __future__ import annotations

import secrets

from cryptography.fernet import Fernet, InvalidToken

__all__ = ["Sealer", "new_key", "new_secret"]


def new_key() -> str:
    return Fernet.generate_key().decode("ascii")


def new_secret() -> str:
    """A fresh system secret: 256 random bits, URL-safe text."""
    return secrets.token_urlsafe(32)


class Sealer:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError(
                "LIENTHONG_VXP_SECRET_KEY is not set: create one with `lienthong vxp new-key` "
                "/ chưa đặt LIENTHONG_VXP_SECRET_KEY: tạo bằng `lienthong vxp new-key`"
            )
        try:
            self._fernet = Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(
                "LIENTHONG_VXP_SECRET_KEY is not a Fernet key (`lienthong vxp new-key`)"
            ) from None

    def seal(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode("utf-8"))

    def open(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise ValueError(
                "a stored secret cannot be decrypted: LIENTHONG_VXP_SECRET_KEY changed?"
            ) from None
