"""What a gateway asks the hub to audit (schemas/gateway_change.py): checked the same on
both sides, and never able to carry a secret or a password."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.gateway_change import change_request, fingerprint, parse
from schemas.reasons import LienthongError, Reason


def _body(**over: Any) -> dict[str, Any]:
    body = change_request("vxp.system.added", "vxp.saas.03", None,
                          {"gateway": "vpcp", "strict": False,
                           "secret_fingerprint": fingerprint("s3cret")}, by="cli:alice")
    body.update(over)
    return body


def test_a_change_parses_and_its_id_is_kept() -> None:
    body = _body()
    change = parse(body)
    assert (change.action, change.subject, change.before) == (
        "vxp.system.added", "vxp.saas.03", None)
    assert change.change_id == body["change_id"]
    assert change.after is not None and "s3cret" not in str(change.after)


def test_a_fingerprint_tells_secrets_apart_and_hides_them() -> None:
    assert fingerprint("a") != fingerprint("b") and fingerprint("a") == fingerprint("a")
    assert fingerprint("s3cret").startswith("sha256:") and "s3cret" not in fingerprint("s3cret")


@pytest.mark.parametrize("over", [
    {"change_id": "not-a-uuid"},
    {"action": "vxp.system.hacked"},
    {"subject": "two words"},
    {"before": None, "after": None},
    {"after": {"secret": "s3cret"}},  # not a known field: a secret has no place here
    {"after": {"gateway": {"nested": 1}}},
    {"after": {"amqp_url": "amqp://vpcp:PASSWORD@axis:5672/lienthong"}},
    {"after": ["gateway"]},
])
def test_a_bad_change_is_refused_with_a_reason(over: dict[str, Any]) -> None:
    with pytest.raises(LienthongError) as caught:
        parse(_body(**over))
    assert caught.value.reason is Reason.HUB_REQUEST_BAD
