"""The file a ``sendEdoc`` carries, read with a bounded buffer.

Three shapes arrive: a clean raw body; the Java SDK's body (the file then a bare CRLF: it
opens a multipart request but its signed ``Content-Type: application/octet-stream``
overrides it, so no boundaries are written); and a real ``multipart/form-data`` body with
the file in part ``file_doc``. ``hash-file`` names the file, so it tells the first two apart.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import BodyPartReader, web

from adapters.vxp.auth import file_hash_matches
from adapters.vxp.envelope import VxpFailure
from schemas.reasons import Reason

__all__ = ["read_file", "read_json"]

CHUNK = 64 * 1024
FILE_PART = "file_doc"


def _too_large(limit: int) -> VxpFailure:
    return VxpFailure(Reason.PACKAGE_TOO_LARGE, f"more than {limit} bytes")


async def _read_raw(request: web.Request, cap: int, limit: int) -> bytes:
    buf = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        buf += chunk
        if len(buf) > cap:
            raise _too_large(limit)
    return bytes(buf)


async def _read_part(part: BodyPartReader, limit: int) -> bytes:
    buf = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        buf += chunk
        if len(buf) > limit:
            raise _too_large(limit)
    return bytes(buf)


async def _read_multipart(request: web.Request, limit: int) -> bytes:
    try:
        reader = await request.multipart()
        found: bytes | None = None
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.name == FILE_PART and found is None:
                found = await _read_part(part, limit)
            else:
                await part.release()
    except ValueError as exc:  # aiohttp's malformed-multipart errors
        raise VxpFailure(Reason.VXP_BAD_REQUEST, f"multipart body: {exc}") from None
    if found is None:
        raise VxpFailure(Reason.VXP_BAD_REQUEST, f"multipart body without part {FILE_PART}")
    return found


async def read_file(request: web.Request, hash_file: str | None, limit: int) -> bytes:
    """The file, checked against ``hash_file``; at most ``limit`` bytes are accepted."""
    if not hash_file:
        raise VxpFailure(Reason.VXP_HASH_MISMATCH, "XroadVnpt-hash-file is missing")
    if request.content_length is not None and request.content_length > limit + CHUNK:
        raise _too_large(limit)
    if request.content_type.startswith("multipart/"):
        data = await _read_multipart(request, limit)
        candidates = [data]
    else:
        data = await _read_raw(request, limit + 2, limit)
        candidates = [data, data[:-2]] if data.endswith(b"\r\n") else [data]
    for candidate in candidates:
        if file_hash_matches(hash_file, hashlib.sha256(candidate).digest()):
            if not candidate:
                raise VxpFailure(Reason.EMPTY_PACKAGE)
            if len(candidate) > limit:
                raise _too_large(limit)
            return candidate
    if not data:
        raise VxpFailure(Reason.EMPTY_PACKAGE)
    raise VxpFailure(Reason.VXP_HASH_MISMATCH)


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """A JSON object body (``registerAgency``) of at most ``limit`` bytes. Only headers
    are signed, as in the vendor SDK, and a ``hash-file`` header may be a leftover of an
    earlier call (the SDK never clears its headers): the body is bound to nothing but
    the TLS connection in front of the façade."""
    if request.content_length is not None and request.content_length > limit:
        raise VxpFailure(Reason.VXP_BAD_REQUEST, f"body of more than {limit} bytes")
    data = await _read_raw(request, limit, limit)
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise VxpFailure(Reason.VXP_BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise VxpFailure(Reason.VXP_BAD_REQUEST, "the body is a JSON object")
    return value
