"""Tolerant AMQP decoding (adapters.wire) and topic permissions that admit only agency
codes: pure logic, no services."""

from __future__ import annotations

import re

from pamqp import commands, frame

from adapters import wire
from router.directory.registry import gateway_topic_regex, pattern_matches


def _deliver_frame(routing_key: bytes) -> bytes:
    """A Basic.Deliver frame as RabbitMQ sends it, with these raw routing-key bytes."""
    stand_in = "X" * len(routing_key)
    data = frame.marshal(commands.Basic.Deliver("ctag", 1, False, "lt.submit", stand_in), 1)
    return data.replace(stand_in.encode(), routing_key)


def test_a_non_utf8_routing_key_decodes_losslessly() -> None:
    wire.install()
    raw_key = b"\xff\xfe.H60"
    data = _deliver_frame(raw_key)
    _, _, method = frame.unmarshal(data)
    assert isinstance(method, commands.Basic.Deliver)
    assert wire.undecodable(method.routing_key)
    assert wire.raw(method.routing_key) == raw_key
    assert wire.printable(method.routing_key) == "\\xff\\xfe.H60"
    assert not wire.undecodable("000.00.00.H60")


def test_undecodable_header_keys_decode_losslessly() -> None:
    wire.install()
    good = frame.marshal(commands.Basic.Deliver("ctag", 1, False, "lt.submit", "G22"), 1)
    _, _, method = frame.unmarshal(good)
    assert method.routing_key == "G22"  # valid UTF-8 exactly as before
    table = b"\x02\xc3\x28S\x00\x00\x00\x01a" + b"\x03abcF\x00\x00\x00\x06\x01\xffS\x00\x00\x00\x00"
    n, value = wire.field_table(len(table).to_bytes(4, "big") + table)
    assert n == 4 + len(table)
    keys = list(value)
    assert wire.raw(keys[0]) == b"\xc3\x28" and value[keys[0]] == "a"
    nested = value["abc"]
    assert isinstance(nested, dict) and [wire.raw(k) for k in nested] == [b"\xff"]


def test_an_out_of_range_timestamp_header_decodes() -> None:
    wire.install()
    table = b"\x01tT" + (2**63 - 1).to_bytes(8, "big")
    _, value = wire.field_table(len(table).to_bytes(4, "big") + table)
    assert value == {"t": 2**63 - 1}


def test_install_is_idempotent_and_complete() -> None:
    wire.install()
    wire.install()
    assert wire.installed()


def test_wildcards_admit_only_agency_code_characters() -> None:
    regex = gateway_topic_regex(["#.H60"], [])
    assert re.fullmatch(regex, "000.00.00.H60")
    assert re.fullmatch(regex, "H60")
    assert re.fullmatch(regex, "12.34.H60")
    # RabbitMQ matches the raw bytes of the routing key
    assert not re.fullmatch(regex.encode(), b"\xff\xfe.H60")
    assert not re.fullmatch(regex, "a b.H60")
    assert not re.fullmatch(regex, "x\u00e9.H60")
    everything = gateway_topic_regex(["#"], [])
    assert re.fullmatch(everything, "000.00.00.G22")
    assert not re.fullmatch(everything.encode(), b"\xff\xfe")
    assert not re.fullmatch(everything, "")
    star = gateway_topic_regex(["*.*.*.H41"], [])
    assert re.fullmatch(star, "000.00.18.H41")
    assert not re.fullmatch(star.encode(), b"000.\x00.18.H41")
    assert pattern_matches("#.H47", "001.00.00.H47")
