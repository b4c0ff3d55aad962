"""A raw AMQP publisher for tests: sends what a careless or hostile client could send.

pamqp's encoders refuse text that is not UTF-8, so the SDK can never produce such a frame;
another client (or a few lines of C) can. :func:`publish_raw` publishes with aiormq while
pamqp's string encoder is swapped, for the duration of the call, for one that writes
``surrogateescape`` text back as its original bytes: pass ``wire_text(b"\\xff\\xfe.H60")``
to send the routing key ``b"\\xff\\xfe.H60"`` itself.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from typing import Any

import aiormq
from pamqp import commands, common
from pamqp import encode as _encode

__all__ = ["publish_raw", "wire_text"]


def wire_text(raw: bytes) -> str:
    """The text whose lenient encoding is exactly ``raw``."""
    return raw.decode("utf-8", "surrogateescape")


def _lenient_string(encoder: struct.Struct, value: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"str required, received {type(value)}")
    temp = value.encode("utf-8", "surrogateescape")
    return encoder.pack(len(temp)) + temp


def _lenient_table(value: dict[str, Any]) -> bytes:
    if not value:
        return common.Struct.integer.pack(0)
    data = []
    for key, item in sorted(value.items()):
        data.append(_lenient_string(common.Struct.byte, key))
        data.append(_encode.encode_table_value(item))
    output = b"".join(data)
    return common.Struct.integer.pack(len(output)) + output


@contextlib.contextmanager
def _lenient_encoding() -> Iterator[None]:
    saved = _encode._string, _encode.field_table, _encode.METHODS["table"]
    _encode._string = _lenient_string
    _encode.field_table = _lenient_table
    _encode.METHODS["table"] = _lenient_table
    try:
        yield
    finally:
        _encode._string, _encode.field_table, _encode.METHODS["table"] = saved


async def publish_raw(
    url: str,
    *,
    exchange: str,
    routing_key: bytes,
    body: bytes,
    properties: dict[str, Any] | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109
) -> bool:
    """Publish one message with arbitrary bytes in its routing key and text properties
    (give text properties and header keys through :func:`wire_text`). True when the broker
    confirmed it, False when it refused it (e.g. a topic permission)."""
    props = commands.Basic.Properties(**(properties or {}))
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        with _lenient_encoding():
            try:
                confirm = await channel.basic_publish(
                    body, exchange=exchange, routing_key=wire_text(routing_key),
                    properties=props, timeout=timeout,
                )
            except aiormq.exceptions.AMQPError:
                # the broker refused it: a permission, a user_id that is not the
                # connection's, or a frame it closes the channel or connection over
                return False
        return isinstance(confirm, commands.Basic.Ack)
    finally:
        with contextlib.suppress(Exception):
            await connection.close()

