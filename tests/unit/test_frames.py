"""``router.outbox.frames`` writes the very bytes pamqp writes for the same publish."""

from __future__ import annotations

import datetime
import uuid

import pamqp.frame
import pytest
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from router.outbox.frames import publish_frames
from router.outbox.publish import copy_message, receipt_message, receipt_outgoing
from router.routing.plan import Copy
from schemas.receipt import Receipt


def _pamqp(channel: int, exchange: str, key: str, mandatory: bool,
           props: spec.Basic.Properties, body: bytes, max_content: int) -> bytes:
    frames: list[object] = [
        spec.Basic.Publish(exchange=exchange, routing_key=key, mandatory=mandatory),
        ContentHeader(properties=props, body_size=len(body)),
    ]
    frames += [ContentBody(body[i:i + max_content]) for i in range(0, len(body), max_content)]
    return b"".join(pamqp.frame.marshal(f, channel) for f in frames)  # type: ignore[arg-type]


def _copy(**kw: object) -> Copy:
    fields: dict[str, object] = {
        "gateway_id": "lgsp-nghean", "copy_id": uuid.uuid4(), "hub_id": uuid.uuid4(),
        "kind": "edoc", "body": "<edXML>Công văn</edXML>".encode() * 50,
        "sender": "000.00.00.G22", "document_id": "000.00.00.G22,2026/12/02,42/VPCP",
        "status_code": None, "delivery_ids": [uuid.uuid4(), uuid.uuid4()],
        "recipients": ["000.00.00.H41", "000.00.01.H41"],
    }
    fields.update(kw)
    return Copy(**fields)  # type: ignore[arg-type]


CASES = [
    ("copy", copy_message(_copy())),
    ("status copy", copy_message(_copy(kind="status", status_code="03", document_id=None))),
    ("no recipients", copy_message(_copy(recipients=[], delivery_ids=[]))),
    ("receipt", receipt_outgoing(Receipt(receipt_id=str(uuid.uuid4()), type="accepted",
                                        hub_id=str(uuid.uuid4()), message_id="m-1",
                                        kind="edoc", sender="000.00.00.G22"))),
    ("receipt without hub id", receipt_outgoing(Receipt(receipt_id="r", type="rejected"))),
    ("receipt as aio_pika.Message", receipt_message(Receipt(receipt_id="r", type="accepted",
                                                            hub_id="h"))),
]


@pytest.mark.parametrize(("name", "out"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("max_content", [131064, 100])
def test_same_bytes_as_pamqp(name: str, out: object, max_content: int) -> None:
    body, props = out.body, out.properties  # type: ignore[attr-defined]
    for exchange, key, mandatory in (("lt.deliver", "lgsp-nghean", True),
                                     ("", "amq.rabbitmq.reply-to.g1h2", False)):
        mine = publish_frames(7, exchange, key, mandatory, props, body, max_content)
        assert mine == _pamqp(7, exchange, key, mandatory, props, body, max_content)


def test_other_properties_and_values_are_left_to_pamqp() -> None:
    body = b"x"
    for props in (
        spec.Basic.Properties(timestamp=datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)),
        spec.Basic.Properties(headers={"n": 1}),
        spec.Basic.Properties(headers={"k" * 129: "v"}),
        spec.Basic.Properties(message_id="é" * 200),  # over 255 bytes
    ):
        assert publish_frames(1, "x", "k", False, props, body, 1000) is None
    props = spec.Basic.Properties(correlation_id="c-1", headers={}, message_id="")
    assert publish_frames(1, "x", "k", False, props, b"", 1000) == \
        _pamqp(1, "x", "k", False, props, b"", 1000)
