"""Where everything the hub sends leaves from: copies to recipient gateways, receipts and
delivery events to senders.

One :class:`Outbox` per publisher-confirm channel. Every receipt that goes through it is
signed with the hub's key (loaded once per process from the settings, see
:func:`router.outbox.signing.hub_signer`), so no path — the routing worker, re-delivery
from the CLI or the ops API, the deadline sweep, parking — can send an unsigned one::

    outbox = await Outbox.open(channel, settings)
    states = await outbox.copies(copies)          # {delivery id: queued | undeliverable}
    await outbox.receipts(receipts)               # signed, to each sender's receipts queue
    await outbox.events(conn, delivery_ids, cause="redelivered:<job>")
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange

from router import topology
from router.ledger import Conn
from router.outbox.events import delivery_events
from router.outbox.publish import Outgoing, publish_all, publish_copies, receipt_outgoing
from router.outbox.signing import ReceiptSigner, hub_signer
from router.routing.batch import Copy, OutgoingReceipt
from router.settings import Settings
from schemas.receipt import Receipt

__all__ = ["Outbox"]

log = structlog.get_logger("lienthong.outbox")


class Outbox:
    """Copies and signed receipts, published with pipelined confirms."""

    def __init__(
        self,
        channel: AbstractChannel,
        deliver: AbstractExchange,
        receipts_exchange: AbstractExchange,
        signer: ReceiptSigner | None,
    ) -> None:
        self._channel = channel
        self._deliver = deliver
        self._receipts = receipts_exchange
        self._signer = signer

    @classmethod
    async def open(cls, channel: AbstractChannel, settings: Settings) -> Outbox:
        """An outbox on ``channel`` (opened with ``publisher_confirms=True``)."""
        return cls(
            channel,
            await channel.get_exchange(topology.DELIVER),
            await channel.get_exchange(topology.RECEIPTS),
            hub_signer(settings),
        )

    async def move_to(self, channel: AbstractChannel) -> None:
        """Publish on ``channel`` from now on (a fresh publisher-confirm channel in place
        of one the broker kept refusing); everyone holding this outbox follows."""
        deliver = await channel.get_exchange(topology.DELIVER)
        receipts = await channel.get_exchange(topology.RECEIPTS)
        self._channel, self._deliver, self._receipts = channel, deliver, receipts

    @property
    def signer(self) -> ReceiptSigner | None:
        """The hub's receipt key (None: receipts go unsigned, with a warning at start)."""
        return self._signer

    @property
    def signed(self) -> bool:
        return self._signer is not None

    def sign(self, receipt: Receipt) -> Receipt:
        return self._signer.sign(receipt) if self._signer is not None else receipt

    async def copies(self, copies: Sequence[Copy]) -> dict[uuid.UUID, str]:
        """Publish copies (``mandatory``); each delivery's new state."""
        return await publish_copies(self._deliver, copies)

    async def receipts(self, receipts: Sequence[OutgoingReceipt]) -> None:
        """Sign and publish receipts to their gateways' receipts queues; the client that
        sent the package (RabbitMQ direct reply-to) gets its receipt at once as well."""
        if not receipts:
            return
        messages = [receipt_outgoing(self.sign(r.receipt)) for r in receipts]
        # a receipt for no gateway (a message without user_id whose sender cannot be
        # known) goes only to the client's direct reply-to address
        items = [(m, r.gateway_id) for m, r in zip(messages, receipts, strict=True)
                 if r.gateway_id is not None]
        replies = [(m, r.reply_to) for m, r in zip(messages, receipts, strict=True)
                   if r.reply_to]
        await asyncio.gather(
            publish_all(self._receipts, items, mandatory=False), self._reply(replies)
        )

    async def events(
        self, conn: Conn, delivery_ids: Sequence[uuid.UUID | str], *, cause: str
    ) -> int:
        """Tell the senders the current state of these deliveries (one ``delivery``
        receipt each, its id derived from ``cause``). Returns how many were sent."""
        events = await delivery_events(conn, delivery_ids, cause=cause)
        await self.receipts(events)
        return len(events)

    async def _reply(self, replies: list[tuple[Outgoing, str]]) -> None:
        """Best effort: the receipt is in the gateway's queue whatever happens here."""
        if not replies:
            return
        try:
            await publish_all(self._channel.default_exchange, replies, mandatory=False,
                              retries=1)
        except Exception as exc:
            log.warning("outbox.reply_failed", error=repr(exc), replies=len(replies))
