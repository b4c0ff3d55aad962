"""Gateway side of lienthong: the AMQP SDK. Imports ``schemas``, never ``router``."""

from adapters.client import GatewayClient, InboxMessage
from adapters.seen import CopyFilter, DurableSeenCopies, SeenCopies

__all__ = ["CopyFilter", "DurableSeenCopies", "GatewayClient", "InboxMessage", "SeenCopies"]
