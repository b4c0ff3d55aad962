"""``make demo``: documents travel between ministries and provinces on a fresh hub.

The demo uses its own vhost (``lienthong-demo``) and database (``lienthong_demo``),
recreated at every run, so it never touches the data of a real installation. It loads the
demo directory (``agencies.csv``, ``gateways.csv`` beside this file), applies the topology,
starts two router processes and lets the gateways exchange documents built with the
project's builder (``documents.py``), answering with status packages the way document
software does. Where ``LIENTHONG_SAMPLES`` names a folder of real packages, the demo sends
the real 2025 package and the SDK's example from it too.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from adapters import GatewayClient, InboxMessage
from demo.documents import demo_documents
from router import migrate
from router.broker_admin import BrokerAdmin
from router.directory.provision import GatewaySpec, ensure_core, provision_gateways
from router.directory.registry import GatewayCredentials, import_agencies, read_agencies_csv
from router.outbox.signing import HUB_KEY_ENV, ReceiptSigner, generate_hub_key
from router.processes import RouterProcesses
from router.settings import Settings
from schemas import (
    EdocPackage,
    Organization,
    ResponseFor,
    StatusCode,
    StatusPackage,
    build_package,
    parse_package,
)
from schemas.receipt import Receipt, ReceiptSignatureError, verify_receipt

__all__ = ["DEMO_DATABASE", "DEMO_VHOST", "DemoResult", "run_demo"]

HERE = Path(__file__).resolve().parent
DEMO_VHOST = "lienthong-demo"
DEMO_DATABASE = "lienthong_demo"


def samples_dir() -> Path | None:
    """``LIENTHONG_SAMPLES``: a folder of real packages the demo sends as well."""
    configured = Settings.from_env().samples
    return Path(configured) if configured else None


@dataclass
class DemoResult:
    documents: list[tuple[str, str]] = field(default_factory=list)  # (label, hub id)
    receipts: list[Receipt] = field(default_factory=list)
    rejected: list[tuple[str, Receipt]] = field(default_factory=list)
    hub_public_key: bytes = b""  # PEM of the key that signed the receipts
    example_document_id: str = ""  # a DocumentId to try `lienthong track` with
    deliveries: dict[str, int] = field(default_factory=dict)  # state → count, at the end


def demo_settings(base: Settings) -> Settings:
    amqp = urlsplit(base.amqp_url)
    db = urlsplit(base.database_url)
    return dataclasses.replace(
        base,
        amqp_url=urlunsplit((amqp.scheme, amqp.netloc, "/" + quote(DEMO_VHOST, safe=""), "", "")),
        database_url=urlunsplit((db.scheme, db.netloc, "/" + DEMO_DATABASE, db.query, "")),
        amqp_user_prefix="demo.",
        batch_wait_ms=10,
    )


async def _fresh_database(settings: Settings) -> None:
    parts = urlsplit(settings.database_url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    finally:
        await conn.close()


def _gateway_rows() -> list[dict[str, str]]:
    with (HERE / "gateways.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


Say = Callable[[str], None]


async def run_demo(base: Settings, say: Say) -> DemoResult:
    settings = demo_settings(base)
    result = DemoResult()
    t0 = time.monotonic()

    say("1/6 ledger: fresh database, migrations")
    await _fresh_database(settings)
    conn = await asyncpg.connect(settings.database_url)
    admin = BrokerAdmin(settings.management_url)
    routers: RouterProcesses | None = None
    try:
        applied = await migrate.migrate(conn)
        say(f"    applied {len(applied)} migration(s) to {DEMO_DATABASE}")

        say("2/6 topology and gateways: vhost, exchanges, queues, least-privilege AMQP users")
        await admin.delete_vhost(DEMO_VHOST)
        await admin.put_vhost(DEMO_VHOST)
        user = urlsplit(settings.amqp_url).username or "guest"
        await admin.set_permissions(DEMO_VHOST, user, configure=".*", write=".*", read=".*")
        await ensure_core(settings, admin)
        pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=8)
        try:
            creds = await provision_gateways(
                settings, pool, admin,
                [GatewaySpec(g["id"], g["name"], g["kind"]) for g in _gateway_rows()],
            )
        finally:
            await pool.close()
        say(f"    {len(creds)} gateways provisioned")

        say("3/6 directory: the 95 top-level nodes, two provincial trees, the samples' agencies")
        rows = read_agencies_csv(HERE / "agencies.csv")
        imported = await import_agencies(conn, rows)
        from router.directory.registry import sync_gateway_permissions

        for gid in creds:
            await sync_gateway_permissions(conn, admin, DEMO_VHOST, gid)
        say(f"    {imported.created} agencies, {imported.aliases} codes and aliases")

        key_path, signer = _hub_key()
        result.hub_public_key = signer.public_key_pem()
        routers = RouterProcesses(
            settings, 2, log_path=Path(tempfile.gettempdir()) / "lienthong-demo-routers.log",
            env={HUB_KEY_ENV: str(key_path)},
        )
        say(f"4/6 two router processes (their logs: {routers.log_path}), signing receipts "
            f"with hub key {signer.key_id} ({key_path})")
        await asyncio.sleep(1.0)

        say("5/6 gateways exchange documents and answer with status packages")
        await _exchange(settings, creds, result, say)
        verified = sum(1 for r in result.receipts if _verified(r, result.hub_public_key))
        if verified != len(result.receipts):
            raise RuntimeError(f"only {verified} of {len(result.receipts)} receipts carry a "
                               "valid hub signature")
        say(f"    the receipts of these sends are signed by the hub: {verified} of "
            f"{len(result.receipts)} verified with its public key")
        say(f"    done in {time.monotonic() - t0:.1f} s since the start")
    finally:
        if routers is not None:
            routers.stop()
        await conn.close()
        await admin.close()
    return result


def _hub_key() -> tuple[Path, ReceiptSigner]:
    """The demo hub's receipt-signing key: the operator's (``LIENTHONG_HUB_KEY``, only
    read, never made) when set, else the demo's own, made on the first run in a folder
    of the temporary directory that only this user can enter."""
    configured = Settings.from_env().hub_key
    if configured:
        if not Path(configured).is_file():
            raise RuntimeError(f"{HUB_KEY_ENV} names {configured}, which is not a file "
                               "(make a key with `lienthong receipt keygen`)")
        return Path(configured), ReceiptSigner.from_file(configured)
    folder = Path(tempfile.gettempdir()) / f"lienthong-demo-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise PermissionError(f"{folder} is not a private folder of this user")
    path = folder / "hub-key.pem"
    try:
        return path, generate_hub_key(path)
    except FileExistsError:
        return path, ReceiptSigner.from_file(path)


def _verified(receipt: Receipt, public_key_pem: bytes) -> bool:
    try:
        verify_receipt(receipt.as_dict(), public_key_pem)
    except ReceiptSignatureError:
        return False
    return True


def _url(settings: Settings, c: GatewayCredentials) -> str:
    parts = urlsplit(settings.amqp_url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    netloc = f"{quote(c.user, safe='')}:{quote(c.password, safe='')}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# Each gateway's document software: answers 01 at once, then 03 and 06, per recipient.
_ANSWERS = (StatusCode.ARRIVED, StatusCode.ACCEPTED, StatusCode.DONE)


async def _software(
    gw: GatewayClient,
    names: dict[str, str],
    stop: asyncio.Event,
    scripted: dict[str, Callable[[InboxMessage], Awaitable[None]]],
) -> None:
    """Take the inbox; answer every document for every recipient agency."""
    while not stop.is_set():
        async for msg in gw.inbox(timeout=0.5):
            async with msg.process():
                if msg.kind != "edoc":
                    continue
                hook = scripted.get(msg.document_id or "")
                if hook is not None:
                    await hook(msg)
                    continue
                for agency in msg.recipients:
                    for code in _ANSWERS:  # one after the other, as document software does
                        await gw.send_status(
                            sender=Organization(agency, names.get(agency, agency)),
                            about=msg,
                            code=code,
                            description=f"Văn thư: {code.name.lower()}",
                        )


async def _exchange(
    settings: Settings, creds: dict[str, GatewayCredentials], result: DemoResult, say: Say
) -> None:
    directory = read_agencies_csv(HERE / "agencies.csv")
    names = {r.code: r.name for r in directory}
    serving = {r.code: r.gateway for r in directory}
    involved = ["000.00.00.G22", "000.00.00.H41", "000.00.00.H14", "000.00.00.G17",
                "000.00.00.H47", "000.00.00.G12", "020100107370", "000.00.00.A80", "28.22.H17"]
    active = sorted({g for c in involved if (g := serving.get(c)) and g in creds})
    clients = {gid: GatewayClient(_url(settings, creds[gid]), gateway_id=gid) for gid in active}
    for c in clients.values():
        await c.connect()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_software(c, names, stop, {})) for c in clients.values()]
    try:
        documents = demo_documents(names)
        result.example_document_id = documents[1].document_id
        for doc in documents:
            await _send(clients[doc.gateway], doc.body, doc.label, result, say)

        samples = samples_dir()
        if samples is not None:
            # LIENTHONG_SAMPLES: the real packages too (the real 2025 one, the SDK's example)
            for gateway, name, label in _REAL_SAMPLES:
                path = samples / name
                if path.is_file():
                    await _send(clients[gateway], path.read_bytes(), f"{label} ({path})",
                                result, say)
                else:
                    say(f"    {name} is not in {samples}: not sent")

        # Bad input: an unknown recipient is refused with a reason, nothing delivered
        first = parse_package(documents[1].body).package
        assert isinstance(first, EdocPackage)
        bad = dataclasses.replace(
            first, recipients=(Organization("000.00.99.H47", "Không tồn tại"),),
            document_id=first.document_id.replace("1021/", "1022/") if first.document_id
            else None)
        await _send(clients["vpcp"], build_package(bad), "E  VPCP → unknown agency",
                    result, say)

        # let the recipients' software answer
        await _wait_settled(settings, result, seconds=30)
        # F. a refusal after completion is illegal: refused with a reason
        target = parse_package(documents[0].body).package
        assert isinstance(target, EdocPackage)
        late = build_package(StatusPackage(
            sender=Organization("000.00.00.H41", names["000.00.00.H41"]),
            response_for=ResponseFor(target.sender.organ_id, str(target.code),
                                     target.promulgation.promulgation_date,
                                     target.document_id),
            status_code=StatusCode.REFUSED,
            description="Văn thư: từ chối tiếp nhận (sau khi đã hoàn thành)",
        ))
        r = await clients["lgsp-nghean"].send(late)
        assert r is not None
        if r.type == "rejected":
            result.rejected.append(("F  Nghệ An: 02 after 06", r))
            say(f"    F  Nghệ An sends 02 after 06 → rejected: {r.reason and r.reason['reason']}")
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients.values():
            await c.close()


# (sending gateway, file, label) of the real packages sent when LIENTHONG_SAMPLES is set
_REAL_SAMPLES = (
    ("petrolimex", "real_vdxp_received_2025-10-13.derived.edxml",
     "S1 the real 2025 package: Petrolimex → Bộ Tài chính (G12 + 000.00.00.G12)"),
    ("sdk-demo", "edoc_new.derived.edxml", "S2 the SDK's example → xã Hòa Sơn (28.22.H17)"),
)


async def _send(gw: GatewayClient, body: bytes, label: str, result: DemoResult, say: Say) -> None:
    receipt = await gw.send(body)
    assert receipt is not None
    result.receipts.append(receipt)
    if receipt.type == "rejected":
        result.rejected.append((label, receipt))
        reason = receipt.reason or {}
        say(f"    {label}: rejected {reason.get('reason')} ({reason.get('code')}) — "
            f"{reason.get('message_vi')} / {reason.get('message_en')}")
        return
    result.documents.append((label, receipt.hub_id or ""))
    states = ", ".join(f"{r.agency}→{r.gateway}:{r.state}" for r in receipt.recipients)
    say(f"    {label}: {receipt.type} hub id {receipt.hub_id}  [{states}]")


async def _wait_settled(settings: Settings, result: DemoResult, *, seconds: float) -> None:
    """Wait until every delivery of the demo documents is done (06), or closed by a
    revocation or replacement, or time runs out."""
    conn = await asyncpg.connect(settings.database_url)
    try:
        hubs = [h for _, h in result.documents]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            open_ = await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE hub_id = ANY($1::uuid[]) "
                "AND state NOT IN ('done', 'revoked', 'replaced', 'recalled')",
                hubs,
            )
            if open_ == 0:
                return
            await asyncio.sleep(0.2)
    finally:
        await conn.close()

