"""A watch folder: the door for document software that can only write and read files.

``lienthong watch --gateway G --dir DIR`` (or :func:`watch` from Python) keeps::

    DIR/outbox/    put a package here, completely written: write it under another name
                   (``.x.tmp``, ``x.part``…) or elsewhere on the same disk, then rename it
    DIR/sent/      the package once the hub accepted it, with NAME.receipt.json beside it
    DIR/failed/    a package that was not accepted, with NAME.reason.json (the reason
                   code, Vietnamese and English message, detail; the hub's receipt if any)
    DIR/inbox/     documents and status packages for the gateway's agencies: each
                   COPYID.edxml with COPYID.json (sender, recipients, hub id…) written
                   first; both appear at once, complete (written aside, fsync'd, renamed)
    DIR/receipts/  later news about sent packages (a recipient's state changed), one JSON
                   file per receipt
    DIR/.lienthong/  the watcher's own state (duplicate filter, send journal, temp files)

A file larger than the client's ``large_threshold`` (the hub's
``LIENTHONG_LARGE_THRESHOLD_BYTES`` with ``lienthong watch``) goes as a large package: sent in
chunks from the file itself (resumed after a restart), and a large package arriving is
fetched and verified aside, then renamed into ``inbox/`` like any other.

Files whose names start with ``.`` or ``~`` or end with ``.tmp``, ``.part``, ``.partial``,
``.crdownload``, ``.download``, ``.swp`` or ``~`` are never sent: they are being written.

Nothing is lost or doubled across restarts, even ``kill -9``:

* **sending**: the ``message_id`` of a file is derived from its content and the gateway
  (``uuid5(gateway + "\\n" + sha256(bytes))``, :func:`message_id_for`), so a send that
  was cut off is sent again under the same id; the hub recognises the same message (same
  id, same gateway, same bytes), resumes it and answers with its original ``accepted``
  receipt instead of routing it twice (or ``duplicate`` with the same ``hub_id`` when
  several tries waited for a router at once; the same bytes dropped again later get the
  same id, and the same answer). The receipt is journalled
  (``.lienthong/sent/<message_id>.json``) before the file moves, so a watcher killed
  between the receipt and the move moves the file on restart with the original
  receipt, without asking the hub again.
* **receiving**: a copy is written to ``inbox/`` (metadata, then package; each written to
  a temp file, fsync'd and renamed; the folder fsync'd) *before* it is acknowledged, and
  its id is then kept in the SDK's durable duplicate filter
  (:class:`adapters.seen.DurableSeenCopies`): a copy the hub delivers again after a crash
  is dropped, or, if the crash came before the filter heard of it, written again under
  the same name (same bytes).

The folder is polled (``poll`` seconds, 1 by default); a file is sent once per pass.
Gateway side only: it talks to the hub over AMQP as the gateway (:class:`GatewayClient`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiormq
import structlog

from adapters.client import MAX_PACKAGE_BYTES, GatewayClient, InboxMessage, SendFailed
from adapters.errors import FetchCorrupt, HubRefused
from adapters.seen import DurableSeenCopies
from adapters.transfer import LARGE_THRESHOLD, MAX_LARGE_BYTES
from schemas.reasons import PackageRejected, Reason
from schemas.receipt import Receipt

__all__ = ["WatchFolder", "is_complete_name", "message_id_for", "seen_path", "watch"]

log = structlog.get_logger("lienthong.watch")

_NAMESPACE = uuid.UUID("6c69656e-7468-6f6e-6777-617463680001")  # lienthong watch
IN_FLIGHT_FILES = 32  # files of the outbox sent at once, waiting for their receipts
IN_FLIGHT_BYTES = 64 * 1024 * 1024  # and their bytes, held in memory meanwhile
_TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".swp", "~")


def is_complete_name(name: str) -> bool:
    """False for names document software uses while it is still writing a file."""
    return (bool(name) and not name.startswith((".", "~"))
            and not name.lower().endswith(_TEMP_SUFFIXES))


def message_id_for(gateway_id: str, body: bytes) -> str:
    """The AMQP ``message_id`` a file is sent with: the same bytes from the same gateway
    always get the same id, whatever the file's name and however often it is sent."""
    return _message_id(gateway_id, hashlib.sha256(body).hexdigest())


def _message_id(gateway_id: str, sha256_hex: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{gateway_id}\n{sha256_hex}"))


def _file_sha256(path: Path) -> str:
    """A large file's SHA-256, read in blocks."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def seen_path(root: Path) -> Path:
    """The watch folder's durable duplicate filter of received copies."""
    return Path(root) / ".lienthong" / "seen-copies.sqlite"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class _Outcome:
    sent: bool  # accepted or duplicate; else failed
    sidecar: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Source:
    """A file to send: its bytes (up to the hub's message limit), or None for a large
    package sent in chunks from the file itself (``GatewayClient.send_file``)."""

    body: bytes | None
    sha256: str


class WatchFolder:
    """One gateway's watch folder. ``client`` is connected by the caller and should use
    ``seen=DurableSeenCopies(seen_path(root))`` (as :func:`watch` does)."""

    def __init__(self, client: GatewayClient, root: Path, *, poll: float = 1.0) -> None:
        self.client = client
        self.root = Path(root)
        self.poll = poll
        self.outbox, self.sent, self.failed = (self.root / n for n in ("outbox", "sent",
                                                                         "failed"))
        self.inbox, self.receipts = self.root / "inbox", self.root / "receipts"
        self.state = self.root / ".lienthong"
        self._journal, self._tmp = self.state / "sent", self.state / "tmp"
        self.sent_count = self.failed_count = self.received_count = 0
        self._in_flight: set[str] = set()

    def prepare(self) -> None:
        """Create the folders; remove temp files a killed watcher left behind."""
        for d in (self.outbox, self.sent, self.failed, self.inbox, self.receipts,
                  self._journal, self._tmp):
            d.mkdir(parents=True, exist_ok=True)
        for leftover in self._tmp.iterdir():
            leftover.unlink(missing_ok=True)

    def _write(self, path: Path, data: bytes) -> None:
        """Write ``path`` whole or not at all: temp file beside it on the same disk,
        fsync, rename, fsync the folder."""
        tmp = self._tmp / f"{uuid.uuid4().hex}.tmp"
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    # sending ---------------------------------------------------------------------------
    def pending(self) -> list[Path]:
        """Complete files in the outbox, oldest first."""
        files = []
        for entry in os.scandir(self.outbox):
            if is_complete_name(entry.name) and entry.is_file(follow_symlinks=False):
                files.append((entry.stat().st_mtime_ns, entry.name))
        return [self.outbox / name for _, name in sorted(files)]

    async def send_pending(self) -> int:
        """One pass over the outbox, a group of files in flight at a time (at most
        ``IN_FLIGHT_FILES`` files and ``IN_FLIGHT_BYTES`` bytes, one file at least);
        returns how many files left it."""
        done = 0
        group: list[Path] = []
        size = 0
        for path in [*self.pending(), None]:
            if path is not None:
                try:
                    length = path.stat().st_size
                except OSError:
                    length = 0  # gone, or unreadable: send_file says which
                if not group or (len(group) < IN_FLIGHT_FILES
                                 and size + length <= IN_FLIGHT_BYTES):
                    group.append(path)
                    size += length
                    continue
            results = await asyncio.gather(*(self.send_file(p) for p in group))
            done += sum(results)
            if path is not None:
                group, size = [path], length
        return done

    async def send_file(self, path: Path) -> bool:
        """Send one file and move it to sent/ or failed/ with its receipt or reason.
        False when it stays for the next pass (no receipt yet, hub unreachable)."""
        read = await asyncio.to_thread(self._read, path)
        if read is None:
            return False  # taken away meanwhile
        outcome = read if isinstance(read, _Outcome) else await self._outcome(path, read)
        if outcome is None:
            return False
        await asyncio.to_thread(self._place, path, outcome)
        return True

    def _read(self, path: Path) -> _Source | _Outcome | None:
        """What to send; an outcome for failed/ when it cannot be sent; None when gone.
        A file over the client's ``large_threshold`` goes as a large package (chunked),
        up to its ``max_large_bytes``."""
        small = min(self.client.large_threshold,
                    self.client.max_package_bytes or MAX_PACKAGE_BYTES)
        limit = self.client.max_large_bytes
        try:
            size = path.stat().st_size
            if size <= small:
                body = path.read_bytes()
                return _Source(body, hashlib.sha256(body).hexdigest())
            if size <= limit:
                return _Source(None, _file_sha256(path))
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self._failed(path, "", Reason.WATCH_FILE_UNREADABLE, str(exc))
        return self._failed(path, "", Reason.PACKAGE_TOO_LARGE,
                            f"{size} bytes > limit {limit}; nothing was sent")

    async def _outcome(self, path: Path, source: _Source) -> _Outcome | None:
        message_id = _message_id(self.client.gateway_id, source.sha256)
        journal = self._journal / f"{message_id}.json"
        if journal.exists():  # sent before a restart: the receipt is kept
            kept = json.loads(journal.read_bytes())
            return _Outcome(bool(kept["sent"]), {**kept["sidecar"], "file": path.name})
        if message_id in self._in_flight:
            return None  # the same bytes in another file of this pass: the next pass
        self._in_flight.add(message_id)
        try:
            if source.body is not None:
                receipt = await self.client.send(source.body, message_id=message_id)
            else:  # resumes an upload a restart cut off (same message_id)
                receipt = await self.client.send_file(path, message_id=message_id)
        except (PackageRejected, HubRefused) as exc:  # checked locally or refused: not sent
            return self._failed(path, message_id, exc.reason, exc.detail, source.sha256)
        except (TimeoutError, SendFailed, ConnectionError, aiormq.exceptions.AMQPError) as exc:
            # no answer, or the broker is away (the client reconnects by itself)
            log.warning("watch.send_later", file=path.name, error=repr(exc))
            return None
        finally:
            self._in_flight.discard(message_id)
        assert receipt is not None
        if receipt.type == "rejected":
            reason = Reason[receipt.reason["reason"]] if receipt.reason else \
                Reason.PROCESSING_ERROR
            detail = (receipt.reason or {}).get("detail", "")
            outcome = self._failed(path, message_id, reason, detail, source.sha256, receipt)
        else:
            outcome = _Outcome(True, {
                "file": path.name, "sha256": source.sha256,
                "message_id": message_id, "sent_at": _now(), "receipt": receipt.as_dict()})
        self._write(journal, _json({"sent": outcome.sent, "sidecar": outcome.sidecar}))
        return outcome

    def _failed(self, path: Path, message_id: str, reason: Reason, detail: str | None,
                sha256: str | None = None, receipt: Receipt | None = None) -> _Outcome:
        sidecar: dict[str, Any] = {
            "file": path.name, "message_id": message_id or None,
            "sha256": sha256,
            "failed_at": _now(), "reason": reason.as_dict(detail or None),
            # a reason that is not final may pass later: move the file back to outbox/
            "may_retry": not reason.final}
        if receipt is not None:
            sidecar["receipt"] = receipt.as_dict()
        return _Outcome(False, sidecar)

    def _place(self, path: Path, outcome: _Outcome) -> None:
        folder = self.sent if outcome.sent else self.failed
        name = path.name
        if (folder / name).exists():  # an earlier file of the same name
            tag = (outcome.sidecar.get("message_id") or uuid.uuid4().hex)[:8]
            name = f"{path.stem}-{tag}{path.suffix}"
        side = folder / f"{name}.{'receipt' if outcome.sent else 'reason'}.json"
        self._write(side, _json(outcome.sidecar))
        os.replace(path, folder / name)
        _fsync_dir(folder)
        _fsync_dir(self.outbox)
        message_id = outcome.sidecar.get("message_id")
        if message_id:
            (self._journal / f"{message_id}.json").unlink(missing_ok=True)
        if outcome.sent:
            self.sent_count += 1
        else:
            self.failed_count += 1
        log.info("watch.sent" if outcome.sent else "watch.failed", file=path.name,
                 to=str(folder / name),
                 reason=None if outcome.sent else outcome.sidecar["reason"]["reason"])

    # receiving -------------------------------------------------------------------------
    def take(self, msg: InboxMessage) -> Path:
        """Write one copy to inbox/ (metadata first, then the package)."""
        copy_id = msg.copy_id or msg.hub_id or uuid.uuid4().hex
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in copy_id)[:80]
        package = self.inbox / f"{safe}.edxml"
        meta = {"copy_id": msg.copy_id, "kind": msg.kind, "hub_id": msg.hub_id,
                "sender": msg.sender, "document_id": msg.document_id,
                "status_code": msg.status_code, "recipients": msg.recipients,
                "delivery_ids": msg.delivery_ids, "file": package.name,
                "received_at": _now()}
        self._write(self.inbox / f"{safe}.json", _json(meta))
        self._write(package, msg.body)
        return package

    async def take_large(self, msg: InboxMessage) -> Path:
        """Write a large package's copy to inbox/: fetched (verified) beside it, then
        renamed in, like :meth:`take`."""
        copy_id = msg.copy_id or msg.hub_id or uuid.uuid4().hex
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in copy_id)[:80]
        aside = await self.client.fetch_large(msg, self._tmp / f"{safe}.edxml")
        meta = {"copy_id": msg.copy_id, "kind": msg.kind, "hub_id": msg.hub_id,
                "sender": msg.sender, "document_id": msg.document_id,
                "status_code": msg.status_code, "recipients": msg.recipients,
                "delivery_ids": msg.delivery_ids, "file": f"{safe}.edxml",
                "large": True, "received_at": _now()}
        await asyncio.to_thread(self._write, self.inbox / f"{safe}.json", _json(meta))
        package = self.inbox / f"{safe}.edxml"
        os.replace(aside, package)
        await asyncio.to_thread(_fsync_dir, self.inbox)
        return package

    async def receive(self) -> None:
        """Take copies from the gateway's inbox until cancelled."""
        async for msg in self.client.inbox():
            try:
                if msg.reference is not None:
                    path = await self.take_large(msg)
                else:
                    path = await asyncio.to_thread(self.take, msg)  # fsyncs: off the loop
            except (OSError, FetchCorrupt, HubRefused, TimeoutError) as exc:
                # disk full, folder gone, a fetch that failed: the hub keeps the copy
                log.error("watch.inbox_write_failed", copy=msg.copy_id, error=repr(exc))
                await msg.retry()
                await asyncio.sleep(self.poll)
                continue
            await msg.ack()
            self.received_count += 1
            log.info("watch.received", file=path.name, kind=msg.kind, sender=msg.sender)

    async def keep_receipts(self) -> None:
        """Later receipts (delivery events) as receipts/<receipt_id>.json, until cancelled."""
        async for receipt in self.client.receipts():
            safe = "".join(c if c.isalnum() or c == "-" else "_" for c in receipt.receipt_id)
            try:
                self._write(self.receipts / f"{safe}.json", _json(receipt.as_dict()))
            except OSError as exc:  # the hub keeps it: a replay brings it back
                log.error("watch.receipt_write_failed", receipt=receipt.receipt_id,
                          error=repr(exc))

    async def send_loop(self) -> None:
        while True:
            try:
                await self.send_pending()
            except OSError as exc:  # the folder is on a share that went away
                log.error("watch.outbox_unreadable", error=repr(exc))
            await asyncio.sleep(self.poll)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Send, receive and keep receipts until ``stop`` is set (forever when None)."""
        self.prepare()
        stopper = asyncio.create_task((stop or asyncio.Event()).wait())
        tasks: list[asyncio.Task[Any]] = [
            asyncio.create_task(self.send_loop()), asyncio.create_task(self.receive()),
            asyncio.create_task(self.keep_receipts()), stopper]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper:
                    t.result()  # a loop that ended raises its error here
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def watch(amqp_url: str, gateway_id: str, root: Path, *, poll: float = 1.0,
                receipt_timeout: float = 30.0, stop: asyncio.Event | None = None,
                max_package_bytes: int | None = MAX_PACKAGE_BYTES,
                large_threshold: int = LARGE_THRESHOLD,
                max_large_bytes: int = MAX_LARGE_BYTES) -> None:
    """Run a watch folder for ``gateway_id`` until ``stop`` is set. The limits are the
    hub's, as :class:`GatewayClient` takes them: a file over ``large_threshold`` is sent
    as a large package, in chunks."""
    seen = DurableSeenCopies(seen_path(root))
    try:
        async with GatewayClient(amqp_url, gateway_id=gateway_id, seen=seen,
                                 receipt_timeout=receipt_timeout,
                                 max_package_bytes=max_package_bytes,
                                 large_threshold=large_threshold,
                                 max_large_bytes=max_large_bytes) as client:
            folder = WatchFolder(client, root, poll=poll)
            log.info("watch.started", gateway=gateway_id, dir=str(root))
            await folder.run(stop)
    finally:
        seen.close()
