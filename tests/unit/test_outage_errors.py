"""During a PostgreSQL failover the router waits (the batch is retried in place) instead
of bouncing messages back to RabbitMQ, where the redeliveries would count towards parking
healthy packages. These are the errors a failover shows; each must read as "a service is
away", not as "this message is bad"."""

from __future__ import annotations

import asyncpg
import pytest

from router.routing.intake import _transient


@pytest.mark.parametrize("exc", [
    # every host answered, none is the primary yet (the standby is being promoted)
    asyncpg.exceptions.TargetServerAttributeNotMatched("no read-write server"),
    # a pooled connection still on a node that was just demoted to standby
    asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"),
    # the new primary is still starting up
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    ConnectionRefusedError(111, "Connect call failed"),
])
def test_failover_errors_mean_wait(exc: BaseException) -> None:
    assert _transient(exc)


@pytest.mark.parametrize("exc", [
    asyncpg.exceptions.UniqueViolationError("duplicate key"),
    ValueError("bad package"),
])
def test_other_errors_are_not_an_outage(exc: BaseException) -> None:
    assert not _transient(exc)
