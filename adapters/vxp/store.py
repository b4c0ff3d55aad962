"""The façade's own state in PostgreSQL (its own database, never the hub's ledger).

* ``vxp.gateways``: the AMQP URL of each gateway the façade speaks for (sealed);
* ``vxp.systems``: the SDK systems (system id, gateway, sealed secret, strict mode);
* ``vxp.mailbox``: copies taken from the gateways' inboxes, stored before the AMQP ack,
  keyed by the hub's copy id, so a copy delivered twice is stored once; a large package's
  copy (``large``) keeps the hub's reference (small JSON) as its body and the package's
  size, the bytes being fetched from the hub when the copy is downloaded;
* ``vxp.sent``, ``vxp.sent_recipients``: what systems sent, the hub's answer and each
  recipient's state from the delivery events;
* ``vxp.replay``: strict mode's replay cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from adapters.vxp.sealing import Sealer
from schemas.receipt import Receipt

__all__ = ["MailboxRow", "NewCopy", "Store", "System", "ensure_schema"]

_LOCK = 0x76787020  # "vxp "

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS vxp;
CREATE TABLE IF NOT EXISTS vxp.gateways (
    gateway_id text PRIMARY KEY,
    amqp_url_sealed bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS vxp.systems (
    system_id text PRIMARY KEY,
    gateway_id text NOT NULL REFERENCES vxp.gateways,
    secret_sealed bytea NOT NULL,
    strict boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz);
CREATE TABLE IF NOT EXISTS vxp.mailbox (
    gateway_id text NOT NULL,
    doc_id text NOT NULL,
    kind text NOT NULL,
    hub_id text NOT NULL,
    sender text NOT NULL,
    recipients text[] NOT NULL,
    document_id text,
    status_code text,
    body bytea NOT NULL,
    size bigint NOT NULL,
    state text NOT NULL DEFAULT 'new',
    received_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (gateway_id, doc_id));
CREATE INDEX IF NOT EXISTS mailbox_pending
    ON vxp.mailbox (gateway_id, kind, received_at) WHERE state <> 'done';
CREATE TABLE IF NOT EXISTS vxp.sent (
    system_id text NOT NULL,
    hub_id text NOT NULL,
    message_id text NOT NULL,
    kind text NOT NULL,
    document_id text,
    title text,
    notation text,
    receipt jsonb NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system_id, hub_id));
CREATE INDEX IF NOT EXISTS sent_by_time ON vxp.sent (system_id, sent_at);
CREATE TABLE IF NOT EXISTS vxp.sent_recipients (
    hub_id text NOT NULL,
    to_code text NOT NULL,
    delivery_id text,
    state text NOT NULL,
    status_code text,
    received_at timestamptz,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (hub_id, to_code));
CREATE TABLE IF NOT EXISTS vxp.replay (
    system_id text NOT NULL,
    mac text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (system_id, mac));
-- large packages (issue #14): the copy keeps the hub's reference, not the bytes; sizes
-- up to the large limit (2 GiB and more) need bigint
ALTER TABLE vxp.mailbox ADD COLUMN IF NOT EXISTS large boolean NOT NULL DEFAULT false;
DO $$ BEGIN
    IF (SELECT data_type FROM information_schema.columns WHERE table_schema = 'vxp'
        AND table_name = 'mailbox' AND column_name = 'size') = 'integer' THEN
        ALTER TABLE vxp.mailbox ALTER COLUMN size TYPE bigint;
    END IF;
END $$;
"""


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Create the façade's tables if missing (idempotent, one process at a time)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute(SCHEMA)


@dataclass(frozen=True, slots=True)
class System:
    system_id: str
    gateway_id: str
    secret: str
    strict: bool


@dataclass(frozen=True, slots=True)
class NewCopy:
    """A copy taken from a gateway's inbox."""

    doc_id: str
    kind: str
    hub_id: str
    sender: str
    recipients: Sequence[str]
    document_id: str | None
    status_code: str | None
    body: bytes  # the package, or a large package's reference (``large``)
    large: bool = False
    size: int = 0  # the package's size (a large one's, not its reference's)


@dataclass(frozen=True, slots=True)
class MailboxRow:
    doc_id: str
    kind: str
    hub_id: str
    sender: str
    recipients: list[str]
    document_id: str | None
    status_code: str | None
    size: int
    state: str
    received_at: datetime
    updated_at: datetime
    large: bool = False


_ROW_COLUMNS = ("doc_id, kind, hub_id, sender, recipients, document_id, status_code, size, "
                "state, received_at, updated_at, large")


_SYSTEM = ("SELECT system_id, gateway_id, secret_sealed, strict FROM vxp.systems "
           "WHERE system_id = $1")
_SYSTEM_LOCKED = _SYSTEM + " FOR UPDATE"


def _row(r: asyncpg.Record) -> MailboxRow:
    return MailboxRow(**{k: r[k] for k in _ROW_COLUMNS.split(", ")})


class Store:
    """Every read and write of the façade's state."""

    def __init__(self, pool: asyncpg.Pool, sealer: Sealer,
                 db: asyncpg.Pool | PoolConnectionProxy | None = None) -> None:
        self.pool = pool
        self.sealer = sealer
        # where the gateways' and systems' reads and writes go: the pool, or the
        # connection of a transaction (:meth:`transaction`)
        self.db: asyncpg.Pool | PoolConnectionProxy = pool if db is None else db

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Store]:
        """A Store whose gateway and system changes are one transaction, committed when
        the block ends without an error (rolled back otherwise)."""
        async with self.pool.acquire() as conn, conn.transaction():
            yield Store(self.pool, self.sealer, conn)

    # gateways and systems -----------------------------------------------------------
    async def set_gateway(self, gateway_id: str, amqp_url: str) -> None:
        await self.db.execute(
            """INSERT INTO vxp.gateways (gateway_id, amqp_url_sealed) VALUES ($1, $2)
               ON CONFLICT (gateway_id) DO UPDATE
               SET amqp_url_sealed = EXCLUDED.amqp_url_sealed, updated_at = now()""",
            gateway_id, self.sealer.seal(amqp_url),
        )

    async def gateway_url(self, gateway_id: str) -> str | None:
        sealed = await self.db.fetchval(
            "SELECT amqp_url_sealed FROM vxp.gateways WHERE gateway_id = $1", gateway_id
        )
        return None if sealed is None else self.sealer.open(sealed)

    async def gateways_in_use(self) -> list[str]:
        rows = await self.db.fetch("SELECT DISTINCT gateway_id FROM vxp.systems ORDER BY 1")
        return [r["gateway_id"] for r in rows]

    async def add_system(self, system_id: str, gateway_id: str, secret: str,
                         *, strict: bool) -> bool:
        """False when the system id is taken."""
        status = await self.db.execute(
            """INSERT INTO vxp.systems (system_id, gateway_id, secret_sealed, strict)
               VALUES ($1, $2, $3, $4) ON CONFLICT (system_id) DO NOTHING""",
            system_id, gateway_id, self.sealer.seal(secret), strict,
        )
        return bool(status == "INSERT 0 1")

    async def rotate_secret(self, system_id: str, secret: str) -> bool:
        status = await self.db.execute(
            "UPDATE vxp.systems SET secret_sealed = $2, rotated_at = now() WHERE system_id = $1",
            system_id, self.sealer.seal(secret),
        )
        return bool(status == "UPDATE 1")

    async def set_strict(self, system_id: str, strict: bool) -> bool:
        status = await self.db.execute(
            "UPDATE vxp.systems SET strict = $2 WHERE system_id = $1", system_id, strict
        )
        return bool(status == "UPDATE 1")

    async def remove_system(self, system_id: str) -> bool:
        status = await self.db.execute("DELETE FROM vxp.systems WHERE system_id = $1",
                                       system_id)
        return bool(status == "DELETE 1")

    async def system(self, system_id: str, *, lock: bool = False) -> System | None:
        """The system (its secret opened); ``lock``: until the transaction ends
        (:meth:`transaction`)."""
        r = await self.db.fetchrow(_SYSTEM_LOCKED if lock else _SYSTEM, system_id)
        if r is None:
            return None
        return System(r["system_id"], r["gateway_id"], self.sealer.open(r["secret_sealed"]),
                      r["strict"])

    async def systems(self) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT system_id, gateway_id, strict, created_at, rotated_at FROM vxp.systems "
            "ORDER BY system_id"
        )
        return [dict(r) for r in rows]

    async def first_use(self, system_id: str, mac: str, window_seconds: float) -> bool:
        """Strict mode's replay cache: True the first time this signature is seen."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM vxp.replay WHERE system_id = $1 "
                "AND seen_at < now() - make_interval(secs => $2)",
                system_id, 2 * window_seconds,
            )
            status = await conn.execute(
                "INSERT INTO vxp.replay (system_id, mac) VALUES ($1, $2) "
                "ON CONFLICT DO NOTHING", system_id, mac.lower(),
            )
        return bool(status == "INSERT 0 1")

    # mailbox ------------------------------------------------------------------------
    async def store_copies(self, gateway_id: str, copies: Sequence[NewCopy]) -> None:
        """One transaction for a batch; a copy already stored is left as it is."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO vxp.mailbox (gateway_id, doc_id, kind, hub_id, sender,
                       recipients, document_id, status_code, body, size, large)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   ON CONFLICT (gateway_id, doc_id) DO NOTHING""",
                [
                    (gateway_id, c.doc_id, c.kind, c.hub_id, c.sender, list(c.recipients),
                     c.document_id, c.status_code, c.body,
                     c.size if c.large else len(c.body), c.large)
                    for c in copies
                ],
            )

    async def pending(self, gateway_id: str, kind: str, *, limit: int,
                      offset: int = 0) -> list[MailboxRow]:
        rows = await self.pool.fetch(
            f"SELECT {_ROW_COLUMNS} FROM vxp.mailbox "  # noqa: S608 - fixed column list
            "WHERE gateway_id = $1 AND kind = $2 AND state <> 'done' "
            "ORDER BY received_at, doc_id LIMIT $3 OFFSET $4",
            gateway_id, kind, limit, offset,
        )
        return [_row(r) for r in rows]

    async def count_pending(self, gateway_id: str, kind: str) -> int:
        n = await self.pool.fetchval(
            "SELECT count(*) FROM vxp.mailbox WHERE gateway_id = $1 AND kind = $2 "
            "AND state <> 'done'", gateway_id, kind,
        )
        return int(n)

    async def entry(self, gateway_id: str, doc_id: str) -> MailboxRow | None:
        r = await self.pool.fetchrow(
            f"SELECT {_ROW_COLUMNS} FROM vxp.mailbox "  # noqa: S608 - fixed column list
            "WHERE gateway_id = $1 AND doc_id = $2", gateway_id, doc_id,
        )
        return None if r is None else _row(r)

    async def body(self, gateway_id: str, doc_id: str) -> bytes | None:
        body: bytes | None = await self.pool.fetchval(
            "SELECT body FROM vxp.mailbox WHERE gateway_id = $1 AND doc_id = $2",
            gateway_id, doc_id,
        )
        return body

    async def body_chunk(self, gateway_id: str, doc_id: str, start: int, size: int) -> bytes:
        chunk: bytes | None = await self.pool.fetchval(
            "SELECT substring(body FROM $3 FOR $4) FROM vxp.mailbox "
            "WHERE gateway_id = $1 AND doc_id = $2", gateway_id, doc_id, start + 1, size,
        )
        return chunk or b""

    async def set_state(self, gateway_id: str, doc_id: str, state: str) -> bool:
        """``done`` is final: a later state (a client retrying) changes nothing."""
        status = await self.pool.execute(
            "UPDATE vxp.mailbox SET state = $3, updated_at = now() "
            "WHERE gateway_id = $1 AND doc_id = $2 AND state <> 'done'",
            gateway_id, doc_id, state,
        )
        return bool(status == "UPDATE 1")

    async def purge_done(self, older_than_days: float) -> int:
        """Forget copies marked done more than ``older_than_days`` ago (the hub keeps the
        record); pending ones are never purged."""
        status = await self.pool.execute(
            "DELETE FROM vxp.mailbox WHERE state = 'done' "
            "AND updated_at < now() - make_interval(secs => $1)", older_than_days * 86400.0,
        )
        return int(status.split()[-1])

    # sent ---------------------------------------------------------------------------
    async def record_sent(self, system_id: str, receipt: Receipt, message_id: str, kind: str,
                          *, title: str | None, notation: str | None) -> None:
        """A package the hub accepted, and its recipients as the receipt lists them."""
        hub_id = receipt.hub_id or message_id
        at = _at(receipt.at)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO vxp.sent (system_id, hub_id, message_id, kind, document_id,
                       title, notation, receipt)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) ON CONFLICT DO NOTHING""",
                system_id, hub_id, message_id, kind, receipt.document_id, title, notation,
                receipt.to_json().decode(),
            )
            await conn.executemany(
                """INSERT INTO vxp.sent_recipients (hub_id, to_code, delivery_id, state,
                       updated_at) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (hub_id, to_code) DO NOTHING""",
                [(hub_id, r.agency or r.code, r.delivery_id, r.state, at)
                 for r in receipt.recipients],
            )

    async def record_events(self, events: Sequence[Receipt]) -> None:
        """Delivery events (a recipient's state changed); the newest wins."""
        rows = [
            (e.hub_id, r.agency or r.code, r.delivery_id, e.state or r.state, e.status_code,
             _at(e.at))
            for e in events if e.type == "delivery" and e.hub_id
            for r in e.recipients[:1]
        ]
        if not rows:
            return
        await self.pool.executemany(
            """INSERT INTO vxp.sent_recipients AS s (hub_id, to_code, delivery_id, state,
                   status_code, received_at, updated_at)
               VALUES ($1, $2, $3, $4, $5,
                       CASE WHEN $4 NOT IN ('submitted', 'queued', 'undeliverable')
                            THEN $6::timestamptz END, $6)
               ON CONFLICT (hub_id, to_code) DO UPDATE SET
                   state = CASE WHEN s.updated_at <= EXCLUDED.updated_at
                                THEN EXCLUDED.state ELSE s.state END,
                   status_code = CASE WHEN s.updated_at <= EXCLUDED.updated_at
                                      THEN coalesce(EXCLUDED.status_code, s.status_code)
                                      ELSE coalesce(s.status_code, EXCLUDED.status_code) END,
                   delivery_id = coalesce(s.delivery_id, EXCLUDED.delivery_id),
                   received_at = coalesce(s.received_at, EXCLUDED.received_at),
                   updated_at = greatest(s.updated_at, EXCLUDED.updated_at)""",
            rows,
        )

    async def sent_list(self, system_id: str, *, hub_id: str | None,
                        since: datetime | None, until: datetime | None,
                        limit: int, offset: int) -> list[dict[str, Any]]:
        """What ``system_id`` sent, one row per recipient, newest first."""
        rows = await self.pool.fetch(
            """SELECT s.hub_id, s.kind, s.title, s.notation, s.sent_at,
                      s.receipt->>'sender' AS sender, r.to_code, r.delivery_id, r.state,
                      r.status_code, r.received_at
               FROM vxp.sent s LEFT JOIN vxp.sent_recipients r USING (hub_id)
               WHERE s.system_id = $1 AND ($2::text IS NULL OR s.hub_id = $2)
                 AND ($3::timestamptz IS NULL OR s.sent_at >= $3)
                 AND ($4::timestamptz IS NULL OR s.sent_at < $4)
               ORDER BY s.sent_at DESC, s.hub_id, r.to_code LIMIT $5 OFFSET $6""",
            system_id, hub_id, since, until, limit, offset,
        )
        return [dict(r) for r in rows]


def _at(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(UTC)
