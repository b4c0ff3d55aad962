"""The shape every request to the hub shares (router/requests.py): a JSON object, the
gateway named by the broker, who acted on its side, fields checked with a reason."""

from __future__ import annotations

import pytest

from router.requests import HubRequest, json_answer, parse_body
from schemas.reasons import LienthongError, Reason


def test_the_actor_is_the_verified_gateway_then_who_it_says_acted() -> None:
    assert HubRequest("k", "vpcp", {}).actor() == "gateway:vpcp"
    assert HubRequest("k", "vpcp", {"by": "cli:alice"}).actor() == "gateway:vpcp/cli:alice"
    assert (HubRequest("k", "vpcp", {"by": "vxp:00.53.W41"}).actor()
            == "gateway:vpcp/vxp:00.53.W41")


@pytest.mark.parametrize("by", ["cli alice", "gateway:other/cli:x", 7, "x" * 200, ""])
def test_a_bad_by_is_refused(by: object) -> None:
    with pytest.raises(LienthongError) as caught:
        HubRequest("k", "vpcp", {"by": by}).actor()
    assert caught.value.reason is Reason.HUB_REQUEST_BAD


def test_text_fields_are_checked() -> None:
    request = HubRequest("k", "vpcp", {"code": " 000.01.00.H41 ", "name": 5, "blank": " "})
    assert request.text("code") == "000.01.00.H41"
    assert request.text("parent", required=False) is None
    for name in ("name", "blank", "missing"):
        with pytest.raises(LienthongError) as caught:
            request.text(name)
        assert caught.value.reason is Reason.HUB_REQUEST_BAD and name in caught.value.detail


def test_an_answer_is_json_with_its_type() -> None:
    m = json_answer("audit.recorded", {"id": 3, "repeat": False})
    assert (m.type, m.body, m.content_type) == (
        "audit.recorded", b'{"id": 3, "repeat": false}', "application/json")
    with pytest.raises(LienthongError):
        parse_body(Reason.HUB_REQUEST_BAD, b"[1]")
