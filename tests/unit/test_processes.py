"""The supervisor's restart policy: backoff doubles per worker, capped."""

from __future__ import annotations

from router.processes import RestartPolicy, worker_argv


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=30.0)
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_a_supervised_worker_knows_its_place() -> None:
    assert worker_argv(2)[-4:] == ["-n", "1", "--worker-index", "2"]
    assert "--worker-index" not in worker_argv()
