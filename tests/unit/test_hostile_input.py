"""Hostile input: entity expansion, external entities, deep nesting, huge files."""

from __future__ import annotations

import gc
import http.server
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from schemas import PackageRejected, ParseLimits, Reason, parse_package
from schemas.profile import validate_against_xsd
from tests import packages

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n'
    b"<!DOCTYPE edXML [\n"
    b' <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]>\n"
    b'<edXML xmlns="' + NS.encode() + b'">&lol9;</edXML>\n'
)

QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY a "' + b"x" * 50_000 + b'">]>'
    b'<edXML xmlns="' + NS.encode() + b'">' + b"&a;" * 20_000 + b"</edXML>"
)


def xxe(url: str) -> bytes:
    return (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "' + url.encode() + b'">]>\n'
        b'<edXML xmlns="' + NS.encode() + b'"><edXMLEnvelope>&xxe;</edXMLEnvelope></edXML>'
    )


def refuse(data: bytes, **kw: object) -> PackageRejected:
    with pytest.raises(PackageRejected) as info:
        parse_package(data, **kw)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize(
    "data",
    [BILLION_LAUGHS, QUADRATIC_BLOWUP, BILLION_LAUGHS.decode().encode("utf-16")],
    ids=["billion-laughs", "quadratic-blowup", "billion-laughs-utf16"],
)
def test_entity_expansion_is_refused_fast_and_small(data: bytes) -> None:
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    started = time.perf_counter()
    exc = refuse(data)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    print(
        f"\n{len(data)} bytes refused as {exc.reason.name} in {elapsed * 1000:.2f} ms, "
        f"python peak {peak / 1024:.0f} KiB, peak RSS growth {rss_growth_kib} KiB"
    )
    assert exc.reason is Reason.FORBIDDEN_XML_CONSTRUCT
    assert elapsed < 0.5
    assert peak < 2 * 1024 * 1024 + 4 * len(data)
    assert rss_growth_kib < 20 * 1024


_RSS_PROBE = """
import resource, sys
from schemas import PackageRejected, parse_package
data = sys.stdin.buffer.read()
try:
    parse_package(b"<x/>")
except PackageRejected:
    pass
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(50):
    try:
        parse_package(data)
    except PackageRejected as exc:
        reason = exc.reason.name
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(reason, before, after)
"""


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_billion_laughs_peak_rss_in_a_fresh_process(encoding: str) -> None:
    """Peak RSS of a fresh interpreter rejecting billion laughs 50 times (libxml2's own
    allocations included, which tracemalloc cannot see)."""
    data = BILLION_LAUGHS.decode().encode(encoding)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.decode()
    reason, before, after = out.split()
    growth_kib = int(after) - int(before)
    print(
        f"\n{encoding} billion laughs: peak RSS {int(after) / 1024:.1f} MiB, "
        f"growth while rejecting {growth_kib} KiB"
    )
    assert reason == "FORBIDDEN_XML_CONSTRUCT"
    assert growth_kib < 5 * 1024


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"leaked")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_http() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.hits.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/secret"
    finally:
        server.shutdown()
        server.server_close()


def test_xxe_file_is_refused() -> None:
    exc = refuse(xxe("file:///etc/passwd"))
    assert exc.reason is Reason.FORBIDDEN_XML_CONSTRUCT
    assert "root:" not in str(exc)


def test_xxe_network_is_refused_without_a_request(local_http: str) -> None:
    for url in ("http://127.0.0.1:9/", local_http):
        started = time.perf_counter()
        exc = refuse(xxe(url))
        assert exc.reason is Reason.FORBIDDEN_XML_CONSTRUCT
        assert time.perf_counter() - started < 0.5
    # the same file in UTF-16 hides the DOCTYPE from a byte scan: lxml must still not fetch
    exc = refuse(xxe(local_http).decode().encode("utf-16"))
    assert exc.reason is Reason.FORBIDDEN_XML_CONSTRUCT
    assert _Recorder.hits == []


def test_external_dtd_and_parameter_entities_are_refused(local_http: str) -> None:
    for data in (
        b'<!DOCTYPE edXML SYSTEM "' + local_http.encode() + b'"><edXML/>',
        b'<!DOCTYPE edXML [<!ENTITY % p SYSTEM "' + local_http.encode() + b'"> %p;]><edXML/>',
        b"<!doctype edXML><edXML/>",
    ):
        assert refuse(data).reason is Reason.FORBIDDEN_XML_CONSTRUCT
    assert _Recorder.hits == []


def test_xsd_validation_is_as_safe() -> None:
    (error,) = validate_against_xsd(BILLION_LAUGHS)
    assert error.startswith("FORBIDDEN_XML_CONSTRUCT")


def _nested(depth: int) -> bytes:
    return (
        b'<edXML xmlns="'
        + NS.encode()
        + b'">'
        + b"<a>" * depth
        + b"x"
        + b"</a>" * depth
        + b"</edXML>"
    )


@pytest.mark.parametrize("depth", [70, 255, 5000, 100_000])
def test_deep_nesting_is_too_complex(depth: int) -> None:
    started = time.perf_counter()
    assert refuse(_nested(depth)).reason is Reason.XML_TOO_COMPLEX
    assert time.perf_counter() - started < 1


def test_nesting_within_the_limit_is_not_refused_for_depth() -> None:
    # 60 levels is fine for the depth check; the package is refused later for not being edXML
    assert refuse(_nested(60)).reason is Reason.NOT_EDXML


def test_too_many_elements() -> None:
    data = b'<edXML xmlns="' + NS.encode() + b'">' + b"<a/>" * 300_000 + b"</edXML>"
    assert refuse(data).reason is Reason.XML_TOO_COMPLEX


def test_huge_input_is_refused_before_parsing() -> None:
    limit = ParseLimits().max_bytes
    data = b"<" * (limit + 1)  # would be MALFORMED_XML if it were parsed at all
    started = time.perf_counter()
    assert refuse(data).reason is Reason.PACKAGE_TOO_LARGE
    assert time.perf_counter() - started < 0.1


def test_large_legitimate_attachment_is_parsed() -> None:
    """A 12 MB attachment is a 16 MB text node, over libxml2's default 10 MB limit."""
    import base64

    payload = bytes(range(256)) * (12 * 1024 * 1024 // 256)
    sample = packages.package(packages.REAL)
    start = sample.index(b"JVBERi0x")
    end = sample.index(b"</edXML:ContentTransferEncoded>", start)
    data = sample[:start] + base64.b64encode(payload) + sample[end:]
    result = parse_package(data)
    assert result.package.attachments[0].size == len(payload)  # type: ignore[union-attr]
