"""The watch folder: a door for document software that only writes and reads files.

::

    DIR/outbox/   the software writes a package here (write elsewhere or under a name
                  starting with '.' or ending in .part/.tmp, then rename: only complete
                  files are picked up)
    DIR/sent/     accepted by the hub: NAME, and NAME.receipt.json beside it
    DIR/failed/   refused: NAME, and NAME.reason.json (the reason, bilingual)
    DIR/inbox/    packages for this gateway: <copy id>.edxml, its metadata
                  <copy id>.json written first; both appear by rename (atomic)
    DIR/events.jsonl  delivery events of the packages sent (a recipient's state changed)

Restarts lose and duplicate nothing: a file's message id is the SHA-256 of its content,
so a file sent again after a crash (before it was moved) gets the hub's ``duplicate``
receipt with the same hub id, never a second document; a copy is written and renamed into
``inbox/`` before the AMQP ack, and the copy ids already written are kept in
``DIR/.seen-copies.sqlite`` so a copy the hub delivers again is not written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import structlog

from adapters.client import GatewayClient, InboxMessage
from adapters.refusals import refused_sender
from adapters.seen import DurableSeenCopies
from schemas import parse_package
from schemas.reasons import LienthongError, Reason
from schemas.receipt import Receipt

__all__ = ["WatchFolder", "message_id_for"]

log = structlog.get_logger("lienthong.watch")

SUBDIRS = ("outbox", "sent", "failed", "inbox")
PARALLEL = 20


def message_id_for(content: bytes) -> str:
    """The same file always gets the same message id: a resend is never a new document."""
    return "watch-" + hashlib.sha256(content).hexdigest()


def _sender(content: bytes) -> str | None:
    try:
        return parse_package(content).package.sender.organ_id
    except LienthongError:
        return None


def _complete(path: Path) -> bool:
    name = path.name
    return path.is_file() and not name.startswith(".") and not name.endswith((".part", ".tmp"))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    n = 1
    while target.exists() or target.with_name(target.name + ".receipt.json").exists():
        stem, dot, ext = name.partition(".")
        target = folder / f"{stem}-{n}{dot}{ext}"
        n += 1
    return target


class WatchFolder:
    """One gateway's folder, served until ``stop`` is set."""

    def __init__(self, client: GatewayClient, root: Path, *, interval: float = 1.0) -> None:
        self.client = client
        self.root = root
        self.interval = interval
        for sub in SUBDIRS:
            (root / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def seen_copies(cls, root: Path) -> DurableSeenCopies:
        return DurableSeenCopies(root / ".seen-copies.sqlite")

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._send_loop(stop)),
                 asyncio.create_task(self._receive_loop()),
                 asyncio.create_task(self._events_loop())]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    # sending ----------------------------------------------------------------------------
    async def _send_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                files = await asyncio.to_thread(self._ready)
                for start in range(0, len(files), PARALLEL):
                    await asyncio.gather(
                        *(self._send_one(p) for p in files[start:start + PARALLEL]))
            except OSError:  # the folder itself is unreadable: say so, look again later
                log.exception("watch.outbox_unreadable", folder=str(self.root / "outbox"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def _ready(self) -> list[Path]:
        return sorted(p for p in (self.root / "outbox").iterdir() if _complete(p))

    async def _send_one(self, path: Path) -> None:
        try:
            content = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:  # taken back by the software meanwhile
            log.warning("watch.unreadable", file=path.name, error=str(exc))
            return
        try:
            receipt = await self.client.send(content, message_id=message_id_for(content))
        except LienthongError as exc:  # refused before sending (not edXML, ...)
            await asyncio.to_thread(self._file, path, "failed", ".reason.json", exc.as_dict())
            return
        except Exception as exc:
            sender = await asyncio.to_thread(_sender, content)
            if sender is not None and refused_sender(exc, sender):
                refusal = LienthongError(Reason.SENDER_NOT_SERVED, sender)
                await asyncio.to_thread(self._file, path, "failed", ".reason.json",
                                        refusal.as_dict())
                return
            # a timeout, a lost connection, a channel closed under it: the file stays in
            # outbox/ and is tried again (same message id, so never a second document)
            log.warning("watch.send_later", file=path.name, error=str(exc) or type(exc).__name__)
            return
        assert receipt is not None
        if receipt.type == "rejected":
            await asyncio.to_thread(self._file, path, "failed", ".reason.json",
                                    receipt.reason or Reason.PROCESSING_ERROR.as_dict())
        else:
            await asyncio.to_thread(self._file, path, "sent", ".receipt.json",
                                    receipt.as_dict())

    def _file(self, path: Path, where: str, suffix: str, data: Any) -> None:
        target = _free_name(self.root / where, path.name)
        _write_atomic(target.with_name(target.name + suffix), _json(data))
        os.replace(path, target)
        log.info("watch.filed", file=path.name, to=f"{where}/{target.name}")

    # receiving --------------------------------------------------------------------------
    async def _receive_loop(self) -> None:
        async for msg in self.client.inbox():
            try:
                await asyncio.to_thread(self._deliver, msg)
            except OSError:
                log.exception("watch.inbox_write_failed", copy=msg.copy_id)
                await msg.retry()
                await asyncio.sleep(self.interval)
                continue
            await msg.ack()

    def _deliver(self, msg: InboxMessage) -> None:
        name = msg.copy_id or hashlib.sha256(msg.body).hexdigest()
        inbox = self.root / "inbox"
        meta = {"copy_id": name, "kind": msg.kind, "hub_id": msg.hub_id, "from": msg.sender,
                "to": msg.recipients, "delivery_ids": msg.delivery_ids,
                "document_id": msg.document_id, "status_code": msg.status_code}
        _write_atomic(inbox / f"{name}.json", _json(meta))
        _write_atomic(inbox / f"{name}.edxml", msg.body)

    async def _events_loop(self) -> None:
        async for receipt in self.client.receipts():
            await asyncio.to_thread(self._event, receipt)

    def _event(self, receipt: Receipt) -> None:
        with open(self.root / "events.jsonl", "ab") as fh:
            fh.write(json.dumps(receipt.as_dict(), ensure_ascii=False).encode() + b"\n")
