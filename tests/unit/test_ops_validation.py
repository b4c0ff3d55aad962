"""The ops API's request checks and error shape, without services: what an operator's
bad request gets back."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.ops.auth import TokenStore
from router.ops.errors import STATUS, error_body
from router.ops.openapi import openapi_document
from router.ops.server import create_app
from router.ops.validation import operation_specs, parse_time
from router.recovery import redelivery
from router.settings import Settings
from schemas.reasons import Reason

TOKEN = "operator-token-0123456789abcdef"


def test_every_operator_reason_has_an_http_status() -> None:
    ops = {r for r in Reason if 6000 <= r.code < 6030}
    assert ops == set(STATUS)
    assert all(400 <= s < 600 for s in STATUS.values())


def test_error_shape_names_the_reason_and_what_was_wrong() -> None:
    body = error_body(Reason.OPS_BAD_FILTER, "filter/states: 'queued' is not of type 'array'")
    assert body["error"] == "bad_filter"
    assert (body["reason"], body["code"]) == ("OPS_BAD_FILTER", 6003)
    assert str(body["message_vi"]).startswith("Bộ lọc không hợp lệ (filter/states")
    assert str(body["message_en"]).startswith("The filter is not valid (filter/states")
    assert "detail" not in error_body(Reason.OPS_NOT_FOUND)


def test_every_documented_operation_has_a_checker() -> None:
    documented = {(p, m.upper()) for p, ops in openapi_document()["paths"].items() for m in ops}
    assert set(operation_specs()) == documented


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-01-01T00:00:00", "0001-01-01T00:00:00+01:00"]
)
def test_times_need_an_offset_and_a_utc_equivalent(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_time(text)


def test_a_time_with_offset_is_read_as_utc() -> None:
    assert parse_time("2026-03-01T07:00:00+07:00").isoformat() == "2026-03-01T00:00:00+00:00"
    assert parse_time("2026-03-01T00:00:00Z").isoformat() == "2026-03-01T00:00:00+00:00"


@pytest.fixture
async def app_client() -> Any:
    # no service is reached: every request below is refused before a handler runs
    app = create_app(Settings(database_url="postgresql://127.0.0.1:1/none"),
                     tokens=TokenStore.parse(f"alice:operator:{TOKEN}"), refresh_interval=None)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/redeliveries?limit=abc", "query limit: 'abc' is not of type 'integer'"),
        ("/api/redeliveries?limit=0", "query limit: 0 is less than the minimum of 1"),
        ("/api/deliveries?limit=1&limit=2", "limit: given more than once"),
        ("/api/deliveries?colour=blue", "query: Additional properties are not allowed"),
        ("/api/parking?since=2026-01-01", "query since: '2026-01-01' is not a 'date-time'"),
    ],
)
async def test_bad_query_names_the_parameter(app_client: Any, path: str, detail: str) -> None:
    resp = await app_client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    body = await resp.json()
    assert resp.status == 400, body
    assert body["reason"] == "OPS_BAD_PARAMETER"
    assert body["detail"].startswith(detail), body


async def test_a_filter_read_letter_by_letter_is_refused(app_client: Any) -> None:
    resp = await app_client.post(
        "/api/redeliveries", json={"filter": {"states": "queued"}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    body = await resp.json()
    assert resp.status == 400
    assert body["reason"] == "OPS_BAD_FILTER"
    assert body["detail"] == "body filter/states: 'queued' is not of type 'array'"


async def test_a_handler_bug_is_a_500_never_a_400(
    app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(cls: type, text: str) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(redelivery.RedeliveryFilter, "from_json", classmethod(broken))
    resp = await app_client.post(
        "/api/redeliveries", json={"filter": {"states": ["queued"]}},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    body = await resp.json()
    assert resp.status == 500, body
    assert body["reason"] == "OPS_INTERNAL"
    assert "a bug" not in str(body)  # internals stay in the log


async def test_an_unreachable_ledger_is_a_503(app_client: Any) -> None:
    resp = await app_client.get(
        "/api/throughput?minutes=5", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    body = await resp.json()
    assert resp.status == 503, body
    assert body["reason"] == "OPS_UNAVAILABLE"


async def test_head_is_checked_like_get(app_client: Any) -> None:
    resp = await app_client.head(
        "/api/redeliveries?limit=abc", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status == 400
    assert resp.content_type == "application/json"


async def test_a_body_over_the_limit_is_a_413_in_json(app_client: Any) -> None:
    resp = await app_client.post(
        "/api/parking/drop", data=b"[" + b"0," * (1024 * 1024) + b"0]",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    body = await resp.json()
    assert resp.status == 413, body
    assert body["reason"] == "OPS_BODY_TOO_LARGE"
