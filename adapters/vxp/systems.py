"""Changes to the façade's systems, each recorded in the hub's audit log before it is kept.

The façade keeps its systems and their secrets in its own database
(:mod:`adapters.vxp.store`) and never writes to the hub's. Every change to a system —
added, secret rotated, mode changed, removed — is made inside one transaction of the
façade's database that is committed only once the hub has recorded it: the façade asks,
as the system's gateway, ``audit.record_gateway_change`` (``router.security.
gateway_changes``), with who ran the command, the system id, and the values before and
after (never a secret: its fingerprint at most, a URL without its password).

When the hub cannot be reached, refuses, or no router answers, the transaction is rolled
back and :class:`ChangeNotAudited` (or ``HubRefused``) says why: nothing changes
unaudited. This was chosen over an outbox (change now, record later): with an outbox a
new system or secret works at once while its record may never arrive (the outbox is in
the very database whose changes are being audited, so whoever can change systems without
the hub can also empty it), and the hub's log would not be the whole truth. A façade
operator who cannot reach the hub cannot serve documents either, so waiting costs little.

The one window left: the hub records, then the façade's commit fails (its database lost
at that instant). The log then shows a change that did not happen — the safe side — and
the command, run again, records it again. A lost answer is asked again with the same
change id and recorded once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiormq

from adapters.client import GatewayClient
from adapters.vxp.store import Store, System
from schemas import wire_names
from schemas.gateway_change import change_request, fingerprint
from schemas.reasons import LienthongError, Reason

__all__ = ["AuditedSystems", "ChangeNotAudited"]


class _Taken(Exception):
    """The system id is taken: the transaction is rolled back."""


class ChangeNotAudited(LienthongError):
    """The hub did not record the change (unreachable, no router answered): nothing was
    changed. ``detail`` says what happened."""

    def __init__(self, detail: str) -> None:
        super().__init__(Reason.GATEWAY_CHANGE_NOT_AUDITED, detail)


def _safe_url(url: str) -> str:
    """``url`` without its password (what the audit log may hold)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit((parts.scheme, f"{user}@{host}" if user else host, parts.path, "", ""))


def _values(system: System | None, **extra: Any) -> dict[str, Any] | None:
    if system is None:
        return None
    return {"gateway": system.gateway_id, "strict": system.strict,
            "secret_fingerprint": fingerprint(system.secret), **extra}


@dataclass(slots=True)
class AuditedSystems:
    """The system changes an operator makes (``lienthong vxp systems …``), as ``by``
    (``cli:<OS user>``)."""

    store: Store
    by: str
    timeout: float = 15.0  # to connect, and for the hub's answer (asked twice at most)

    async def _record(self, amqp_url: str, gateway_id: str, action: str, subject: str,
                      before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        """Ask the hub to record the change, as ``gateway_id``; the audit row's id."""
        body = change_request(action, subject, before, after, by=self.by)
        client = GatewayClient(amqp_url, gateway_id=gateway_id, receipt_timeout=self.timeout,
                               take_receipts=False,
                               connection_name=f"lienthong-vxp-systems {gateway_id}")
        try:
            await asyncio.wait_for(client.connect(), self.timeout)
        except Exception as exc:  # refused login, no broker, a missing queue...
            await client.close()
            raise ChangeNotAudited(
                f"cannot reach the hub as gateway {gateway_id}: {type(exc).__name__}: {exc}"
            ) from exc
        try:
            for _ in range(2):  # a lost answer: asked again, the same change id, one row
                try:
                    _, answer = await client.ask_hub(wire_names.RECORD_GATEWAY_CHANGE_KEY,
                                                     body)
                except TimeoutError:
                    continue
                except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
                    raise ChangeNotAudited(f"the connection to the hub failed: {exc}") from exc
                return int(answer["id"])
            raise ChangeNotAudited(f"no router of the hub answered within {self.timeout:g} s")
        finally:
            await client.close()

    async def _url(self, tx: Store, gateway_id: str) -> str:
        url = await tx.gateway_url(gateway_id)
        if url is None:
            raise LookupError(f"gateway {gateway_id} has no AMQP URL yet: pass --amqp-url once")
        return url

    async def add(self, system_id: str, gateway_id: str, secret: str, *, strict: bool,
                  amqp_url: str | None = None) -> bool:
        """Add a system (and store its gateway's AMQP URL when given); False when the id
        is taken. LookupError when the gateway has no AMQP URL."""
        try:
            async with self.store.transaction() as tx:
                await self._add(tx, system_id, gateway_id, secret, strict, amqp_url)
        except _Taken:  # rolled back: not even a new --amqp-url is kept
            return False
        return True

    async def _add(self, tx: Store, system_id: str, gateway_id: str, secret: str,
                   strict: bool, amqp_url: str | None) -> None:
        if amqp_url is not None:
            await tx.set_gateway(gateway_id, amqp_url)
        url = await self._url(tx, gateway_id)
        if not await tx.add_system(system_id, gateway_id, secret, strict=strict):
            raise _Taken
        after = _values(System(system_id, gateway_id, secret, strict))
        assert after is not None
        if amqp_url is not None:
            after["amqp_url"] = _safe_url(amqp_url)
        await self._record(url, gateway_id, "vxp.system.added", system_id, None, after)

    async def rotate_secret(self, system_id: str, secret: str) -> str | None:
        """A new secret; the system's gateway, or None when there is no such system."""
        async with self.store.transaction() as tx:
            old = await tx.system(system_id, lock=True)
            if old is None:
                return None
            await tx.rotate_secret(system_id, secret)
            new = System(system_id, old.gateway_id, secret, old.strict)
            await self._record(await self._url(tx, old.gateway_id), old.gateway_id,
                               "vxp.system.secret_rotated", system_id, _values(old),
                               _values(new))
        return old.gateway_id

    async def set_mode(self, system_id: str, strict: bool) -> bool | None:
        """Strict or compatible; True when changed, False when it already was, None when
        there is no such system."""
        async with self.store.transaction() as tx:
            old = await tx.system(system_id, lock=True)
            if old is None:
                return None
            if old.strict == strict:
                return False
            await tx.set_strict(system_id, strict)
            new = System(system_id, old.gateway_id, old.secret, strict)
            await self._record(await self._url(tx, old.gateway_id), old.gateway_id,
                               "vxp.system.mode_changed", system_id, _values(old),
                               _values(new))
        return True

    async def remove(self, system_id: str) -> bool:
        """Remove a system; False when there is none."""
        async with self.store.transaction() as tx:
            old = await tx.system(system_id, lock=True)
            if old is None:
                return False
            await tx.remove_system(system_id)
            await self._record(await self._url(tx, old.gateway_id), old.gateway_id,
                               "vxp.system.removed", system_id, _values(old), None)
        return True
