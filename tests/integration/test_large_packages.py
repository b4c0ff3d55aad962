"""Large packages travel whole (issue #14): chunked, resumable, checksummed upload, a claim
on the normal intake path, copies by reference, fetched byte-identical — on the real
RabbitMQ and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from adapters import GatewayClient
from adapters.errors import HubRefused, TransferRefused
from router.directory.registry import AgencyRow
from router.processes import RouterProcesses
from router.recovery import archive
from schemas import (
    PackageRejected,
    Reason,
    build_package,
    new_attachment,
    parse_package,
    wire_names,
)
from schemas.receipt import Receipt
from schemas.signature import sign_package
from tests.factory import edoc
from tests.hub import Hub, throwaway_hub
from tests.pki import identity
from tests.polling import eventually

CHUNK = 256 * 1024


@pytest.fixture
async def large_hub(template_db: str) -> AsyncIterator[Hub]:
    async with throwaway_hub(template_db, chunk_bytes=CHUNK, sweep_seconds=1,
                             large_threshold_bytes=64 * 1024) as h:
        await h.add_gateway("vpcp", serves=["000.00.00.G22"])
        await h.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
        await h.add_gateway("lgsp-quangnam", serves=["#.H47"], kind="province-platform")
        await h.add_agencies([
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
            AgencyRow("000.00.00.H47", "UBND tỉnh Quảng Nam", aliases=("H47",)),
        ])
        await h.start_router()
        yield h


def _client(hub: Hub, gateway: str) -> GatewayClient:
    return hub.client(gateway, large_threshold=64 * 1024)


def _large_file(tmp_path: Path, to: str = "000.00.00.H41", mib: int = 3) -> Path:
    big = os.urandom(mib * 1024 * 1024)
    pkg, _ = edoc("000.00.00.G22", [to], attachment=None)
    pkg = dataclasses.replace(pkg, attachments=(
        new_attachment("ban-do.pdf", big, content_type="application/pdf"),
        new_attachment("ho-so.docx", os.urandom(300_000), zip_wrap=True),
    ))
    path = tmp_path / f"large-{uuid.uuid4().hex[:6]}.edxml"
    path.write_bytes(build_package(pkg))
    return path


async def _chunks_of(hub: Hub, upload_id: str) -> int:
    return int(await hub.pool.fetchval(
        "SELECT count(*) FROM transfer_chunks WHERE upload_id = $1", uuid.UUID(upload_id)))


async def _publish_chunk(hub: Hub, gateway: str, upload_id: str, seq: int, data: bytes,
                         sha: str | None = None) -> None:
    """A chunk as any AMQP client would publish it."""
    connection = await aio_pika.connect(hub.gateway_url(gateway))
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(wire_names.REPLAY, ensure=False)
        await exchange.publish(aio_pika.Message(
            data, user_id=hub.credentials[gateway].user,
            headers={wire_names.UPLOAD_ID: upload_id, wire_names.CHUNK_SEQ: seq,
                     wire_names.CHUNK_SHA256: sha or hashlib.sha256(data).hexdigest()}),
            routing_key=wire_names.CHUNK_KEY)


async def _open(client: GatewayClient, path: Path, message_id: str) -> dict[str, Any]:
    data = path.read_bytes()  # noqa: ASYNC240 - a test's small file
    kind, answer = await client.ask_hub(wire_names.TRANSFER_KEY, {
        "op": "open", "message_id": message_id, "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest()})
    assert kind == "transfer.open", answer
    return dict(answer)


async def _rejected_receipt(client: GatewayClient, message_id: str) -> Receipt:
    async def first() -> Receipt | None:
        receipt: Receipt = await client._other_receipts.get()
        return receipt if receipt.message_id == message_id else None

    return await eventually(first, timeout=30, what=f"a receipt for {message_id}")


async def test_a_large_package_reaches_its_recipient_byte_identical(
        large_hub: Hub, tmp_path: Path) -> None:
    path = _large_file(tmp_path)
    original = path.read_bytes()
    async with _client(large_hub, "vpcp") as sender, \
            _client(large_hub, "lgsp-nghean") as recipient:
        receipt = await sender.send_file(path)
        assert receipt is not None and receipt.type == "accepted", receipt
        assert [r.gateway for r in receipt.recipients] == ["lgsp-nghean"]
        async for msg in recipient.inbox(timeout=30):
            ref = msg.reference
            assert ref is not None and ref["size"] == len(original)
            assert len(msg.body) < 1024  # the copy carries the reference, not the bytes
            saved = await recipient.fetch_large(msg, tmp_path / "in" / "received.edxml")
            await msg.ack()
            break
        else:
            pytest.fail("no copy arrived")
    assert saved.read_bytes() == original
    # the ledger records the reference and the package's own hash, once
    row = await large_hub.pool.fetchrow(
        "SELECT body, content_sha256 FROM documents WHERE hub_id = $1",
        uuid.UUID(receipt.hub_id or ""))
    assert json.loads(row["body"])["upload_id"] == ref["upload_id"]
    assert bytes(row["content_sha256"]) == hashlib.sha256(original).digest()
    state = await large_hub.pool.fetchval(
        "SELECT state FROM transfer_uploads WHERE id = $1", uuid.UUID(ref["upload_id"]))
    assert state == "stored"
    # archiving old bodies leaves a large package's reference alone (not "altered")
    run = await archive.archive(large_hub.pool, tmp_path / "archive",
                                older_than=timedelta(0), actor="test")
    assert run.altered == [] and run.archived == 0
    # a gateway the package did not go to may not fetch it
    async with _client(large_hub, "lgsp-quangnam") as stranger:
        with pytest.raises(TransferRefused) as refused:
            await stranger.fetch_large(ref, tmp_path / "stolen.edxml")
        assert refused.value.reason is Reason.FETCH_REFUSED
    assert not (tmp_path / "stolen.edxml").exists()


async def test_a_sender_resumes_without_resending_what_the_hub_has(
        large_hub: Hub, tmp_path: Path) -> None:
    path = _large_file(tmp_path, mib=2)
    data = path.read_bytes()
    message_id = f"resume-{uuid.uuid4().hex[:6]}"
    async with _client(large_hub, "vpcp") as sender:
        opened = await _open(sender, path, message_id)
        upload_id = opened["upload_id"]
        total = int(opened["chunks"])
        # the first connection sent three chunks, then was lost
        for seq in range(3):
            await _publish_chunk(large_hub, "vpcp", upload_id, seq,
                                 data[seq * CHUNK:(seq + 1) * CHUNK])
        await eventually(lambda: _three(large_hub, upload_id), timeout=20, what="3 chunks")
        sent: list[int] = []
        publish = sender.publish_to

        async def counting(exchange: Any, message: aio_pika.Message, key: str) -> None:
            if key == wire_names.CHUNK_KEY:
                sent.append(int((message.headers or {})[wire_names.CHUNK_SEQ]))  # type: ignore[call-overload]
            await publish(exchange, message, key)

        sender.publish_to = counting  # type: ignore[method-assign]
        receipt = await sender.send_file(path, message_id=message_id)
        assert receipt is not None and receipt.type == "accepted", receipt
        assert sorted(sent) == list(range(3, total))
        # the receipt was lost, say: sending again uploads nothing and gets the same answer
        sent.clear()
        again = await sender.send_file(path, message_id=message_id)
    assert sent == []
    assert again is not None and again.hub_id == receipt.hub_id, again
    assert again.type in ("accepted", "duplicate") and again.repeat
    assert await large_hub.pool.fetchval("SELECT count(*) FROM documents") == 1


async def _three(hub: Hub, upload_id: str) -> bool:
    return await _chunks_of(hub, upload_id) == 3


async def test_a_chunk_with_a_wrong_hash_rejects_the_upload_and_leaves_nothing(
        large_hub: Hub, tmp_path: Path) -> None:
    path = _large_file(tmp_path, mib=1)
    data = path.read_bytes()
    message_id = f"bad-{uuid.uuid4().hex[:6]}"
    async with _client(large_hub, "vpcp") as sender:
        opened = await _open(sender, path, message_id)
        upload_id = opened["upload_id"]
        await _publish_chunk(large_hub, "vpcp", upload_id, 0, data[:CHUNK])
        await eventually(lambda: _chunks_of(large_hub, upload_id), timeout=20,
                         what="the first chunk stored")
        await _publish_chunk(large_hub, "vpcp", upload_id, 1, data[CHUNK:2 * CHUNK],
                             sha="00" * 32)
        receipt = await _rejected_receipt(sender, message_id)
        assert receipt.type == "rejected"
        assert receipt.reason is not None
        assert receipt.reason["reason"] == Reason.CHUNK_HASH_MISMATCH.name
        assert await _chunks_of(large_hub, upload_id) == 0
        # sending the file again (same message) opens a fresh upload: it goes through
        again = await sender.send_file(path, message_id=message_id)
        assert again is not None and again.type == "accepted", again
    assert await _chunks_of(large_hub, upload_id) == 0


async def test_chunks_of_another_gateways_upload_are_refused(
        large_hub: Hub, tmp_path: Path) -> None:
    path = _large_file(tmp_path, mib=1)
    data = path.read_bytes()
    async with _client(large_hub, "vpcp") as sender:
        opened = await _open(sender, path, f"mine-{uuid.uuid4().hex[:6]}")
    upload_id = opened["upload_id"]
    await _publish_chunk(large_hub, "lgsp-nghean", upload_id, 0, data[:CHUNK])
    await _publish_chunk(large_hub, "vpcp", upload_id, 1, data[CHUNK:2 * CHUNK])
    # the owner's chunk is stored, the other gateway's never is
    await eventually(lambda: _chunks_of(large_hub, upload_id), timeout=20,
                     what="the owner's chunk stored")
    present = await large_hub.pool.fetch(
        "SELECT seq FROM transfer_chunks WHERE upload_id = $1", uuid.UUID(upload_id))
    assert [r["seq"] for r in present] == [1]
    # and it may not ask about it either
    async with _client(large_hub, "lgsp-nghean") as other:
        with pytest.raises(HubRefused) as refused:
            await other.ask_hub(wire_names.TRANSFER_KEY,
                                {"op": "status", "upload_id": upload_id})
    assert refused.value.reason is Reason.UPLOAD_NOT_YOURS


async def test_a_declared_size_over_the_limit_is_refused_before_any_chunk(
        large_hub: Hub) -> None:
    async with _client(large_hub, "vpcp") as sender:
        with pytest.raises(HubRefused) as refused:
            await sender.ask_hub(wire_names.TRANSFER_KEY, {
                "op": "open", "message_id": "huge", "size": 3 * 1024**3, "sha256": "ab" * 32})
    assert refused.value.reason is Reason.PACKAGE_TOO_LARGE
    assert await large_hub.pool.fetchval("SELECT count(*) FROM transfer_uploads") == 0


async def test_a_claim_with_chunks_missing_is_rejected_and_its_chunks_removed(
        large_hub: Hub, tmp_path: Path) -> None:
    path = _large_file(tmp_path, mib=1)
    data = path.read_bytes()
    message_id = f"short-{uuid.uuid4().hex[:6]}"
    async with _client(large_hub, "vpcp") as sender:
        opened = await _open(sender, path, message_id)
        upload_id = opened["upload_id"]
        await _publish_chunk(large_hub, "vpcp", upload_id, 0, data[:CHUNK])
        await eventually(lambda: _chunks_of(large_hub, upload_id), timeout=20,
                         what="the first chunk stored")
        claim = json.dumps({"type": wire_names.TRANSFER_REF_TYPE,
                            "upload_id": upload_id}).encode()
        receipt = await sender.submit_claim(claim, upload_id=upload_id, message_id=message_id,
                                            sender_code="000.00.00.G22", kind="edoc",
                                            wait=True)
    assert receipt is not None and receipt.type == "rejected"
    assert receipt.reason is not None
    assert receipt.reason["reason"] == Reason.UPLOAD_INCOMPLETE.name
    assert await _chunks_of(large_hub, upload_id) == 0


async def test_a_large_package_is_refused_for_the_same_reasons_as_a_small_one(
        large_hub: Hub, tmp_path: Path) -> None:
    # an unknown recipient: decided by routing after the streaming parse
    path = _large_file(tmp_path, to="000.00.00.H99", mib=1)
    async with _client(large_hub, "vpcp") as sender:
        receipt = await sender.send_file(path)
        assert receipt is not None and receipt.type == "rejected"
        assert receipt.reason is not None
        assert receipt.reason["reason"] == Reason.RECIPIENT_UNKNOWN.name
        # the manifest names an attachment the package lacks: the parser's own reason
        pkg, body = edoc("000.00.00.G22", ["000.00.00.H41"], attachment=os.urandom(500_000))
        cid = pkg.attachments[0].content_id.encode()
        bad_body = body.replace(cid, b"khac", 1)
        with pytest.raises(PackageRejected) as small:
            parse_package(bad_body)
        bad = tmp_path / "bad.edxml"
        bad.write_bytes(bad_body)
        receipt = await sender.send_file(bad, validate=False, sender_code="000.00.00.G22",
                                         kind="edoc")
    assert receipt is not None and receipt.type == "rejected"
    assert receipt.reason is not None
    assert receipt.reason["reason"] == small.value.reason.name
    # nothing of either upload stays in the store
    assert await large_hub.pool.fetchval("SELECT count(*) FROM transfer_chunks") == 0
    states = await large_hub.pool.fetch("SELECT state FROM transfer_uploads")
    assert {r["state"] for r in states} == {"rejected"}


async def test_an_upload_never_claimed_expires_with_a_receipt(template_db: str,
                                                              tmp_path: Path) -> None:
    async with throwaway_hub(template_db, chunk_bytes=CHUNK, sweep_seconds=1,
                             upload_expiry_minutes=0.02) as hub:
        await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
        await hub.start_router()
        path = _large_file(tmp_path, mib=1)
        data = path.read_bytes()
        message_id = f"late-{uuid.uuid4().hex[:6]}"
        async with _client(hub, "vpcp") as sender:
            opened = await _open(sender, path, message_id)
            upload_id = opened["upload_id"]
            await _publish_chunk(hub, "vpcp", upload_id, 0, data[:CHUNK])
            receipt = await _rejected_receipt(sender, message_id)
        assert receipt.reason is not None
        assert receipt.reason["reason"] == Reason.UPLOAD_EXPIRED.name
        assert await _chunks_of(hub, upload_id) == 0
        assert await hub.pool.fetchval(
            "SELECT state FROM transfer_uploads WHERE id = $1", uuid.UUID(upload_id)
        ) == "expired"



async def test_a_router_killed_mid_transfer_loses_nothing(template_db: str,
                                                          tmp_path: Path) -> None:
    """kill -9 of the router while chunks are being stored: another router takes over, the
    chunks already stored stay, the rest are stored once, the package arrives whole."""
    async with throwaway_hub(template_db, chunk_bytes=CHUNK) as hub:
        await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
        await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
        await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                                AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
        routers = RouterProcesses(hub.settings, 1, log_path=tmp_path / "router.log",
                                  env={"LIENTHONG_CHUNK_BYTES": str(CHUNK)})
        try:
            path = _large_file(tmp_path, mib=12)
            original = path.read_bytes()
            total = -(-len(original) // CHUNK)
            async with _client(hub, "vpcp") as sender, \
                    _client(hub, "lgsp-nghean") as recipient:
                sending = asyncio.create_task(sender.send_file(path))

                async def some_stored() -> int:
                    return int(await hub.pool.fetchval("SELECT count(*) FROM transfer_chunks"))

                at_kill = await eventually(some_stored, timeout=60, interval=0.01,
                                           what="chunks being stored")
                routers.kill_one()  # SIGKILL, then a new router starts
                receipt = await asyncio.wait_for(sending, 120)
                assert receipt is not None and receipt.type == "accepted", receipt
                assert at_kill < total  # the kill fell mid-transfer
                async for msg in recipient.inbox(timeout=60):
                    saved = await recipient.fetch_large(msg, tmp_path / "received.edxml")
                    await msg.ack()
                    break
                else:
                    pytest.fail("no copy arrived")
            assert saved.read_bytes() == original
            assert routers.kills == 1
        finally:
            routers.stop()


async def test_a_signed_large_package_says_its_signature_was_not_verified(
        large_hub: Hub, tmp_path: Path) -> None:
    who = identity("vpcp signer")
    path = _large_file(tmp_path, mib=1)
    path.write_bytes(sign_package(path.read_bytes(), who.key_pem, who.cert_pem))
    async with _client(large_hub, "vpcp") as sender:
        receipt = await sender.send_file(path)
    assert receipt is not None and receipt.type == "accepted", receipt
    assert "LARGE_SIGNATURE_NOT_VERIFIED" in [w["warning"] for w in receipt.warnings]


async def _cli(hub: Hub, gateway: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
           "LIENTHONG_AMQP_USER_PREFIX": hub.settings.amqp_user_prefix,
           "LIENTHONG_GATEWAY_PASSWORD": hub.credentials[gateway].password,
           "LIENTHONG_LARGE_THRESHOLD_BYTES": str(64 * 1024)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_lienthong_send_and_inbox_carry_a_large_file(large_hub: Hub,
                                                           tmp_path: Path) -> None:
    path = _large_file(tmp_path, mib=2)
    code, out, err = await _cli(large_hub, "vpcp", "send", str(path), "--gateway", "vpcp")
    assert code == 0, err
    receipt = json.loads(out)
    assert receipt["type"] == "accepted"
    save = tmp_path / "inbox"
    code, out, err = await _cli(large_hub, "lgsp-nghean", "inbox", "--gateway",
                                "lgsp-nghean", "--save", str(save), "--timeout", "5")
    assert code == 0, err
    assert json.loads(out.splitlines()[0])["large"]["size"] == path.stat().st_size
    assert (save / f"{receipt['hub_id']}.edxml").read_bytes() == path.read_bytes()
