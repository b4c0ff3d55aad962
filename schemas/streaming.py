"""Validating a large edXML package as it streams by, in bounded memory.

:class:`StreamingValidator` is fed the package's bytes in pieces (``feed``) and, at the end
(``close``), gives the same :class:`~schemas.parser.ParsedPackage` — or raises the same
:class:`~schemas.reasons.PackageRejected` with the same reason — as
:func:`schemas.parser.parse_package` would on the whole file, without ever holding an
attachment whole:

* lxml's feed parser from ``schemas.safe_xml`` (no DTD, no entities, no network), driving a
  parser *target*, so text arrives in pieces and no tree of the whole file is built;
* everything but attachment payloads goes into a small *skeleton* tree (bounded: depth,
  element count and text outside payloads); each payload (``Attachment/
  ContentTransferEncoded``) is base64-decoded and SHA-256-hashed as it streams, and only
  its index stays in the skeleton;
* a payload that starts like a ZIP (``PK``) is also written to a spool the caller provides
  (a file object: this module does no I/O), so the ZIP checks read it back entry by entry;
* the skeleton then goes through the parser's own rules (``parse_streamed_tree``): the
  manifest ↔ attachment checks and every reason code are the small packages' ones.

A DOCTYPE or any markup declaration is refused (``FORBIDDEN_XML_CONSTRUCT``) as in
``parse_package``. The caller bounds the total size.
"""

from __future__ import annotations

import binascii
import datetime as _dt
import hashlib
import re
from collections.abc import Callable
from typing import Any, BinaryIO

from lxml import etree

from schemas.model import EDXML_NS
from schemas.parser import (
    ParsedPackage,
    ParseLimits,
    StreamedPayload,
    parse_streamed_tree,
)
from schemas.reasons import PackageRejected, Reason
from schemas.safe_xml import hardened_feed_parser

__all__ = ["MAX_SKELETON_TEXT", "StreamingValidator"]

#: characters of text outside attachment payloads a large package may hold (its headers,
#: manifest, names: a few KiB in practice)
MAX_SKELETON_TEXT = 8 * 1024 * 1024
_DRAIN_AT = 1 << 16  # base64 characters decoded at a time
_NSP = "{" + EDXML_NS + "}"
_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)
_WHITESPACE = b" \t\r\n"


def _local(tag: object) -> str | None:
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        return tag[len(_NSP):] if tag.startswith(_NSP) else None
    return tag


class _Payload:
    """One attachment payload: base64 text in, size and SHA-256 of the decoded bytes out."""

    __slots__ = ("_buf", "_decoded", "_digest", "_ended", "_open_spool", "out")

    def __init__(self, open_spool: Callable[[], BinaryIO] | None) -> None:
        self.out = StreamedPayload()
        self._buf = bytearray()
        self._digest = hashlib.sha256()
        self._ended = False  # padding seen: nothing may follow
        self._decoded = False  # bytes decoded yet (the first ones decide the spool)
        self._open_spool = open_spool

    def feed(self, text: str) -> None:
        if self.out.bad_encoding:
            return
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            self.out.empty = False
            self.out.bad_encoding = True
            return
        raw = raw.translate(None, _WHITESPACE)
        if raw:  # only whitespace so far is an empty payload (ATTACHMENT_MISSING)
            self.out.empty = False
        self._buf += raw
        if len(self._buf) >= _DRAIN_AT:
            self._drain(final=False)

    def _drain(self, *, final: bool) -> None:
        n = len(self._buf) if final else len(self._buf) // 4 * 4
        if n == 0 or self.out.bad_encoding:
            return
        segment = bytes(self._buf[:n])
        del self._buf[:n]
        if self._ended or n % 4:
            self.out.bad_encoding = True
            return
        try:
            data = binascii.a2b_base64(segment, strict_mode=True)
        except binascii.Error:
            self.out.bad_encoding = True
            return
        if segment.endswith(b"="):
            self._ended = True
        if not self._decoded:
            self._decoded = True
            if data.startswith(b"PK") and self._open_spool is not None:
                self.out.spool = self._open_spool()
        self._digest.update(data)
        self.out.size += len(data)
        if self.out.spool is not None:
            self.out.spool.write(data)

    def finish(self) -> StreamedPayload:
        self._drain(final=True)
        self.out.sha256 = self._digest.hexdigest()
        return self.out


class _Target:
    """lxml parser target: builds the skeleton, streams payloads through :class:`_Payload`."""

    def __init__(self, limits: ParseLimits, open_spool: Callable[[], BinaryIO] | None) -> None:
        self._builder = etree.TreeBuilder()
        self._limits = limits
        self._open_spool = open_spool
        self._path: list[str | None] = []
        self._elements = 0
        self._text = 0
        self._payload: _Payload | None = None
        self._level = 0  # depth of the open payload element
        self.payloads: list[StreamedPayload] = []
        self.refused: PackageRejected | None = None

    def _refuse(self, reason: Reason, detail: str) -> None:
        if self.refused is None:
            self.refused = PackageRejected(reason, detail)
        raise self.refused

    def start(self, tag: str, attrib: dict[str, str],
              nsmap: dict[str | None, str] | None = None) -> None:
        self._elements += 1
        if self._elements > self._limits.max_elements:
            self._refuse(Reason.XML_TOO_COMPLEX,
                         f"more than {self._limits.max_elements} elements")
        if len(self._path) >= self._limits.max_depth:
            self._refuse(Reason.XML_TOO_COMPLEX,
                         f"elements nested deeper than {self._limits.max_depth} levels")
        name = _local(tag)
        parent = self._path[-1] if self._path else None
        grand = self._path[-2] if len(self._path) > 1 else None
        self._path.append(name)
        builder: Any = self._builder  # lxml-stubs lack TreeBuilder.start's nsmap
        if nsmap:  # lxml hands the default namespace as '', TreeBuilder wants None
            builder.start(tag, attrib, {k or None: v for k, v in nsmap.items()})
        else:
            builder.start(tag, attrib)
        if self._payload is not None:
            # markup inside a payload: base64 text holds none
            self._payload.out.bad_encoding = True
        elif (name == "ContentTransferEncoded" and parent == "Attachment"
              and grand == "AttachmentEncoded"):
            self._payload = _Payload(self._open_spool)
            self._level = len(self._path)
            self._builder.data(str(len(self.payloads)))

    def end(self, tag: str) -> None:
        self._path.pop()
        if self._payload is not None and len(self._path) < self._level:
            self.payloads.append(self._payload.finish())
            self._payload = None
        self._builder.end(tag)

    def data(self, text: str) -> None:
        if self._payload is not None and len(self._path) == self._level:
            self._payload.feed(text)
            return
        self._text += len(text)
        if self._text > MAX_SKELETON_TEXT:
            self._refuse(Reason.XML_TOO_COMPLEX,
                         f"more than {MAX_SKELETON_TEXT} characters outside attachments")
        self._builder.data(text)

    def doctype(self, *args: Any) -> None:
        self._refuse(Reason.FORBIDDEN_XML_CONSTRUCT, "a DOCTYPE is present")

    def close(self) -> etree._Element:
        root: etree._Element = self._builder.close()
        return root


class StreamingValidator:
    """Feed a package's bytes in order, then ``close()`` for its :class:`ParsedPackage`
    (raises :class:`PackageRejected`, from ``feed`` or ``close``, like ``parse_package``).

    ``open_spool`` returns a new empty binary file (e.g. ``tempfile.TemporaryFile``) for a
    payload that starts like a ZIP; the caller closes them (``spools``) when done."""

    def __init__(self, *, limits: ParseLimits,
                 open_spool: Callable[[], BinaryIO] | None = None,
                 today: _dt.date | None = None) -> None:
        self._limits = limits
        self._today = today
        self._target = _Target(limits, open_spool)
        self._parser = hardened_feed_parser(self._target)
        self._tail = b""
        self._size = 0
        self._blank = True

    @property
    def spools(self) -> list[BinaryIO]:
        return [p.spool for p in self._target.payloads if p.spool is not None]

    def feed(self, data: bytes) -> None:
        if self._target.refused is not None:  # refused already: the parser has stopped
            raise self._target.refused
        self._size += len(data)
        if self._blank and data.strip():
            self._blank = False
        window = self._tail + data
        if b"<!" in window and _DECLARATION.search(window) is not None:
            raise PackageRejected(Reason.FORBIDDEN_XML_CONSTRUCT,
                                  "a DOCTYPE or markup declaration is present")
        self._tail = data[-16:]
        try:
            self._parser.feed(data)
        except PackageRejected:
            raise
        except (etree.XMLSyntaxError, ValueError) as exc:
            raise self._failure(exc) from None
        if self._target.refused is not None:
            raise self._target.refused

    def _failure(self, exc: Exception) -> PackageRejected:
        """What a parser error means: the target's own refusal when it made one (the
        parser stops and reports its own error after a target raises), else by its text."""
        if self._target.refused is not None:
            return self._target.refused
        if isinstance(exc, etree.XMLSyntaxError):
            return _syntax(exc)
        # e.g. a namespace prefix lxml cannot build
        return PackageRejected(Reason.MALFORMED_XML, str(exc)[:200])

    def close(self) -> ParsedPackage:
        if self._blank:
            raise PackageRejected(Reason.EMPTY_PACKAGE)
        if self._target.refused is not None:
            raise self._target.refused
        try:
            root = self._parser.close()
        except PackageRejected:
            raise
        except (etree.XMLSyntaxError, ValueError) as exc:
            raise self._failure(exc) from None
        if self._target.refused is not None:
            raise self._target.refused
        return parse_streamed_tree(root, self._target.payloads, limits=self._limits,
                                   today=self._today)


def _syntax(exc: etree.XMLSyntaxError) -> PackageRejected:
    first = (str(exc).splitlines() or ["not XML"])[0][:300]
    lowered = first.lower()
    if "depth" in lowered:
        return PackageRejected(Reason.XML_TOO_COMPLEX, first)
    if "entity" in lowered:
        return PackageRejected(Reason.FORBIDDEN_XML_CONSTRUCT, first)
    return PackageRejected(Reason.MALFORMED_XML, first)
