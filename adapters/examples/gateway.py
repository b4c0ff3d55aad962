"""A small, well-behaved gateway: what ``lienthong conformance`` expects of document software.

It takes every copy from its inbox (the SDK drops copies delivered twice) and

* answers every document (new, update, replace, revoke) with 01 (arrived) for each of its
  agencies the copy is addressed to, at once;
* answers a recall request (13) with 15 (agreed; a real gateway asks its văn thư and may
  answer 16, refused);
* acks status packages it is told about (they need no answer);

and only then acks the copy, so a crash in between brings the copy back. Run it::

    LIENTHONG_GATEWAY_URL=amqp://GATEWAY:PASSWORD@127.0.0.1:5672/lienthong \\
        [LIENTHONG_GATEWAY_ID=GATEWAY] python -m adapters.examples.gateway
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
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


async def _main() -> None:
    url = os.environ.get("LIENTHONG_GATEWAY_URL")
    if not url:
        raise SystemExit("set LIENTHONG_GATEWAY_URL=amqp://GATEWAY:PASSWORD@HOST:5672/VHOST")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    # the gateway id is the AMQP user name unless the hub adds a prefix to its users
    async with GatewayClient(url, gateway_id=os.environ.get("LIENTHONG_GATEWAY_ID")) as gw:
        await serve(gw, stop)


if __name__ == "__main__":
    asyncio.run(_main())
