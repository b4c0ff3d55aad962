"""The AMQP frames of one publish (method, content header, body), written directly.

pamqp, which aiormq uses, encodes each property and each header value through several
layers of generic calls: in a router's profile that marshalling took about a tenth of the
CPU once the socket writes were batched. This module writes the same bytes for the
properties the hub sends (short strings, the delivery mode, header tables of strings and
lists of strings); for anything else it returns None and the caller lets pamqp do it. A
unit test holds its output byte for byte against pamqp's (tests/unit/test_frames.py).
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands as spec

__all__ = ["publish_frames"]

_FRAME_METHOD, _FRAME_HEADER, _FRAME_BODY = 1, 2, 3
_FRAME_END = b"\xce"
_FRAME = struct.Struct(">BHI")
_LONG = struct.Struct(">I")
_PUBLISH = struct.Struct(">HHH").pack(60, 40, 0)  # Basic.Publish, ticket 0
_HEADER = struct.Struct(">HHQH")  # class 60, weight 0, body size, property flags

# the properties in pamqp's order, with their flag bits and AMQP types
_PROPERTIES: tuple[tuple[str, int, str], ...] = tuple(
    (name, spec.Basic.Properties.flags[name], spec.Basic.Properties.amqp_type(name))
    for name in spec.Basic.Properties.__slots__
)


def _frame(kind: int, channel: int, payload: bytes) -> bytes:
    return b"".join((_FRAME.pack(kind, channel, len(payload)), payload, _FRAME_END))


def _short(value: str) -> bytes | None:
    data = value.encode("utf-8")
    return bytes((len(data),)) + data if len(data) <= 255 else None


def _long(value: str) -> bytes:
    data = value.encode("utf-8")
    return _LONG.pack(len(data)) + data


def _table(headers: dict[str, Any]) -> bytes | None:
    parts: list[bytes] = []
    for key, value in sorted(headers.items()):
        name = key.encode("utf-8")
        if len(name) > 128:
            return None
        if isinstance(value, str):
            encoded = b"S" + _long(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = b"".join(b"S" + _long(v) for v in value)
            encoded = b"A" + _LONG.pack(len(items)) + items
        else:
            return None
        parts.append(bytes((len(name),)) + name + encoded)
    data = b"".join(parts)
    return _LONG.pack(len(data)) + data


def _properties(props: spec.Basic.Properties) -> tuple[int, bytes] | None:
    flags = 0
    parts: list[bytes] = []
    for name, flag, kind in _PROPERTIES:
        value = getattr(props, name)
        if value is None or value == "":
            continue
        if kind == "shortstr" and isinstance(value, str):
            encoded = _short(value)
        elif kind == "octet" and isinstance(value, int) and 0 <= value <= 255:
            encoded = bytes((value,))
        elif kind == "table" and isinstance(value, dict):
            encoded = _table(value)
        else:
            return None
        if encoded is None:
            return None
        flags |= flag
        parts.append(encoded)
    return flags, b"".join(parts)


def publish_frames(
    channel: int, exchange: str, routing_key: str, mandatory: bool,
    properties: spec.Basic.Properties, body: bytes, max_content: int,
) -> bytes | None:
    """Basic.Publish, its content header and body frames (of at most ``max_content``
    bytes each), as one byte string; None when a property is not one this module writes."""
    encoded = _properties(properties)
    names = (_short(exchange), _short(routing_key))
    if encoded is None or names[0] is None or names[1] is None or encoded[0] > 0xFFFE:
        return None
    flags, props = encoded
    out = [
        _frame(_FRAME_METHOD, channel,
               b"".join((_PUBLISH, names[0], names[1], b"\x01" if mandatory else b"\x00"))),
        _frame(_FRAME_HEADER, channel, _HEADER.pack(60, 0, len(body), flags) + props),
    ]
    out += [_frame(_FRAME_BODY, channel, body[i:i + max_content])
            for i in range(0, len(body), max_content)]
    return b"".join(out)
