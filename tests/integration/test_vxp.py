"""The VXP façade (issue #13): existing gateways talk to lienthong through the current
axis's HTTP API. Driven by tests/vxp_sdk.py, a client written from docs/vxp-api.md with its
own signing code, against a real hub (RabbitMQ + PostgreSQL) and the façade's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port

from adapters.vxp import VxpConfig, build_app, open_store
from adapters.vxp.mailbox import GatewayLinks, Limits
from adapters.vxp.sealing import new_key, new_secret
from adapters.vxp.store import Store
from router.directory.registry import AgencyRow, remove_agency
from schemas import StatusCode
from tests.factory import edoc, status
from tests.hub import PG_URL, RUN_ID, Hub, drop_database
from tests.vxp_sdk import VIETNAM, VxpSdk, unpadded_hex, vxp_timestamp

VPCP, NGHEAN = "000.00.00.G22", "000.00.00.H41"
T = TypeVar("T")


async def poll(fn: Callable[[], Awaitable[T]], ok: Callable[[T], bool],
               seconds: float = 20.0, interval: float = 0.1) -> T:
    """Call ``fn`` until ``ok(result)`` or the deadline (then the last result fails)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await fn()
        if ok(result) or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(interval)


@dataclass
class Facade:
    hub: Hub
    database_url: str
    key: str
    config: VxpConfig
    port: int = field(default_factory=unused_port)
    secrets: dict[str, str] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _stack: contextlib.AsyncExitStack | None = None
    store: Store | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/vxp"

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self.store = await self._stack.enter_async_context(
            open_store(self.database_url, self.key))
        links = GatewayLinks(self.store, receipt_timeout=15.0, limits=Limits(
            self.config.max_package_bytes, self.config.large_threshold,
            self.config.max_large_bytes))
        self._runner = web.AppRunner(build_app(self.store, links, self.config))
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def add_system(self, system_id: str, gateway_id: str, *, strict: bool = False) -> str:
        assert self.store is not None
        await self.store.set_gateway(gateway_id, self.hub.gateway_url(gateway_id))
        secret = new_secret()
        assert await self.store.add_system(system_id, gateway_id, secret, strict=strict)
        self.secrets[system_id] = secret
        return secret

    async def mailbox_rows(self) -> int:
        assert self.store is not None
        return int(await self.store.pool.fetchval("SELECT count(*) FROM vxp.mailbox"))

    async def sent_rows(self) -> int:
        assert self.store is not None
        return int(await self.store.pool.fetchval("SELECT count(*) FROM vxp.sent"))


_n = 0


@contextlib.asynccontextmanager
async def facade_for(hub: Hub, **config: Any) -> AsyncIterator[Facade]:
    global _n
    _n += 1
    name = f"lt_test_{RUN_ID}_vxp{_n}"
    conn = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        await conn.close()
    f = Facade(hub, f"{PG_URL}/{name}", new_key(), VxpConfig(**config))
    await f.start()
    try:
        yield f
    finally:
        await f.stop()
        await drop_database(name)


async def _two_gateways(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[VPCP])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow(VPCP, "Văn phòng Chính phủ"),
                            AgencyRow(NGHEAN, "UBND tỉnh Nghệ An")])
    await hub.start_router()


@pytest.fixture
async def two(hub: Hub) -> AsyncIterator[tuple[Facade, aiohttp.ClientSession]]:
    await _two_gateways(hub)
    async with facade_for(hub) as f, aiohttp.ClientSession() as session:
        await f.add_system("vxp.saas.03", "vpcp")
        await f.add_system("00.53.W41", "lgsp-nghean")
        yield f, session


def sdk(f: Facade, session: aiohttp.ClientSession, system_id: str, seed: int = 7) -> VxpSdk:
    return VxpSdk(session, f.endpoint, system_id, f.secrets[system_id], seed=seed)


async def test_two_systems_exchange_a_document_and_the_status_round(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41", seed=3)
    doc, body = edoc(VPCP, [NGHEAN])

    # the Java SDK's way: file + bare CRLF, unpadded hash, frozen timestamp, `to` header
    sent = await vpcp.send_edoc(body, to=[NGHEAN])
    assert sent["status"] == "OK", sent
    assert sent["ErrorCode"] == "0"
    hub_id = sent["DocId"]
    assert await f.hub.pool.fetchval(
        "SELECT count(*) FROM documents WHERE hub_id = $1::uuid", hub_id) == 1

    listed = await poll(nghean.received, lambda rows: len(rows) == 1)
    assert len(listed) == 1
    item = listed[0]
    assert item["from"] == VPCP
    assert item["messageType"] == "edoc"
    assert item["serviceType"] == "eDoc"
    assert item["documentId"] == doc.document_id
    assert await nghean.count("countReceiveEdoc") == 1
    # the package exactly as the sender sent it, both ways of fetching it
    assert await nghean.get_edoc(item["docId"]) == body
    assert await nghean.download(item["docId"]) == body
    # the SDK's leftover docId travels with the next list call: ignored
    assert nghean.params["docId"] == item["docId"]
    assert (await nghean.update_status(item["docId"], "processing"))["status"] == "OK"
    assert len(await nghean.received()) == 1  # processing: still listed
    assert (await nghean.update_status(item["docId"], "done"))["status"] == "OK"
    assert await nghean.received() == []
    assert await nghean.count("countReceiveEdoc") == 0
    # done is final: a late "processing" (a client retrying) does not list it again
    assert (await nghean.update_status(item["docId"], "processing"))["status"] == "OK"
    assert await nghean.received() == []

    # the status round 01/03/05/06 back to the sender, in the three body shapes
    for code, way in [(StatusCode.ARRIVED, "multipart"), (StatusCode.ACCEPTED, "sdk"),
                      (StatusCode.PROCESSING, "sdk"), (StatusCode.DONE, "multipart")]:
        st = status(NGHEAN, doc, code)[1]
        if way == "multipart":
            answer = await nghean.send_multipart(st, messagetype="status")
        else:
            answer = await nghean.send_edoc(st, messagetype="status")
        assert answer["status"] == "OK", (code, answer)
    statuses = await poll(lambda: vpcp.received("status"), lambda rows: len(rows) == 4)
    assert sorted(s["statusCode"] for s in statuses) == ["01", "03", "05", "06"]
    assert all(s["messageType"] == "status" and s["from"] == NGHEAN for s in statuses)
    assert await vpcp.count("countReceiveStatus") == 4
    assert await vpcp.received() == []  # statuses are not listed as documents
    for s in statuses:
        got = await vpcp.get_edoc(s["docId"])
        assert b"<edXML:StatusCode>" in got or b"StatusCode" in got
        assert (await vpcp.update_status(s["docId"], "done"))["status"] == "OK"
    assert await vpcp.count("countReceiveStatus") == 0
    # the hub saw the whole round: the delivery is done
    state = await f.hub.pool.fetchval(
        "SELECT state FROM deliveries WHERE hub_id = $1::uuid AND recipient_code = $2",
        hub_id, NGHEAN)
    assert state == "done"
    # and the sender sees it per recipient, from the hub's receipts and delivery events
    async def sent() -> list[dict[str, Any]]:
        answer = await vpcp.call("getSentEdocList", docId=hub_id)
        assert answer["status"] == "OK", answer
        return list(answer["data"])

    rows = await poll(sent, lambda rows: bool(rows) and rows[0]["receiveStatus"] == "06")
    assert len(rows) == 1
    row = rows[0]
    assert (row["senderDocId"], row["fromCode"], row["toCode"]) == (hub_id, VPCP, NGHEAN)
    assert (row["sendStatus"], row["receiveStatus"]) == ("done", "06")
    assert row["title"] == doc.subject and row["notation"] == str(doc.code)
    assert row["receivedTime"] and row["messageType"] == "edoc"
    # a date range finds it too; the other system's sent list does not
    today = datetime.now(VIETNAM).strftime("%Y-%m-%d")
    listed = await vpcp.call("getSentEdocList", docId="", fromDate=today, toDate=today)
    assert hub_id in {r["senderDocId"] for r in listed["data"]}
    theirs = await nghean.call("getSentEdocList", docId=hub_id)
    assert theirs["data"] == []


async def test_mailbox_survives_a_restart_nothing_lost_nothing_listed_twice(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41")
    _, body1 = edoc(VPCP, [NGHEAN])
    _, body2 = edoc(VPCP, [NGHEAN])
    _, body3 = edoc(VPCP, [NGHEAN])
    assert (await vpcp.send_edoc(body1))["status"] == "OK"
    assert (await vpcp.send_edoc(body2))["status"] == "OK"
    first = await poll(nghean.received, lambda rows: len(rows) == 2)
    assert len(first) == 2
    done_id, kept_id = first[0]["docId"], first[1]["docId"]
    done_body = await nghean.get_edoc(done_id)
    assert (await nghean.update_status(done_id, "done"))["status"] == "OK"

    await f.stop()
    # sent while the façade is down: waits in the gateway's queue on the hub
    async with f.hub.client("vpcp") as direct:
        receipt = await direct.send(body3)
        assert receipt is not None and receipt.type == "accepted"
    await f.start()

    after = await poll(nghean.received, lambda rows: len(rows) == 2)
    ids = [r["docId"] for r in after]
    assert len(ids) == len(set(ids)) == 2
    assert done_id not in ids
    assert kept_id in ids
    bodies = {await nghean.get_edoc(i) for i in ids}
    assert bodies == {body1, body2, body3} - {done_body}
    assert await f.mailbox_rows() == 3
    # purging forgets only what is done
    assert f.store is not None
    assert await f.store.purge_done(0) == 1
    assert {r["docId"] for r in await nghean.received()} == set(ids)


async def test_bad_input_fails_with_the_right_code_and_stores_nothing(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41")
    _, body = edoc(VPCP, [NGHEAN])
    docs_before = await f.hub.pool.fetchval("SELECT count(*) FROM documents")

    async def raw(method: str, path: str, headers: dict[str, str], data: bytes = b"{}"
                  ) -> dict[str, Any]:
        async with session.request(method, f"{f.endpoint}/{path}", headers=headers,
                                   data=data) as resp:
            text = await resp.read()
        answer: dict[str, Any] = json.loads(text.decode("ascii"))
        assert answer["status"] == "FAIL", answer
        assert answer["ErrorDesc"], answer
        return answer

    # unsigned
    a = await raw("POST", "sendEdoc", {"Content-Type": "application/octet-stream"}, body)
    assert (a["ErrorCode"], a["reason"]) == ("15", "VXP_UNSIGNED")
    # unknown system, wrong secret
    ghost = VxpSdk(session, f.endpoint, "ghost.system", "x")
    a = await ghost.send_edoc(body)
    assert (a["ErrorCode"], a["reason"]) == ("15", "VXP_UNKNOWN_SYSTEM")
    wrong = VxpSdk(session, f.endpoint, "vxp.saas.03", "not-the-secret")
    a = await wrong.send_edoc(body)
    assert (a["ErrorCode"], a["reason"]) == ("15", "VXP_BAD_SIGNATURE")
    # tampered header: a signed value changed on the wire
    vpcp.params.update({"Content-Type": "application/octet-stream",
                        "hash-file": hashlib.sha256(body).hexdigest(), "messagetype": "edoc"})
    headers = vpcp.sign()
    headers["XroadVnpt-messagetype"] = "status"
    a = await raw("POST", "sendEdoc", headers, body)
    assert (a["ErrorCode"], a["reason"]) == ("15", "VXP_SIGN_HEADER_MISMATCH")
    # a used parameter added without signing it
    headers = vpcp.sign()
    headers["XroadVnpt-docId"] = "someone-elses"
    a = await raw("POST", "getEdoc", headers)
    assert (a["ErrorCode"], a["reason"]) == ("15", "VXP_SIGN_HEADER_MISMATCH")
    # tampered body: the hash names the original
    a = await raw("POST", "sendEdoc", vpcp.sign(), body.replace(b"V/v", b"X/x", 1))
    assert (a["ErrorCode"], a["reason"]) == ("10", "VXP_HASH_MISMATCH")
    # no hash-file at all: the body is bound to nothing
    no_hash = VxpSdk(session, f.endpoint, "vxp.saas.03", f.secrets["vxp.saas.03"])
    no_hash.params.update({"Content-Type": "application/octet-stream", "messagetype": "edoc"})
    a = await raw("POST", "sendEdoc", no_hash.sign(), body)
    assert (a["ErrorCode"], a["reason"]) == ("10", "VXP_HASH_MISMATCH")
    # garbage body, correctly hashed
    a = await vpcp.send_edoc(b"\x00garbage, not XML")
    assert (a["ErrorCode"], a["reason"]) == ("10", "MALFORMED_XML")
    # messagetype says status, the file is a document
    a = await vpcp.send_edoc(body, messagetype="status")
    assert (a["ErrorCode"], a["reason"]) == ("22", "VXP_MESSAGE_TYPE_MISMATCH")
    # a recipient the hub does not know: the hub's own reason and code
    _, lost = edoc(VPCP, ["000.00.00.Z99"])
    a = await vpcp.send_edoc(lost)
    assert (a["ErrorCode"], a["reason"]) == ("18", "RECIPIENT_UNKNOWN")
    assert "\\u" in json.dumps(a["ErrorDesc"]) and "/" in a["ErrorDesc"]  # vi / en
    assert await f.sent_rows() == 0
    assert await f.hub.pool.fetchval("SELECT count(*) FROM documents") == docs_before

    # unknown docId; updateStatus on someone else's document
    a = await nghean.call("getEdoc", docId="no-such-doc")
    assert (a["status"], a["ErrorCode"], a["reason"]) == ("FAIL", "21", "VXP_DOCUMENT_UNKNOWN")
    assert (await vpcp.send_edoc(body))["status"] == "OK"
    theirs = (await poll(nghean.received, lambda rows: len(rows) == 1))[0]["docId"]
    a = await vpcp.update_status(theirs, "done")
    assert (a["status"], a["reason"]) == ("FAIL", "VXP_DOCUMENT_UNKNOWN")
    a = await vpcp.call("getEdoc", docId=theirs)
    assert (a["status"], a["reason"]) == ("FAIL", "VXP_DOCUMENT_UNKNOWN")
    assert [r["docId"] for r in await nghean.received()] == [theirs]
    a = await nghean.update_status(theirs, "archived")
    assert (a["status"], a["reason"]) == ("FAIL", "VXP_BAD_STATUS")
    # agencies are the operators' business unless they allow the gateway (see
    # test_vxp_agencies.py); unknown operations fail cleanly
    a = await nghean.call("registerAgency", body=b'{"code":"000.01.00.H41","name":"X"}')
    assert (a["status"], a["ErrorCode"], a["reason"]) == (
        "FAIL", "21", "AGENCY_MANAGEMENT_NOT_ALLOWED")
    a = await nghean.call("dropEverything")
    assert (a["status"], a["reason"]) == ("FAIL", "VXP_UNKNOWN_OPERATION")
    # the OpenAPI document needs no signature and holds no data
    async with session.get(f"{f.endpoint}/openapi.json") as resp:
        assert "/sendEdoc" in (await resp.json())["paths"]


async def test_a_resent_file_is_one_document_with_one_doc_id(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    """The SDK retries a sendEdoc whose answer it lost: same DocId, no second document."""
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41")
    _, body = edoc(VPCP, [NGHEAN])
    first = await vpcp.send_edoc(body)
    again = await vpcp.send_edoc(body)
    assert first["status"] == again["status"] == "OK"
    assert first["DocId"] == again["DocId"]
    assert await f.hub.pool.fetchval("SELECT count(*) FROM documents") == 1
    assert len(await poll(nghean.received, lambda rows: len(rows) == 1)) == 1


async def test_a_sender_the_gateway_does_not_serve_is_refused_and_the_link_survives(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    f, session = two
    vpcp = sdk(f, session, "vxp.saas.03")
    _, foreign = edoc(NGHEAN, [VPCP])  # vpcp's gateway does not serve H41
    a = await vpcp.send_edoc(foreign)
    assert (a["status"], a["reason"]) == ("FAIL", "SENDER_NOT_SERVED"), a
    _, fine = edoc(VPCP, [NGHEAN])
    ok = await vpcp.send_edoc(fine)
    assert ok["status"] == "OK", ok


async def test_a_large_package_downloads_whole_in_chunks(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41")
    _, body = edoc(VPCP, [NGHEAN], attachment=os.urandom(900 * 1024))  # > 4 chunks
    assert (await vpcp.send_edoc(body))["status"] == "OK"
    doc_id = (await poll(nghean.received, lambda rows: len(rows) == 1))[0]["docId"]
    assert await nghean.download(doc_id) == body
    assert await nghean.get_edoc(doc_id) == body


async def test_header_names_in_any_case_and_the_padded_hash(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    f, session = two
    vpcp = sdk(f, session, "vxp.saas.03")
    vpcp.header_case = "Xroadvnpt-"  # a proxy changed the case of the names
    _, body = edoc(VPCP, [NGHEAN])
    vpcp.params.update({"Content-Type": "application/octet-stream", "messagetype": "edoc",
                        "hash-file": hashlib.sha256(body).hexdigest()})
    headers = {k.upper() if "systemid" in k else k: v for k, v in vpcp.sign().items()}
    async with session.post(f"{f.endpoint}/sendEdoc", headers=headers, data=body) as resp:
        answer = json.loads(await resp.read())
    assert answer["status"] == "OK", answer


async def test_oversize_body_is_refused_before_it_is_read_whole(hub: Hub) -> None:
    await _two_gateways(hub)
    async with facade_for(hub, max_package_bytes=64 * 1024) as f, \
            aiohttp.ClientSession() as session:
        await f.add_system("vxp.saas.03", "vpcp")
        vpcp = sdk(f, session, "vxp.saas.03")
        _, big = edoc(VPCP, [NGHEAN], attachment=bytes(range(256)) * 1024)
        a = await vpcp.send_edoc(big)
        assert (a["status"], a["ErrorCode"], a["reason"]) == ("FAIL", "10", "PACKAGE_TOO_LARGE")
        assert await f.sent_rows() == 0


async def test_strict_mode_refuses_stale_timestamps_and_replays(hub: Hub) -> None:
    await _two_gateways(hub)
    async with facade_for(hub) as f, aiohttp.ClientSession() as session:
        await f.add_system("strict.sys", "vpcp", strict=True)
        await f.add_system("compat.sys", "vpcp")
        old = vxp_timestamp(datetime(2026, 1, 1, 8, 0, tzinfo=VIETNAM))
        compat = sdk(f, session, "compat.sys")
        compat.params["timestamp"] = old  # the SDK's frozen timestamp: fine by default
        assert (await compat.call("countReceiveEdoc", method="GET"))["status"] == "OK"

        strict = sdk(f, session, "strict.sys")
        strict.params["timestamp"] = old
        a = await strict.call("countReceiveEdoc", method="GET")
        assert (a["status"], a["ErrorCode"], a["reason"]) == ("FAIL", "15",
                                                              "VXP_STALE_TIMESTAMP")
        strict.params["timestamp"] = vxp_timestamp(datetime.now(VIETNAM))
        headers = strict.sign()
        async with session.get(f"{f.endpoint}/countReceiveEdoc", headers=headers) as r:
            assert json.loads(await r.read())["status"] == "OK"
        async with session.get(f"{f.endpoint}/countReceiveEdoc", headers=headers) as r:
            again = json.loads(await r.read())
        assert (again["status"], again["ErrorCode"], again["reason"]) == (
            "FAIL", "15", "VXP_REPLAY")


def test_unpadded_hash_is_really_shorter_sometimes() -> None:
    # guards the test client itself: its quirk must differ from the padded form
    digests = [hashlib.sha256(str(i).encode()).digest() for i in range(50)]
    assert any(unpadded_hex(d) != d.hex() for d in digests)


# kill -9 -------------------------------------------------------------------------------
class FacadeProcess:
    """``lienthong vxp serve`` as its own process, to be killed with SIGKILL."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "router.cli", "vxp", "serve", "--port", str(self.port),
            env=self.env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )

        async def answers() -> bool:
            try:
                async with session.get(f"http://127.0.0.1:{self.port}/vxp/countReceiveEdoc") as r:
                    return (await r.json(content_type=None))["ErrorCode"] == "15"
            except aiohttp.ClientError:
                return False

        assert await poll(answers, bool), "the façade did not start"

    async def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 15)


async def test_kill_9_mid_intake_loses_nothing_and_lists_nothing_twice(hub: Hub) -> None:
    await _two_gateways(hub)
    name = f"lt_test_{RUN_ID}_vxpkill"
    db_url = f"{PG_URL}/{name}"
    port = unused_port()
    env = {**os.environ, "LIENTHONG_VXP_DATABASE_URL": db_url,
           "LIENTHONG_VXP_SECRET_KEY": new_key(), "LIENTHONG_LOG_LEVEL": "WARNING"}
    add = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "vxp", "systems", "add", "00.53.W41",
        "--gateway", "lgsp-nghean", "--amqp-url", hub.gateway_url("lgsp-nghean"), "--json",
        env=env, stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(add.communicate(), 60)
    assert add.returncode == 0
    secret = json.loads(out)["secret"]
    # a wrong AMQP URL is caught when the system is added, not at the first request
    wrong = hub.gateway_url("vpcp").replace("@", "x@", 1)  # a wrong password
    bad = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", "vxp", "systems", "add", "other.sys",
        "--gateway", "vpcp", "--amqp-url", wrong,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(bad.communicate(), 60)
    assert bad.returncode != 0
    assert b"cannot log in to the axis as gateway vpcp" in err
    facade = FacadeProcess(env, port)
    n_before, n_during = 150, 50
    try:
        async with aiohttp.ClientSession() as session, hub.client("vpcp") as vpcp:
            await facade.start(session)
            bodies = [edoc(VPCP, [NGHEAN])[1] for _ in range(n_before + n_during)]
            sends = [asyncio.create_task(vpcp.send(b)) for b in bodies[:n_before]]
            pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
            try:
                async def stored() -> int:
                    return int(await pool.fetchval("SELECT count(*) FROM vxp.mailbox"))

                at_kill = await poll(stored, lambda n: n >= 1)
                await facade.kill()
                assert at_kill >= 1
                await asyncio.gather(*sends)
                for b in bodies[n_before:]:  # more while the façade is dead
                    assert (await vpcp.send(b)) is not None
                await facade.start(session)
                reader = VxpSdk(session, f"http://127.0.0.1:{port}/vxp", "00.53.W41", secret)
                total = n_before + n_during
                listed = await poll(reader.received, lambda rows: len(rows) >= total, 60)
                ids = [r["docId"] for r in listed]
                assert len(ids) == total
                assert len(set(ids)) == total
                assert await stored() == total
                got = {await reader.get_edoc(i) for i in ids[:: max(1, total // 10)]}
                assert got <= set(bodies)
            finally:
                await pool.close()
    finally:
        await facade.stop()
        await drop_database(name)


async def test_figures_latency_and_throughput_next_to_the_amqp_sdk(
    two: tuple[Facade, aiohttp.ClientSession],
) -> None:
    """Volume through the façade: every document accepted and listed exactly once.
    Prints the figures of the note (run with -s): sendEdoc → visible in the recipient's
    getReceivedEdocList, and packages/s through the façade vs the AMQP SDK."""
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41")
    latencies: list[float] = []
    answered: list[float] = []
    loop = asyncio.get_running_loop()
    for _ in range(20):
        doc, body = edoc(VPCP, [NGHEAN])
        t0 = loop.time()
        assert (await vpcp.send_edoc(body))["status"] == "OK"
        answered.append((loop.time() - t0) * 1000)

        async def visible(document_id: str | None = doc.document_id) -> bool:
            rows = await nghean.received()
            return any(r["documentId"] == document_id for r in rows)

        assert await poll(visible, bool, interval=0.01)
        latencies.append((loop.time() - t0) * 1000)

    n, concurrency = 300, 20
    bodies = [edoc(VPCP, [NGHEAN])[1] for _ in range(2 * n)]
    clients = [sdk(f, session, "vxp.saas.03", seed=i) for i in range(concurrency)]

    async def through_facade(i: int) -> None:
        for b in bodies[i:n:concurrency]:
            assert (await clients[i].send_edoc(b))["status"] == "OK"

    t0 = loop.time()
    await asyncio.gather(*(through_facade(i) for i in range(concurrency)))
    facade_rate = n / (loop.time() - t0)

    async with f.hub.client("vpcp") as direct:
        sdk_answered = []
        for b in [edoc(VPCP, [NGHEAN])[1] for _ in range(20)]:
            t0 = loop.time()
            assert (await direct.send(b)) is not None
            sdk_answered.append((loop.time() - t0) * 1000)
        sdk_answered.sort()

        async def through_sdk(i: int) -> None:
            for b in bodies[n + i::concurrency]:
                r = await direct.send(b)
                assert r is not None and r.type == "accepted"

        t0 = loop.time()
        await asyncio.gather(*(through_sdk(i) for i in range(concurrency)))
        sdk_rate = n / (loop.time() - t0)

    total = 40 + 2 * n

    async def listed() -> int:
        return await nghean.count("countReceiveEdoc")

    assert await poll(listed, lambda c: c >= total, 60) == total
    assert await f.mailbox_rows() == total
    latencies.sort()
    answered.sort()
    print(f"\nVXP figures: sendEdoc answered (DocId after the hub's receipt) p50 "
          f"{answered[len(answered) // 2]:.0f} ms; sendEdoc->listed p50 "
          f"{latencies[len(latencies) // 2]:.0f} ms, max {latencies[-1]:.0f} ms (20 docs); "
          f"AMQP SDK send->receipt p50 {sdk_answered[len(sdk_answered) // 2]:.0f} ms; "
          f"{n} docs, {concurrency} concurrent: "
          f"façade {facade_rate:.0f} pkg/s, AMQP SDK {sdk_rate:.0f} pkg/s")


async def test_kill_9_mid_send_the_sdk_retries_and_nothing_is_doubled(hub: Hub) -> None:
    """Senders retry (same file) until they get an answer, as document software does;
    the façade dies under them and comes back: every document once, one DocId each."""
    await _two_gateways(hub)
    name = f"lt_test_{RUN_ID}_vxpkill2"
    db_url = f"{PG_URL}/{name}"
    port = unused_port()
    env = {**os.environ, "LIENTHONG_VXP_DATABASE_URL": db_url,
           "LIENTHONG_VXP_SECRET_KEY": new_key(), "LIENTHONG_LOG_LEVEL": "WARNING"}
    secrets: dict[str, str] = {}
    for system_id, gateway_id in (("vxp.saas.03", "vpcp"), ("00.53.W41", "lgsp-nghean")):
        add = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "router.cli", "vxp", "systems", "add", system_id,
            "--gateway", gateway_id, "--amqp-url", hub.gateway_url(gateway_id), "--json",
            env=env, stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(add.communicate(), 60)
        assert add.returncode == 0
        secrets[system_id] = json.loads(out)["secret"]
    facade = FacadeProcess(env, port)
    endpoint = f"http://127.0.0.1:{port}/vxp"
    n = 200  # enough that the kill falls mid-flow on a quiet machine too (60 did not)
    bodies = [edoc(VPCP, [NGHEAN])[1] for _ in range(n)]
    answered: list[str] = []
    errors = 0
    try:
        async with aiohttp.ClientSession() as session:
            await facade.start(session)

            async def send_until_answered(i: int, body: bytes) -> str:
                nonlocal errors
                client = VxpSdk(session, endpoint, "vxp.saas.03", secrets["vxp.saas.03"],
                                seed=i)
                while True:
                    try:
                        answer = await client.send_edoc(body)
                    except (aiohttp.ClientError, ValueError):
                        errors += 1  # the façade is down: try again, same file
                        await asyncio.sleep(0.2)
                        continue
                    if answer["status"] == "OK":
                        answered.append(answer["DocId"])
                        return str(answer["DocId"])
                    assert answer["ErrorCode"] == "21", answer  # transient: again
                    await asyncio.sleep(0.2)

            sends = [asyncio.create_task(send_until_answered(i, b))
                     for i, b in enumerate(bodies)]
            await poll(lambda: asyncio.sleep(0, len(answered)), lambda k: k >= 5)
            await facade.kill()
            killed_after = len(answered)
            await asyncio.sleep(0.5)
            await facade.start(session)
            doc_ids = await asyncio.wait_for(asyncio.gather(*sends), 120)

            assert killed_after < n  # the kill really fell mid-flow
            assert errors > 0
            assert len(set(doc_ids)) == n
            assert await hub.pool.fetchval("SELECT count(*) FROM documents") == n
            reader = VxpSdk(session, endpoint, "00.53.W41", secrets["00.53.W41"])
            listed = await poll(reader.received, lambda rows: len(rows) >= n, 60)
            assert len(listed) == n
            assert len({r["docId"] for r in listed}) == n
    finally:
        await facade.stop()
        await drop_database(name)


# directory -----------------------------------------------------------------------------
CHILD = "000.01.00.H41"


async def test_directory_operations_follow_the_hubs_published_directory(
    hub: Hub, tmp_path: Path
) -> None:
    await hub.add_gateway("vpcp", serves=[VPCP])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([
        AgencyRow(VPCP, "Văn phòng Chính phủ", aliases=("G22",)),
        AgencyRow(NGHEAN, "UBND tỉnh Nghệ An", aliases=("H41",)),
        AgencyRow(CHILD, "Sở Tài chính Nghệ An", parent=NGHEAN, aliases=("H41.01",)),
    ])
    await hub.start_router()
    mirror_file = tmp_path / "directory.sqlite"
    async with facade_for(hub, directory_path=str(mirror_file),
                          directory_sync_seconds=0.0) as f, \
            aiohttp.ClientSession() as session:
        await f.add_system("vxp.saas.03", "vpcp")
        client = sdk(f, session, "vxp.saas.03")

        listed = await client.call("getAgenciesList")
        assert listed["status"] == "OK", listed
        by_code = {a["code"]: a for a in listed["data"]}
        assert set(by_code) == {VPCP, NGHEAN, CHILD}
        assert by_code[VPCP]["name"] == "Văn phòng Chính phủ"  # escaped on the wire, intact
        assert by_code[VPCP]["oldCode"] == "G22" and by_code[VPCP]["pid"] == 0
        assert by_code[CHILD]["pid"] == by_code[NGHEAN]["id"] != 0
        assert all(a["mail"] == "" for a in listed["data"])

        qd20 = await client.call("getAgenciesListQD20")
        assert qd20["status"] == "OK", qd20
        assert {(a["code"], a["code102"]) for a in qd20["data"]} == {
            ("G22", VPCP), ("H41", NGHEAN), ("H41.01", CHILD)}
        second_level = await client.call("getAgenciesListQD20", level="2")
        assert [a["code"] for a in second_level["data"]] == ["H41.01"]
        bad_level = await client.call("getAgenciesListQD20", level="two")
        assert bad_level["status"] == "FAIL" and bad_level["reason"] == "VXP_BAD_REQUEST"
        client.params.pop("level")  # a client that clears its headers

        before = await client.call("getSynchronizeUnit")
        assert before["status"] == "OK", before
        old = {u["code"]: u for u in before["data"]}
        assert not any(u["deleted"] for u in old.values())
        assert old[CHILD]["centerCode"] == "lgsp-nghean" and old[VPCP]["isAgency"] is True
        datetime.strptime(old[VPCP]["modifyDate"], "%Y-%m-%d %H:%M:%S")  # as other answers

        # the operator renames one agency and removes another
        await hub.add_agencies([AgencyRow(VPCP, "Văn phòng Chính phủ (VPCP)", aliases=("G22",))])
        async with hub.pool.acquire() as conn:
            await remove_agency(conn, CHILD, actor="test")

        async def units() -> dict[str, dict[str, Any]]:
            answer = await client.call("getSynchronizeUnit")
            assert answer["status"] == "OK", answer
            return {u["code"]: u for u in answer["data"]}

        now = await poll(units, lambda u: u[CHILD]["deleted"] and u[VPCP]["version"] >
                         old[VPCP]["version"])
        assert now[VPCP]["name"] == "Văn phòng Chính phủ (VPCP)"
        assert now[VPCP]["version"] > old[VPCP]["version"]
        assert now[CHILD]["deleted"] is True and now[CHILD]["version"] > old[CHILD]["version"]
        assert now[CHILD]["id"] == old[CHILD]["id"]
        assert now[NGHEAN] == old[NGHEAN]  # untouched
        after = await client.call("getAgenciesList")
        assert {a["code"] for a in after["data"]} == {VPCP, NGHEAN}  # tombstones not listed
    assert mirror_file.exists()  # the one mirror lives in the configured file
