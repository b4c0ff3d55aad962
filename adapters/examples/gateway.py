"""A small, well-behaved gateway: what ``lienthong conformance`` expects of document software.

It takes every copy from its inbox (the SDK drops copies delivered twice) and

* answers every document (new, update, replace, revoke) with 01 (arrived) for each of its
  agencies the copy is addressed to, at once;
* answers a recall request (13) with 15 (agreed; a real gateway asks its văn thư and may
  answer 16, refused);
* acks status packages it is told about (they need no answer);

and only then acks the copy, so a crash in between brings the copy back. Run it::

    python -m adapters.examples.gateway amqp://GATEWAY:PASSWORD@127.0.0.1:5672/lienthong [GATEWAY]

(``GATEWAY``: the gateway id, when the hub's AMQP user names carry a prefix.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import datetime, timedelta, timezone

from adapters.client import GatewayClient, InboxMessage
from schemas import EdocPackage, Organization, ResponseFor, StatusCode, StatusPackage
from schemas.agency_code import normalize

__all__ = ["answer", "serve"]

_VIETNAM = timezone(timedelta(hours=7))


def _now() -> datetime:
    return datetime.now(_VIETNAM).replace(tzinfo=None, microsecond=0)


def _us(package: EdocPackage, agency: str) -> Organization:
    """This gateway's agency as the document addresses it (with its name)."""
    for org in package.recipients:
        if normalize(org.organ_id) == normalize(agency) and org.organ_name:
            return org
    return Organization(agency, agency)


async def answer(gw: GatewayClient, msg: InboxMessage) -> None:
    """What the gateway sends back for one copy (before the copy is acked)."""
    package = msg.package
    if isinstance(package, EdocPackage):
        for agency in msg.recipients:
            await gw.send_status(sender=_us(package, agency), about=package,
                                 code=StatusCode.ARRIVED, description="Văn thư: đã nhận")
        return
    if package.status_code is StatusCode.RECALL_REQUESTED:
        about = package.response_for
        me = about.organ_id or (msg.recipients or [""])[0]
        await gw.send(StatusPackage(
            sender=Organization(me, me),
            response_for=ResponseFor(
                organ_id=package.sender.organ_id, code=about.code,
                promulgation_date=about.promulgation_date, document_id=about.document_id,
            ),
            status_code=StatusCode.RECALL_AGREED,
            description="Văn thư: đồng ý thu hồi",
            timestamp=_now(),
        ))


async def serve(gw: GatewayClient, stop: asyncio.Event) -> None:
    """Take the inbox until ``stop`` is set."""
    while not stop.is_set():
        async for msg in gw.inbox(timeout=0.2):
            async with msg.process():
                await answer(gw, msg)
            if stop.is_set():
                return


async def _main(url: str, gateway_id: str | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with GatewayClient(url, gateway_id=gateway_id) as gw:
        await serve(gw, stop)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python -m adapters.examples.gateway AMQP_URL [GATEWAY_ID]")
    asyncio.run(_main(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None))
