"""A directory feed request is checked before the ledger is read: a bad one gets a reason."""

from __future__ import annotations

import pytest

from router.directory.feed import PAGE_MAX, parse_request
from schemas.reasons import LienthongError, Reason


def test_a_request_gives_after_and_limit() -> None:
    assert parse_request(b'{"after": 17, "limit": 50}') == (17, 50)
    assert parse_request(b"{}") == (0, PAGE_MAX)  # the whole directory


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"after": "yesterday"}',
                                  b'{"after": -1}', b'{"after": true}', b'{"limit": 0}',
                                  b'{"limit": 1.5}', b"\xff\xfe"])
def test_a_bad_request_is_refused_with_a_reason(body: bytes) -> None:
    with pytest.raises(LienthongError) as caught:
        parse_request(body)
    assert caught.value.reason is Reason.DIRECTORY_BAD_REQUEST
