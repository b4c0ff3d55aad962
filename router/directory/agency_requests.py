"""Gateways registering and deleting their own agencies, over AMQP (``router.requests``).

Off unless the operator allows a gateway (``lienthong gateways set G --manage-agencies
on``), and only for agency codes its ``serves`` patterns cover; each change goes through
:func:`router.directory.registry.register_agency` / ``remove_agency``: audited (actor
``gateway:<id>/<by>``, before and after) and published to the directory feed::

    directory.register_agency  {"code": "000.01.00.H41", "name": "…", "parent": "…"|null,
                                "by": "vxp:00.53.W41"}
        answer  type "directory.agency_registered", {"code", "changed", "before", "after"}
    directory.delete_agency    {"code": "000.01.00.H41", "by": "…"}
        answer  type "directory.agency_deleted", {"code"}
    refusal     type "directory.error", {"reason": {"reason": "AGENCY_NOT_SERVED", …}}
"""

from __future__ import annotations

import aio_pika

from router import topology
from router.directory import registry
from router.directory.registry import AgencyRow
from router.ledger import Conn
from router.requests import HubRequest, Route, json_answer
from schemas.reasons import Reason

__all__ = ["routes"]


async def _register(conn: Conn, request: HubRequest) -> list[aio_pika.Message]:
    code = request.text("code", limit=100)
    name = request.text("name")
    assert code is not None and name is not None
    parent = request.text("parent", required=False, limit=100)
    details = await registry.register_agency(
        conn, request.gateway, AgencyRow(code, name, parent), actor=request.actor())
    after = details["after"]
    assert isinstance(after, dict)
    return [json_answer("directory.agency_registered", {
        "code": details["code"], "changed": details["before"] != after,
        "before": details["before"], "after": after})]


async def _delete(conn: Conn, request: HubRequest) -> list[aio_pika.Message]:
    code = request.text("code", limit=100)
    assert code is not None
    removed = await registry.remove_agency(conn, code, actor=request.actor(),
                                           by_gateway=request.gateway)
    return [json_answer("directory.agency_deleted", {"code": removed})]


def routes() -> list[Route]:
    """The two requests, for the RequestServer (queue ``lt.requests``)."""
    return [
        Route(topology.REGISTER_AGENCY_KEY, topology.REQUESTS, _register, "directory.error",
              Reason.HUB_REQUEST_BAD),
        Route(topology.DELETE_AGENCY_KEY, topology.REQUESTS, _delete, "directory.error",
              Reason.HUB_REQUEST_BAD),
    ]
