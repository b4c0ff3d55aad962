"""The delivery states of the contract and their legal transitions: the state machine of
one delivery (one document to one recipient agency). The hub applies it
(``router.routing``); gateways and conformance checks read it. No I/O.

Hub-side states::

    submitted ──publish confirmed──▶ queued          (copy is in the recipient gateway's inbox)
    submitted ──returned/refused───▶ undeliverable   (no inbox, or it refused the copy)

Recipient progress, from status packages (furthest progress wins)::

    queued → arrived (01) → accepted (03) → assigned (04) → processing (05) → done (06)
                       └──→ refused (02)     (instead of 03; final)

Recall, a second dimension kept in ``recall_state``: the sender's 13 sets ``requested``;
the recipient answers 15 (``agreed``; the delivery becomes ``recalled``) or 16
(``refused``; the delivery keeps its progress). A 13 on a finished (06) delivery is still
forwarded: the answer settles it.

Business flows set ``revoked`` (type 1) and ``replaced`` (type 3) on the target's deliveries.

Rules for out-of-order and repeated status packages (real software sends 03 and 05 in the
same second; buggy gateways send 05 before 03):

* every status package is recorded as an event, even when it changes nothing;
* the state is the furthest progress seen; an event behind the current progress is
  recorded with the flag ``out_of_order`` (or ``repeated`` for the same code again);
* refusing (02) after acceptance (03 or later) and any progress after a refusal are
  illegal: rejected with ILLEGAL_TRANSITION and recorded;
* 15 or 16 without a prior 13 is rejected with RECALL_ANSWER_WITHOUT_RECALL;
* statuses on revoked, replaced or recalled deliveries are recorded with the flag
  ``after_close`` and change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

from schemas.model import StatusCode
from schemas.reasons import Reason

__all__ = [
    "ACCEPTED",
    "ARRIVED",
    "ASSIGNED",
    "CLOSED_STATES",
    "DONE",
    "PROCESSING",
    "PROGRESS",
    "QUEUED",
    "RECALLED",
    "RECALL_STATES",
    "RECALL_TRANSITIONS",
    "REFUSED",
    "REPLACED",
    "REVOKED",
    "STATES",
    "STATE_FOR_CODE",
    "SUBMITTED",
    "UNDELIVERABLE",
    "DeliveryState",
    "RecallState",
    "Transition",
    "apply_status",
    "legal_transitions",
]

DeliveryState = Literal[
    "submitted", "queued", "undeliverable", "arrived", "refused", "accepted", "assigned",
    "processing", "done", "recalled", "revoked", "replaced",
]
RecallState = Literal["requested", "agreed", "refused"]

#: every state a delivery can be in, in the order of the lifecycle
STATES: Final[tuple[str, ...]] = get_args(DeliveryState)
RECALL_STATES: Final[tuple[str, ...]] = get_args(RecallState)

SUBMITTED = "submitted"
QUEUED = "queued"
UNDELIVERABLE = "undeliverable"
ARRIVED = "arrived"
REFUSED = "refused"
ACCEPTED = "accepted"
ASSIGNED = "assigned"
PROCESSING = "processing"
DONE = "done"
RECALLED = "recalled"
REVOKED = "revoked"
REPLACED = "replaced"

STATE_FOR_CODE: dict[StatusCode, str] = {
    StatusCode.ARRIVED: ARRIVED,
    StatusCode.REFUSED: REFUSED,
    StatusCode.ACCEPTED: ACCEPTED,
    StatusCode.ASSIGNED: ASSIGNED,
    StatusCode.PROCESSING: PROCESSING,
    StatusCode.DONE: DONE,
}

PROGRESS: dict[str, int] = {
    SUBMITTED: 0,
    UNDELIVERABLE: 0,
    QUEUED: 1,
    ARRIVED: 2,
    ACCEPTED: 3,
    REFUSED: 3,
    ASSIGNED: 4,
    PROCESSING: 5,
    DONE: 6,
}

CLOSED_STATES = frozenset({RECALLED, REVOKED, REPLACED})


@dataclass(frozen=True, slots=True)
class Transition:
    """What a status package does to a delivery."""

    state: str
    recall_state: str | None
    reason: Reason | None = None  # set when the status is refused
    flags: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason is None


def apply_status(state: str, recall_state: str | None, code: StatusCode) -> Transition:
    """The delivery's state after ``code``, or the reason it is not allowed."""
    if code is StatusCode.RECALL_REQUESTED:
        if state in CLOSED_STATES:
            return Transition(state, recall_state, flags=("after_close",))
        flags = ("repeated",) if recall_state == "requested" else ()
        return Transition(state, "requested", flags=flags)
    if code in (StatusCode.RECALL_AGREED, StatusCode.RECALL_REFUSED):
        if recall_state is None:
            return Transition(state, recall_state, Reason.RECALL_ANSWER_WITHOUT_RECALL)
        if recall_state != "requested":
            return Transition(state, recall_state, flags=("repeated",))
        if code is StatusCode.RECALL_AGREED:
            return Transition(RECALLED, "agreed")
        return Transition(state, "refused")

    if state in CLOSED_STATES:
        return Transition(state, recall_state, flags=("after_close",))
    new = STATE_FOR_CODE[code]
    if state == REFUSED:
        if new == REFUSED:
            return Transition(state, recall_state, flags=("repeated",))
        if new == ARRIVED:
            return Transition(state, recall_state, flags=("out_of_order",))
        return Transition(state, recall_state, Reason.ILLEGAL_TRANSITION)
    current = PROGRESS.get(state, 0)
    if new == REFUSED:
        if current >= PROGRESS[ACCEPTED]:
            return Transition(state, recall_state, Reason.ILLEGAL_TRANSITION)
        return Transition(REFUSED, recall_state)
    target = PROGRESS[new]
    if target > current:
        return Transition(new, recall_state)
    flag = "repeated" if new == state else "out_of_order"
    return Transition(state, recall_state, flags=(flag,))


def legal_transitions(state: str) -> dict[str, str]:
    """Where each progress code (01-06) takes a delivery in ``state``: code → new state,
    for the codes that move it on. A code missing is refused (ILLEGAL_TRANSITION), or
    recorded as repeated, out of order or after close without changing anything (see
    :func:`apply_status`). The recall codes (13, 15, 16) act on ``recall_state`` instead:
    see :data:`RECALL_TRANSITIONS`. For docs and conformance checks."""
    out: dict[str, str] = {}
    for code in STATE_FOR_CODE:
        t = apply_status(state, None, code)
        if t.ok and not t.flags and t.state != state:
            out[code.value] = t.state
    return out


#: the recall dimension: (recall_state before, code) → (recall_state after, delivery state
#: after, or None when the delivery keeps its state). 15/16 without a 13 first are refused
#: (RECALL_ANSWER_WITHOUT_RECALL); a repeated 13, 15 or 16 changes nothing.
RECALL_TRANSITIONS: Final[dict[tuple[str | None, str], tuple[str, str | None]]] = {
    (None, StatusCode.RECALL_REQUESTED.value): ("requested", None),
    ("requested", StatusCode.RECALL_AGREED.value): ("agreed", RECALLED),
    ("requested", StatusCode.RECALL_REFUSED.value): ("refused", None),
}

