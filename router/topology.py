r"""The AMQP topology of the axis, declared idempotently.

=====================  ======  =====================================================
name                   type    role
=====================  ======  =====================================================
lt.submit              topic   gateways publish here; routing key = sender agency code
lt.intake              topic   bound from lt.submit with ``#`` (exchange to exchange);
                               alternate exchange lt.intake.other
lt.router.in.<id>      quorum  a gateway's intake queue, bound on lt.intake with the keys
                               its topic permission admits (router.directory.intake);
                               routers consume every intake queue, fairly
lt.intake.other        fanout  alternate exchange of lt.intake: keys no gateway's intake
                               queue is bound for
lt.router.in           quorum  bound to lt.intake.other; routers consume it
lt.deliver             direct  routers publish copies; key = recipient gateway id
lt.receipts            direct  routers publish receipts and events; key = gateway id
lt.gw.<id>.inbox       quorum  a gateway's documents and status packages
lt.gw.<id>.receipts    quorum  a gateway's receipts and state-change events
lt.dead                fanout  dead letters of lt.router.in and of every inbox
lt.parking             quorum  poison messages, kept with their x-death history
lt.quarantine          fanout  dead letters of lt.parking (what routers cannot record)
lt.quarantine          quorum  kept for operators (``lienthong parking quarantine``);
                               nothing consumes it automatically, so nothing loops
lt.unroutable          fanout  alternate exchange of lt.submit and lt.receipts
lt.unroutable          quorum  what no binding wanted, kept for operators
lt.replay              direct  gateways ask for the receipts they missed (key ``receipts``)
lt.replay              quorum  bound to lt.replay; routers answer from the ledger
lt.directory           quorum  bound to lt.replay (key ``directory``): gateways ask for the
                               directory feed's changes (router.directory.feed)
lt.requests            quorum  bound to lt.replay (keys ``directory.register_agency``,
                               ``directory.delete_agency``, ``audit.record_gateway_change``):
                               requests that change the hub (router.requests)
lt.transfer            quorum  bound to lt.replay (key ``transfer``): large package uploads
                               opened, their chunks listed, fetched (router.transfer)
lt.transfer.chunks     quorum  bound to lt.replay (key ``chunk``): the chunks of uploads
=====================  ======  =====================================================

Intake queues are a fairness measure only: one gateway's burst waits in its own queue
while routers take from every queue in turn. Correctness never depends on the bindings (a
package in any intake queue is routed the same way; who sent it is the AMQP ``user_id``);
a gateway whose keys overlap another's has no intake queue of its own (its packages reach
``lt.router.in``), so one gateway's packages are always in one queue, in order.

Upgrading a running hub (``lienthong topology apply``, :func:`declare_core`), in this
order, so no package is lost:

====  ==========================================================================
step  what
====  ==========================================================================
1     declare lt.intake.other, bind lt.router.in to it; declare lt.intake (its
      alternate exchange lt.intake.other)
2     bind lt.intake to lt.submit with ``#``: from now on a package reaches
      lt.router.in twice (the old binding and the new path)
3     unbind lt.router.in from lt.submit: once again one copy. A package published
      between 2 and 3 is routed twice; the ledger's dedup makes the second a
      ``duplicate`` (the same as a gateway sending it again), never a loss
4     gateways' intake queues are declared, and bound only once a router consumes
      them (router.directory.intake_queues): routers of the earlier version, which
      consume lt.router.in alone, go on routing everything until new ones start
====  ==========================================================================

``lt.submit`` keeps its arguments (its alternate exchange ``lt.unroutable`` cannot be
changed in place; with ``#`` to lt.intake it is never used any more).

``lt.deliver`` has no alternate exchange on purpose: routers publish copies with
``mandatory`` and learn at once, from the broker's return, that a recipient's inbox is
missing; the delivery is then marked undeliverable in the ledger.

Queues are declared with nothing but their type. Their delivery limit and dead-lettering
come from RabbitMQ **policies** (:func:`policies`, applied by :func:`apply_policies`), so
an operator changes them with ``LIENTHONG_DELIVERY_LIMIT=… lienthong topology apply`` on
live queues, without deleting anything:

=====================  ==============================  ==================================
policy                 pattern                         definition
=====================  ==============================  ==================================
lt-router-in           ``^lt\.router\.in(\..+)?$``    delivery-limit (setting), dead
                                                       letters to lt.dead at least once;
                                                       lt.router.in and every intake queue
lt-gateway-inbox       ``^lt\.gw\..+\.inbox$``         the same, for every inbox
lt-parking             ``^lt\.parking$``               delivery-limit 10, dead letters to
                                                       lt.quarantine: a parked message that
                                                       routers cannot record (or that kills
                                                       them) never loops
lt-gateway-receipts    ``^lt\.gw\..+\.receipts$``      max-length and max-length-bytes
                                                       (settings), overflow drop-head: a
                                                       gateway that does not read loses
                                                       its oldest receipts from the queue,
                                                       never from the ledger (it replays
                                                       them: router.recovery.replay)
=====================  ==============================  ==================================

A queue that an earlier version declared with these as queue arguments keeps them
(RabbitMQ cannot change a queue's arguments); declaring it again is not an error. Where
both set ``delivery-limit``, RabbitMQ uses the lower one (checked on 3.10.8: argument 20
with policy 3, and argument 3 with policy 20, both stop after 4 deliveries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue, ExchangeType

from router import amqp
from router.settings import Settings
from schemas import wire_names
from schemas.wire_names import (  # the names are the contract's, shared with the SDK
    DEAD,
    DELETE_AGENCY_KEY,
    DELIVER,
    DIRECTORY,
    DIRECTORY_KEY,
    INTAKE,
    INTAKE_OTHER,
    PARKING,
    QUARANTINE,
    RECEIPTS,
    RECORD_GATEWAY_CHANGE_KEY,
    REGISTER_AGENCY_KEY,
    REPLAY,
    REPLAY_RECEIPTS_KEY,
    REQUESTS,
    ROUTER_IN,
    SUBMIT,
    UNROUTABLE,
    inbox_queue,
    intake_queue,
    is_intake_queue,
    receipts_queue,
)

if TYPE_CHECKING:  # routers import this module; only provisioning needs aiohttp
    from router.broker_admin import BrokerAdmin
    from router.settings import Settings

__all__ = [
    "DEAD",
    "DELETE_AGENCY_KEY",
    "DELIVER",
    "DIRECTORY",
    "DIRECTORY_KEY",
    "INTAKE",
    "INTAKE_OTHER",
    "PARKING",
    "QUARANTINE",
    "RECEIPTS",
    "RECORD_GATEWAY_CHANGE_KEY",
    "REGISTER_AGENCY_KEY",
    "REPLAY",
    "REPLAY_RECEIPTS_KEY",
    "REQUESTS",
    "ROUTER_IN",
    "SUBMIT",
    "UNROUTABLE",
    "Policy",
    "apply_policies",
    "declare_core",
    "declare_gateway",
    "declare_intake_queue",
    "delete_gateway_queues",
    "inbox_queue",
    "intake_queue",
    "is_intake_queue",
    "policies",
    "receipts_queue",
]

log = structlog.get_logger("lienthong.topology")


GATEWAY_DELIVERY_LIMIT = 20
PARKING_DELIVERY_LIMIT = 10


_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


@dataclass(frozen=True, slots=True)
class Policy:
    """A RabbitMQ policy of the hub's vhost."""

    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = 10


RECEIPTS_MAX_LENGTH = Settings().receipts_max_length  # LIENTHONG_RECEIPTS_MAX_LENGTH
RECEIPTS_MAX_BYTES = Settings().receipts_max_bytes  # LIENTHONG_RECEIPTS_MAX_BYTES


def policies(
    delivery_limit: int,
    *,
    receipts_max_length: int = RECEIPTS_MAX_LENGTH,
    receipts_max_bytes: int = RECEIPTS_MAX_BYTES,
) -> list[Policy]:
    """The hub's policies: a message delivered (and given back) ``delivery_limit`` times
    leaves the queue for ``lt.dead`` → ``lt.parking``, with its history, never dropped.
    A gateway's receipts queue is bounded (oldest dropped): the ledger keeps every receipt
    and the gateway replays what it missed."""
    dead_letters: dict[str, Any] = {
        "dead-letter-exchange": DEAD,
        "dead-letter-strategy": "at-least-once",
        "overflow": "reject-publish",  # what at-least-once dead-lettering requires
    }
    return [
        Policy("lt-router-in", r"^lt\.router\.in(\..+)?$",
               {"delivery-limit": delivery_limit, **dead_letters}),
        Policy("lt-gateway-inbox", r"^lt\.gw\..+\.inbox$",
               {"delivery-limit": GATEWAY_DELIVERY_LIMIT, **dead_letters}),
        # every router consumes lt.parking: a message none can record must leave it
        Policy("lt-parking", r"^lt\.parking$",
               {"delivery-limit": PARKING_DELIVERY_LIMIT, **dead_letters,
                "dead-letter-exchange": QUARANTINE}),
        Policy("lt-gateway-receipts", r"^lt\.gw\..+\.receipts$",
               {"max-length": receipts_max_length, "max-length-bytes": receipts_max_bytes,
                "overflow": "drop-head"}),
    ]


async def apply_policies(
    admin: BrokerAdmin,
    vhost: str,
    *,
    delivery_limit: int,
    receipts_max_length: int = RECEIPTS_MAX_LENGTH,
    receipts_max_bytes: int = RECEIPTS_MAX_BYTES,
) -> None:
    """Create or update the hub's policies (through the management API). Idempotent; a
    changed delivery limit or receipts bound takes effect on the live queues."""
    for p in policies(delivery_limit, receipts_max_length=receipts_max_length,
                      receipts_max_bytes=receipts_max_bytes):
        await admin.put_policy(vhost, p.name, pattern=p.pattern, definition=p.definition,
                               priority=p.priority)


# what earlier versions set as queue arguments and policies set now
_POLICY_ARGUMENTS = ("x-delivery-limit", "x-dead-letter-exchange", "x-dead-letter-strategy",
                     "x-overflow")


async def _quorum_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    """Declare a quorum queue; one that an earlier version declared with the arguments
    that are policies now is kept as it is (any other difference is still an error)."""
    try:
        return await channel.declare_queue(name, durable=True, arguments=_QUORUM)
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        if not any(f"'{arg}'" in str(exc) for arg in _POLICY_ARGUMENTS):
            raise
        log.warning("topology.queue_arguments_kept", queue=name, detail=str(exc),
                    hint="where the queue and the policy both set delivery-limit, the lower "
                         "one counts; recreate the queue to use the policy alone")
        await channel.reopen()
        return await channel.declare_queue(name, passive=True)


async def declare_core(channel: AbstractChannel) -> None:
    """Declare the hub's exchanges and queues. Idempotent."""
    unroutable = await channel.declare_exchange(UNROUTABLE, ExchangeType.FANOUT, durable=True)
    unroutable_q = await _quorum_queue(channel, UNROUTABLE)
    await unroutable_q.bind(unroutable)

    quarantine = await channel.declare_exchange(QUARANTINE, ExchangeType.FANOUT, durable=True)
    quarantine_q = await _quorum_queue(channel, QUARANTINE)
    await quarantine_q.bind(quarantine)

    dead = await channel.declare_exchange(DEAD, ExchangeType.FANOUT, durable=True)
    parking = await _quorum_queue(channel, PARKING)
    await parking.bind(dead)

    submit = await channel.declare_exchange(
        SUBMIT, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": UNROUTABLE}
    )
    router_in = await _quorum_queue(channel, ROUTER_IN)
    # gateways' intake queues on lt.intake; what none takes reaches lt.router.in. The
    # order keeps a running hub's packages (see the upgrade table above): the new path
    # first, then the old binding goes
    other = await channel.declare_exchange(INTAKE_OTHER, ExchangeType.FANOUT, durable=True)
    await router_in.bind(other)
    intake = await channel.declare_exchange(
        INTAKE, ExchangeType.TOPIC, durable=True, arguments={"alternate-exchange": INTAKE_OTHER}
    )
    await intake.bind(submit, routing_key="#")
    await router_in.unbind(submit, routing_key="#")

    await channel.declare_exchange(DELIVER, ExchangeType.DIRECT, durable=True)
    await channel.declare_exchange(
        RECEIPTS, ExchangeType.DIRECT, durable=True, arguments={"alternate-exchange": UNROUTABLE}
    )

    replay = await channel.declare_exchange(REPLAY, ExchangeType.DIRECT, durable=True)
    replay_q = await _quorum_queue(channel, REPLAY)
    await replay_q.bind(replay, routing_key=REPLAY_RECEIPTS_KEY)
    directory_q = await _quorum_queue(channel, DIRECTORY)
    await directory_q.bind(replay, routing_key=DIRECTORY_KEY)
    requests_q = await _quorum_queue(channel, REQUESTS)
    for key in (REGISTER_AGENCY_KEY, DELETE_AGENCY_KEY, RECORD_GATEWAY_CHANGE_KEY):
        await requests_q.bind(replay, routing_key=key)
    # large packages (router.transfer): requests and chunks ride the exchange gateways
    # may already write to, so no gateway's permissions change
    transfer_q = await _quorum_queue(channel, wire_names.TRANSFER)
    await transfer_q.bind(replay, routing_key=wire_names.TRANSFER_KEY)
    chunks_q = await _quorum_queue(channel, wire_names.CHUNKS)
    await chunks_q.bind(replay, routing_key=wire_names.CHUNK_KEY)


async def declare_gateway(channel: AbstractChannel, gateway_id: str) -> None:
    """Declare a gateway's inbox and receipts queues and bind them. Idempotent."""
    deliver = await channel.get_exchange(DELIVER, ensure=False)
    receipts = await channel.get_exchange(RECEIPTS, ensure=False)
    inbox = await _quorum_queue(channel, inbox_queue(gateway_id))
    await inbox.bind(deliver, routing_key=gateway_id)
    rq = await _quorum_queue(channel, receipts_queue(gateway_id))
    await rq.bind(receipts, routing_key=gateway_id)


async def declare_intake_queue(channel: AbstractChannel, gateway_id: str) -> AbstractQueue:
    """Declare a gateway's intake queue (unbound: router.directory.intake binds it)."""
    return await _quorum_queue(channel, intake_queue(gateway_id))


async def delete_gateway_queues(channel: AbstractChannel, gateway_id: str) -> None:
    for name in (inbox_queue(gateway_id), receipts_queue(gateway_id)):
        await channel.queue_delete(name)


async def apply(settings: Settings, gateway_ids: list[str]) -> None:
    """Declare everything: the core and every gateway's queues (policies apart)."""
    connection = await amqp.connect(settings, "topology-apply", robust=False)
    async with connection:
        channel = await connection.channel()
        await declare_core(channel)
        for gid in gateway_ids:
            await declare_gateway(channel, gid)
