"""The conformance checks' verdicts from observations (no services)."""

from __future__ import annotations

from router.conformance import Observations, evaluate


def _ok() -> Observations:
    return Observations(arrived_after={"new": 0.4, "update": 1.0}, inbox_messages=0, parked=0,
                        duplicate_flags=["", ""], refused_statuses=[], recall_state="agreed",
                        recall_after=2.0)


def _verdicts(obs: Observations, limit: float = 10.0) -> dict[str, bool]:
    return {r.name: r.passed for r in evaluate(obs, limit)}


def test_a_behaving_gateway_passes_every_check() -> None:
    assert all(_verdicts(_ok()).values())


def test_each_fault_fails_its_own_check_only() -> None:
    faults = {
        "acks_every_copy": {"inbox_messages": 3},
        "answers_arrived": {"arrived_after": {"new": 0.4, "update": None}},
        "drops_duplicates": {"duplicate_flags": ["", "repeated"]},
        "legal_transitions": {"refused_statuses": ["ILLEGAL_TRANSITION"]},
        "answers_recall": {"recall_state": "requested", "recall_after": None},
    }
    for check, change in faults.items():
        obs = _ok()
        for k, v in change.items():
            setattr(obs, k, v)
        verdicts = _verdicts(obs)
        assert [name for name, ok in verdicts.items() if not ok] == [check], check


def test_late_answers_and_parked_copies_fail() -> None:
    late = _ok()
    late.arrived_after["new"] = 11.0
    late.recall_after = 12.0
    parked = _ok()
    parked.parked = 1
    assert not _verdicts(late)["answers_arrived"] and not _verdicts(late)["answers_recall"]
    assert not _verdicts(parked)["acks_every_copy"]
    assert not _verdicts(Observations(), 10)["answers_arrived"]  # nothing sent is no pass
