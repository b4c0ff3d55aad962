"""Changes a gateway makes on its own side, recorded in the hub's audit log on its request.

The VXP façade keeps its systems and their secrets in its own database and never writes
to the hub's; ``lienthong vxp systems add|rotate-secret|mode|remove`` asks the hub
(``audit.record_gateway_change`` on ``lt.requests``, :mod:`router.requests`) to record
each change before committing it, and changes nothing when the hub does not answer::

    request  {"change_id": "<uuid>", "action": "vxp.system.added", "subject": "vxp.saas.03",
              "before": null, "after": {"gateway": "vpcp", "strict": false,
              "secret_fingerprint": "sha256:…"}, "by": "cli:alice"}
    answer   type "audit.recorded", {"id": 123, "repeat": false}
    refusal  type "audit.error", {"reason": {"reason": "HUB_REQUEST_BAD", …}}

The row: actor ``gateway:<id>/<by>`` (the gateway verified by the broker, ``by`` as the
gateway says), the action, the subject, ``{"gateway", "by", "change_id", "before",
"after"}`` (:mod:`schemas.gateway_change` checks them: never a secret). The same
``change_id`` asked again (an answer lost, the request retried) is recorded once.
"""

from __future__ import annotations

import aio_pika

from router import topology
from router.ledger import Conn
from router.requests import HubRequest, Route, json_answer
from router.security import audit
from schemas import gateway_change
from schemas.reasons import Reason

__all__ = ["route"]

_LOCK = 0x6C746763  # "ltgc": with the change id, one recorder of a change at a time


async def _record(conn: Conn, request: HubRequest) -> list[aio_pika.Message]:
    change = gateway_change.parse(request.body)
    actor = request.actor()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK,
                           change.change_id)
        found = await audit.change_entry(conn, change.change_id)
        if found is None:
            await audit.append(conn, actor, change.action, change.subject, {
                "gateway": request.gateway, "by": request.body.get("by"),
                "change_id": change.change_id, "before": change.before,
                "after": change.after})
            recorded = await audit.change_entry(conn, change.change_id)
        else:
            recorded = found
    return [json_answer("audit.recorded", {"id": recorded, "repeat": found is not None})]


def route() -> Route:
    """The request, for the RequestServer (queue ``lt.requests``)."""
    return Route(topology.RECORD_GATEWAY_CHANGE_KEY, topology.REQUESTS, _record,
                 "audit.error", Reason.HUB_REQUEST_BAD)
