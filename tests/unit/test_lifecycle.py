"""The delivery state machine: every transition and every rejection rule."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.routing.lifecycle import PROGRESS, apply_status
from schemas import StatusCode
from schemas.reasons import Reason

C = StatusCode


@pytest.mark.parametrize(
    ("state", "code", "new"),
    [
        ("queued", C.ARRIVED, "arrived"),
        ("undeliverable", C.ARRIVED, "arrived"),  # it got there after all
        ("arrived", C.ACCEPTED, "accepted"),
        ("arrived", C.REFUSED, "refused"),
        ("queued", C.REFUSED, "refused"),
        ("accepted", C.ASSIGNED, "assigned"),
        ("assigned", C.PROCESSING, "processing"),
        ("processing", C.DONE, "done"),
        ("queued", C.DONE, "done"),  # software that only reports completion
        ("arrived", C.PROCESSING, "processing"),  # 03 and 05 in the same second
    ],
)
def test_forward_progress(state: str, code: StatusCode, new: str) -> None:
    t = apply_status(state, None, code)
    assert t.ok and t.state == new and t.flags == ()


@pytest.mark.parametrize(
    ("state", "code", "flag"),
    [
        ("processing", C.ACCEPTED, "out_of_order"),  # 05 arrived before 03
        ("done", C.ARRIVED, "out_of_order"),
        ("accepted", C.ACCEPTED, "repeated"),
        ("refused", C.REFUSED, "repeated"),
        ("refused", C.ARRIVED, "out_of_order"),
    ],
)
def test_late_or_repeated_status_is_recorded_without_going_back(
    state: str, code: StatusCode, flag: str
) -> None:
    t = apply_status(state, None, code)
    assert t.ok and t.state == state and t.flags == (flag,)


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("done", C.REFUSED),  # 06 then 02
        ("accepted", C.REFUSED),
        ("processing", C.REFUSED),
        ("refused", C.ACCEPTED),  # progress after a refusal
        ("refused", C.DONE),
    ],
)
def test_illegal_transitions_are_refused(state: str, code: StatusCode) -> None:
    t = apply_status(state, None, code)
    assert t.reason is Reason.ILLEGAL_TRANSITION and t.state == state


def test_recall_flow() -> None:
    t = apply_status("done", None, C.RECALL_REQUESTED)  # a finished document can be recalled
    assert (t.ok, t.state, t.recall_state) == (True, "done", "requested")
    agreed = apply_status(t.state, t.recall_state, C.RECALL_AGREED)
    assert (agreed.state, agreed.recall_state) == ("recalled", "agreed")
    refused = apply_status(t.state, t.recall_state, C.RECALL_REFUSED)
    assert (refused.state, refused.recall_state) == ("done", "refused")
    again = apply_status("recalled", "agreed", C.RECALL_AGREED)
    assert again.ok and again.flags == ("repeated",)


@pytest.mark.parametrize("code", [C.RECALL_AGREED, C.RECALL_REFUSED])
def test_recall_answer_without_recall(code: StatusCode) -> None:
    t = apply_status("arrived", None, code)
    assert t.reason is Reason.RECALL_ANSWER_WITHOUT_RECALL


@pytest.mark.parametrize("closed", ["revoked", "replaced", "recalled"])
def test_statuses_after_close_change_nothing(closed: str) -> None:
    for code in (C.ARRIVED, C.DONE, C.RECALL_REQUESTED):
        t = apply_status(closed, None, code)
        assert t.ok and t.state == closed and t.flags == ("after_close",)


recipient_codes = st.sampled_from(
    [C.ARRIVED, C.ACCEPTED, C.ASSIGNED, C.PROCESSING, C.DONE, C.REFUSED]
)


@given(st.lists(recipient_codes, min_size=1, max_size=8))
def test_progress_never_goes_back(codes: list[StatusCode]) -> None:
    """Whatever order statuses come in, progress is monotonic and 'refused' is final."""
    state, recall = "queued", None
    for code in codes:
        t = apply_status(state, recall, code)
        if not t.ok:
            assert t.state == state
            continue
        if state == "refused":
            assert t.state == "refused"
        else:
            assert PROGRESS[t.state] >= PROGRESS[state]
        state, recall = t.state, t.recall_state


def test_any_order_of_01_03_05_06_ends_done() -> None:
    for order in itertools.permutations([C.ARRIVED, C.ACCEPTED, C.PROCESSING, C.DONE]):
        state = "queued"
        for code in order:
            state = apply_status(state, None, code).state
        assert state == "done"
