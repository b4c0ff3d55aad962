"""The VXP façade's request authentication and answers, checked against the signing code
of tests/vxp_sdk.py (written from docs/vxp-api.md, independent of the façade)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.vxp import auth
from adapters.vxp.envelope import VxpFailure, fail_body, ok_body
from schemas.reasons import Reason
from tests.vxp_sdk import VIETNAM, VxpSdk, unpadded_hex, vxp_timestamp

SECRET = "s3cr3t-of-the-system"


def _sdk(seed: int = 1, **params: str) -> VxpSdk:
    client = VxpSdk(None, "http://x", "00.53.W00", SECRET, seed=seed)  # type: ignore[arg-type]
    client.params.update({"Content-Type": "application/json", **params})
    return client


def _check(headers: dict[str, str], secret: str = SECRET) -> dict[str, str]:
    lowered = auth.lower_headers(headers.items())
    return auth.verify(auth.read_signed(lowered), secret, lowered)


def _reason(headers: dict[str, str], secret: str = SECRET) -> Reason:
    with pytest.raises(VxpFailure) as info:
        _check(headers, secret)
    return info.value.reason


@pytest.mark.parametrize("seed", range(5))
def test_sdk_signature_verifies_in_any_key_order(seed: int) -> None:
    params = _check(_sdk(seed, docId="abc", status="done").sign())
    assert params["docid"] == "abc"
    assert params["systemid"] == "00.53.W00"


def test_hmac_is_over_the_text_as_received_not_a_reserialisation() -> None:
    # Gson escapes '=' as \u003d: json.dumps of the parsed object would differ
    headers = _sdk(**{"to": '["000.00.00.G22"]', "docId": "a=b"}).sign()
    sign_header = headers["XroadVnpt-sign-header"]
    assert "\\u003d" in sign_header
    assert json.dumps(json.loads(sign_header), separators=(",", ":")) != sign_header
    assert _check(headers)["docid"] == "a=b"


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower() if k.startswith("XroadVnpt") else k: v
               for k, v in _sdk(docId="x").sign().items()}
    assert _check(headers)["docid"] == "x"


def test_unknown_and_leftover_unsigned_headers_are_ignored() -> None:
    headers = _sdk().sign()
    headers["XroadVnpt-filePath"] = "C:/temp/x.edxml"  # not a parameter the façade uses
    headers["X-Forwarded-For"] = "10.0.0.1"
    assert "filepath" not in _check(headers)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda h: h.pop("XroadVnpt-hash-header"), Reason.VXP_UNSIGNED),
        (lambda h: h.pop("XroadVnpt-systemid"), Reason.VXP_UNSIGNED),
        (lambda h: h.update({"XroadVnpt-hash-header": "0" * 64}), Reason.VXP_BAD_SIGNATURE),
        (lambda h: h.update({"XroadVnpt-docId": "other"}), Reason.VXP_SIGN_HEADER_MISMATCH),
        (lambda h: h.update({"XroadVnpt-status": "done"}), Reason.VXP_SIGN_HEADER_MISMATCH),
        (lambda h: h.pop("XroadVnpt-docId"), Reason.VXP_SIGN_HEADER_MISMATCH),
        (lambda h: h.update({"XroadVnpt-systemid": "00.53.W99"}),
         Reason.VXP_SIGN_HEADER_MISMATCH),
    ],
    ids=["no-mac", "no-systemid", "bad-mac", "changed-value", "unsigned-used-header",
         "signed-header-missing", "other-systemid"],
)
def test_tampering_is_refused(mutate: Any, reason: Reason) -> None:
    headers = _sdk(docId="mine").sign()
    mutate(headers)
    assert _reason(headers) is reason


def test_wrong_secret_is_refused() -> None:
    assert _reason(_sdk().sign(), secret="another") is Reason.VXP_BAD_SIGNATURE


def test_signed_content_type_may_come_only_as_the_real_header() -> None:
    headers = _sdk().sign()
    headers.pop("XroadVnpt-Content-Type")
    _check(headers)


def test_file_hash_padded_or_unpadded() -> None:
    # find a digest with a byte below 0x10, where the SDK's text is shorter
    candidates = (str(i).encode() for i in range(1000))
    data = next(d for d in candidates if min(hashlib.sha256(d).digest()) < 16)
    digest = hashlib.sha256(data).digest()
    assert len(unpadded_hex(digest)) < 64
    assert auth.file_hash_matches(unpadded_hex(digest), digest)
    assert auth.file_hash_matches(digest.hex(), digest)
    assert auth.file_hash_matches(digest.hex().upper(), digest)
    assert not auth.file_hash_matches(hashlib.sha256(b"other").hexdigest(), digest)
    assert not auth.file_hash_matches("", digest)


def test_timestamps_and_strict_freshness() -> None:
    now = datetime(2026, 12, 1, 16, 30, 5, 123000, tzinfo=UTC)
    text = vxp_timestamp(now)
    assert text == "01122026T233005+0123"
    assert auth.parse_timestamp(text) == now
    auth.check_fresh({"timestamp": text}, now + timedelta(seconds=299), 300)
    for params in ({"timestamp": text}, {}, {"timestamp": "yesterday"}):
        with pytest.raises(VxpFailure) as info:
            auth.check_fresh(params, now + timedelta(seconds=301), 300)
        assert info.value.reason is Reason.VXP_STALE_TIMESTAMP
    assert vxp_timestamp(datetime.now(VIETNAM))  # the client's own clock works


def test_answers_are_ascii_with_all_three_fields() -> None:
    body = fail_body(VxpFailure(Reason.VXP_BAD_SIGNATURE))
    body.decode("ascii")
    answer = json.loads(body)
    assert answer["status"] == "FAIL"
    assert answer["ErrorCode"] == "15"
    assert Reason.VXP_BAD_SIGNATURE.message_vi in answer["ErrorDesc"]
    assert Reason.VXP_BAD_SIGNATURE.message_en in answer["ErrorDesc"]
    ok = json.loads(ok_body(DocId="x"))
    assert (ok["status"], ok["ErrorCode"], ok["ErrorDesc"], ok["DocId"]) == ("OK", "0", "", "x")


def test_hub_axis_code_overrides_the_reason_default() -> None:
    failure = VxpFailure(Reason.PROCESSING_ERROR, axis_code=18, message_vi="Không có",
                         message_en="Missing")
    answer = json.loads(fail_body(failure))
    assert answer["ErrorCode"] == "18"
    assert answer["ErrorDesc"].startswith("Không có / Missing")


def test_openapi_documents_every_operation_and_nothing_else() -> None:
    from adapters.vxp.app import OPERATIONS
    from adapters.vxp.openapi import openapi_document

    doc = openapi_document()
    assert {p.strip("/").lower() for p in doc["paths"]} == set(OPERATIONS)
    send = doc["paths"]["/sendEdoc"]["post"]
    names = {p["name"] for p in send["parameters"]}
    assert {"XroadVnpt-hash-file", "XroadVnpt-sign-header", "XroadVnpt-hash-header"} <= names
    assert "multipart/form-data" in send["requestBody"]["content"]
    json.dumps(doc)
