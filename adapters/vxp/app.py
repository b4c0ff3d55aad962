"""The VXP HTTP API (the current axis's gateway API) served by lienthong's façade.

``{endpoint}/{operation}``, every parameter an ``XroadVnpt-*`` header, every answer a JSON
envelope (see :mod:`adapters.vxp.envelope`). The façade is gateway-side software: it speaks
to the hub only over AMQP, as each system's gateway, through :class:`adapters.GatewayClient`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiormq
import structlog
from aiohttp import web

from adapters.errors import FetchCorrupt, HubRefused
from adapters.refusals import refused_sender
from adapters.transfer import LARGE_THRESHOLD, MAX_LARGE_BYTES, scan_file
from adapters.vxp import auth
from adapters.vxp.body import Spooled, read_file, read_json
from adapters.vxp.budget import ByteBudget
from adapters.vxp.directory import VxpDirectory
from adapters.vxp.envelope import CONTENT_TYPE, VxpFailure, fail_body, ok_body
from adapters.vxp.mailbox import GatewayLink, GatewayLinks
from adapters.vxp.openapi import openapi_document
from adapters.vxp.store import MailboxRow, Store, System
from schemas import EdocPackage, ParsedPackage, parse_package, wire_names
from schemas.reasons import PackageRejected, Reason
from schemas.receipt import Receipt

__all__ = ["VxpConfig", "build_app"]

log = structlog.get_logger("lienthong.vxp")

VIETNAM = timezone(timedelta(hours=7))
DOWNLOAD_CHUNK = 3 * 64 * 1024  # a multiple of 3: base64 pieces join without padding
CHUNK = 64 * 1024  # the read buffer of a spooled body
BODY_SLACK = 64 * 1024  # multipart headers, the SDK's trailing CRLF
MAX_PAGE = 1000
AGENCY_BODY_MAX = 64 * 1024  # registerAgency's JSON: a few fields
STATES = {"processing", "done", "fail"}
STATE_DESC = {
    "new": "Chưa nhận / Not yet taken",
    "processing": "Đang xử lý / Processing",
    "fail": "Nhận lỗi / Failed at the receiver",
    "done": "Đã nhận / Done",
}


@dataclass(frozen=True, slots=True)
class VxpConfig:
    max_package_bytes: int = 30 * 1024 * 1024
    # bodies over min(large_threshold, max_package_bytes) are spooled to a temporary file
    # (in spool_dir; None: the system's) and sent as large packages, up to max_large_bytes
    large_threshold: int = LARGE_THRESHOLD
    max_large_bytes: int = MAX_LARGE_BYTES
    spool_dir: str | None = None
    timestamp_window_seconds: float = 300.0
    # request bodies held at once (sendEdoc); a request waits up to body_wait_seconds for room
    max_inflight_bytes: int = 4 * 30 * 1024 * 1024
    body_wait_seconds: float = 30.0
    # the directory mirror (a SQLite file, or in memory) and how often it asks for changes
    directory_path: str = ":memory:"
    directory_sync_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: its system and its verified parameters."""

    system: System
    params: dict[str, str]

    def param(self, *names: str) -> str | None:
        for name in names:
            value = self.params.get(name.lower())
            if value is not None:
                return value
        return None


Handler = Callable[["VxpApi", web.Request, Caller], Awaitable[web.StreamResponse]]


def _answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type=CONTENT_TYPE)


def _time(at: datetime) -> str:
    return at.astimezone(VIETNAM).strftime("%Y-%m-%d %H:%M:%S")


def _hub_failure(receipt: Receipt) -> VxpFailure:
    r = receipt.reason or {}
    try:
        reason = Reason[str(r.get("reason"))]
    except KeyError:
        reason = Reason.PROCESSING_ERROR
    return VxpFailure(
        reason, str(r.get("detail") or ""),
        axis_code=int(r.get("axis_code") or reason.axis_code or 21),
        message_vi=r.get("message_vi"), message_en=r.get("message_en"),
    )


class VxpApi:
    def __init__(self, store: Store, links: GatewayLinks, config: VxpConfig) -> None:
        self.store = store
        self.links = links
        self.config = config
        self.budget = ByteBudget(config.max_inflight_bytes)
        self.directory = VxpDirectory(config.directory_path,
                                      interval=config.directory_sync_seconds)

    # authentication -------------------------------------------------------------------
    async def authenticate(self, request: web.Request) -> Caller:
        headers = auth.lower_headers(request.headers.items())
        signed = auth.read_signed(headers)
        system = await self.store.system(signed.system_id)
        if system is None:
            raise VxpFailure(Reason.VXP_UNKNOWN_SYSTEM, signed.system_id)
        params = auth.verify(signed, system.secret, headers)
        if system.strict:
            window = self.config.timestamp_window_seconds
            auth.check_fresh(params, datetime.now(UTC), window)
            if not await self.store.first_use(system.system_id, signed.mac, window):
                raise VxpFailure(Reason.VXP_REPLAY)
        self.links.kick(system.gateway_id)
        return Caller(system, params)

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        operation = request.match_info.get("tail", "").rstrip("/").rsplit("/", 1)[-1]
        if operation == "openapi.json":
            return _answer(json.dumps(openapi_document(), ensure_ascii=True).encode())
        try:
            handler = OPERATIONS.get(operation.lower(), VxpApi.unknown)
            caller = await self.authenticate(request)
            return await handler(self, request, caller)
        except PackageRejected as exc:
            failure = VxpFailure(exc.reason, exc.detail)
        except VxpFailure as exc:
            failure = exc
        except Exception:
            log.exception("vxp.request_failed", operation=operation)
            failure = VxpFailure(Reason.PROCESSING_ERROR)
        log.info("vxp.fail", operation=operation, reason=failure.reason.name,
                 detail=failure.detail)
        return _answer(fail_body(failure))

    # documents --------------------------------------------------------------------------
    @property
    def small_limit(self) -> int:
        """Bodies up to this go as one message, held in memory; larger ones are spooled
        to disk and go as large packages (as ``lienthong send`` and the watch folder)."""
        return min(self.config.large_threshold, self.config.max_package_bytes)

    async def send_edoc(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        small = self.small_limit
        length = request.content_length
        # a body announced larger than the small limit is spooled from its first byte:
        # only a read buffer is held for it
        held = CHUNK if length is not None and length > small + CHUNK else small
        size = min(length or held, held) + BODY_SLACK
        try:
            async with self.budget.reserve(size, wait=self.config.body_wait_seconds):
                return await self._send_edoc(request, caller)
        except TimeoutError:
            raise VxpFailure(Reason.VXP_BUSY) from None

    async def _send_edoc(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        link = await self.links.get(caller.system.gateway_id)
        # the same file from the same system is the same message: a retry after a lost
        # answer resumes it at the hub (same receipt, same DocId), never a second package;
        # a large one resumes its upload
        salt = caller.system.system_id.encode() + b"\0"
        got = await read_file(request, caller.param("hash-file"), small=self.small_limit,
                              limit=self.config.max_large_bytes, salt=salt,
                              spool_dir=self.config.spool_dir)
        if isinstance(got, Spooled):
            try:
                return await self._send_large(link, caller, got)
            finally:
                await asyncio.to_thread(got.remove)
        parsed = await asyncio.to_thread(parse_package, got)
        message_id = "vxp-" + hashlib.sha256(salt + got).hexdigest()
        kind = self._declared_kind(caller, parsed)
        receipt = await _submitted(parsed, link.client.send(
            got, message_id=message_id, validate=False,
            sender_code=parsed.package.sender.organ_id, kind=kind))
        return await self._sent(caller, receipt, message_id, parsed)

    async def _send_large(self, link: GatewayLink, caller: Caller,
                          spooled: Spooled) -> web.StreamResponse:
        """A spooled file: validated as it streams (the hub's own checks, off the event
        loop), then sent in chunks from the file (``GatewayClient.send_file``)."""
        _size, _sha, parsed = await asyncio.to_thread(
            scan_file, spooled.path, max_bytes=self.config.max_large_bytes)
        assert parsed is not None
        message_id = "vxp-" + spooled.salted_sha256
        kind = self._declared_kind(caller, parsed)
        receipt = await _submitted(parsed, link.client.send_file(
            spooled.path, message_id=message_id, validate=False,
            sender_code=parsed.package.sender.organ_id, kind=kind))
        return await self._sent(caller, receipt, message_id, parsed)

    @staticmethod
    def _declared_kind(caller: Caller, parsed: ParsedPackage) -> str:
        kind = parsed.package.kind
        declared = (caller.param("messagetype") or kind).lower()
        if declared != kind:
            raise VxpFailure(Reason.VXP_MESSAGE_TYPE_MISMATCH,
                             f"messagetype {declared}, package {kind}")
        return kind

    async def _sent(self, caller: Caller, receipt: Receipt, message_id: str,
                    parsed: ParsedPackage) -> web.StreamResponse:
        if receipt.type == "rejected":
            raise _hub_failure(receipt)
        pkg = parsed.package
        title = pkg.subject if isinstance(pkg, EdocPackage) else pkg.description
        notation = str(pkg.code) if isinstance(pkg, EdocPackage) else pkg.status_code.value
        await self.store.record_sent(caller.system.system_id, receipt, message_id, pkg.kind,
                                     title=title, notation=notation or None)
        return _answer(ok_body(DocId=receipt.hub_id or message_id, receipt=receipt.type,
                               warnings=list(receipt.warnings)))

    def _page(self, caller: Caller) -> tuple[int, int]:
        try:
            size = int(caller.param("pageSize") or MAX_PAGE)
            index = int(caller.param("pageIndex") or 1)
        except ValueError:
            raise VxpFailure(Reason.VXP_BAD_REQUEST, "pageSize/pageIndex") from None
        size = max(1, min(size, MAX_PAGE))
        return size, max(0, index - 1) * size

    def _kind(self, caller: Caller) -> str:
        kind = (caller.param("messagetype") or "edoc").lower()
        if kind not in ("edoc", "status"):
            raise VxpFailure(Reason.VXP_BAD_REQUEST, f"messagetype {kind}")
        return kind

    async def received_list(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        # `status`, `fromDate` and `toDate` are deliberately not filters here: the SDK never
        # clears its header map, so the `status: done` of the last updateStatus (or the dates
        # of a getSentEdocList) travel with the next list call and would hide documents
        size, offset = self._page(caller)
        rows = await self.store.pending(caller.system.gateway_id, self._kind(caller),
                                        limit=size, offset=offset)
        return _answer(ok_body(data=[_listed(r) for r in rows]))

    async def _entry(self, caller: Caller) -> MailboxRow:
        doc_id = caller.param("docId", "docid")
        if not doc_id:
            raise VxpFailure(Reason.VXP_BAD_REQUEST, "XroadVnpt-docId is missing")
        row = await self.store.entry(caller.system.gateway_id, doc_id)
        if row is None:
            raise VxpFailure(Reason.VXP_DOCUMENT_UNKNOWN, doc_id)
        return row

    async def get_edoc(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        row = await self._entry(caller)
        if row.large:
            return await self._stream_large(request, caller, row, base64_json=True)
        body = await self.store.body(caller.system.gateway_id, row.doc_id)
        if body is None:
            raise VxpFailure(Reason.VXP_DOCUMENT_UNKNOWN, row.doc_id)
        return _answer(ok_body(docId=row.doc_id, data=base64.b64encode(body).decode("ascii")))

    async def download_edoc(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        row = await self._entry(caller)
        if row.large:
            return await self._stream_large(request, caller, row, base64_json=False)
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = row.size
        await response.prepare(request)
        for start in range(0, row.size, DOWNLOAD_CHUNK):
            chunk = await self.store.body_chunk(caller.system.gateway_id, row.doc_id, start,
                                                DOWNLOAD_CHUNK)
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _stream_large(self, request: web.Request, caller: Caller, row: MailboxRow,
                            *, base64_json: bool) -> web.StreamResponse:
        """A large package's copy: fetched from the hub into a temporary file (every chunk
        and the whole file checked), then streamed from it a buffer at a time — the bytes
        (downloadEdoc) or getEdoc's JSON with the base64 written as it is read — and the
        file removed."""
        stored = await self.store.body(caller.system.gateway_id, row.doc_id)
        if stored is None:
            raise VxpFailure(Reason.VXP_DOCUMENT_UNKNOWN, row.doc_id)
        link = await self.links.get(caller.system.gateway_id)
        fd, name = tempfile.mkstemp(prefix="lienthong-vxp-", suffix=".edxml",
                                    dir=self.config.spool_dir)
        os.close(fd)
        path = Path(name)
        try:
            reference = json.loads(stored)
            try:
                await link.client.fetch_large(reference, path)
            except (FetchCorrupt, HubRefused) as exc:
                raise VxpFailure(exc.reason, exc.detail) from None
            except TimeoutError:
                raise VxpFailure(Reason.VXP_HUB_TIMEOUT) from None
            except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
                raise VxpFailure(Reason.VXP_GATEWAY_UNAVAILABLE, str(exc)) from None
            size = int(reference["size"])  # what the fetch checked
            if base64_json:
                head, tail = _json_around_data(row.doc_id)
                response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
                response.content_length = len(head) + 4 * ((size + 2) // 3) + len(tail)
            else:
                response = web.StreamResponse(
                    headers={"Content-Type": "application/octet-stream"})
                response.content_length = size
            await response.prepare(request)
            fh = await asyncio.to_thread(path.open, "rb")
            try:
                if base64_json:
                    await response.write(head)
                while block := await asyncio.to_thread(fh.read, DOWNLOAD_CHUNK):
                    await response.write(base64.b64encode(block) if base64_json else block)
                if base64_json:
                    await response.write(tail)
            finally:
                fh.close()
            await response.write_eof()
            return response
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def update_status(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        status = (caller.param("status") or "").lower()
        if status not in STATES:
            raise VxpFailure(Reason.VXP_BAD_STATUS, status or "(none)")
        row = await self._entry(caller)
        await self.store.set_state(caller.system.gateway_id, row.doc_id, status)
        return _answer(ok_body())

    async def count_edoc(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        return _answer(ok_body(count=await self.store.count_pending(
            caller.system.gateway_id, "edoc")))

    async def count_status(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        return _answer(ok_body(count=await self.store.count_pending(
            caller.system.gateway_id, "status")))

    async def unknown(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        raise VxpFailure(Reason.VXP_UNKNOWN_OPERATION, request.path)

    async def sent_list(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        size, offset = self._page(caller)
        rows = await self.store.sent_list(
            caller.system.system_id, hub_id=caller.param("docId", "docid") or None,
            since=_day(caller.param("fromDate")), until=_day(caller.param("toDate"), end=True),
            limit=size, offset=offset,
        )
        return _answer(ok_body(data=[_sent(r) for r in rows]))

    # agencies the gateway manages itself (when the hub's operators allow it) -----------
    async def _ask_hub(self, caller: Caller, key: str, body: dict[str, Any]) -> None:
        """One request to the hub as the caller's gateway; a refusal is a FAIL with the
        hub's reason."""
        link = await self.links.get(caller.system.gateway_id)
        try:
            await link.client.ask_hub(key, {**body, "by": f"vxp:{caller.system.system_id}"})
        except HubRefused as exc:
            raise VxpFailure(exc.reason, exc.detail) from None
        except TimeoutError:
            raise VxpFailure(Reason.VXP_HUB_TIMEOUT) from None
        except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
            raise VxpFailure(Reason.VXP_GATEWAY_UNAVAILABLE, str(exc)) from None
        self.directory.invalidate()  # the next directory answer asks the hub first

    async def register_agency(self, request: web.Request,
                              caller: Caller) -> web.StreamResponse:
        data = await read_json(request, AGENCY_BODY_MAX)
        fields = {k: data.get(k) for k in ("code", "name", "pcode")}
        for key, value in fields.items():
            if value is not None and not isinstance(value, str | int):
                raise VxpFailure(Reason.VXP_BAD_REQUEST, f"{key} is text")
        code, name = str(fields["code"] or "").strip(), str(fields["name"] or "").strip()
        if not code or not name:
            raise VxpFailure(Reason.VXP_BAD_REQUEST, "code and name are required")
        parent = str(fields["pcode"] or "").strip()
        await self._ask_hub(caller, wire_names.REGISTER_AGENCY_KEY, {
            "code": code, "name": name, "parent": None if parent in ("", "0") else parent})
        return _answer(ok_body())

    async def delete_agency(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        code = (caller.param("AgencyCode", "agency_code", "code") or "").strip()
        if not code:
            raise VxpFailure(Reason.VXP_BAD_REQUEST, "XroadVnpt-AgencyCode is missing")
        await self._ask_hub(caller, wire_names.DELETE_AGENCY_KEY, {"code": code})
        return _answer(ok_body())

    # directory ----------------------------------------------------------------------------
    async def _fresh_directory(self, caller: Caller) -> VxpDirectory:
        link = await self.links.get(caller.system.gateway_id)
        await self.directory.refresh(link.client)
        return self.directory

    async def agencies(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        directory = await self._fresh_directory(caller)
        return _answer(ok_body(data=directory.agencies()))

    async def agencies_qd20(self, request: web.Request, caller: Caller) -> web.StreamResponse:
        raw = (caller.param("level") or "").strip()
        if raw and not raw.isdigit():
            raise VxpFailure(Reason.VXP_BAD_REQUEST, f"level {raw!r}")
        directory = await self._fresh_directory(caller)
        return _answer(ok_body(data=directory.agencies_qd20(int(raw) if raw else None)))

    async def synchronize_unit(self, request: web.Request,
                               caller: Caller) -> web.StreamResponse:
        directory = await self._fresh_directory(caller)
        return _answer(ok_body(data=directory.synchronize_unit()))


def _json_around_data(doc_id: str) -> tuple[bytes, bytes]:
    """getEdoc's answer with its ``data`` left out: what comes before and after it."""
    whole = ok_body(docId=doc_id, data="")
    cut = whole.rindex(b'""')
    return whole[:cut + 1], whole[cut + 1:]


async def _submitted(parsed: ParsedPackage, sending: Awaitable[Receipt | None]) -> Receipt:
    """The hub's receipt for a package being sent; a FAIL when it could not be sent."""
    try:
        receipt = await sending
    except HubRefused as exc:  # a large package's upload refused by the hub
        raise VxpFailure(exc.reason, exc.detail) from None
    except TimeoutError:
        raise VxpFailure(Reason.VXP_HUB_TIMEOUT) from None
    except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
        sender = parsed.package.sender.organ_id
        if refused_sender(exc, sender):  # the gateway does not serve the sender's code
            raise VxpFailure(Reason.SENDER_NOT_SERVED, sender) from None
        raise VxpFailure(Reason.VXP_GATEWAY_UNAVAILABLE, str(exc)) from None
    assert receipt is not None
    return receipt


def _listed(r: MailboxRow) -> dict[str, object]:
    return {
        "docId": r.doc_id,
        "serviceType": "eDoc",
        "messageType": r.kind,
        "created_time": _time(r.received_at),
        "updated_time": _time(r.updated_at),
        "from": r.sender,
        "to": ",".join(r.recipients),
        "status": r.state,
        "status_desc": STATE_DESC.get(r.state, r.state),
        "documentId": r.document_id,
        "statusCode": r.status_code,
    }


RECEIVE_DESC = {
    "01": "Đã đến / Arrived", "02": "Từ chối / Refused", "03": "Đã tiếp nhận / Accepted",
    "04": "Đã phân công / Assigned", "05": "Đang xử lý / Processing",
    "06": "Đã hoàn thành / Done", "13": "Yêu cầu thu hồi / Recall requested",
    "15": "Đồng ý thu hồi / Recall agreed", "16": "Từ chối thu hồi / Recall refused",
}


def _day(text: str | None, *, end: bool = False) -> datetime | None:
    """``fromDate``/``toDate`` as clients send them: a day, Vietnam time; ``toDate``
    (``end``) includes its whole day."""
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d%m%Y"):
        try:
            day = datetime.strptime(text.strip(), fmt).replace(tzinfo=VIETNAM)
        except ValueError:
            continue
        return day + timedelta(days=1) if end else day
    raise VxpFailure(Reason.VXP_BAD_REQUEST, f"date {text!r}")


def _sent(r: dict[str, object]) -> dict[str, object]:
    state = str(r["state"] or "submitted")
    code = r["status_code"]
    received = r["received_at"]
    sent_at = r["sent_at"]
    assert isinstance(sent_at, datetime)
    return {
        "senderDocId": r["hub_id"],
        "receiverDocId": r["delivery_id"],
        "fromCode": r["sender"],
        "toCode": r["to_code"],
        "title": r["title"],
        "notation": r["notation"],
        "sentTime": _time(sent_at),
        "receivedTime": _time(received) if isinstance(received, datetime) else "",
        "sendStatus": state,
        "sendStatusDesc": state,
        "receiveStatus": code or "",
        "receiveStatusDesc": RECEIVE_DESC.get(str(code), "") if code else "",
        "messageType": r["kind"],
        "serviceType": "eDoc",
    }


OPERATIONS: dict[str, Handler] = {
    "sendedoc": VxpApi.send_edoc,
    "getreceivededoclist": VxpApi.received_list,
    "getedoc": VxpApi.get_edoc,
    "downloadedoc": VxpApi.download_edoc,
    "updatestatus": VxpApi.update_status,
    "countreceiveedoc": VxpApi.count_edoc,
    "countreceivestatus": VxpApi.count_status,
    "registeragency": VxpApi.register_agency,
    "deleteagency": VxpApi.delete_agency,
    "getsentedoclist": VxpApi.sent_list,
    "getagencieslist": VxpApi.agencies,
    "getagencieslistqd20": VxpApi.agencies_qd20,
    "getsynchronizeunit": VxpApi.synchronize_unit,
}


def _empty_spool(spool: Path) -> None:
    """Create the spool folder, or remove what a killed façade left in it."""
    spool.mkdir(parents=True, exist_ok=True)
    for leftover in spool.glob("*lienthong-vxp-*"):
        leftover.unlink(missing_ok=True)


def build_app(store: Store, links: GatewayLinks, config: VxpConfig) -> web.Application:
    """The aiohttp application; ``links`` are started with it and closed with it."""
    api = VxpApi(store, links, config)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.dispatch)

    async def lifecycle(app: web.Application) -> object:
        if config.spool_dir is not None:
            await asyncio.to_thread(_empty_spool, Path(config.spool_dir))
        refresher = asyncio.create_task(links.keep_linked())
        yield
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await links.close()
        api.directory.close()

    app.cleanup_ctx.append(lifecycle)  # type: ignore[arg-type]
    return app
