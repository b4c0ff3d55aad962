"""docs/asyncapi.yaml, the gateway interface for any language, says what the code does:
the names, header sets and AMQP types, receipt fields, delivery states and transitions are
compared with the contract in schemas/."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from schemas import StatusCode
from schemas import wire_names as wire
from schemas.audit_anchor import ANCHOR_CONTENT_TYPE, ANCHOR_MESSAGE_TYPE, AuditAnchor
from schemas.delivery_state import (
    RECALL_STATES,
    RECALL_TRANSITIONS,
    STATES,
    apply_status,
    legal_transitions,
)
from schemas.reasons import Reason, ValidationWarning, WarningCode
from schemas.receipt import RECEIPT_CONTENT_TYPE, Receipt, ReceiptType, RecipientOutcome

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


@pytest.fixture(scope="module")
def api() -> dict[str, Any]:
    return dict(yaml.safe_load(DOC.read_text(encoding="utf-8")))


def _message(api: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(api["components"]["messages"][name])


def test_it_is_asyncapi_3_with_the_gateway_channels(api: dict[str, Any]) -> None:
    assert str(api["asyncapi"]).startswith("3.0")
    addresses = {c["address"] for c in api["channels"].values()}
    assert addresses == {wire.SUBMIT, wire.DIRECT_REPLY, wire.inbox_queue("{gateway}"),
                         wire.receipts_queue("{gateway}")}
    bound = {c["bindings"]["amqp"].get("exchange", c["bindings"]["amqp"].get("queue"))["name"]
             for c in api["channels"].values() if "bindings" in c}
    assert bound == addresses - {wire.DIRECT_REPLY}


@pytest.mark.parametrize(("message", "headers"), [
    ("package", wire.SUBMIT_HEADERS),
    ("copy", wire.COPY_HEADERS),
    ("receipt", wire.RECEIPT_HEADERS),
    ("auditAnchor", wire.ANCHOR_HEADERS),
])
def test_header_sets_and_their_amqp_types(
    api: dict[str, Any], message: str, headers: tuple[wire.Header, ...]
) -> None:
    documented = _message(api, message)["headers"]
    props = documented["properties"]
    assert set(props) == {h.name for h in headers}
    assert {n: p["x-amqp-type"] for n, p in props.items()} == {
        h.name: h.amqp_type for h in headers}
    assert set(documented.get("required", ())) == {h.name for h in headers if h.required}
    json_type = {"longstr": "string", "array": "array", "double": "number",
                 "integer": "integer"}
    assert {n: p["type"] for n, p in props.items()} == {
        h.name: json_type[h.amqp_type] for h in headers}


def test_content_and_message_types(api: dict[str, Any]) -> None:
    assert _message(api, "package")["contentType"] == wire.PACKAGE_CONTENT_TYPE
    assert _message(api, "copy")["contentType"] == wire.PACKAGE_CONTENT_TYPE
    assert _message(api, "receipt")["contentType"] == RECEIPT_CONTENT_TYPE
    assert _message(api, "auditAnchor")["contentType"] == ANCHOR_CONTENT_TYPE
    assert _message(api, "auditAnchor")["bindings"]["amqp"]["messageType"] == ANCHOR_MESSAGE_TYPE
    for name in ("package", "copy"):
        kinds = _message(api, name)["x-amqp-properties"]["properties"]["type"]["enum"]
        assert tuple(kinds) == wire.PACKAGE_TYPES
    receipt_props = _message(api, "receipt")["x-amqp-properties"]["properties"]
    assert receipt_props["type"]["enum"] == [
        wire.receipt_message_type(t) for t in get_args(ReceiptType)]
    assert receipt_props["app_id"]["const"] == wire.HUB_APP_ID
    assert _message(api, "receipt")["headers"]["properties"]["lt-receipt-type"]["enum"] == list(
        get_args(ReceiptType))


def test_receipt_schema_has_every_field_the_hub_writes(api: dict[str, Any]) -> None:
    schemas = api["components"]["schemas"]
    outcome = RecipientOutcome("H41", "000.00.00.H41", "lgsp-nghean", "d", "queued")
    receipt = Receipt("r", "accepted", recipients=(outcome,),
                      signature={"alg": "Ed25519", "kid": "k", "value": "v"})
    written = receipt.as_dict()
    assert set(schemas["Receipt"]["properties"]) == set(written)
    assert set(schemas["Receipt"]["required"]) == set(receipt.unsigned_dict())
    assert schemas["Receipt"]["properties"]["type"]["enum"] == list(get_args(ReceiptType))
    assert set(schemas["RecipientOutcome"]["properties"]) == set(outcome.as_dict())
    assert set(schemas["RecipientOutcome"]["required"]) == set(outcome.as_dict())
    reason = Reason.RECIPIENT_UNKNOWN.as_dict("detail")
    assert set(schemas["Reason"]["properties"]) == set(reason)
    no_axis_code = Reason.SIGNATURE_INVALID.as_dict()
    assert set(schemas["Reason"]["required"]) == set(no_axis_code)
    warning = ValidationWarning(WarningCode.DATE_DAY_FIRST, "x").as_dict()
    assert set(schemas["Warning"]["properties"]) == set(warning)
    anchor = AuditAnchor(number=2, seq=9, hash="0" * 64, previous=(1, 5, "1" * 64),
                         at="2026-11-21T04:40:00.123Z", signature={"alg": "Ed25519"})
    assert set(schemas["AuditAnchor"]["properties"]) == set(anchor.as_dict())


def test_delivery_states_and_their_transitions(api: dict[str, Any]) -> None:
    state = api["components"]["schemas"]["DeliveryState"]
    assert tuple(state["enum"]) == STATES
    assert {s: {str(c): t for c, t in m.items()} for s, m in state["x-transitions"].items()} == {
        s: legal_transitions(s) for s in STATES}
    recall = api["components"]["schemas"]["RecallState"]
    assert tuple(recall["enum"]) == RECALL_STATES
    documented = {(t["before"], str(t["code"])): (t["after"], t["delivery"])
                  for t in recall["x-transitions"]}
    assert documented == RECALL_TRANSITIONS


@pytest.mark.parametrize("state", ["queued", "arrived", "done"])
def test_the_recall_transitions_are_the_state_machines(state: str) -> None:
    for (before, code), (after, delivery) in RECALL_TRANSITIONS.items():
        t = apply_status(state, before, StatusCode(code))
        assert t.ok and (t.recall_state, t.state) == (after, delivery or state)
