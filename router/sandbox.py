"""A sandbox for gateway developers: a throwaway hub with a few test gateways and
agencies, and faults to switch on while the developer's gateway runs against it.

``lienthong sandbox up`` recreates the vhost ``lienthong_sandbox`` and the database
``lienthong_sandbox`` (nothing else is touched), provisions three gateways — ``dev`` (the
developer's: agency ``000.00.00.H47``), ``ministry`` (``000.00.00.G22``) and ``province``
(``#.H41``) — writes their credentials to a JSON state file, prints them and runs a router
until stopped. ``lienthong sandbox fault KIND`` then acts on the running sandbox:

============  =============================================================================
document      ``ministry`` sends a new document to ``dev``
duplicate     the last copy delivered to ``dev`` comes again with the same copy id (as after
              a hub crash): a gateway must drop it
recall        ``ministry`` recalls (13) its last document sent to ``dev``: answer 15 or 16
revoke        ``ministry`` revokes (business type 1) its last document sent to ``dev``
disconnect    the broker closes ``dev``'s connections (what a broker restart looks like
              from the gateway): the SDK reconnects by itself
============  =============================================================================
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from adapters import GatewayClient
from router import amqp, migrate, topology
from router.broker_admin import BrokerAdmin
from router.directory.provision import GatewaySpec, ensure_core, provision_gateways
from router.directory.registry import AgencyRow, import_agencies, sync_gateway_permissions
from router.outbox.publish import publish_copies
from router.routing.batch import Copy
from router.settings import Settings
from schemas import EdocPackage, StatusPackage, parse_package
from schemas.spec import package_from_spec

__all__ = ["FAULTS", "GATEWAYS", "SandboxGateway", "fault", "populate", "prepare",
           "sandbox_settings"]

NAME = "lienthong_sandbox"
DEV, MINISTRY, PROVINCE = "dev", "ministry", "province"
GATEWAYS: tuple[tuple[GatewaySpec, AgencyRow], ...] = (
    (GatewaySpec(DEV, "Your gateway (sandbox)", "agency", ("000.00.00.H47",)),
     AgencyRow("000.00.00.H47", "UBND tỉnh Quảng Nam (sandbox)", aliases=("H47",))),
    (GatewaySpec(MINISTRY, "Văn phòng Chính phủ (sandbox)", "ministry", ("000.00.00.G22",)),
     AgencyRow("000.00.00.G22", "Văn phòng Chính phủ (sandbox)", aliases=("G22",))),
    (GatewaySpec(PROVINCE, "LGSP Nghệ An (sandbox)", "province-platform", ("#.H41",)),
     AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An (sandbox)", aliases=("H41",))),
)
FAULTS = ("document", "duplicate", "recall", "revoke", "disconnect")


@dataclass(frozen=True, slots=True)
class SandboxGateway:
    gateway_id: str
    agency: str
    user: str
    password: str
    url: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def sandbox_settings(base: Settings) -> Settings:
    """``base`` on the sandbox's own vhost and database, gateway users prefixed."""
    amqp_url, db = urlsplit(base.amqp_url), urlsplit(base.database_url)
    return dataclasses.replace(
        base,
        amqp_url=urlunsplit((amqp_url.scheme, amqp_url.netloc, "/" + NAME, amqp_url.query, "")),
        database_url=urlunsplit((db.scheme, db.netloc, "/" + NAME, db.query, "")),
        amqp_user_prefix="sandbox.",
    )


async def prepare(settings: Settings, admin: BrokerAdmin) -> None:
    """A fresh ledger and vhost for the sandbox (drops the previous sandbox's)."""
    db = urlsplit(settings.database_url)
    name = db.path.lstrip("/")
    if name != NAME or settings.vhost != NAME:
        raise ValueError(f"the sandbox only recreates {NAME}, not {name} / {settings.vhost}")
    conn = await asyncpg.connect(urlunsplit((db.scheme, db.netloc, "/postgres", db.query, "")))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{NAME}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await migrate.migrate(conn)
    finally:
        await conn.close()
    await admin.delete_vhost(NAME)
    await admin.put_vhost(NAME)
    user = amqp.hub_user(settings)
    await admin.set_permissions(NAME, user, configure=".*", write=".*", read=".*")
    await ensure_core(settings, admin)


def _gateway_url(settings: Settings, user: str, password: str) -> str:
    parts = urlsplit(settings.amqp_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


async def populate(settings: Settings, pool: asyncpg.Pool,
                   admin: BrokerAdmin) -> dict[str, SandboxGateway]:
    """The sandbox's gateways and agencies; returns each gateway's credentials."""
    creds = await provision_gateways(settings, pool, admin, [g for g, _ in GATEWAYS])
    async with pool.acquire() as conn:
        await import_agencies(conn, [a for _, a in GATEWAYS], actor="sandbox")
        for gid in creds:
            await sync_gateway_permissions(conn, admin, settings.vhost, gid)
    return {g.id: SandboxGateway(g.id, a.code, creds[g.id].user, creds[g.id].password,
                                 _gateway_url(settings, creds[g.id].user, creds[g.id].password))
            for g, a in GATEWAYS}


def _org(code: str) -> dict[str, str]:
    return {"organ_id": code, "organ_name": f"Sandbox {code}"}


def _document(sender: str, to: str, business: dict[str, Any] | None = None,
              response_for: list[dict[str, str]] | None = None) -> EdocPackage:
    number = uuid.uuid4().hex[:8]
    spec: dict[str, Any] = {"from": _org(sender), "to": [_org(to)], "code": f"{number}/SBX",
                            "promulgation_date": f"{datetime.now(UTC):%Y/%m/%d}",
                            "subject": f"lienthong sandbox {number}"}
    if business:
        spec["business"] = business
    if response_for:
        spec["response_for"] = response_for
    pkg = package_from_spec(spec)
    assert isinstance(pkg, EdocPackage)
    return pkg


async def _last_document(pool: asyncpg.Pool) -> asyncpg.Record:
    row: asyncpg.Record | None = await pool.fetchrow(
        """SELECT doc.hub_id, doc.body, d.id AS delivery_id, d.copy_id, d.recipient_code
           FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
           WHERE d.gateway_id = $1 AND doc.kind = 'edoc' AND doc.sender_gateway_id = $2
           ORDER BY d.created_at DESC LIMIT 1""", DEV, MINISTRY)
    if row is None:
        raise LookupError("no document was sent to dev yet: run `sandbox fault document`")
    return row


async def fault(settings: Settings, pool: asyncpg.Pool, admin: BrokerAdmin,
                gateways: dict[str, SandboxGateway], kind: str) -> dict[str, Any]:
    """Switch on one fault (see the module docstring); returns what was done."""
    dev, ministry = gateways[DEV], gateways[MINISTRY]

    async def send(pkg: EdocPackage | StatusPackage) -> dict[str, Any]:
        async with GatewayClient(ministry.url, gateway_id=MINISTRY,
                                 connection_name="lienthong sandbox") as gw:
            receipt = await gw.send(pkg)
        assert receipt is not None
        return receipt.as_dict()

    if kind == "document":
        return {"fault": kind, "receipt": await send(_document(ministry.agency, dev.agency))}
    if kind == "disconnect":
        await admin.close_user_connections(dev.user)
        return {"fault": kind, "user": dev.user}
    last = await _last_document(pool)
    doc = parse_package(bytes(last["body"])).package
    assert isinstance(doc, EdocPackage)
    if kind == "duplicate":
        copy = Copy(gateway_id=DEV, copy_id=last["copy_id"], hub_id=last["hub_id"], kind="edoc",
                    body=bytes(last["body"]), sender=ministry.agency,
                    document_id=doc.document_id, status_code=None)
        copy.delivery_ids.append(last["delivery_id"])
        copy.recipients.append(dev.agency)
        connection = await amqp.connect(settings, "sandbox", robust=False)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            deliver = await channel.get_exchange(topology.DELIVER, ensure=False)
            states = await publish_copies(deliver, [copy])
        return {"fault": kind, "copy_id": str(last["copy_id"]),
                "state": next(iter(states.values()), None)}
    if kind == "recall":
        recall = package_from_spec({
            "kind": "status", "from": _org(ministry.agency),
            "response_for": {"organ_id": dev.agency, "code": str(doc.code),
                             "promulgation_date":
                                 f"{doc.promulgation.promulgation_date:%Y/%m/%d}",
                             "document_id": doc.document_id},
            "status_code": "13", "description": "Lấy lại / recall (sandbox)"})
        return {"fault": kind, "receipt": await send(recall)}
    if kind == "revoke":
        revocation = _document(ministry.agency, dev.agency,
                               {"type": "revoke", "reason": "Thu hồi / revoke (sandbox)"},
                               [{"organ_id": ministry.agency,
                                 "document_id": doc.document_id or ""}])
        return {"fault": kind, "receipt": await send(revocation)}
    raise ValueError(f"unknown fault {kind!r}: one of {', '.join(FAULTS)}")


def write_state(path: Path, gateways: dict[str, SandboxGateway]) -> None:
    path.write_text(json.dumps({g: v.as_dict() for g, v in gateways.items()}, indent=2),
                    encoding="utf-8")
    path.chmod(0o600)  # passwords


def read_state(path: Path) -> dict[str, SandboxGateway]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {g: SandboxGateway(**v) for g, v in data.items()}

