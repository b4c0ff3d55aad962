"""A large package validated as it streams (schemas.streaming): the same result and the same
reasons as parse_package on the whole file, hostile input refused the same way, and memory
that does not grow with the attachments."""

from __future__ import annotations

import base64
import dataclasses
import os
import tempfile
import tracemalloc
from collections.abc import Iterator
from typing import BinaryIO, cast

import pytest

from schemas import (
    EdocPackage,
    PackageRejected,
    ParsedPackage,
    ParseLimits,
    Reason,
    build_package,
    new_attachment,
    parse_package,
)
from schemas.streaming import StreamingValidator
from tests import packages
from tests.factory import edoc
from tests.unit.test_hostile_input import BILLION_LAUGHS, QUADRATIC_BLOWUP, xxe

PIECES = (1, 7, 4096, 1 << 20)


def _spool() -> BinaryIO:
    return cast(BinaryIO, tempfile.TemporaryFile())


def stream(data: bytes, piece: int, limits: ParseLimits | None = None) -> ParsedPackage:
    v = StreamingValidator(limits=limits or ParseLimits(), open_spool=_spool)
    try:
        for i in range(0, len(data), piece):
            v.feed(data[i:i + piece])
        return v.close()
    finally:
        for f in v.spools:
            f.close()


def outcome(fn: object, *args: object) -> object:
    """The parsed package without attachment bytes (streaming never holds them), or the
    refusal's reason."""
    try:
        parsed = fn(*args)  # type: ignore[operator]
    except PackageRejected as exc:
        return exc.reason
    pkg = parsed.package
    if isinstance(pkg, EdocPackage):
        pkg = dataclasses.replace(pkg, attachments=tuple(
            dataclasses.replace(a, data=b"") for a in pkg.attachments))
    return pkg, parsed.warnings


def _variants() -> Iterator[tuple[str, bytes]]:
    for name in packages.ALL:
        data = packages.package(name)
        yield name, data
        yield f"{name}-lf", packages.lf(data)
        yield f"{name}-no-cid", packages.without_cid(data)
        yield f"{name}-default-ns", packages.default_namespace(data)
        yield f"{name}-dotnet", packages.dotnet_variant(data)


@pytest.mark.parametrize(("name", "data"), list(_variants()), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_the_same_package_as_parse_package_in_any_pieces(name: str, data: bytes) -> None:
    whole = outcome(parse_package, data)
    for piece in PIECES:
        assert outcome(stream, data, piece) == whole, f"{name} fed {piece} bytes at a time"


def _zip_and_plain() -> bytes:
    pkg, _ = edoc("000.00.00.G22", ["000.00.00.H41"], attachment=None)
    pkg = dataclasses.replace(pkg, attachments=(
        new_attachment("a.pdf", os.urandom(200_000), content_type="application/pdf"),
        new_attachment("ho-so.docx", os.urandom(100_000), zip_wrap=True),
    ))
    return build_package(pkg)


def _mutations() -> Iterator[tuple[str, bytes]]:
    good = _zip_and_plain()
    pkg = parse_package(good).package
    assert isinstance(pkg, EdocPackage)
    cid = pkg.attachments[0].content_id.encode()
    yield "good", good
    yield "manifest-names-a-missing-attachment", good.replace(cid, b"khac", 1)
    yield "attachment-not-in-manifest", good[::-1].replace(cid[::-1], b"khac"[::-1], 1)[::-1]
    start = good.index(b">", good.index(b"<edXML:ContentTransferEncoded")) + 1
    yield "bad-base64", good[:start] + b"@@@@" + good[start + 4:]
    yield "padding-in-the-middle", good[:start] + b"QQ==" + good[start + 4:]
    yield "empty-payload", (good[:start] + good[good.index(
        b"</edXML:ContentTransferEncoded>", start):])
    yield "not-xml", b"\x00\x01 not xml"
    yield "empty", b"   \n"
    yield "truncated", good[: len(good) // 2]
    yield "deep", b"<a>" * 200 + b"</a>" * 200
    yield "billion-laughs", BILLION_LAUGHS
    yield "quadratic-blowup", QUADRATIC_BLOWUP
    yield "xxe", xxe("file:///etc/passwd")


@pytest.mark.parametrize(("name", "data"), list(_mutations()), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_bad_input_gets_the_same_reason_as_a_small_package(name: str, data: bytes) -> None:
    whole = outcome(parse_package, data)
    for piece in (7, 4096, 1 << 20):
        assert outcome(stream, data, piece) == whole, f"{name} fed {piece} bytes at a time"


def test_attachments_are_hashed_as_they_stream() -> None:
    data = _zip_and_plain()
    whole = parse_package(data).package
    streamed = stream(data, 65536).package
    assert isinstance(whole, EdocPackage) and isinstance(streamed, EdocPackage)
    assert [(a.sha256, a.size, a.zip_wrapped, a.file_name, a.file_size, a.file_sha256)
            for a in streamed.attachments] == [
        (a.sha256, a.size, a.zip_wrapped, a.file_name, a.file_size, a.file_sha256)
        for a in whole.attachments]
    assert all(a.data == b"" for a in streamed.attachments)


def test_memory_does_not_grow_with_the_attachment() -> None:
    """64 MiB of attachment streamed through in 1 MiB pieces: Python's peak stays a few
    MiB (the pieces and the skeleton), far below the attachment."""
    placeholder = b"TEFSR0UtUEFZTE9BRC1IRVJF"  # base64 of LARGE-PAYLOAD-HERE
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"], attachment=b"LARGE-PAYLOAD-HERE")
    head, _, tail = body.partition(placeholder)
    v = StreamingValidator(limits=ParseLimits(), open_spool=_spool)
    tracemalloc.start()
    v.feed(head)
    block = 3 * 256 * 1024
    blocks = 64 * 1024 * 1024 // block
    for _ in range(blocks):
        v.feed(base64.b64encode(os.urandom(block)))
    v.feed(tail)
    parsed = v.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert isinstance(parsed.package, EdocPackage)
    assert parsed.package.attachments[0].size == blocks * block
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1024 / 1024:.1f} MiB"


def test_text_outside_attachments_is_bounded() -> None:
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"])
    end = body.index(b"</", body.index(b"Subject"))
    huge = body[:end] + b"x" * (9 * 1024 * 1024) + body[end:]
    with pytest.raises(PackageRejected) as refused:
        stream(huge, 1 << 20)
    assert refused.value.reason is Reason.XML_TOO_COMPLEX


def test_a_zip_declared_payload_that_is_no_zip_is_refused() -> None:
    _, body = edoc("000.00.00.G22", ["000.00.00.H41"], attachment=b"not a zip at all")
    data = body.replace(b"application/pdf", b"application/zip")
    assert outcome(stream, data, 4096) == outcome(parse_package, data) == \
        Reason.ATTACHMENT_BAD_ZIP
