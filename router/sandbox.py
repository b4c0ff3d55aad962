"""``lienthong sandbox``: a throwaway hub for gateway developers, with faults on demand.

``up`` makes a hub of its own on the local RabbitMQ and PostgreSQL (vhost
``lienthong-sandbox-<name>``, database ``lienthong_sandbox_<name>``, AMQP users
``sandbox-<name>.<gateway>``), provisions a few test gateways and agencies, starts router
processes that outlive the command, and keeps what it made (credentials included) in a
state file of a folder only this user can enter. ``down`` stops the routers and removes all
of it. In between, a developer switches faults on for their own gateway's tests:

``delay``       copies to the gateway wait ``seconds`` in a holding queue before they
                reach its inbox (the hub has already said ``queued``);
``duplicate``   the last copies delivered to the gateway come again, same copy ids;
``disconnect``  the broker closes the gateway's connections (as at a broker restart);
``reject``      the gateway's documents are refused (its recipients are locked:
                RECIPIENT_LOCKED in the receipt);
``revoke``      the sender of the last document the gateway received revokes it (type 1);
``recall``      the sender of the last document the gateway received asks it back (13);
``clear``       the delay and reject faults of the gateway are switched off.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiormq
import asyncpg

from adapters import GatewayClient
from router import amqp, migrate, topology
from router.broker_admin import BrokerAdmin
from router.directory.provision import GatewaySpec, ensure_core, provision_gateways
from router.directory.registry import AgencyRow, import_agencies, sync_gateway_permissions
from router.outbox.outbox import Outbox
from router.outbox.signing import HUB_KEY_ENV, generate_hub_key
from router.processes import worker_argv
from router.recovery.redelivery import resend_copies
from router.security import audit
from router.settings import Settings, child_environment
from schemas import (
    Business,
    BusinessDocType,
    Code,
    EdocPackage,
    ResponseFor,
    StatusCode,
    parse_package,
)
from schemas.reasons import OperationRefused, Reason

__all__ = [
    "FAULTS",
    "GATEWAYS",
    "SandboxState",
    "fault",
    "load_state",
    "sandbox_down",
    "sandbox_up",
    "state_dir",
]

# (gateway id, agency code, agency name): the sandbox's directory
GATEWAYS: tuple[tuple[str, str, str], ...] = (
    ("gw-a", "000.00.00.G22", "Văn phòng Chính phủ (thử nghiệm)"),
    ("gw-b", "000.00.00.H41", "UBND tỉnh Nghệ An (thử nghiệm)"),
    ("gw-c", "000.00.00.G12", "Bộ Tài chính (thử nghiệm)"),
    ("conformance", "000.00.00.A80", "Cổng kiểm tra tuân thủ (thử nghiệm)"),
)

FAULTS = ("delay", "duplicate", "disconnect", "reject", "revoke", "recall", "clear")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,30}$")
Say = Callable[[str], None]


def state_dir() -> Path:
    """The private folder of this user's sandboxes (state files, hub keys, router logs)."""
    folder = Path(tempfile.gettempdir()) / f"lienthong-sandbox-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user")
    return folder


@dataclass
class SandboxState:
    """What ``up`` made: enough for ``fault`` and ``down`` to act on it."""

    name: str
    vhost: str
    database: str
    amqp_url: str  # the hub's own (operator) connection to the sandbox vhost
    database_url: str
    management_url: str
    user_prefix: str
    hub_key: str
    log: str
    pids: list[int] = field(default_factory=list)
    # gateway id -> {user, password, agency, agency_name, url}
    gateways: dict[str, dict[str, str]] = field(default_factory=dict)
    # faults switched on: gateway id -> {"delay": seconds, "reject": [agency codes]}
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings(self) -> Settings:
        return Settings(amqp_url=self.amqp_url, database_url=self.database_url,
                        management_url=self.management_url,
                        amqp_user_prefix=self.user_prefix, batch_wait_ms=10,
                        hub_key=self.hub_key)

    def gateway(self, gateway_id: str) -> dict[str, str]:
        gw = self.gateways.get(gateway_id)
        if gw is None:
            raise OperationRefused(Reason.GATEWAY_UNKNOWN,
                                   f"{gateway_id}: the sandbox has {', '.join(self.gateways)}")
        return gw

    def public(self) -> dict[str, Any]:
        """What ``up`` prints (the gateways' credentials included: they are test ones)."""
        return {"name": self.name, "vhost": self.vhost, "database": self.database,
                "hub_public_key": self.hub_key + ".pub", "router_log": self.log,
                "router_pids": self.pids, "gateways": self.gateways}


def _path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def _save(state: SandboxState, folder: Path) -> None:
    path = _path(folder, state.name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(dataclasses.asdict(state), fh, ensure_ascii=False, indent=2)


def load_state(name: str, folder: Path) -> SandboxState:
    path = _path(folder, name)
    if not path.is_file():
        raise OperationRefused(Reason.SANDBOX_NOT_RUNNING, f"no sandbox {name!r} ({path})")
    return SandboxState(**json.loads(path.read_text(encoding="utf-8")))


def _with_path(url: str, path: str, user: str | None = None, password: str | None = None,
               query: bool = True) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        host = parts.hostname or "127.0.0.1"
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{quote(user, safe='')}:{quote(password or '', safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, path, parts.query if query else "", ""))


async def sandbox_up(base: Settings, name: str, folder: Path, *, routers: int = 1,
                     say: Say | None = None) -> SandboxState:
    """Make sandbox ``name`` (replacing one of that name) and start its routers."""
    tell = say or (lambda _line: None)
    if not _NAME.match(name):
        raise OperationRefused(Reason.SETTING_INVALID,
                               f"sandbox name {name!r}: lower-case letters, digits, _")
    if _path(folder, name).exists():
        await sandbox_down(name, folder, say=tell)
    vhost, database = f"lienthong-sandbox-{name}", f"lienthong_sandbox_{name}"
    key = await asyncio.to_thread(_hub_key, folder / f"{name}-hub-key.pem")
    state = SandboxState(
        name=name, vhost=vhost, database=database,
        amqp_url=_with_path(base.amqp_url, "/" + quote(vhost, safe="")),
        database_url=_with_path(base.database_url, "/" + database),
        management_url=base.management_url, user_prefix=f"sandbox-{name}.",
        hub_key=str(key), log=str(folder / f"{name}-routers.log"),
    )
    settings = state.settings()
    _save(state, folder)  # from here on, `down` can remove what exists
    admin_db = await asyncpg.connect(_with_path(base.database_url, "/postgres"))
    try:
        await admin_db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin_db.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin_db.close()
    tell(f"ledger: database {database}, migrations")
    conn = await asyncpg.connect(state.database_url)
    admin = BrokerAdmin(base.management_url)
    try:
        await migrate.migrate(conn)
        await admin.delete_vhost(vhost)
        await admin.put_vhost(vhost)
        me = urlsplit(base.amqp_url).username or "guest"
        await admin.set_permissions(vhost, me, configure=".*", write=".*", read=".*")
        await ensure_core(settings, admin)
        tell(f"broker: vhost {vhost}, topology")
        pool = await asyncpg.create_pool(state.database_url, min_size=1, max_size=4)
        try:
            creds = await provision_gateways(settings, pool, admin, [
                GatewaySpec(gid, name_, "agency", (code,)) for gid, code, name_ in GATEWAYS])
        finally:
            await pool.close()
        await import_agencies(conn, [AgencyRow(code, name_, gateway=gid)
                                     for gid, code, name_ in GATEWAYS])
        for gid, code, name_ in GATEWAYS:
            await sync_gateway_permissions(conn, admin, vhost, gid)
            c = creds[gid]
            state.gateways[gid] = {
                "user": c.user, "password": c.password, "agency": code, "agency_name": name_,
                "url": _with_path(state.amqp_url, "/" + quote(vhost, safe=""), c.user,
                                  c.password, query=False),
            }
        _save(state, folder)
        tell(f"directory: {len(GATEWAYS)} gateways and their agencies")
    finally:
        await admin.close()
        await conn.close()
    state.pids = await asyncio.to_thread(_start_routers, state, routers)
    _save(state, folder)
    await _routers_consuming(settings, routers, state)
    tell(f"routers: pids {state.pids}, log {state.log}")
    return state


def _hub_key(path: Path) -> Path:
    """A new receipt-signing key for the sandbox, its public half beside it (``.pub``)."""
    path.unlink(missing_ok=True)
    signer = generate_hub_key(path)
    Path(f"{path}.pub").write_bytes(signer.public_key_pem())
    return path


def _start_routers(state: SandboxState, n: int) -> list[int]:
    env = child_environment({
        "LIENTHONG_AMQP_URL": state.amqp_url, "LIENTHONG_DATABASE_URL": state.database_url,
        "LIENTHONG_MANAGEMENT_URL": state.management_url,
        "LIENTHONG_AMQP_USER_PREFIX": state.user_prefix, "LIENTHONG_BATCH_WAIT_MS": "10",
        "LIENTHONG_LOG_LEVEL": "WARNING", HUB_KEY_ENV: state.hub_key,
        "LIENTHONG_METRICS_PORT": "",
    })
    pids = []
    with open(state.log, "ab") as log:
        for _ in range(n):
            # a session of its own: the routers outlive this command, until `sandbox down`
            proc = subprocess.Popen(worker_argv(), env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            pids.append(proc.pid)
    return pids


def _stop_routers(pids: list[int], seconds: float = 15.0) -> None:
    """SIGTERM (a graceful stop), SIGKILL after ``seconds``; only routers we started."""
    for pid in pids:
        if _ours(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    for pid in pids:
        while _ours(pid) and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _ours(pid) and _alive(pid):
            os.kill(pid, signal.SIGKILL)


async def _routers_consuming(settings: Settings, n: int, state: SandboxState,
                             seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    connection = await amqp.connect(settings, "sandbox", robust=False)
    async with connection:
        while True:
            channel = await connection.channel()
            q = await channel.declare_queue(topology.ROUTER_IN, passive=True)
            await channel.close()
            if int(q.declaration_result.consumer_count or 0) >= n:
                return
            if not all(_alive(p) for p in state.pids) or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox's routers did not start: see {state.log}")
            await asyncio.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").is_file() or (
        Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[-1][:1] != "Z")


def _ours(pid: int) -> bool:
    """A router this sandbox started (never signal a pid reused by something else)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"router.cli" in cmd and b"router" in cmd


async def sandbox_down(name: str, folder: Path, *, say: Say | None = None) -> None:
    """Stop the routers of sandbox ``name``; remove its users, vhost, database, files."""
    tell = say or (lambda _line: None)
    state = load_state(name, folder)
    await asyncio.to_thread(_stop_routers, state.pids)
    tell(f"routers stopped: pids {state.pids}")
    admin = BrokerAdmin(state.management_url)
    try:
        for gw in state.gateways.values():
            await admin.delete_user(gw["user"])
        await admin.delete_vhost(state.vhost)
    finally:
        await admin.close()
    conn = await asyncpg.connect(_with_path(state.database_url, "/postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{state.database}" WITH (FORCE)')
    finally:
        await conn.close()
    await asyncio.to_thread(_remove_files, state, folder)
    tell(f"removed vhost {state.vhost}, database {state.database}, users, state")


def _remove_files(state: SandboxState, folder: Path) -> None:
    for path in (Path(state.hub_key), Path(state.hub_key + ".pub"), Path(state.log)):
        path.unlink(missing_ok=True)
    _path(folder, state.name).unlink()


# faults -------------------------------------------------------------------------------

async def fault(state: SandboxState, folder: Path, kind: str, gateway_id: str, *,
                seconds: float = 10.0, count: int = 1) -> str:
    """Switch fault ``kind`` on for ``gateway_id`` (or ``clear`` its faults); what it did."""
    if kind not in FAULTS:
        raise OperationRefused(Reason.SANDBOX_FAULT_UNKNOWN,
                               f"{kind!r}: one of {', '.join(FAULTS)}")
    gw = state.gateway(gateway_id)
    settings = state.settings()
    if kind == "disconnect":
        admin = BrokerAdmin(state.management_url)
        try:
            await admin.close_user_connections(gw["user"])
        finally:
            await admin.close()
        return f"closed the connections of {gw['user']}"
    if kind in ("delay", "clear"):
        if kind == "delay" and not 0 < seconds <= 3600:
            raise OperationRefused(Reason.SANDBOX_FAULT_UNKNOWN, "delay: 0 < seconds <= 3600")
        text = await _delay(settings, gateway_id, seconds if kind == "delay" else None)
        if kind == "clear":
            text += "; " + await _reject(state, gateway_id, on=False)
            state.faults.pop(gateway_id, None)
        else:
            state.faults.setdefault(gateway_id, {})["delay"] = seconds
        _save(state, folder)
        return text
    if kind == "reject":
        text = await _reject(state, gateway_id, on=True)
        _save(state, folder)
        return text
    conn = await asyncpg.connect(state.database_url)
    try:
        if kind == "duplicate":
            ids = [r["id"] for r in await conn.fetch(
                "SELECT id FROM deliveries WHERE gateway_id = $1 AND state <> 'undeliverable' "
                "ORDER BY created_at DESC LIMIT $2", gateway_id, count)]
            if not ids:
                raise OperationRefused(Reason.SANDBOX_FAULT_UNKNOWN,
                                       f"{gateway_id} has received nothing yet")
            connection = await amqp.connect(settings, "sandbox-fault", robust=False)
            async with connection:
                outbox = await Outbox.open(await connection.channel(publisher_confirms=True),
                                           settings)
                done = await resend_copies(conn, outbox, ids)
            return f"delivered again with the same copy ids: {len(done)} copies ({ids})"
        return await _revoke_or_recall(state, conn, gateway_id, kind)
    finally:
        await conn.close()


def _delay_queue(gateway_id: str) -> str:
    return f"lt.sandbox.delay.{gateway_id}"


async def _delay(settings: Settings, gateway_id: str, seconds: float | None) -> str:
    """Route the gateway's copies through a holding queue (TTL, then dead-lettered to its
    inbox), or back straight to the inbox (``seconds`` None)."""
    connection = await amqp.connect(settings, "sandbox-fault", robust=False)
    async with connection:
        channel = await connection.channel()
        deliver = await channel.get_exchange(topology.DELIVER, ensure=False)
        inbox = await channel.declare_queue(topology.inbox_queue(gateway_id), passive=True)
        name = _delay_queue(gateway_id)
        if seconds is None:
            await inbox.bind(deliver, routing_key=gateway_id)
            try:  # copies held already still reach the inbox when their time is up
                held = await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                return "no delay was on"
            await held.unbind(deliver, routing_key=gateway_id)
            return "copies go straight to the inbox again"
        with_ttl: dict[str, Any] = {"x-queue-type": "classic", "x-message-ttl": int(seconds * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.inbox_queue(gateway_id)}
        try:
            held = await channel.declare_queue(name, durable=True, arguments=with_ttl)
        except aiormq.exceptions.ChannelPreconditionFailed:  # a delay of another length
            # the refusal closed the channel: a new one, and the queue made anew once empty
            channel = await connection.channel()
            try:
                await channel.queue_delete(name, if_empty=True)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise OperationRefused(
                    Reason.SANDBOX_FAULT_UNKNOWN,
                    f"copies to {gateway_id} are still held in {name}: wait for them, "
                    "then change the delay") from exc
            channel = await connection.channel()
            deliver = await channel.get_exchange(topology.DELIVER, ensure=False)
            inbox = await channel.declare_queue(topology.inbox_queue(gateway_id),
                                                passive=True)
            held = await channel.declare_queue(name, durable=True, arguments=with_ttl)
        await held.bind(deliver, routing_key=gateway_id)
        await inbox.unbind(deliver, routing_key=gateway_id)
        return f"copies to {gateway_id} wait {seconds:g} s in {name} before its inbox"


async def _reject(state: SandboxState, gateway_id: str, *, on: bool) -> str:
    """Lock (or unlock) the agencies the gateway sends to: its documents are refused."""
    faults = state.faults.setdefault(gateway_id, {})
    own = state.gateways[gateway_id]["agency"]
    codes = ([g["agency"] for gid, g in state.gateways.items() if gid != gateway_id]
             if on else list(faults.get("reject", [])))
    if not codes:
        return "nothing to unlock"
    conn = await asyncpg.connect(state.database_url)
    try:
        async with conn.transaction():
            await conn.execute("UPDATE agencies SET status = $2, updated_at = now() "
                               "WHERE code = ANY($1::text[]) AND code <> $3",
                               codes, "locked" if on else "active", own)
            await audit.append(conn, "sandbox", "sandbox.fault",
                               "reject" if on else "clear",
                               {"gateway": gateway_id, "agencies": codes})
    finally:
        await conn.close()
    if on:
        faults["reject"] = codes
        return f"documents from {gateway_id} are refused: {', '.join(codes)} locked"
    faults.pop("reject", None)
    return f"unlocked {', '.join(codes)}"


async def _revoke_or_recall(state: SandboxState, conn: asyncpg.Connection, gateway_id: str,
                            kind: str) -> str:
    row = await conn.fetchrow(
        """SELECT doc.body, doc.sender_gateway_id, d.recipient_code
           FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id
           WHERE d.gateway_id = $1 AND doc.kind = 'edoc' AND doc.business_type = 0
           ORDER BY d.created_at DESC LIMIT 1""", gateway_id)
    if row is None or row["sender_gateway_id"] not in state.gateways:
        raise OperationRefused(Reason.SANDBOX_FAULT_UNKNOWN,
                               f"{gateway_id} has received no new document from a sandbox "
                               "gateway yet")
    original = parse_package(bytes(row["body"])).package
    assert isinstance(original, EdocPackage)
    sender = state.gateways[row["sender_gateway_id"]]
    async with GatewayClient(sender["url"], gateway_id=row["sender_gateway_id"]) as client:
        if kind == "recall":
            receipt = await client.send_status(
                sender=original.sender, about=original, code=StatusCode.RECALL_REQUESTED,
                description="Đề nghị thu hồi (sandbox)", to=row["recipient_code"])
        else:
            receipt = await client.send(_revocation(original))
    assert receipt is not None
    return (f"{row['sender_gateway_id']} sent a {kind} of {original.document_id}: "
            f"{receipt.type} {receipt.hub_id or receipt.reason}")


def _revocation(original: EdocPackage) -> EdocPackage:
    day = original.promulgation.promulgation_date or date.today()
    number = f"{original.code.code_number or ''}TH{int(time.time()) % 100000}"
    notation = original.code.code_notation or "TH"
    return dataclasses.replace(
        original,
        code=Code(number, notation),
        document_id=f"{original.sender.organ_id},{day:%Y/%m/%d},{number}/{notation}",
        subject=f"Thu hồi văn bản {original.code}",
        business=Business(BusinessDocType.REVOKE, None, "Thu hồi văn bản (sandbox)"),
        response_for=(ResponseFor(original.sender.organ_id, str(original.code), day,
                                  original.document_id),),
        attachments=(),
    )
