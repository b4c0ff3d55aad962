"""A minimal gateway built on the SDK, as the README describes one: it stores nothing
(a real one writes each document to its own system before the ack) but behaves as the hub
expects — it acks every copy, drops copies it has handled, answers each document with
01 (arrived) and 03 (accepted), and agrees (15) to every recall (13).

``python -m adapters.example_gateway AMQP_URL [--gateway ID]`` runs it until stopped;
``lienthong conformance`` passes against it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

from adapters.client import GatewayClient, InboxMessage
from schemas import EdocPackage, Organization, ResponseFor, StatusCode, StatusPackage

__all__ = ["answer", "serve"]

_VIETNAM = timezone(timedelta(hours=7))


def _us(agency: str) -> Organization:
    return Organization(organ_id=agency, organ_name=f"Example gateway agency {agency}")


async def answer(gw: GatewayClient, msg: InboxMessage) -> None:
    """What the example does with one copy (before its ack)."""
    pkg = msg.package
    if isinstance(pkg, EdocPackage):
        for agency in msg.recipients:
            for code in (StatusCode.ARRIVED, StatusCode.ACCEPTED):
                await gw.send_status(sender=_us(agency), about=pkg, code=code)
    elif isinstance(pkg, StatusPackage) and pkg.status_code is StatusCode.RECALL_REQUESTED:
        rf = pkg.response_for
        agreed = StatusPackage(
            sender=_us(rf.organ_id or (msg.recipients or [""])[0]),
            response_for=ResponseFor(organ_id=pkg.sender.organ_id, code=rf.code,
                                     promulgation_date=rf.promulgation_date,
                                     document_id=rf.document_id),
            status_code=StatusCode.RECALL_AGREED,
            description="Đồng ý thu hồi / recall agreed",
            timestamp=datetime.now(_VIETNAM).replace(tzinfo=None, microsecond=0),
        )
        await gw.send(agreed)


async def serve(gw: GatewayClient, stop: asyncio.Event) -> None:
    """Handle the inbox until ``stop`` is set."""
    while not stop.is_set():
        async for msg in gw.inbox(timeout=0.5):
            async with msg.process():
                await answer(gw, msg)
            if stop.is_set():
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("--gateway", default=None, help="gateway id (default: the URL's user)")
    args = parser.parse_args()

    async def run() -> None:
        async with GatewayClient(args.url, gateway_id=args.gateway) as gw:
            await serve(gw, asyncio.Event())

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
