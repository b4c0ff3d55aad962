"""The pure decision step, without services: one case for every routing rejection reason,
and who hears of a rejection."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from router.routing import decide
from router.routing.decide import (
    ROUTING_REASONS,
    Agency,
    Facts,
    Gateway,
    Incoming,
    Plan,
    Rejection,
    Stored,
    Target,
    check_transitions,
    derive_id,
    settle_clashes,
)
from schemas import BusinessDocType, ParsedPackage, StatusCode, parse_package
from schemas.reasons import PackageRejected, Reason, ValidationWarning
from tests.factory import edoc, status

G22, H41, G12, L99, G01 = (
    "000.00.00.G22",
    "000.00.00.H41",
    "000.00.00.G12",
    "000.00.00.L99",
    "000.00.00.G01",
)
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)

GATEWAYS = {
    "u-vpcp": Gateway("vpcp", "u-vpcp", "active"),
    "u-na": Gateway("lgsp-nghean", "u-na", "active"),
    "u-off": Gateway("off", "u-off", "suspended"),
}
AGENCIES = {
    G22: Agency(1, G22, "vpcp", "active"),
    H41: Agency(2, H41, "lgsp-nghean", "active"),
    "H41": Agency(2, H41, "lgsp-nghean", "active"),  # its short alias
    G12: Agency(3, G12, None, "active"),  # served by no gateway
    L99: Agency(4, L99, "lgsp-nghean", "locked"),
    G01: Agency(5, G01, "off", "active"),  # its gateway is suspended
}
SENT, SENT_BODY = edoc(G22, [H41], number="100")  # a document G22 sent to H41 earlier
SENT_HUB = uuid.UUID(int=100)
TARGETS = {SENT.document_id: [Target(SENT_HUB, 1, "vpcp", G22, SENT.document_id)]}
# the delivery of SENT to H41, as the ledger derives its id
DELIVERY = derive_id("delivery", SENT_HUB, 2)


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "now": NOW, "gateways": GATEWAYS, "agencies": AGENCIES, "targets": TARGETS,
    }
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def no_signature_rules(
    gateway: str, body: bytes, has_signature: bool, now: datetime
) -> Sequence[ValidationWarning]:
    return ()


def message(
    body: bytes, *, user: str | None = "u-vpcp", key: str = G22, kind: str | None = "edoc",
    wire_error: str | None = None, reply_to: str | None = None,
) -> Incoming:
    return Incoming(body=body, amqp_user=user, routing_key=key, message_id="m-1",
                    declared_type=kind, wire_error=wire_error, reply_to=reply_to)


def parse(body: bytes) -> ParsedPackage | PackageRejected:
    try:
        return parse_package(body)
    except PackageRejected as exc:
        return exc


def decide_one(
    msg: Incoming, f: Facts | None = None,
    check: decide.SignatureCheck = no_signature_rules,
) -> Plan | Rejection:
    out = decide.decide([msg], [parse(msg.body)], f or facts(), check)
    assert len(out.plans) + len(out.rejections) == 1
    return out.plans[0] if out.plans else out.rejections[0]


def rejected(msg: Incoming, f: Facts | None = None) -> Rejection:
    r = decide_one(msg, f)
    assert isinstance(r, Rejection), f"accepted: {r}"
    return r


def plan_of(msg: Incoming) -> Plan:
    p = decide_one(msg)
    assert isinstance(p, Plan), f"rejected: {p}"
    return p


def status_plan(code: StatusCode, *, by: str = H41, to: str | None = None) -> Plan:
    user, key = ("u-na", H41) if by == H41 else ("u-vpcp", G22)
    return plan_of(message(status(by, SENT, code, to=to)[1], user=user, key=key, kind="status"))


# one case per reason: (message, facts) -> the rejection, plus what the detail names
@dataclass(frozen=True)
class Case:
    run: Callable[[], Rejection]
    detail: str = ""


def _transition(code: StatusCode, states: dict[uuid.UUID, tuple[str, str | None]],
                by: str = H41) -> Rejection:
    p = status_plan(code, by=by)
    kept, refused = check_transitions([p], states)
    assert kept == [] and len(refused) == 1
    return refused[0]


def _clash() -> Rejection:
    p = plan_of(message(edoc(G22, [H41], number="100", subject="Khác")[1]))
    other = Stored(SENT_HUB, b"\x00" * 32, "m-0", "vpcp")
    dups, refused = settle_clashes([p], {p.dedup_key: other}, {p.dedup_key: p}, [])
    assert dups == [] and len(refused) == 1
    return refused[0]


CASES: dict[Reason, Case] = {
    Reason.BAD_MESSAGE_PROPERTIES: Case(
        lambda: rejected(message(edoc(G22, [H41])[1], wire_error="routing key not UTF-8")),
        "routing key not UTF-8"),
    Reason.TYPE_MISSING: Case(lambda: rejected(message(edoc(G22, [H41])[1], kind=None))),
    Reason.KIND_MISMATCH: Case(
        lambda: rejected(message(edoc(G22, [H41])[1], kind="status")), "'status'"),
    Reason.GATEWAY_UNKNOWN: Case(
        lambda: rejected(message(edoc(G22, [H41])[1], user=None)), "user_id"),
    Reason.GATEWAY_SUSPENDED: Case(
        lambda: rejected(message(edoc(G01, [H41])[1], user="u-off", key=G01)), "off"),
    Reason.SENDER_NOT_REGISTERED: Case(
        lambda: rejected(message(edoc("000.00.00.X99", [H41])[1], key="000.00.00.X99")),
        "000.00.00.X99"),
    Reason.SENDER_NOT_SERVED: Case(
        lambda: rejected(message(edoc(H41, [G22])[1], key=H41)), f"{H41} is not served by vpcp"),
    Reason.RECIPIENT_UNKNOWN: Case(
        lambda: rejected(message(edoc(G22, ["000.00.99.H41"])[1])), "000.00.99.H41"),
    Reason.RECIPIENT_LOCKED: Case(lambda: rejected(message(edoc(G22, [L99])[1])), L99),
    Reason.RECIPIENT_NO_GATEWAY: Case(lambda: rejected(message(edoc(G22, [G12])[1])), G12),
    Reason.DOCUMENT_UNKNOWN: Case(
        lambda: rejected(message(edoc(G22, [H41], business=BusinessDocType.REVOKE,
                                      target="000.00.00.G22,2020/01/01,1/X")[1])),
        "2020/01/01"),
    Reason.TARGET_NOT_SAME_SENDER: Case(
        lambda: rejected(message(edoc(H41, [G22], business=BusinessDocType.REVOKE,
                                      target=SENT.document_id)[1], user="u-na", key=H41)),
        SENT.document_id),
    Reason.STATUS_WRONG_ADDRESSEE: Case(
        # Nghệ An answers about G22's document but addresses its answer to itself
        lambda: rejected(message(status(H41, SENT, StatusCode.ARRIVED, to=H41)[1],
                                 user="u-na", key=H41, kind="status")),
        f"not sent by {H41}"),
    Reason.STATUS_ISSUER_NOT_RECIPIENT: Case(
        lambda: _transition(StatusCode.ARRIVED, {}), H41),
    Reason.ILLEGAL_TRANSITION: Case(
        lambda: _transition(StatusCode.REFUSED, {DELIVERY: ("done", None)}), "done + 02"),
    Reason.RECALL_ANSWER_WITHOUT_RECALL: Case(
        lambda: _transition(StatusCode.RECALL_AGREED, {DELIVERY: ("queued", None)})),
    Reason.DOCUMENT_ID_CONFLICT: Case(_clash, SENT.document_id),
}


def test_every_routing_reason_has_a_case() -> None:
    assert set(CASES) == ROUTING_REASONS


def test_the_decision_step_decides_no_reason_outside_its_list() -> None:
    source = Path(decide.__file__).read_text(encoding="utf-8")
    named = {Reason[n] for n in re.findall(r"Reason\.([A-Z_]+)", source)}
    assert named == ROUTING_REASONS


@pytest.mark.parametrize("reason", sorted(CASES, key=lambda r: r.code), ids=lambda r: r.name)
def test_each_rejection_reason(reason: Reason) -> None:
    case = CASES[reason]
    r = case.run()
    assert r.reason is reason
    assert case.detail in r.detail
    assert r.index == 0


def test_a_well_formed_document_is_planned_for_each_recipient_once() -> None:
    p = plan_of(message(edoc(G22, [H41, "H41"])[1]))
    assert p.gateway_id == "vpcp" and p.sender.code == G22
    assert [a.code for _, a in p.recipients] == [H41]  # both names are one agency
    assert "DUPLICATE_RECIPIENT_ALIAS" in [w.code.name for w in p.warnings]
    assert p.dedup_key.startswith("edoc|1|0|")


def test_a_status_acts_on_the_delivery_of_the_document_to_its_issuer() -> None:
    p = status_plan(StatusCode.ARRIVED)
    assert p.status_delivery == DELIVERY and p.target is not None
    assert p.target.hub_id == SENT_HUB
    kept, refused = check_transitions([p], {DELIVERY: ("queued", None)})
    assert kept == [p] and refused == []


def test_a_recall_request_from_the_sender_on_a_delivery_that_never_was() -> None:
    p = status_plan(StatusCode.RECALL_REQUESTED, by=G22, to=H41)
    _, refused = check_transitions([p], {})
    assert refused[0].reason is Reason.RECIPIENT_UNKNOWN


def test_statuses_of_one_batch_apply_in_order() -> None:
    arrived, refused_ = status_plan(StatusCode.ACCEPTED), status_plan(StatusCode.REFUSED)
    kept, refused = check_transitions([arrived, refused_], {DELIVERY: ("queued", None)})
    assert kept == [arrived]
    assert [r.reason for r in refused] == [Reason.ILLEGAL_TRANSITION]


def test_the_same_content_again_is_a_duplicate_or_a_resume() -> None:
    p = plan_of(message(SENT_BODY))
    same = Stored(SENT_HUB, p.msg.sha256, "m-1", "vpcp")
    dups, refused = settle_clashes([p], {p.dedup_key: same}, {p.dedup_key: p}, [])
    assert refused == [] and dups[0].hub_id == SENT_HUB and dups[0].is_resume
    other_id = Stored(SENT_HUB, p.msg.sha256, "m-0", "vpcp")
    dups, _ = settle_clashes([p], {p.dedup_key: other_id}, {p.dedup_key: p}, [])
    assert not dups[0].is_resume


def test_the_signature_gate_refusal_passes_through() -> None:
    def required(gateway: str, body: bytes, has_signature: bool,
                 now: datetime) -> Sequence[ValidationWarning]:
        raise PackageRejected(Reason.SIGNATURE_REQUIRED, f"gateway {gateway} must sign")

    r = decide_one(message(edoc(G22, [H41])[1]), check=required)
    assert isinstance(r, Rejection) and r.reason is Reason.SIGNATURE_REQUIRED
    assert r.detail == "gateway vpcp must sign" and r.answer_gateway == "vpcp"


def test_a_parser_refusal_passes_through_with_its_warnings() -> None:
    r = rejected(message(b"<not xml"))
    assert r.reason is Reason.MALFORMED_XML


def test_one_bad_message_does_not_take_the_batch_down() -> None:
    msgs = [message(edoc(G22, [G12])[1]), message(edoc(G22, [H41])[1])]
    out = decide.decide(msgs, [parse(m.body) for m in msgs], facts(), no_signature_rules)
    assert [r.index for r in out.rejections] == [0] and [p.index for p in out.plans] == [1]


# who hears of a rejection --------------------------------------------------------------


def test_a_rejection_goes_to_the_gateway_of_the_verified_user() -> None:
    assert rejected(message(edoc(G22, [G12])[1])).answer_gateway == "vpcp"
    # a suspended gateway still hears why
    assert rejected(message(edoc(G01, [H41])[1], user="u-off", key=G01)).answer_gateway == "off"


def test_an_unknown_user_names_no_gateway_even_if_the_key_would() -> None:
    f = facts(admitted_by={G22: ["vpcp"]})
    assert rejected(message(edoc(G22, [H41])[1], user="u-stranger"), f).answer_gateway is None


@pytest.mark.parametrize(
    ("admitted", "expected"),
    [(["vpcp"], "vpcp"), ([], None), (["vpcp", "other"], None)],
    ids=["one-gateway", "no-gateway", "two-gateways"],
)
def test_without_user_id_only_the_one_gateway_that_can_publish_the_key_hears(
    admitted: list[str], expected: str | None
) -> None:
    f = facts(admitted_by={G22: admitted})
    r = rejected(message(edoc(G22, [H41])[1], user=None,
                         reply_to="amq.rabbitmq.reply-to.abc"), f)
    assert r.reason is Reason.GATEWAY_UNKNOWN
    assert r.answer_gateway == expected


def test_an_unreadable_envelope_names_no_gateway() -> None:
    f = facts(admitted_by={G22: ["vpcp"]})
    r = rejected(message(b"x", user=None, wire_error="bad header"), f)
    assert r.answer_gateway is None


def test_wanted_asks_for_the_keys_of_messages_without_user_only() -> None:
    msgs = [message(edoc(G22, [H41])[1], user=None),
            message(edoc(H41, [G22])[1], user="u-na", key=H41)]
    w = decide.wanted(msgs, [parse(m.body) for m in msgs])
    assert w.keys_without_user == [G22]
    assert w.users == ["u-na"]
    assert {G22, H41} <= set(w.codes)


def test_wanted_names_each_delivery_a_status_may_act_on() -> None:
    """A recipient's status acts on the delivery to itself, a sender's (a recall) on the
    delivery to the agency it answers for: the look-up reads both, by key."""
    msgs = [message(status(H41, SENT, StatusCode.ARRIVED)[1], user="u-na", key=H41,
                    kind="status"),
            message(status(G22, SENT, StatusCode.RECALL_REQUESTED, to=H41)[1], user="u-vpcp",
                    key=G22, kind="status"),
            message(edoc(G22, [H41])[1], user="u-vpcp", key=G22)]
    w = decide.wanted(msgs, [parse(m.body) for m in msgs])
    assert set(w.deliveries) == {(SENT.document_id, H41), (SENT.document_id, G22)}
    assert w.document_ids == [SENT.document_id]
