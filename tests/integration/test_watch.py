"""``lienthong watch``: document software that only handles files sends and receives through
a folder; restarts, kill -9 included, lose and double nothing (issue #13, item 6)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters.watch import message_id_for, watch
from router.directory.registry import AgencyRow
from schemas import StatusCode, parse_package
from tests.factory import edoc, status
from tests.hub import Hub

REPO = Path(__file__).resolve().parents[2]
NGHEAN = "000.00.00.H41"
VPCP = "000.00.00.G22"


async def _setup(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[VPCP])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([
        AgencyRow(VPCP, "Văn phòng Chính phủ", aliases=("G22",)),
        AgencyRow(NGHEAN, "UBND tỉnh Nghệ An", aliases=("H41",)),
    ])


def _drop(folder: Path, name: str, body: bytes) -> None:
    """What document software does: write under a temp name, then rename."""
    tmp = folder / "outbox" / f".{name}.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, folder / "outbox" / name)


async def _until(check: Any, what: str, seconds: float = 60.0,
                 report: Any = None) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, \
            f"timed out waiting for {what}" + (f"\n{report()}" if report else "")
        await asyncio.sleep(0.1)


def _names(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(suffix)) \
        if folder.exists() else []


async def test_outbox_sent_failed_and_inbox(hub: Hub, tmp_path: Path) -> None:
    await _setup(hub)
    await hub.start_router()
    root = tmp_path / "vb"
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(hub.gateway_url("lgsp-nghean"), "lgsp-nghean", root,
                                        poll=0.1, stop=stop))
    await _until(lambda: (root / "outbox").is_dir(), "the watch folder")
    try:
        # a document from VPCP arrives in the inbox, with its metadata
        async with hub.client("vpcp") as vpcp:
            doc, body = edoc(VPCP, [NGHEAN])
            assert (await vpcp.send(body)).type == "accepted"  # type: ignore[union-attr]
            arrived = await _until(lambda: _names(root / "inbox", ".edxml"), "the copy")
            package = root / "inbox" / arrived[0]
            assert package.read_bytes() == body
            meta = json.loads(package.with_suffix(".json").read_text("utf-8"))
            assert meta["kind"] == "edoc" and meta["sender"] == VPCP
            assert meta["document_id"] == doc.document_id and meta["hub_id"]

            # the agency answers it (a status file), sends a document, a broken file,
            # a document to nobody; a file still being written is left alone
            _, answer = status(NGHEAN, doc, StatusCode.ARRIVED)
            _drop(root, "tra-loi.xml", answer)
            mine, body2 = edoc(NGHEAN, [VPCP])
            _drop(root, "cong-van.edxml", body2)
            _drop(root, "hong.edxml", b"<not-edxml/>")
            _drop(root, "nham.edxml", edoc(NGHEAN, ["000.00.00.G99"])[1])
            (root / "outbox" / "dang-viet.edxml.part").write_bytes(b"<half")
            _drop(root, "cong-van-lan-2.edxml", body2)  # the same bytes again

            await _until(lambda: len(_names(root / "sent", ".receipt.json")) == 3
                         and len(_names(root / "failed", ".reason.json")) == 2,
                         "three files sent and two failed")
            assert _names(root / "outbox", "") == ["dang-viet.edxml.part"]
            twice = json.loads((root / "sent" / "cong-van-lan-2.edxml.receipt.json").read_text())
            first = json.loads((root / "sent" / "cong-van.edxml.receipt.json").read_text())
            assert twice["receipt"]["hub_id"] == first["receipt"]["hub_id"]  # routed once
            assert _names(root / "sent", ".xml") == ["tra-loi.xml"]
            receipt = json.loads((root / "sent" / "cong-van.edxml.receipt.json").read_text())
            assert receipt["receipt"]["type"] == "accepted"
            assert receipt["receipt"]["document_id"] == mine.document_id
            bad = json.loads((root / "failed" / "hong.edxml.reason.json").read_text())
            assert bad["reason"]["reason"] in ("NOT_EDXML", "MALFORMED_XML")
            assert bad["reason"]["message_vi"] and bad["reason"]["message_en"]
            assert bad["may_retry"] is False
            nobody = json.loads((root / "failed" / "nham.edxml.reason.json").read_text())
            assert nobody["reason"]["reason"] == "RECIPIENT_UNKNOWN"  # the hub's answer
            assert nobody["receipt"]["type"] == "rejected"

            # VPCP gets both; its status answer comes back into the folder's inbox
            got: list[Any] = []
            async for m in vpcp.inbox(timeout=20):
                got.append(m)
                await m.ack()
                if len(got) == 2:
                    break
            assert sorted(m.kind for m in got) == ["edoc", "status"]
            incoming = next(m for m in got if m.kind == "edoc")
            done = await vpcp.send_status(sender=doc.sender, about=incoming,
                                          code=StatusCode.ACCEPTED)
            assert done is not None and done.type == "accepted"
            await _until(lambda: len(_names(root / "inbox", ".edxml")) == 2, "the status")
            metas = [json.loads((root / "inbox" / n).read_text())
                     for n in _names(root / "inbox", ".json")]
            assert sorted(m["kind"] for m in metas) == ["edoc", "status"]
            st = next(m for m in metas if m["kind"] == "status")
            assert st["status_code"] == "03"
            # the hub's later news about the sent document, kept as JSON
            await _until(lambda: _names(root / "receipts", ".json"), "a delivery event")
    finally:
        stop.set()
        await watcher
    leftovers = [p for p in (root / "inbox").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def _log(root: Path) -> Path:
    return root.parent / "watchers.log"


def _said(root: Path) -> str:
    """The end of what the watcher processes wrote on stderr."""
    log = _log(root)
    return log.read_text("utf-8", "replace")[-4000:] if log.exists() else "(nothing)"


@contextmanager
def _watcher(url: str, root: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "LIENTHONG_GATEWAY_URL": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "watch", "--gateway", "lgsp-nghean", "--dir",
         str(root), "--poll", "0.05"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
        stderr=_log(root).open("ab"))  # what the watchers said, for a failure's message
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_kill_9_mid_flow_loses_and_doubles_nothing(hub: Hub, tmp_path: Path) -> None:
    n, n_in = 40, 150
    await _setup(hub)
    await hub.start_router()
    root = tmp_path / "vb"
    for d in ("outbox", "inbox"):
        (root / d).mkdir(parents=True)
    ours = [edoc(NGHEAN, [VPCP]) for _ in range(n)]
    for i, (_, body) in enumerate(ours):
        _drop(root, f"cv-{i:03}.edxml", body)
    theirs = [edoc(VPCP, [NGHEAN]) for _ in range(n_in)]
    async with hub.client("vpcp") as vpcp:
        for _, body in theirs:
            await vpcp.send(body, wait=False)

    url = hub.gateway_url("lgsp-nghean")
    kills: list[tuple[int, int]] = []
    for _ in range(2):  # killed twice mid-flow, each time after some progress
        sent, received = (len(_names(root / "sent", ".edxml")),
                          len(_names(root / "inbox", ".edxml")))
        with _watcher(url, root) as proc:
            await _until(lambda s=sent, r=received:
                         len(_names(root / "sent", ".edxml")) >= s + 3
                         and len(_names(root / "inbox", ".edxml")) >= r + 3,
                         "the flow to go on", report=lambda: _said(root))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        kills.append((len(_names(root / "sent", ".edxml")),
                      len(_names(root / "inbox", ".edxml"))))
    sent_before, received_before = kills[0]
    assert sent_before < n and received_before < n_in, "killed too late to test anything"

    with _watcher(url, root):
        await _until(lambda: len(_names(root / "sent", ".receipt.json")) == n
                     and len(_names(root / "inbox", ".edxml")) == n_in, "every file", 120)
        assert _names(root / "outbox", ".edxml") == []
        assert _names(root / "failed", "") == []

    # sent: each file once, each with a receipt naming its document; the hub routed each once
    receipts = [json.loads((root / "sent" / f).read_text())
                for f in _names(root / "sent", ".receipt.json")]
    assert sorted(r["file"] for r in receipts) == [f"cv-{i:03}.edxml" for i in range(n)]
    assert all(r["receipt"]["type"] in ("accepted", "duplicate") for r in receipts)
    assert {r["receipt"]["document_id"] for r in receipts} == {p.document_id for p, _ in ours}
    stored = await hub.pool.fetchval(
        "SELECT count(*) FROM documents WHERE sender_gateway_id = 'lgsp-nghean'")
    assert stored == n
    # inbox: each of VPCP's documents exactly once, complete
    ids = [parse_package((root / "inbox" / f).read_bytes()).package.document_id
           for f in _names(root / "inbox", ".edxml")]
    assert sorted(ids) == sorted(p.document_id for p, _ in theirs)
    assert len(_names(root / "inbox", ".json")) == n_in
    print("killed after " + ", then ".join(f"{a}/{n} sent and {b}/{n_in} received"
                                           for a, b in kills))


async def test_a_send_cut_off_before_its_receipt_is_sent_again_under_the_same_id(
    hub: Hub, tmp_path: Path
) -> None:
    await _setup(hub)
    await hub.start_router()
    root = tmp_path / "vb"
    (root / "outbox").mkdir(parents=True)
    cut, body = edoc(NGHEAN, [VPCP])
    # the watcher published this file, then died before the receipt came back
    async with hub.client("lgsp-nghean") as gw:
        await gw.send(body, message_id=message_id_for("lgsp-nghean", body), wait=False)
    # and this one got its receipt, journalled it, and died before moving the file
    _, body2 = edoc(NGHEAN, [VPCP])
    async with hub.client("lgsp-nghean") as gw:
        first = await gw.send(body2, message_id=message_id_for("lgsp-nghean", body2))
    assert first is not None and first.type == "accepted"
    journal = root / ".lienthong" / "sent"
    journal.mkdir(parents=True)
    (journal / f"{message_id_for('lgsp-nghean', body2)}.json").write_text(json.dumps(
        {"sent": True, "sidecar": {"file": "b.edxml", "message_id":
                                   message_id_for("lgsp-nghean", body2),
                                   "receipt": first.as_dict()}}))
    _drop(root, "a.edxml", body)
    _drop(root, "b.edxml", body2)

    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(hub.gateway_url("lgsp-nghean"), "lgsp-nghean", root,
                                        poll=0.1, stop=stop))
    try:
        await _until(lambda: len(_names(root / "sent", ".receipt.json")) == 2, "both moved")
    finally:
        stop.set()
        await watcher
    a = json.loads((root / "sent" / "a.edxml.receipt.json").read_text())
    assert a["message_id"] == message_id_for("lgsp-nghean", body)
    # the same message again: the hub resumes it and answers with its original receipt
    assert a["receipt"]["type"] == "accepted"
    assert a["receipt"]["document_id"] == cut.document_id
    hub_id = await hub.pool.fetchval(
        "SELECT hub_id FROM documents WHERE edxml_document_id = $1", cut.document_id)
    assert a["receipt"]["hub_id"] == str(hub_id)
    copies = await hub.pool.fetchval("SELECT count(*) FROM deliveries WHERE hub_id = $1",
                                     hub_id)
    assert copies == 1  # routed once, not twice
    b = json.loads((root / "sent" / "b.edxml.receipt.json").read_text())
    assert b["receipt"] == first.as_dict()  # the original receipt, not asked again
    assert list(journal.iterdir()) == []
    stored = await hub.pool.fetchval(
        "SELECT count(*) FROM documents WHERE sender_gateway_id = 'lgsp-nghean'")
    assert stored == 2


async def test_a_hundred_files_each_way_through_the_folder(hub: Hub, tmp_path: Path) -> None:
    """Every file goes through once; prints the rate (files/s) for the README's figures."""
    n = 100
    await _setup(hub)
    await hub.start_router()
    root = tmp_path / "vb"
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(hub.gateway_url("lgsp-nghean"), "lgsp-nghean", root,
                                        poll=0.05, stop=stop))
    await _until(lambda: (root / "outbox").is_dir(), "the watch folder")
    try:
        bodies = [edoc(NGHEAN, [VPCP])[1] for _ in range(n)]
        started = time.monotonic()
        for i, body in enumerate(bodies):
            _drop(root, f"cv-{i:03}.edxml", body)
        await _until(lambda: len(_names(root / "sent", ".receipt.json")) == n, "sent", 120)
        sending = time.monotonic() - started
        async with hub.client("vpcp") as vpcp:
            theirs = [edoc(VPCP, [NGHEAN])[1] for _ in range(n)]
            started = time.monotonic()
            for body in theirs:
                await vpcp.send(body, wait=False)
            await _until(lambda: len(_names(root / "inbox", ".edxml")) == n, "received", 120)
            receiving = time.monotonic() - started
    finally:
        stop.set()
        await watcher
    print(f"watch folder: {n} files sent in {sending:.2f} s ({n / sending:.0f}/s), "
          f"{n} received in {receiving:.2f} s ({n / receiving:.0f}/s)")


async def test_a_file_waits_in_the_outbox_while_no_router_answers(
    hub: Hub, tmp_path: Path
) -> None:
    from tests.hub import queue_depth

    await _setup(hub)  # no router yet
    root = tmp_path / "vb"
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(hub.gateway_url("lgsp-nghean"), "lgsp-nghean", root,
                                        poll=0.1, receipt_timeout=0.5, stop=stop))
    try:
        await _until(lambda: (root / "outbox").is_dir(), "the watch folder")
        doc, body = edoc(NGHEAN, [VPCP])
        _drop(root, "cho.edxml", body)
        deadline = time.monotonic() + 30
        # sent, unanswered, sent again (waiting in the gateway's intake queue)
        while await queue_depth(hub, "lt.router.in.lgsp-nghean") < 2:
            assert time.monotonic() < deadline, "the watcher never sent the file"
            await asyncio.sleep(0.1)
        assert _names(root / "outbox", "") == ["cho.edxml"]  # neither sent nor failed
        assert _names(root / "failed", "") == []
        await hub.start_router()
        await _until(lambda: _names(root / "sent", ".receipt.json"), "the receipt")
    finally:
        stop.set()
        await watcher
    r = json.loads((root / "sent" / "cho.edxml.receipt.json").read_text())
    # the copies that waited together: one accepted, the others duplicates of it
    assert r["receipt"]["type"] in ("accepted", "duplicate")
    hub_id = await hub.pool.fetchval(
        "SELECT hub_id FROM documents WHERE edxml_document_id = $1", doc.document_id)
    assert r["receipt"]["hub_id"] == str(hub_id)
    stored = await hub.pool.fetchval(
        "SELECT count(*) FROM deliveries d JOIN documents doc ON doc.hub_id = d.hub_id "
        "WHERE doc.sender_gateway_id = 'lgsp-nghean'")
    assert stored == 1  # published several times, routed once
