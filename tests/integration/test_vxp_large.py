"""Large packages through the VXP façade (issues #13 item 5, #14 item 1): a ``sendEdoc``
body over the small limit is spooled to disk as it arrives and sent in chunks; a large
package arriving for a façade system is listed like any other and streamed to it by
``downloadEdoc`` and ``getEdoc`` — on the real RabbitMQ and PostgreSQL, driven by the test
client written from docs/vxp-api.md."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest

from adapters import GatewayClient
from adapters.vxp import open_store
from adapters.vxp.sealing import new_key
from adapters.vxp.store import SCHEMA, NewCopy
from router.directory.registry import AgencyRow
from schemas import build_package, new_attachment, wire_names
from tests.factory import edoc
from tests.hub import PG_URL, RUN_ID, Hub, drop_database, throwaway_hub
from tests.integration.test_vxp import NGHEAN, VPCP, Facade, facade_for, poll, sdk
from tests.vxp_sdk import VxpSdk, unpadded_hex

THRESHOLD = 64 * 1024  # the hub's and the façade's: a few MiB go as large packages
LARGE_LIMIT = 8 * 1024 * 1024


@pytest.fixture
async def large_hub(template_db: str) -> AsyncIterator[Hub]:
    async with throwaway_hub(template_db, chunk_bytes=256 * 1024, sweep_seconds=1,
                             large_threshold_bytes=THRESHOLD) as h:
        await h.add_gateway("vpcp", serves=[VPCP])
        await h.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
        await h.add_agencies([AgencyRow(VPCP, "Văn phòng Chính phủ"),
                              AgencyRow(NGHEAN, "UBND tỉnh Nghệ An")])
        await h.start_router()
        yield h


@pytest.fixture
async def two(large_hub: Hub,
              tmp_path: Path) -> AsyncIterator[tuple[Facade, aiohttp.ClientSession]]:
    async with facade_for(large_hub, large_threshold=THRESHOLD, max_large_bytes=LARGE_LIMIT,
                          spool_dir=str(tmp_path / "spool")) as f, \
            aiohttp.ClientSession() as session:
        await f.add_system("vxp.saas.03", "vpcp")
        await f.add_system("00.53.W41", "lgsp-nghean")
        yield f, session


def large_edoc(sender: str = VPCP, to: str = NGHEAN, mib: int = 3) -> bytes:
    pkg, _ = edoc(sender, [to], attachment=None)
    pkg = dataclasses.replace(pkg, attachments=(
        new_attachment("ban-do.pdf", os.urandom(mib * 1024 * 1024),
                       content_type="application/pdf"),
        new_attachment("ho-so.docx", os.urandom(200_000), zip_wrap=True),
    ))
    return build_package(pkg)


async def uploads(hub: Hub, gateway: str) -> list[tuple[str, int]]:
    rows = await hub.pool.fetch(
        "SELECT state, size_bytes FROM transfer_uploads WHERE gateway_id = $1", gateway)
    return [(r["state"], int(r["size_bytes"])) for r in rows]


def spool_files(tmp_path: Path) -> list[str]:
    spool = tmp_path / "spool"
    return sorted(p.name for p in spool.iterdir()) if spool.exists() else []


async def spool_emptied(tmp_path: Path) -> list[str]:
    """The façade's temp files, once it removed them (a download's goes just after its
    last byte)."""
    async def files() -> list[str]:
        return spool_files(tmp_path)

    return await poll(files, lambda names: names == [], seconds=10)


async def test_a_large_send_edoc_goes_in_chunks_and_arrives_byte_identical(
        two: tuple[Facade, aiohttp.ClientSession], tmp_path: Path) -> None:
    f, session = two
    vpcp, nghean = sdk(f, session, "vxp.saas.03"), sdk(f, session, "00.53.W41", seed=3)
    body = large_edoc()
    assert len(body) > 4 * 1024 * 1024

    # the Java SDK's shape: the file then a bare CRLF, unpadded hash
    sent = await vpcp.send_edoc(body, to=[NGHEAN])
    assert sent["status"] == "OK", sent
    assert sent["receipt"] == "accepted"
    # it went in chunks (the threshold is 64 KiB), stored once by the hub
    assert await uploads(f.hub, "vpcp") == [("stored", len(body))]
    # sending it again (a client that lost the answer) is the same message, same DocId
    again = await vpcp.send_edoc(body, to=[NGHEAN])
    assert again["status"] == "OK" and again["DocId"] == sent["DocId"], again
    assert await uploads(f.hub, "vpcp") == [("stored", len(body))]
    # a real multipart body goes the same way
    other = large_edoc(mib=2)
    multi = await vpcp.send_multipart(other, messagetype="edoc")
    assert multi["status"] == "OK", multi
    assert sorted(await uploads(f.hub, "vpcp")) == sorted(
        [("stored", len(body)), ("stored", len(other))])
    assert spool_files(tmp_path) == []  # nothing left on the façade's disk

    # the recipient, another system of the façade, lists both and gets them whole
    listed = await poll(nghean.received, lambda rows: len(rows) == 2, seconds=60)
    assert len(listed) == 2
    by_hub = {r["docId"]: r for r in listed}
    for doc_id in by_hub:
        got = await nghean.download(doc_id)
        assert got in (body, other)
        assert await nghean.get_edoc(doc_id) == got
    assert {hashlib.sha256(await nghean.download(d)).hexdigest() for d in by_hub} == {
        hashlib.sha256(body).hexdigest(), hashlib.sha256(other).hexdigest()}
    assert await spool_emptied(tmp_path) == []
    # the sender sees it in getSentEdocList like any other
    sent_rows = (await vpcp.call("getSentEdocList", docId=sent["DocId"]))["data"]
    assert [r["toCode"] for r in sent_rows] == [NGHEAN]


async def test_a_large_package_from_the_sdk_is_listed_and_downloaded(
        two: tuple[Facade, aiohttp.ClientSession], tmp_path: Path) -> None:
    f, session = two
    nghean = sdk(f, session, "00.53.W41", seed=3)
    body = large_edoc()
    path = tmp_path / "dossier.edxml"
    path.write_bytes(body)
    async with GatewayClient(f.hub.gateway_url("vpcp"), gateway_id="vpcp",
                             large_threshold=THRESHOLD) as vpcp:
        receipt = await vpcp.send_file(path)
    assert receipt is not None and receipt.type == "accepted", receipt

    listed = await poll(nghean.received, lambda rows: len(rows) == 1, seconds=60)
    assert len(listed) == 1
    item = listed[0]
    assert item["from"] == VPCP and item["messageType"] == "edoc"
    assert await nghean.count("countReceiveEdoc") == 1
    # the façade's database holds the reference, not the bytes
    assert f.store is not None
    row = await f.store.pool.fetchrow(
        "SELECT large, size, length(body) AS stored FROM vxp.mailbox WHERE doc_id = $1",
        item["docId"])
    assert row["large"] is True and row["size"] == len(body) and row["stored"] < 1024
    # fetched from the hub, checked, streamed: byte-identical both ways
    assert await nghean.download(item["docId"]) == body
    assert await nghean.get_edoc(item["docId"]) == body
    assert await spool_emptied(tmp_path) == []
    assert (await nghean.update_status(item["docId"], "done"))["status"] == "OK"
    assert await nghean.received() == []


async def _signed_raw(client: VxpSdk, session: aiohttp.ClientSession, hash_file: str,
                      data: object) -> dict[str, object]:
    client.params["Content-Type"] = "application/octet-stream"
    client.params.update({"from": client.system_id, "servicetype": "eDoc",
                          "messagetype": "edoc", "hash-file": hash_file})
    async with session.post(f"{client.endpoint}/sendEdoc", data=data,
                            headers=client.sign()) as resp:
        return dict(await resp.json(content_type=None))


async def test_bad_large_bodies_are_refused_and_leave_nothing(
        two: tuple[Facade, aiohttp.ClientSession], tmp_path: Path) -> None:
    f, session = two
    vpcp = sdk(f, session, "vxp.saas.03")
    body = large_edoc()
    # a wrong hash-file: the body was changed on the way
    tampered = body.replace(b"V/v", b"X/x", 1)
    answer = await _signed_raw(vpcp, session, unpadded_hex(hashlib.sha256(body).digest()),
                               tampered + b"\r\n")
    assert (answer["status"], answer["ErrorCode"], answer["reason"]) == (
        "FAIL", "10", "VXP_HASH_MISMATCH"), answer
    # not edXML, correctly hashed: the same reason as a small package
    garbage = b"<edXML:Envelope>" + os.urandom(300_000).hex().encode()
    answer = await vpcp.send_edoc(garbage)
    assert (answer["status"], answer["reason"]) == ("FAIL", "MALFORMED_XML"), answer
    # over the large limit, announced by Content-Length: refused before reading
    huge = os.urandom(LARGE_LIMIT + 1024)
    answer = await vpcp.send_edoc(huge)
    assert (answer["status"], answer["reason"]) == ("FAIL", "PACKAGE_TOO_LARGE"), answer

    # and streamed without a length: refused once the limit is passed
    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(huge), 1 << 20):
            yield huge[start:start + (1 << 20)]

    answer = await _signed_raw(vpcp, session, hashlib.sha256(huge).hexdigest(), stream())
    assert (answer["status"], answer["reason"]) == ("FAIL", "PACKAGE_TOO_LARGE"), answer
    # nothing sent, nothing stored anywhere
    assert await uploads(f.hub, "vpcp") == []
    assert await f.sent_rows() == 0
    assert spool_files(tmp_path) == []
    assert await f.hub.pool.fetchval("SELECT count(*) FROM documents") == 0


async def test_a_facade_database_of_before_large_packages_is_brought_up_to_date(
        template_db: str) -> None:
    """A façade upgraded in place: its mailbox (integer sizes, no ``large`` column) keeps
    its copies and can hold large packages of more than 2 GiB."""
    name = f"lt_test_{RUN_ID}_vxp_upgrade"
    await drop_database(name)
    admin = await asyncpg.connect(f"{PG_URL}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        conn = await asyncpg.connect(f"{PG_URL}/{name}")
        try:
            old = SCHEMA.split("-- large packages", 1)[0].replace(
                "size bigint NOT NULL", "size integer NOT NULL")
            await conn.execute(old)
            assert await _size_type(conn) == "integer"
            await conn.execute(
                "INSERT INTO vxp.mailbox (gateway_id, doc_id, kind, hub_id, sender, "
                "recipients, body, size) VALUES ('vpcp', 'c1', 'edoc', 'h1', $1, $2, "
                "'<x/>', 4)", VPCP, [NGHEAN])
        finally:
            await conn.close()
        async with open_store(f"{PG_URL}/{name}", new_key()) as store:
            assert (await store.entry("vpcp", "c1")) is not None
            async with store.pool.acquire() as conn:
                assert await _size_type(conn) == "bigint"
            await store.store_copies("vpcp", [NewCopy(
                doc_id="c2", kind="edoc", hub_id="h2", sender=VPCP, recipients=[NGHEAN],
                document_id=None, status_code=None, body=b'{"type": "lienthong.transfer"}',
                large=True, size=3 * 1024**3)])
            row = await store.entry("vpcp", "c2")
            assert row is not None and row.large and row.size == 3 * 1024**3
            old_row = await store.entry("vpcp", "c1")
            assert old_row is not None and not old_row.large and old_row.size == 4
    finally:
        await drop_database(name)


async def _size_type(conn: Any) -> str:
    return str(await conn.fetchval(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'vxp' "
        "AND table_name = 'mailbox' AND column_name = 'size'"))


async def test_a_large_send_edoc_holds_a_bounded_buffer_not_the_body(
        large_hub: Hub, tmp_path: Path) -> None:
    """The façade (and, here in the same process, the hub's router) never hold the body:
    Python's allocations grow by far less than the package while it is sent (about 7 MiB
    here, whether the package is 6 or 45 MiB: read buffers, chunks in flight)."""
    async with facade_for(large_hub, large_threshold=THRESHOLD,
                          max_large_bytes=64 * 1024 * 1024,
                          spool_dir=str(tmp_path / "spool")) as f, \
            aiohttp.ClientSession() as session:
        await f.add_system("vxp.saas.03", "vpcp")
        vpcp = sdk(f, session, "vxp.saas.03")
        body = large_edoc(mib=32)  # about 45 MiB of edXML
        digest = hashlib.sha256(body).hexdigest()

        async def stream() -> AsyncIterator[bytes]:  # the client holds 1 MiB at a time
            view = memoryview(body)
            for start in range(0, len(body), 1 << 20):
                yield bytes(view[start:start + (1 << 20)])

        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            answer = await _signed_raw(vpcp, session, digest, stream())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert answer["status"] == "OK", answer
        assert await uploads(f.hub, "vpcp") == [("stored", len(body))]
        assert peak - before < len(body) // 3, (peak - before, len(body))


async def test_a_send_edoc_cut_off_mid_upload_resumes_it(
        two: tuple[Facade, aiohttp.ClientSession], tmp_path: Path) -> None:
    """A first try that got part of the file to the hub (the façade killed, the client's
    connection lost): the retry carries the same message id, finds the upload open with
    those chunks, and completes that upload — not a second one."""
    f, session = two
    vpcp = sdk(f, session, "vxp.saas.03")
    body = large_edoc()
    message_id = "vxp-" + hashlib.sha256(b"vxp.saas.03\0" + body).hexdigest()
    async with GatewayClient(f.hub.gateway_url("vpcp"), gateway_id="vpcp") as gw:
        kind, opened = await gw.ask_hub(wire_names.TRANSFER_KEY, {
            "op": "open", "message_id": message_id, "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest()})
        assert kind == "transfer.open", opened
        step = int(opened["chunk_bytes"])
        exchange = await gw.hub_exchange(wire_names.REPLAY)
        for seq in (0, 1):
            data = body[seq * step:(seq + 1) * step]
            await gw.publish_to(exchange, aio_pika.Message(
                data, user_id=gw.user, headers={
                    wire_names.UPLOAD_ID: opened["upload_id"], wire_names.CHUNK_SEQ: seq,
                    wire_names.CHUNK_SHA256: hashlib.sha256(data).hexdigest()}),
                wire_names.CHUNK_KEY)
    answer = await vpcp.send_edoc(body, to=[NGHEAN])
    assert answer["status"] == "OK", answer
    rows = await f.hub.pool.fetch(
        "SELECT id::text, state FROM transfer_uploads WHERE gateway_id = 'vpcp'")
    assert [(r["id"], r["state"]) for r in rows] == [(opened["upload_id"], "stored")]
