"""The whole ops API, driven by its own OpenAPI document (schemathesis): for valid and
invalid requests alike, no server error, and every answer conforms to the document
(status code, content type, headers and JSON schema); requests the document calls invalid
are refused with a 4xx.

The app runs on the test's event loop against a throwaway hub (real RabbitMQ and
PostgreSQL); schemathesis sends its requests from a worker thread. Hypothesis is
derandomized (no example database): the same examples on every run, in CI too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from schemathesis.checks import CheckFunction
from schemathesis.specs.openapi import checks as oas_checks

from router.ops.auth import TokenStore
from router.ops.server import create_app
from tests.factory import edoc
from tests.hub import Hub

OPERATOR = "operator-token-0123456789abcdef"
TOKENS = TokenStore.parse(f"alice:operator:{OPERATOR}")
MAX_EXAMPLES = 25  # per operation and mode (15 operations): a 20-35 s run

CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,  # type: ignore[attr-defined]
    oas_checks.status_code_conformance,
    oas_checks.content_type_conformance,
    oas_checks.response_headers_conformance,
    oas_checks.response_schema_conformance,
    oas_checks.negative_data_rejection,
]


def _summary(exc: BaseException) -> str:
    """A failure's gist: what was violated and the curl line that reproduces it."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if ln.startswith(("-", "curl", "[", "Expected", "Invalid"))]
    return " | ".join(keep or lines)[:1200]


def _fuzz(base_url: str, document: dict[str, Any]) -> list[str]:
    """Run every operation in both modes; the failures, one line each."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    session = requests.Session()
    session.trust_env = False  # straight to 127.0.0.1, whatever proxy the environment names
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=MAX_EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                # the document makes Authorization a required header: where the case has
                # one it carries the real token; a negative case that left it out must be
                # refused (401), so it is not added behind the case's back
                if case.headers is not None and "Authorization" in case.headers:
                    case.headers["Authorization"] = f"Bearer {OPERATOR}"
                case.call_and_validate(base_url=base_url, session=session, checks=CHECKS)

            try:
                check()
            except hypothesis.errors.Unsatisfiable:
                # nothing to make invalid (no parameter, no body): nothing to check
                assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                failures.append(f"{operation.label} [{mode.value}]: {_summary(exc)}")
    return failures


async def test_every_operation_answers_per_its_document(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.start_router()
    _, body = edoc("000.00.00.G22", ["000.00.00.G22"])
    async with hub.client("vpcp") as vpcp:  # one document in the ledger to look at
        assert (await vpcp.send(body)) is not None
    app = create_app(hub.settings, tokens=TOKENS, pool=hub.pool, refresh_interval=None)
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        base_url = str(client.make_url("")).rstrip("/")
        document = await (await client.get("/api/openapi.json")).json()
        started = time.monotonic()
        failures = await asyncio.to_thread(_fuzz, base_url, document)
        elapsed = time.monotonic() - started
    finally:
        await client.close()
    print(f"schemathesis: {len(document['paths'])} paths in {elapsed:.1f} s")
    assert failures == [], "\n\n".join(failures)
