"""The receipts a gateway gets carry what can be known (docs/asyncapi.yaml, Receipt):
a delivery event caused by a status names the recipient's gateway; a refused status says
why and leaves hub_id and document_id empty, as documented."""

from __future__ import annotations

import asyncio

from router.directory.registry import AgencyRow
from schemas import StatusCode
from schemas.receipt import Receipt
from tests.factory import edoc, status
from tests.hub import Hub


async def _first_event(gw_receipts: object) -> Receipt:
    it = gw_receipts.__aiter__()  # type: ignore[attr-defined]
    while True:
        r: Receipt = await asyncio.wait_for(it.__anext__(), 15)
        if r.type == "delivery":
            return r


async def test_receipt_fields_of_events_and_refused_statuses(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    doc, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    async with hub.client("vpcp") as vpcp, hub.client("lgsp-nghean") as na:
        sent = await vpcp.send(body)
        assert sent is not None and sent.type == "accepted", sent
        assert sent.recipients[0].gateway == "lgsp-nghean"
        _, arrived = status("000.00.00.H41", doc, StatusCode.ARRIVED)
        answered = await na.send(arrived)
        assert answered is not None and answered.type == "accepted", answered
        event = await _first_event(vpcp.receipts())
        assert (event.state, event.status_code) == ("arrived", "01"), event
        assert event.hub_id == sent.hub_id and event.document_id == doc.document_id
        assert event.recipients[0].gateway == "lgsp-nghean", event
        # 15 without a 13 first: refused, with the reason; nothing stored
        _, agreed = status("000.00.00.H41", doc, StatusCode.RECALL_AGREED)
        refused = await na.send(agreed)
    assert refused is not None and refused.type == "rejected", refused
    assert refused.reason is not None
    assert refused.reason["reason"] == "RECALL_ANSWER_WITHOUT_RECALL"
    assert (refused.hub_id, refused.document_id, refused.kind) == (None, None, "status")
