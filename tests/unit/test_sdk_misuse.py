"""Misusing the SDK raises errors a caller can catch (never an assert, which ``python -O``
removes), each with its reason code."""

from __future__ import annotations

import pytest

from adapters import (
    GatewayClient,
    NotConnected,
    ReceiptTimeout,
    SenderCodeRequired,
    StatusNeedsDocument,
)
from schemas import Organization, StatusCode
from schemas.reasons import LienthongError, Reason
from tests.factory import edoc, status

URL = "amqp://vpcp:secret@127.0.0.1:1/none"  # never connected to


async def test_send_and_inbox_before_connect_raise_not_connected() -> None:
    gw = GatewayClient(URL)
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    with pytest.raises(NotConnected) as err:
        await gw.send(body)
    assert isinstance(err.value, RuntimeError) and err.value.reason is Reason.SDK_NOT_CONNECTED
    with pytest.raises(NotConnected):
        await anext(gw.inbox(timeout=0.1))


async def test_a_status_answers_a_document_only() -> None:
    gw = GatewayClient(URL)
    doc, _ = edoc("000.00.00.G22", ["000.00.00.H41"])
    st, _ = status("000.00.00.H41", doc, StatusCode.ARRIVED)
    with pytest.raises(StatusNeedsDocument) as err:
        await gw.send_status(sender=Organization("000.00.00.H41", "UBND tỉnh Nghệ An"),
                             about=st, code=StatusCode.ACCEPTED)  # type: ignore[arg-type]
    assert isinstance(err.value, TypeError)
    assert err.value.reason is Reason.STATUS_NEEDS_DOCUMENT


def test_errors_carry_reasons_and_the_message_id_to_resend_with() -> None:
    timeout = ReceiptTimeout("my-42", 30.0)
    assert isinstance(timeout, TimeoutError) and isinstance(timeout, LienthongError)
    assert timeout.message_id == "my-42" and "my-42" in str(timeout)
    assert timeout.as_dict()["code"] == 7070


async def test_an_unvalidated_package_needs_its_sender_code() -> None:
    with pytest.raises(SenderCodeRequired) as err:
        await GatewayClient(URL).send(b"<edXML/>", validate=False)
    assert isinstance(err.value, ValueError)
    assert err.value.reason is Reason.SENDER_CODE_REQUIRED


def test_connection_name_and_tls_are_parameters() -> None:
    import ssl

    ctx = ssl.create_default_context()
    gw = GatewayClient(URL, tls=ctx, connection_name="vpcp server 2")
    assert gw.tls is ctx and gw.connection_name == "vpcp server 2"
    assert GatewayClient(URL).connection_name.startswith("lienthong-gateway vpcp ")
