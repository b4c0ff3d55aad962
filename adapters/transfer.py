"""Large packages from the gateway's side: send a file of up to the hub's large limit
(2 GiB by default) in chunks, and fetch one delivered by reference — in bounded memory.

Sending (:func:`send_large`), over the hub's ``lt.transfer`` requests and chunk queue
(``router.transfer.server``):

1. one pass over the file: validated as it streams (``schemas.streaming``, the hub's own
   checks: a bad package is refused here, before anything is sent) and hashed (SHA-256);
2. ``open`` the upload (size, SHA-256, the claim's ``message_id``): the hub names the
   upload, its chunk size and the chunks it already holds — opening again with the same
   message and file resumes, so a sender that lost its connection (or whose hub router
   was killed) sends only the chunks still missing;
3. publish the missing chunks (headers ``lt-upload-id``, ``lt-chunk-seq``,
   ``lt-chunk-sha256``) with publisher confirms, at most ``window`` unconfirmed (memory:
   ``window`` x chunk size), then ask which chunks the hub has stored, until all are
   (sending again what is still missing after ``settle_timeout``);
4. publish the *claim* on ``lt.submit`` (a small JSON body, header ``lt-upload-id``) and
   wait for the receipt as for any package.

Receiving: a large package's copy carries a small JSON reference instead of the edXML
(:func:`reference_of`); :func:`fetch_large` asks for its chunks ``FETCH_WINDOW`` at a time,
checks each chunk's SHA-256 and the whole file's, and writes the file under its final name
only when all matched (byte-identical or nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from adapters.errors import FetchCorrupt, HubRefused, TransferRefused
from schemas import ParsedPackage, ParseLimits, wire_names
from schemas.reasons import PackageRejected, Reason
from schemas.streaming import StreamingValidator

if TYPE_CHECKING:
    from adapters.client import GatewayClient
    from schemas.receipt import Receipt

__all__ = [
    "FETCH_WINDOW",
    "LARGE_THRESHOLD",
    "fetch_large",
    "reference_of",
    "scan_file",
    "send_large",
]

#: files larger than this go as large packages (``LIENTHONG_LARGE_THRESHOLD_BYTES``)
LARGE_THRESHOLD = 16 * 1024 * 1024
#: the hub's large package limit by default (``LIENTHONG_MAX_LARGE_PACKAGE_BYTES``)
MAX_LARGE_BYTES = 2 * 1024**3
FETCH_WINDOW = 4  # chunks asked for at a time (the hub answers at most 4)
_READ = 1 << 20


def scan_file(path: Path, *, validate: bool = True,
              max_bytes: int = MAX_LARGE_BYTES) -> tuple[int, bytes, ParsedPackage | None]:
    """Size, SHA-256 and (``validate``) the parsed package of a file, in one pass and
    bounded memory. Raises PackageRejected as the hub would."""
    size = path.stat().st_size
    if size > max_bytes:
        raise PackageRejected(Reason.PACKAGE_TOO_LARGE, f"{size} bytes > limit {max_bytes}")
    digest = hashlib.sha256()

    def spool() -> BinaryIO:
        return cast(BinaryIO, tempfile.TemporaryFile(prefix="lienthong-attachment-"))

    validator = (StreamingValidator(limits=ParseLimits(max_bytes=max_bytes), open_spool=spool)
                 if validate else None)
    try:
        with path.open("rb") as fh:
            while block := fh.read(_READ):
                digest.update(block)
                if validator is not None:
                    validator.feed(block)
        parsed = validator.close() if validator is not None else None
    finally:
        for f in validator.spools if validator is not None else ():
            f.close()
    return size, digest.digest(), parsed


def _refusal(answer: dict[str, Any]) -> TransferRefused:
    why = answer.get("reason") or {}
    try:
        reason = Reason[str(why.get("reason"))]
    except KeyError:
        reason = Reason.UPLOAD_BAD_REQUEST
    return TransferRefused(reason, str(why.get("detail") or ""))


async def _ask(client: GatewayClient, body: dict[str, Any]) -> dict[str, Any]:
    """The hub's answer to a transfer request; TransferRefused with its reason."""
    try:
        _kind, answer = await client.ask_hub(wire_names.TRANSFER_KEY, body)
    except TransferRefused:
        raise
    except HubRefused as err:
        raise TransferRefused(err.reason, err.detail) from None
    return cast(dict[str, Any], answer)


async def send_large(
    client: GatewayClient,
    path: Path,
    *,
    message_id: str | None = None,
    sender_code: str | None = None,
    kind: str | None = None,
    validate: bool = True,
    wait: bool = True,
    window: int = 4,
    settle_timeout: float = 60.0,
    max_bytes: int = MAX_LARGE_BYTES,
) -> Receipt | None:
    """Send the edXML file at ``path`` as a large package (see the module's text); the
    receipt as :meth:`GatewayClient.send` gives it. Raises PackageRejected (the file is
    refused here), TransferRefused (the hub refused the upload) or ReceiptTimeout."""
    size, sha256, parsed = scan_file(path, validate=validate, max_bytes=max_bytes)
    if parsed is not None:
        sender_code = sender_code or parsed.package.sender.organ_id
        kind = kind or parsed.package.kind
    message_id = message_id or str(uuid.uuid4())
    opened = await _ask(client, {"op": "open", "message_id": message_id, "size": size,
                                 "sha256": sha256.hex()})
    upload_id = str(opened["upload_id"])
    chunk_bytes = int(opened["chunk_bytes"])
    chunks = int(opened["chunks"])
    present = set(int(s) for s in opened.get("present", ()))
    deadline = time.monotonic() + settle_timeout
    while True:
        missing = [s for s in range(chunks) if s not in present]
        if missing:
            await _publish_chunks(client, path, upload_id, chunk_bytes, missing, window)
        status = await _wait_stored(client, upload_id, chunks, deadline)
        if status.get("state") == "stored":  # claimed before: the claim is answered again
            break
        if status.get("state") != "open":
            raise _refusal(status)
        present = set(int(s) for s in status.get("present", ()))
        if len(present) == chunks:
            break
        if time.monotonic() > deadline:  # sent, but not stored yet: send what is missing
            deadline = time.monotonic() + settle_timeout
    claim = json.dumps({"type": wire_names.TRANSFER_REF_TYPE, "upload_id": upload_id,
                        "size": size, "sha256": sha256.hex()}).encode()
    return await client.submit_claim(claim, upload_id=upload_id, message_id=message_id,
                                     sender_code=sender_code, kind=kind, wait=wait)


async def _publish_chunks(client: GatewayClient, path: Path, upload_id: str,
                          chunk_bytes: int, seqs: list[int], window: int) -> None:
    exchange = await client.hub_exchange(wire_names.REPLAY)
    slots = asyncio.Semaphore(max(1, window))
    failures: list[BaseException] = []

    async def one(seq: int, data: bytes) -> None:
        try:
            message = aio_pika.Message(
                data, user_id=client.user, delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/octet-stream",
                headers={wire_names.UPLOAD_ID: upload_id, wire_names.CHUNK_SEQ: seq,
                         wire_names.CHUNK_SHA256: hashlib.sha256(data).hexdigest()})
            await client.publish_to(exchange, message, wire_names.CHUNK_KEY)
        except BaseException as exc:  # re-raised below, after the others finish
            failures.append(exc)
        finally:
            slots.release()

    tasks: list[asyncio.Task[None]] = []
    with path.open("rb") as fh:
        for seq in seqs:
            await slots.acquire()
            if failures:
                break
            fh.seek(seq * chunk_bytes)
            data = fh.read(chunk_bytes)
            tasks.append(asyncio.create_task(one(seq, data)))
            del data
            tasks = [t for t in tasks if not t.done()]
    await asyncio.gather(*tasks)
    if failures:
        raise failures[0]


async def _wait_stored(client: GatewayClient, upload_id: str, chunks: int,
                       deadline: float) -> dict[str, Any]:
    """The upload's status once every chunk is stored, it was refused, or ``deadline``."""
    delay = 0.05
    while True:
        status = await _ask(client, {"op": "status", "upload_id": upload_id})
        if (status.get("state") != "open" or len(status.get("present", ())) == chunks
                or time.monotonic() > deadline):
            return status
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def reference_of(body: bytes) -> dict[str, Any] | None:
    """The large package reference a copy carries instead of the edXML, or None (the body
    is the package itself)."""
    if body[:1] != b"{":
        return None
    try:
        ref = json.loads(body)
    except ValueError:
        return None
    if not isinstance(ref, dict) or ref.get("type") != wire_names.TRANSFER_REF_TYPE:
        return None
    return ref


async def fetch_large(client: GatewayClient, reference: dict[str, Any], dest: Path) -> Path:
    """Fetch the large package ``reference`` names into the file ``dest`` (byte-identical,
    or FetchCorrupt and no file). Memory: ``FETCH_WINDOW`` chunks."""
    os.makedirs(dest.parent, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            await _fetch_into(client, reference, out)
        os.replace(tmp_name, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return dest


async def _fetch_into(client: GatewayClient, reference: dict[str, Any], out: BinaryIO) -> None:
    upload_id = str(reference["upload_id"])
    chunks = int(reference["chunks"])
    want = bytes.fromhex(str(reference["sha256"]))
    size = int(reference["size"])
    digest = hashlib.sha256()
    written = 0
    seq = 0
    while seq < chunks:
        async for got, sha, data in _fetch_window(client, upload_id, seq):
            if got != seq or hashlib.sha256(data).hexdigest() != sha:
                raise FetchCorrupt(f"chunk {seq} of upload {upload_id}")
            digest.update(data)
            written += len(data)
            out.write(data)
            seq += 1
    out.flush()
    os.fsync(out.fileno())
    if written != size or digest.digest() != want:
        raise FetchCorrupt(f"{written} bytes, SHA-256 {digest.hexdigest()}; the "
                           f"reference says {size} bytes, {want.hex()}")


async def _fetch_window(client: GatewayClient, upload_id: str,
                        start: int) -> AsyncIterator[tuple[int, str, bytes]]:
    """The chunks of one fetch request: (seq, sha256 hex, data), in order."""
    answers: asyncio.Queue[AbstractIncomingMessage]
    request_id, answers = await client.request_many(
        wire_names.TRANSFER_KEY,
        {"op": "fetch", "upload_id": upload_id, "from": start, "count": FETCH_WINDOW})
    try:
        while True:
            message = await asyncio.wait_for(answers.get(), client.receipt_timeout)
            if message.type == "transfer.end":
                if json.loads(message.body).get("count", 0) == 0:
                    raise FetchCorrupt(f"chunk {start} of upload {upload_id} is not there")
                return
            if message.type == "transfer.error":
                raise _refusal(json.loads(message.body))
            headers = message.headers or {}
            seq = int(str(headers.get(wire_names.CHUNK_SEQ)))
            sha = headers.get(wire_names.CHUNK_SHA256)
            yield seq, sha.decode() if isinstance(sha, bytes) else str(sha), message.body
    finally:
        client.forget_request(request_id)
