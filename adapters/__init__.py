"""Gateway side of lienthong: the AMQP SDK. Imports ``schemas``, never ``router``."""

from adapters.client import GatewayClient, InboxMessage, SeenCopies

__all__ = ["GatewayClient", "InboxMessage", "SeenCopies"]
