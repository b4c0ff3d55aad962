"""Telling a broker refusal of a publish apart from a lost connection.

RabbitMQ refuses a publish whose routing key (the sender's agency code) the gateway's
topic permission does not allow, and closes the channel. The refusal names the routing key;
other sends in flight on that channel fail with the same error, but only the one whose
key it names was refused (the others may simply be sent again).
"""

from __future__ import annotations

import aiormq

from schemas.agency_code import normalize

__all__ = ["refused_sender"]


def refused_sender(exc: BaseException, sender_code: str) -> bool:
    """True when ``exc`` is the broker refusing to let this gateway send as ``sender_code``
    (raised as is, or as the cause of the SDK's :class:`adapters.errors.PublishRefused`)."""
    code = f"'{normalize(sender_code)}'"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, aiormq.exceptions.ChannelAccessRefused) and code in str(seen):
            return True
        seen = seen.__cause__
    return False
