"""A directory feed request is checked before the ledger is read: a bad one gets a reason
(the JSON object by the shared request server, its fields by the feed)."""

from __future__ import annotations

import pytest

from router.directory.feed import PAGE_MAX, parse_request
from router.requests import REQUEST_MAX_BYTES, parse_body
from schemas.reasons import LienthongError, Reason


def _parse(body: bytes) -> tuple[int, int]:
    return parse_request(parse_body(Reason.DIRECTORY_BAD_REQUEST, body))


def test_a_request_gives_after_and_limit() -> None:
    assert _parse(b'{"after": 17, "limit": 50}') == (17, 50)
    assert _parse(b"{}") == (0, PAGE_MAX)  # the whole directory


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"after": "yesterday"}',
                                  b'{"after": -1}', b'{"after": true}', b'{"limit": 0}',
                                  b'{"limit": 1.5}', b"\xff\xfe",
                                  b'{"pad": "' + b"x" * REQUEST_MAX_BYTES + b'"}'])
def test_a_bad_request_is_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(LienthongError) as caught:
        _parse(body)
    assert caught.value.reason is Reason.DIRECTORY_BAD_REQUEST
