"""A VXP client for tests, written from docs/vxp-api.md, NOT from the façade's code.

It signs the way the vendor's Java SDK (``SDKVXP`` 2.0.x) does, quirks included:

* one parameter map kept for the client's whole life, never cleared (leftover parameters
  of a previous call travel with the next one);
* the timestamp set once, when the client is created (``ddMMyyyy'T'HHmmss+SSSS``);
* ``Content-Type`` in the map, so signed as ``XroadVnpt-Content-Type``;
* ``sign-header-key`` in HashMap order (not sorted), ``sign-header`` as Gson's compact JSON
  (Gson escapes ``<>&='`` as ``\\u003c``...), ``hash-header`` the lowercase hex HMAC-SHA256
  of that text with the secret;
* ``hash-file`` with each byte ``Integer.toHexString`` (no zero padding);
* the ``sendEdoc`` body: the file then a bare CRLF, ``application/octet-stream``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import aiohttp

VIETNAM = timezone(timedelta(hours=7))
_GSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "=": "\\u003d", "'": "\\u0027"}


def vxp_timestamp(at: datetime) -> str:
    at = at.astimezone(VIETNAM)
    return at.strftime("%d%m%YT%H%M%S") + f"+{at.microsecond // 1000:04d}"


def gson(obj: dict[str, str]) -> str:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in _GSON_ESCAPES.items():
        text = text.replace(ch, esc)
    return text


def unpadded_hex(digest: bytes) -> str:
    return "".join(format(b, "x") for b in digest)


class VxpSdk:
    """One 'service object' of the SDK: a system id, a secret, an endpoint."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: str, system_id: str,
                 secret: str, *, seed: int = 7) -> None:
        self.session = session
        self.endpoint = endpoint.rstrip("/")
        self.system_id = system_id
        self.secret = secret
        self.params: dict[str, str] = {
            "timestamp": vxp_timestamp(datetime.now(VIETNAM)),  # frozen, as the SDK does
            "systemid": system_id,
        }
        self._rng = random.Random(seed)
        self.header_case: str = "XroadVnpt-"  # what prefix spelling goes on the wire

    def sign(self) -> dict[str, str]:
        names = list(self.params)
        self._rng.shuffle(names)  # HashMap order: not sorted, not insertion
        sign_header = gson({f"XroadVnpt-{n}": self.params[n] for n in names})
        mac = hmac.new(self.secret.encode(), sign_header.encode(), hashlib.sha256).hexdigest()
        headers = {f"{self.header_case}{n}": self.params[n] for n in names}
        headers.update({
            f"{self.header_case}sign-header-key": ";".join(names),
            f"{self.header_case}sign-header": sign_header,
            f"{self.header_case}hash-header": mac,
            f"{self.header_case}version": "3.0.201608",
            "User-Agent": "JAVASDKAgent/1.0.0 XRoad/VPCP",
        })
        if "Content-Type" in self.params:
            headers["Content-Type"] = self.params["Content-Type"]
        return headers

    async def call(self, operation: str, *, method: str = "POST", body: bytes = b"{}",
                   **params: str) -> dict[str, Any]:
        self.params.setdefault("Content-Type", "application/json")
        if operation != "sendEdoc":
            self.params["Content-Type"] = "application/json"
        self.params.update(params)
        async with self.session.request(method, f"{self.endpoint}/{operation}", data=body,
                                        headers=self.sign()) as resp:
            raw = await resp.read()
        raw.decode("ascii")  # the SDK reads answers as US-ASCII: must not raise
        answer: dict[str, Any] = json.loads(raw)
        for key in ("status", "ErrorCode", "ErrorDesc"):
            assert key in answer, f"{key} missing from {answer}"
        return answer

    async def send_edoc(self, file: bytes, *, messagetype: str = "edoc",
                        to: list[str] | None = None) -> dict[str, Any]:
        self.params["Content-Type"] = "application/octet-stream"
        params = {"from": self.system_id, "servicetype": "eDoc", "messagetype": messagetype,
                  "hash-file": unpadded_hex(hashlib.sha256(file).digest())}
        if to is not None:
            params["to"] = json.dumps(to)
        return await self.call("sendEdoc", body=file + b"\r\n", **params)

    async def send_multipart(self, file: bytes, *, messagetype: str) -> dict[str, Any]:
        """Another client's way: a real multipart body, part ``file_doc``, padded hash."""
        form = aiohttp.FormData()
        form.add_field("file_doc", file, filename="edoc.edxml",
                       content_type="application/octet-stream")
        payload = form()
        self.params["Content-Type"] = payload.content_type
        self.params.update({"from": self.system_id, "servicetype": "eDoc",
                            "messagetype": messagetype,
                            "hash-file": hashlib.sha256(file).hexdigest()})
        sent = self.sign()
        async with self.session.post(f"{self.endpoint}/sendEdoc", data=payload,
                                     headers=sent) as resp:
            raw = await resp.read()
        return dict(json.loads(raw.decode("ascii")))

    async def received(self, messagetype: str = "edoc") -> list[dict[str, Any]]:
        answer = await self.call("getReceivedEdocList", servicetype="eDoc",
                                 messagetype=messagetype)
        assert answer["status"] == "OK", answer
        return list(answer["data"])

    async def get_edoc(self, doc_id: str) -> bytes:
        answer = await self.call("getEdoc", docId=doc_id, filePath="/tmp/x.edxml")
        assert answer["status"] == "OK", answer
        return base64.b64decode(answer["data"])

    async def download(self, doc_id: str) -> bytes:
        self.params["Content-Type"] = "application/json"
        self.params["docId"] = doc_id
        async with self.session.get(f"{self.endpoint}/downloadEdoc",
                                    headers=self.sign()) as resp:
            return await resp.read()

    async def update_status(self, doc_id: str, status: str) -> dict[str, Any]:
        return await self.call("updateStatus", docId=doc_id, status=status)

    async def count(self, operation: str) -> int:
        answer = await self.call(operation, method="GET", body=b"")
        assert answer["status"] == "OK", answer
        return int(answer["count"])
