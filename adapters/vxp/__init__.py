"""The VXP façade: the current axis's HTTP gateway API (``SDKVXP``) in front of lienthong.

Existing document software keeps its vendor SDK and changes one URL. The façade is
gateway-side software: it speaks to the hub only over AMQP, as each system's gateway,
through :class:`adapters.GatewayClient`, and keeps its own state (systems, mailbox) in its
own PostgreSQL database.
"""

from adapters.vxp.app import VxpConfig, build_app
from adapters.vxp.serve import open_store, serve

__all__ = ["VxpConfig", "build_app", "open_store", "serve"]
