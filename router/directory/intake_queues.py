"""Gateways' intake queues: which gateway gets one, with which bindings, kept reconciled.

A gateway's intake queue ``lt.router.in.<id>`` is bound on ``lt.intake`` with the keys its
topic permission on ``lt.submit`` admits (``registry.gateway_topic_regex``): its ``serves``
patterns and the codes (aliases) of its agencies. What it publishes then waits in its own
queue, and routers take from every intake queue in turn (``router.routing.sources``): one
gateway's burst does not hold up another gateway's document.

Only a fairness measure: a package is routed the same way from any intake queue (who sent
it is the AMQP ``user_id``), and a key no queue is bound for reaches ``lt.router.in``
through lt.intake's alternate exchange. So:

* a gateway any of whose keys overlaps a key of another gateway gets no queue: its whole
  traffic goes to ``lt.router.in``. A package is never copied to two queues (routed
  twice), and one gateway's packages are always in one queue, decided in order;
* AMQP cannot list bindings: what is bound is kept in ``intake_queues`` and
  ``intake_bindings`` (migration 0012). :func:`reconcile` binds what is missing and
  unbinds what is stale, on provisioning, at ``lienthong topology apply`` and every
  ``LIENTHONG_INTAKE_REFRESH_SECONDS`` in one router at a time (an advisory lock);
* a new queue is bound only once a router consumes it (or none consumes lt.router.in
  either): its gateway's packages never wait for a router to notice the queue;
* a queue no longer wanted is unbound (``draining``) and deleted once it was seen empty
  and without consumers for ``DRAIN_GRACE_SECONDS`` (longer than a router holds a
  message through an outage, so nothing a router still holds is lost with it).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiormq
import structlog
from aio_pika.abc import AbstractChannel

from router import topology
from router.directory.registry import pattern_matches
from router.ledger import Conn
from schemas.agency_code import normalize

__all__ = [
    "DRAIN_GRACE_SECONDS",
    "Reconciled",
    "consumed_queues",
    "queue_counts",
    "reconcile",
    "topics_overlap",
    "wanted_bindings",
]

log = structlog.get_logger("lienthong.intake_queues")

INTAKE_LOCK = 0x6C74_496E  # "ltIn": one reconciler at a time
DRAIN_GRACE_SECONDS = 600.0  # > router.routing.intake.OUTAGE_PATIENCE


def _wild(key: str) -> bool:
    return "*" in key or "#" in key


def topics_overlap(a: str, b: str) -> bool:
    """Could one routing key match both topic patterns ``a`` and ``b``? (``*`` one word,
    ``#`` zero or more words; plain codes are patterns without wildcards.)"""
    x, y = a.split("."), b.split(".")

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(x) and j == len(y):
            return True
        if i < len(x) and x[i] == "#":
            return meet(i + 1, j) or (j < len(y) and meet(i, j + 1))
        if j < len(y) and y[j] == "#":
            return meet(i, j + 1) or (i < len(x) and meet(i + 1, j))
        if i < len(x) and j < len(y) and (x[i] == y[j] or "*" in (x[i], y[j])):
            return meet(i + 1, j + 1)
        return False

    return meet(0, 0)


def _keys(serves: Iterable[str], codes: Iterable[str]) -> frozenset[str]:
    """A gateway's binding keys: what ``gateway_topic_regex`` admits, as topic patterns."""
    patterns = {normalize(p) for p in serves if _wild(p)}
    explicit = {normalize(c) for c in (*serves, *codes) if not _wild(c)}
    explicit = {c for c in explicit if not any(pattern_matches(p, c) for p in patterns)}
    return frozenset(patterns | explicit)


def wanted_bindings(gateways: Mapping[str, tuple[Sequence[str], Sequence[str]]]
                    ) -> dict[str, frozenset[str]]:
    """Gateway id → its binding keys, for the gateways (id → (serves, codes)) that get an
    intake queue: those with keys, none of which any other gateway's key overlaps."""
    keys = {gid: _keys(serves, codes) for gid, (serves, codes) in gateways.items()}
    owner: dict[str, set[str]] = {}  # plain code -> gateways
    for gid, ks in keys.items():
        for k in ks:
            if not _wild(k):
                owner.setdefault(k, set()).add(gid)
    shared = {gid for gids in owner.values() if len(gids) > 1 for gid in gids}
    patterns = [(gid, k) for gid, ks in keys.items() for k in ks if _wild(k)]
    for n, (gid, p) in enumerate(patterns):
        for other, q in patterns[n + 1:]:
            if other != gid and topics_overlap(p, q):
                shared |= {gid, other}
        for code, gids in owner.items():
            if gids - {gid} and pattern_matches(p, code):
                shared |= gids | {gid}
    return {gid: ks for gid, ks in keys.items() if ks and gid not in shared}


_GATEWAYS_SQL = """
SELECT g.id, g.serves,
       coalesce(array_agg(al.alias) FILTER (WHERE al.alias IS NOT NULL), '{}') AS codes
FROM gateways g
LEFT JOIN agencies a ON a.gateway_id = g.id
LEFT JOIN agency_aliases al ON al.agency_id = a.id
WHERE g.status = 'active'
GROUP BY g.id, g.serves
"""


# the directory's fingerprint: gateways (id, status, serves) and the feed's version, which
# every change of agencies, aliases or their gateway moves (router.directory.feed)
_FINGERPRINT_SQL = """
SELECT current_database(),
       (SELECT coalesce(max(version), 0) FROM directory_feed),
       (SELECT md5(coalesce(string_agg(id || ':' || status || ':' || array_to_string(serves, ','),
                                       ';' ORDER BY id), '')) FROM gateways)
"""
_last_wanted: list[tuple[tuple[object, ...], dict[str, frozenset[str]]]] = []


async def _wanted(conn: Conn) -> dict[str, frozenset[str]]:
    """:func:`wanted_bindings` of the directory now; computed again only when it changed
    (with 100,000 agencies the overlaps take seconds, the fingerprint milliseconds)."""
    row = await conn.fetchrow(_FINGERPRINT_SQL)
    assert row is not None
    fingerprint = tuple(row)
    for seen, wanted in _last_wanted:
        if seen == fingerprint:
            return wanted
    rows = await conn.fetch(_GATEWAYS_SQL)
    wanted = wanted_bindings({r["id"]: (list(r["serves"]), list(r["codes"])) for r in rows})
    _last_wanted[:] = [(fingerprint, wanted)]
    return wanted


@dataclass(slots=True)
class Reconciled:
    """What one pass did (None: another process was reconciling)."""

    bound: int = 0
    unbound: int = 0
    deleted: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # declared, bound once consumed


async def consumed_queues(conn: Conn) -> dict[str, bool]:
    """The intake queues routers consume: lt.router.in and every gateway's, each with
    whether it is draining (a router leaves a draining queue once it is empty)."""
    rows = await conn.fetch("SELECT gateway_id, state FROM intake_queues ORDER BY gateway_id")
    return {topology.ROUTER_IN: False,
            **{topology.intake_queue(r["gateway_id"]): r["state"] == "draining" for r in rows}}


async def queue_counts(channel: AbstractChannel, name: str) -> tuple[int, int] | None:
    """(messages ready, consumers) of a queue; None when it does not exist. A failed
    passive declaration closes the channel: it is reopened."""
    try:
        q = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        await channel.reopen()
        return None
    r = q.declaration_result
    return int(r.message_count or 0), int(r.consumer_count or 0)


async def reconcile(conn: Conn, channel: AbstractChannel, *, wait: bool = False,
                    grace_seconds: float = DRAIN_GRACE_SECONDS) -> Reconciled | None:
    """Bring the intake queues and their bindings in line with the directory. Idempotent;
    one process at a time: None when another one holds the lock, unless ``wait`` (then it
    runs after it, on the directory as it is then: what provisioning needs)."""
    async with conn.transaction():
        if wait:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", INTAKE_LOCK)
        elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", INTAKE_LOCK):
            return None
        wanted = await _wanted(conn)
        states = {r["gateway_id"]: r["state"]
                  for r in await conn.fetch("SELECT gateway_id, state FROM intake_queues")}
        bound: dict[str, set[str]] = {}
        for r in await conn.fetch("SELECT gateway_id, binding_key FROM intake_bindings"):
            bound.setdefault(r["gateway_id"], set()).add(r["binding_key"])
        intake = await channel.get_exchange(topology.INTAKE, ensure=False)
        done = Reconciled()
        router_in = await queue_counts(channel, topology.ROUTER_IN)
        routers_away = router_in is None or router_in[1] == 0
        for gid, keys in sorted(wanted.items()):
            have = bound.get(gid, set())
            if states.get(gid) == "active" and keys == have:
                continue  # in line already: nothing asked of the broker
            name = topology.intake_queue(gid)
            queue = await topology.declare_intake_queue(channel, gid)
            if gid not in states:
                await conn.execute("INSERT INTO intake_queues (gateway_id) VALUES ($1)", gid)
            elif states[gid] != "active":
                await conn.execute("UPDATE intake_queues SET state = 'active', "
                                   "empty_since = NULL WHERE gateway_id = $1", gid)
            missing, stale = keys - have, have - keys
            if missing and not have and not routers_away:
                counts = await queue_counts(channel, name)
                if counts is None or counts[1] == 0:
                    done.waiting.append(gid)  # no router takes from it yet
                    missing = frozenset()
            for key in sorted(missing):
                await queue.bind(intake, routing_key=key)
            for key in sorted(stale):
                await queue.unbind(intake, routing_key=key)
            await conn.executemany(
                "INSERT INTO intake_bindings (gateway_id, binding_key) VALUES ($1, $2)",
                [(gid, k) for k in sorted(missing)])
            await conn.execute(
                "DELETE FROM intake_bindings WHERE gateway_id = $1 AND binding_key = ANY($2)",
                gid, sorted(stale))
            done.bound += len(missing)
            done.unbound += len(stale)
        for gid in sorted(set(states) - set(wanted)):
            await _drain(conn, channel, gid, bound.get(gid, set()), grace_seconds, done)
    if done.bound or done.unbound or done.deleted:
        log.info("intake_queues.reconciled", bound=done.bound, unbound=done.unbound,
                 deleted=done.deleted, waiting=done.waiting)
    return done


async def _drain(conn: Conn, channel: AbstractChannel, gid: str, keys: set[str],
                 grace_seconds: float, done: Reconciled) -> None:
    """A queue no longer wanted: unbound at once, deleted once long empty."""
    name = topology.intake_queue(gid)
    if keys:
        intake = await channel.get_exchange(topology.INTAKE, ensure=False)
        queue = await topology.declare_intake_queue(channel, gid)
        for key in sorted(keys):
            await queue.unbind(intake, routing_key=key)
        await conn.execute("DELETE FROM intake_bindings WHERE gateway_id = $1", gid)
        done.unbound += len(keys)
    await conn.execute("UPDATE intake_queues SET state = 'draining' WHERE gateway_id = $1 "
                       "AND state <> 'draining'", gid)
    counts = await queue_counts(channel, name)
    if counts is None:
        await conn.execute("DELETE FROM intake_queues WHERE gateway_id = $1", gid)
        return
    if counts != (0, 0):
        await conn.execute("UPDATE intake_queues SET empty_since = NULL WHERE gateway_id = $1",
                           gid)
        return
    empty_for = await conn.fetchval(
        "UPDATE intake_queues SET empty_since = coalesce(empty_since, now()) "
        "WHERE gateway_id = $1 RETURNING extract(epoch FROM now() - empty_since)", gid)
    if float(empty_for or 0) >= grace_seconds:
        await channel.queue_delete(name)
        await conn.execute("DELETE FROM intake_queues WHERE gateway_id = $1", gid)
        done.deleted.append(gid)
