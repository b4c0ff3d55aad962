"""The file a ``sendEdoc`` carries, read with a bounded buffer.

Three shapes arrive: a clean raw body; the Java SDK's body (the file then a bare CRLF: it
opens a multipart request but its signed ``Content-Type: application/octet-stream``
overrides it, so no boundaries are written); and a real ``multipart/form-data`` body with
the file in part ``file_doc``. ``hash-file`` names the file, so it tells the first two apart.

A file up to ``small`` bytes is held in memory; a larger one (up to ``limit``, the large
package limit) is *spooled*: written to a temporary file as it arrives, 64 KiB at a time,
while its SHA-256 is computed. The last two bytes are hashed apart (held back), so the
hash of the body with and without the SDK's trailing CRLF are both known at the end
without reading the file again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from aiohttp import BodyPartReader, web

from adapters.vxp.auth import file_hash_matches
from adapters.vxp.envelope import VxpFailure
from schemas.reasons import Reason

__all__ = ["Spooled", "read_file", "read_json"]

CHUNK = 64 * 1024
FILE_PART = "file_doc"
_CRLF = b"\r\n"


def _too_large(limit: int) -> VxpFailure:
    return VxpFailure(Reason.PACKAGE_TOO_LARGE, f"more than {limit} bytes")


@dataclass(frozen=True, slots=True)
class Spooled:
    """A file too large to hold: in a temporary file the caller removes (:meth:`remove`).
    ``salted_sha256``: the SHA-256 of ``salt`` then the file (see :func:`read_file`)."""

    path: Path
    size: int
    salted_sha256: str

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class _Sink:
    """Where a body's bytes go: memory up to ``spill_at`` bytes, then a temporary file;
    two running SHA-256 (plain, and salted for the message id) with the last two bytes
    held back."""

    def __init__(self, *, spill_at: int, cap: int, limit: int, salt: bytes,
                 directory: str | None) -> None:
        self.spill_at, self.cap, self.limit = spill_at, cap, limit
        self.directory = directory
        self.buf = bytearray()
        self.file: IO[bytes] | None = None
        self.path: Path | None = None
        self.size = 0
        self.held = b""
        self.plain = hashlib.sha256()
        self.salted = hashlib.sha256(salt)

    def spill(self) -> None:
        if self.directory is not None:
            os.makedirs(self.directory, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="lienthong-vxp-", suffix=".edxml",
                                    dir=self.directory)
        self.file, self.path = os.fdopen(fd, "wb"), Path(name)
        self.file.write(self.buf)
        self.buf = bytearray()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.cap:
            raise _too_large(self.limit)
        data = self.held + chunk
        body, self.held = data[:-2], data[-2:]
        self.plain.update(body)
        self.salted.update(body)
        if self.file is None and self.size > self.spill_at:
            self.spill()
        if self.file is not None:
            self.file.write(chunk)
        else:
            self.buf += chunk

    def digests(self, *, drop_tail: bool) -> tuple[bytes, str]:
        plain, salted = self.plain.copy(), self.salted.copy()
        if not drop_tail:
            plain.update(self.held)
            salted.update(self.held)
        return plain.digest(), salted.hexdigest()

    def discard(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


async def _read_raw(request: web.Request, sink: _Sink) -> None:
    async for chunk in request.content.iter_chunked(CHUNK):
        sink.write(chunk)


async def _read_multipart(request: web.Request, sink: _Sink) -> None:
    try:
        reader = await request.multipart()
        found = False
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == FILE_PART and not found:
                found = True
                while chunk := await part.read_chunk(CHUNK):
                    sink.write(chunk)
            else:
                await part.release()
    except ValueError as exc:  # aiohttp's malformed-multipart errors
        raise VxpFailure(Reason.VXP_BAD_REQUEST, f"multipart body: {exc}") from None
    if not found:
        raise VxpFailure(Reason.VXP_BAD_REQUEST, f"multipart body without part {FILE_PART}")


async def read_file(request: web.Request, hash_file: str | None, *, small: int, limit: int,
                    salt: bytes = b"", spool_dir: str | None = None) -> bytes | Spooled:
    """The file, checked against ``hash_file``: its bytes up to ``small`` bytes, a
    :class:`Spooled` temporary file up to ``limit`` (larger: ``PACKAGE_TOO_LARGE``). Memory:
    ``small`` bytes, or one 64 KiB buffer when the request's length says it is larger."""
    if not hash_file:
        raise VxpFailure(Reason.VXP_HASH_MISMATCH, "XroadVnpt-hash-file is missing")
    length = request.content_length
    if length is not None and length > limit + CHUNK:
        raise _too_large(limit)
    multipart = request.content_type.startswith("multipart/")
    # a body announced larger than ``small`` (plus room for multipart headers) goes to
    # disk from its first byte
    spill_at = -1 if length is not None and length > small + CHUNK else small + 2
    sink = _Sink(spill_at=spill_at, cap=limit + (0 if multipart else 2), limit=limit,
                 salt=salt, directory=spool_dir)
    try:
        if multipart:
            await _read_multipart(request, sink)
        else:
            await _read_raw(request, sink)
        return _checked(sink, hash_file, small=small, limit=limit,
                        may_drop_crlf=not multipart)
    except BaseException:
        sink.discard()
        raise


def _checked(sink: _Sink, hash_file: str, *, small: int, limit: int,
             may_drop_crlf: bool) -> bytes | Spooled:
    """The file whose SHA-256 ``hash_file`` names: the body, or (the SDK's shape) the
    body without its trailing CRLF."""
    tails = [False, True] if may_drop_crlf and sink.held == _CRLF else [False]
    for drop_tail in tails:
        digest, salted = sink.digests(drop_tail=drop_tail)
        if not file_hash_matches(hash_file, digest):
            continue
        size = sink.size - (2 if drop_tail else 0)
        if size == 0:
            raise VxpFailure(Reason.EMPTY_PACKAGE)
        if size > limit:
            raise _too_large(limit)
        return _result(sink, size, salted, small)
    if sink.size == 0:
        raise VxpFailure(Reason.EMPTY_PACKAGE)
    raise VxpFailure(Reason.VXP_HASH_MISMATCH)


def _result(sink: _Sink, size: int, salted: str, small: int) -> bytes | Spooled:
    if sink.file is None and size <= small:
        return bytes(sink.buf[:size])
    if sink.file is None:  # just over ``small``: the few bytes over go to disk too
        sink.spill()
    assert sink.file is not None and sink.path is not None
    sink.file.truncate(size)  # the SDK's CRLF, when it is not part of the file
    sink.file.close()
    return Spooled(sink.path, size, salted)


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """A JSON object body (``registerAgency``) of at most ``limit`` bytes. Only headers
    are signed, as in the vendor SDK, and a ``hash-file`` header may be a leftover of an
    earlier call (the SDK never clears its headers): the body is bound to nothing but
    the TLS connection in front of the façade."""
    if request.content_length is not None and request.content_length > limit:
        raise VxpFailure(Reason.VXP_BAD_REQUEST, f"body of more than {limit} bytes")
    data = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > limit:
            raise _too_large(limit)
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise VxpFailure(Reason.VXP_BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise VxpFailure(Reason.VXP_BAD_REQUEST, "the body is a JSON object")
    return value
