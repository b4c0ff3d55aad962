"""Gateway side of lienthong: the AMQP SDK (distribution ``lienthong-gateway``).
Imports ``schemas`` (the contract), never ``router``."""

from adapters.client import GatewayClient, InboxMessage
from adapters.errors import (
    FetchCorrupt,
    GatewayError,
    HubRefused,
    NotConnected,
    PublishNacked,
    PublishRefused,
    ReceiptTimeout,
    SenderCodeRequired,
    StatusNeedsDocument,
    TransferRefused,
)
from adapters.seen import CopyFilter, DurableSeenCopies, SeenCopies
from adapters.tls import tls_context
from schemas.delivery_state import DeliveryState, RecallState
from schemas.receipt import Receipt, ReceiptType, RecipientOutcome

__all__ = [
    "CopyFilter",
    "DeliveryState",
    "DurableSeenCopies",
    "FetchCorrupt",
    "GatewayClient",
    "GatewayError",
    "HubRefused",
    "InboxMessage",
    "NotConnected",
    "PublishNacked",
    "PublishRefused",
    "RecallState",
    "Receipt",
    "ReceiptTimeout",
    "ReceiptType",
    "RecipientOutcome",
    "SeenCopies",
    "SenderCodeRequired",
    "StatusNeedsDocument",
    "TransferRefused",
    "tls_context",
]
