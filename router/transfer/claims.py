"""The claim check on the intake path: a small message on ``lt.submit`` with the header
``lt-upload-id`` stands for a large package whose chunks the hub already holds.

``router.routing.intake`` hands each batch's claims here twice:

* :meth:`Claims.resolve`, before routing: the upload must exist, be the claiming
  gateway's, hold every chunk; its chunks are streamed from the store once, in order, into
  ``schemas.streaming`` (the same checks and reason codes as a small package) while the
  whole package's size and SHA-256 are checked against what was declared. The claim then
  enters routing as an ordinary message whose body is the small JSON reference
  (``uploads.reference``: what the ledger records and every copy carries) and whose content
  hash is the package's, with its package already parsed; anything wrong makes it a
  rejection with its reason.
* :meth:`Claims.settle`, after the batch's transaction: an accepted claim's upload is
  ``stored`` (with its hub id: recipients of that document may fetch it); a rejected one's
  chunks are removed, and so are a duplicate's (the package is stored under another upload).

Memory: one chunk at a time, plus a ZIP-looking attachment spooled to a temporary file.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, cast

import asyncpg
import structlog

from router.routing.decide import Incoming
from router.routing.plan import BatchPlan
from router.transfer import uploads
from router.transfer.store import BlobStore
from schemas import ParsedPackage, ParseLimits, wire_names
from schemas.reasons import PackageRejected, Reason, ValidationWarning, WarningCode
from schemas.streaming import StreamingValidator

__all__ = ["Claims", "upload_id_of"]

log = structlog.get_logger("lienthong.transfer")


def upload_id_of(headers: dict[str, Any]) -> str | None:
    """The upload a submitted message claims (header ``lt-upload-id``), if any."""
    value = headers.get(wire_names.UPLOAD_ID)
    if value is None:
        return None
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


_Checked = tuple[bytes, bytes, ParsedPackage | PackageRejected]  # body, sha256, parsed


class Claims:
    def __init__(self, pool: asyncpg.Pool, store: BlobStore, limits: ParseLimits) -> None:
        self._pool = pool
        self._store = store
        self._limits = limits
        # claims checked aside (prepare), by their AMQP message, until their batch takes them
        self._checked: dict[object, _Checked] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # a claim checked aside is held by the router meanwhile (router.routing.sources):
        # batches of later deliveries never ack it with ``multiple=True``

    def use(self, pool: asyncpg.Pool) -> None:
        """Check claims on ``pool`` (the router's transfer connections) from now on."""
        self._pool = pool

    def prepare(self, message: object, msg: Incoming,
                then: Callable[[Any], None]) -> None:
        """Check a fresh claim aside (its chunks stream for seconds per GiB) and hand the
        message on with ``then`` when done, so the router's batches go on meanwhile. What
        cannot be checked now (PostgreSQL away) is checked again in its batch."""

        async def check() -> None:
            try:
                await self.resolve([msg])
                if msg.parsed is not None:
                    self._checked[message] = (msg.body, msg.sha256, msg.parsed)
            except Exception as exc:
                log.warning("transfer.claim_check_later", upload=msg.upload_id,
                            error=repr(exc))
            finally:
                then(message)

        task = asyncio.create_task(check())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, messages: Sequence[object]) -> None:
        """``messages`` are settled (acked, returned, or void with their channel)."""
        for m in messages:
            self._checked.pop(m, None)

    async def resolve(self, batch: Sequence[Incoming],
                      messages: Sequence[object] | None = None) -> None:
        """Turn each claim of ``batch`` into the package it stands for (in place); a claim
        checked aside (``messages[i]`` prepared) takes that result."""
        for i, msg in enumerate(batch):
            if msg.upload_id is None or msg.wire_error:
                continue
            checked = self._checked.pop(messages[i], None) if messages is not None else None
            if checked is not None:
                msg.body, msg.sha256, msg.parsed = checked
                continue
            try:
                upload, parsed = await self._validate(msg)
            except PackageRejected as exc:
                exc.__cause__ = exc.__context__ = None
                msg.parsed = exc.with_traceback(None)
                continue
            if parsed.package.has_signature:
                # XML-DSig over a package that is never held whole is not verified (yet):
                # said plainly; a gateway whose policy requires signatures is refused by the
                # gate (the reference it sees carries none)
                parsed = ParsedPackage(parsed.package, (*parsed.warnings, ValidationWarning(
                    WarningCode.LARGE_SIGNATURE_NOT_VERIFIED, f"upload {upload.id}")))
            msg.body = uploads.reference(upload)
            msg.sha256 = upload.sha256
            msg.parsed = parsed

    async def _validate(self, msg: Incoming) -> tuple[uploads.Upload, ParsedPackage]:
        try:
            upload_id = uuid.UUID(msg.upload_id or "")
        except ValueError:
            raise PackageRejected(Reason.UPLOAD_UNKNOWN, f"{msg.upload_id!r}") from None
        async with self._pool.acquire() as conn:
            upload = await uploads.load(conn, upload_id)
            if upload is None:
                raise PackageRejected(Reason.UPLOAD_UNKNOWN, str(upload_id))
            if upload.amqp_user != msg.amqp_user:
                raise PackageRejected(Reason.UPLOAD_NOT_YOURS, str(upload_id))
            if upload.state == "expired":
                raise PackageRejected(Reason.UPLOAD_EXPIRED, str(upload_id))
            if upload.state in ("rejected", "duplicate"):
                # claimed before (a re-send or a redelivery): the same answer
                raise PackageRejected(upload.reason or Reason.UPLOAD_UNKNOWN,
                                      upload.detail or "")
            present = await self._store.chunks_present(conn, upload_id)
            if len(present) != upload.chunk_count:
                missing = sorted(set(range(upload.chunk_count)) - set(present))
                raise PackageRejected(
                    Reason.UPLOAD_INCOMPLETE,
                    f"{len(missing)} of {upload.chunk_count} chunks missing: {missing[:20]}")
            parsed = await self._stream(conn, upload)
        return upload, parsed

    async def _stream(self, conn: Any, upload: uploads.Upload) -> ParsedPackage:
        def spool() -> BinaryIO:
            return cast(BinaryIO, tempfile.TemporaryFile(prefix="lienthong-attachment-"))

        validator = StreamingValidator(limits=self._limits, open_spool=spool)
        digest = hashlib.sha256()
        size = 0
        failure: PackageRejected | None = None
        try:
            async for _seq, _sha, data in self._store.open_stream(conn, upload.id):
                digest.update(data)
                size += len(data)
                if failure is None:
                    try:
                        validator.feed(data)
                    except PackageRejected as exc:  # keep hashing: a corrupt store first
                        failure = exc
                del data
            if size != upload.size or digest.digest() != upload.sha256:
                raise PackageRejected(
                    Reason.UPLOAD_HASH_MISMATCH,
                    f"{size} bytes, SHA-256 {digest.hexdigest()}; declared {upload.size} "
                    f"bytes, {upload.sha256.hex()}")
            if failure is not None:
                raise failure
            return validator.close()
        finally:
            for f in validator.spools:
                f.close()

    async def settle(self, batch: Sequence[Incoming], plan: BatchPlan) -> None:
        """After the batch's transaction: keep, or remove, each claimed upload's chunks."""
        claims = [(i, m) for i, m in enumerate(batch) if m.upload_id is not None]
        if not claims:
            return
        hub_ids = {(p.gateway_id, p.message_id): p.hub_id for p in plan.pending}
        reasons = {r.receipt.message_id: r.receipt.reason for r in plan.receipts
                   if r.receipt.type == "rejected"}
        async with self._pool.acquire() as conn:
            for i, msg in claims:
                try:
                    upload_id = uuid.UUID(msg.upload_id or "")
                except ValueError:
                    continue
                upload = await uploads.load(conn, upload_id)
                if upload is None or upload.state != "open" or upload.amqp_user != msg.amqp_user:
                    continue  # settled before, or not the claimer's to settle
                outcome = plan.outcomes[i]
                hub_id = hub_ids.get((upload.gateway_id, msg.message_id))
                if outcome in ("accepted", "resumed") and hub_id is not None:
                    await conn.execute(
                        "UPDATE transfer_uploads SET state = 'stored', hub_id = $2, "
                        "settled_at = now() WHERE id = $1 AND state = 'open'",
                        upload_id, hub_id)
                    log.info("transfer.stored", upload=str(upload_id), hub_id=str(hub_id))
                elif outcome == "duplicate":
                    await uploads.reject(conn, self._store, upload_id, None,
                                         "the same package is stored already",
                                         state="duplicate")
                elif outcome == "rejected":
                    why = reasons.get(msg.message_id) or {}
                    try:
                        reason = Reason[str(why.get("reason"))]
                    except KeyError:
                        reason = Reason.UPLOAD_BAD_REQUEST
                    await uploads.reject(conn, self._store, upload_id, reason,
                                         str(why.get("detail") or ""))
                    log.info("transfer.claim_rejected", upload=str(upload_id),
                             reason=reason.name)
