"""Errors the gateway SDK raises, each one a caller can act on. Every one carries a
:class:`~schemas.reasons.Reason` (a stable code, Vietnamese and English messages) and is
also the built-in exception a caller would expect (``TimeoutError``, ``RuntimeError``…)."""

from __future__ import annotations

from schemas.reasons import LienthongError, Reason

__all__ = [
    "FetchCorrupt",
    "GatewayError",
    "HubRefused",
    "NotConnected",
    "PublishNacked",
    "PublishRefused",
    "ReceiptTimeout",
    "ReplayFailed",
    "SendFailed",
    "SenderCodeRequired",
    "StatusNeedsDocument",
    "TransferRefused",
]


class GatewayError(LienthongError):
    """Base of the SDK's own errors."""


class ReceiptTimeout(GatewayError, TimeoutError):
    """No receipt came within ``receipt_timeout``. The package may or may not have reached
    the hub: send the same bytes again with ``message_id=err.message_id``. The hub answers
    a re-send it already accepted with the original outcome (``repeat`` set), never a
    second document."""

    def __init__(self, message_id: str, timeout: float) -> None:
        super().__init__(Reason.RECEIPT_TIMEOUT, f"message_id={message_id}, {timeout:g} s")
        self.message_id = message_id
        self.timeout = timeout


class SendFailed(GatewayError, ConnectionError):
    """The package was not sent (the broker closed the channel); ``reason`` says why.
    Sending again is safe: the client's channel is already restored."""


class HubRefused(GatewayError):
    """The hub refused a request (``GatewayClient.ask_hub``); ``reason`` says why, e.g.
    AGENCY_MANAGEMENT_NOT_ALLOWED, AGENCY_NOT_SERVED, HUB_REQUEST_BAD."""


class ReplayFailed(HubRefused):
    """The hub refused a receipt replay request; ``reason`` says why."""


class PublishRefused(SendFailed):
    """RabbitMQ refused the publish and closed the channel (standard AMQP: a routing key
    the gateway may not use, a ``user_id`` that is not the connection's user). The client
    has opened a new channel; nothing reached the hub. Fix the cause before re-sending."""

    def __init__(self, message_id: str, detail: str) -> None:
        super().__init__(Reason.PUBLISH_REFUSED, f"message_id={message_id}: {detail}")
        self.message_id = message_id


class PublishNacked(SendFailed):
    """RabbitMQ did not take the message (a negative publisher confirm), as a quorum
    queue does while it elects a new leader after its node went away. Nothing reached the
    hub; the client has opened a new channel (the old one may keep refusing). Send again
    with the same ``message_id``."""

    def __init__(self, message_id: str, detail: str) -> None:
        super().__init__(Reason.PUBLISH_NACKED, f"message_id={message_id}: {detail}")
        self.message_id = message_id


class NotConnected(GatewayError, RuntimeError):
    """A method that needs the connection was called before ``connect()``."""

    def __init__(self) -> None:
        super().__init__(Reason.SDK_NOT_CONNECTED)


class StatusNeedsDocument(GatewayError, TypeError):
    """``send_status`` was given something that is not a document (an edoc)."""

    def __init__(self, got: str) -> None:
        super().__init__(Reason.STATUS_NEEDS_DOCUMENT, got)


class SenderCodeRequired(GatewayError, ValueError):
    """A package sent with ``validate=False`` needs ``sender_code`` (the routing key)."""

    def __init__(self) -> None:
        super().__init__(Reason.SENDER_CODE_REQUIRED)


class TransferRefused(HubRefused):
    """The hub refused a large package's upload, a chunk of it or a fetch; ``reason`` says
    why (``PACKAGE_TOO_LARGE``, ``UPLOAD_NOT_YOURS``, ``FETCH_REFUSED``…)."""


class FetchCorrupt(GatewayError, ValueError):
    """A fetched large package did not match its SHA-256 (a chunk or the whole): nothing
    was kept. Fetching again is safe."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.FETCH_CORRUPT, detail)
