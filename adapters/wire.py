"""Tolerant AMQP decoding: a frame that carries non-UTF-8 text never kills a connection.

AMQP 0-9-1 "short strings" (routing keys, exchange names, most message properties) and
field-table keys are byte strings on the wire. RabbitMQ passes them on as they are (a topic
permission regex matches the raw bytes), but pamqp 4 decodes them as strict UTF-8: a single
message published with the routing key ``b'\\xff\\xfe.H60'`` makes aiormq's frame reader raise
``InvalidFrameError`` and close the *whole connection* of every consumer it is delivered to,
which then reconnects and gets the same message again, forever.

:func:`install` replaces pamqp's decoders for short strings and field tables (the entries of
``pamqp.decode.METHODS`` that ``by_type`` looks up, and the nested-table entry of
``pamqp.decode.TABLE_MAPPING``) by versions that decode with ``surrogateescape`` (and its
timestamp decoder by one that gives an out-of-range timestamp back as an integer): valid UTF-8
comes out exactly as before, undecodable bytes are kept losslessly as lone surrogates
(``"\\udcff\\udcfe.H60".encode("utf-8", "surrogateescape") == b"\\xff\\xfe.H60"``).
:func:`undecodable` tells whether a decoded text holds such bytes, :func:`raw` gives the bytes
back and :func:`printable` a readable, encodable form (``\\xff\\xfe.H60``) for logs, the
ledger and anything the process publishes again (pamqp's encoders stay strict).

Both sides call it: the gateway SDK at import (``adapters.client``) and the hub at import of
its one AMQP module (``router.amqp``). It is idempotent.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pamqp import common
from pamqp import decode as _decode

__all__ = ["install", "installed", "printable", "raw", "undecodable"]

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def undecodable(text: str | None) -> bool:
    """True when ``text`` holds bytes that were not UTF-8 on the wire."""
    if not text:
        return False
    try:
        text.encode(_ENCODING)
    except UnicodeEncodeError:
        return True
    return False


def raw(text: str) -> bytes:
    """The bytes ``text`` was decoded from (lossless for what :func:`install` decoded)."""
    return text.encode(_ENCODING, _ERRORS)


def printable(text: str) -> str:
    """A valid-UTF-8 form of ``text``: undecodable bytes written as ``\\xNN``."""
    if not undecodable(text):
        return text
    return raw(text).decode(_ENCODING, "backslashreplace")


def short_str(value: bytes) -> tuple[int, str]:
    """pamqp's ``short_str`` with undecodable bytes kept (surrogateescape)."""
    try:
        length = common.Struct.byte.unpack(value[0:1])[0]
        return length + 1, bytes(value[1 : length + 1]).decode(_ENCODING, _ERRORS)
    except (struct.error, TypeError) as err:
        raise ValueError("Could not unpack short string value") from err


def field_table(value: bytes) -> tuple[int, common.FieldTable]:
    """pamqp's ``field_table`` with undecodable keys kept (surrogateescape).
    Values are decoded by pamqp's own ``embedded_value`` (long strings that are not
    UTF-8 already come back as ``bytes``; nested tables come back here)."""
    try:
        length = common.Struct.integer.unpack(value[0:4])[0]
        offset = 4
        data: dict[str, Any] = {}
        end = offset + length
        if end > len(value):
            raise ValueError("Field table length exceeds available data")
        while offset < end:
            key_length = common.Struct.byte.unpack_from(value, offset)[0]
            offset += 1
            if offset + key_length > end:
                raise ValueError("Field table key length exceeds data")
            key = bytes(value[offset : offset + key_length]).decode(_ENCODING, _ERRORS)
            offset += key_length
            consumed, result = _decode.embedded_value(value[offset:])
            offset += consumed
            data[key] = result
    except (struct.error, TypeError) as err:
        raise ValueError("Could not unpack data") from err
    return end, data


def timestamp(value: bytes) -> tuple[int, common.FieldValue]:
    """pamqp's ``timestamp``, but a value no datetime can hold (year > 9999) comes back as
    the integer it is instead of raising inside the frame reader."""
    try:
        return _PAMQP_TIMESTAMP(value)
    except (ValueError, OverflowError, OSError):
        return 8, int(common.Struct.timestamp.unpack(value[0:8])[0])


_PAMQP_TIMESTAMP = _decode.timestamp
_Decoder = Callable[..., tuple[int, common.FieldValue]]


def installed() -> bool:
    return (
        _decode.METHODS.get("shortstr") is short_str
        and _decode.METHODS.get("table") is field_table
        and _decode.TABLE_MAPPING.get(b"F") is field_table
        and _decode.METHODS.get("timestamp") is timestamp
        and _decode.TABLE_MAPPING.get(b"T") is timestamp
    )


def install() -> None:
    """Make pamqp's decoding tolerant of non-UTF-8 text (process-wide, idempotent)."""
    methods: dict[str, _Decoder] = _decode.METHODS
    methods["shortstr"] = short_str
    methods["table"] = field_table
    methods["timestamp"] = timestamp
    mapping: dict[bytes, _Decoder] = _decode.TABLE_MAPPING
    mapping[b"F"] = field_table
    mapping[b"T"] = timestamp
