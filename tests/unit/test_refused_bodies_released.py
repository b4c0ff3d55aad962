"""A refused package's bytes are freed as soon as its batch is done, not at the next
garbage collection (issue #11, item 3: RSS grew ~30 MiB per refused package and stayed)."""

from __future__ import annotations

import gc
import sys
from typing import Any, cast

from router.routing.batch import BatchRouter, Incoming
from schemas import PackageRejected, ParseLimits, Reason


def _route_like(router: BatchRouter, msg: Incoming) -> Reason:
    # what BatchRouter.route does: keep each parse outcome in a local list
    parsed = [router._parse(msg)]
    outcome = parsed[0]
    assert isinstance(outcome, PackageRejected)
    return outcome.reason


def test_the_body_of_a_refused_package_is_freed_without_a_collection() -> None:
    router = BatchRouter(cast(Any, None), limits=ParseLimits(max_bytes=1000))
    for body, reason in [(b"<edXML>" + b"x" * 5000, Reason.PACKAGE_TOO_LARGE),
                         (b"<not-xml" + b"y" * 100, Reason.MALFORMED_XML)]:
        gc.disable()
        try:
            alone = sys.getrefcount(body)  # only this test holds it
            msg = Incoming(body=body, amqp_user="gw", routing_key="000.00.00.G22",
                           message_id="m-1")
            assert _route_like(router, msg) is reason
            del msg
            assert sys.getrefcount(body) == alone, f"{reason.name}: the body outlives its batch"
        finally:
            gc.enable()
