"""``lienthong send`` and ``lienthong inbox``: a gateway at a terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import click

from adapters import DurableSeenCopies, GatewayClient, PublishRefused, ReceiptTimeout
from adapters.errors import TransferRefused
from router.cli._services import fail
from router.cli.exit_codes import EXIT_MISSING_FILE, EXIT_REJECTED
from router.settings import Settings
from schemas import EdocPackage, PackageRejected


def gateway_url(settings: Settings, gateway_id: str, password: str) -> str:
    """The hub's AMQP URL, logged in as the gateway (its user name as provisioned)."""
    parts = urlsplit(settings.amqp_url)
    hosts = parts.netloc.rpartition("@")[2] or "127.0.0.1"  # one host or several: kept
    user = f"{settings.amqp_user_prefix}{gateway_id}"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


_gateway = click.option("--gateway", "gateway_id", required=True, help="Your gateway id.")
_password = click.option("--password", envvar="LIENTHONG_GATEWAY_PASSWORD", required=True,
                         help="Your gateway's AMQP password (or LIENTHONG_GATEWAY_PASSWORD).")


@click.command("send")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_gateway
@_password
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the receipt.")
@click.option("--message-id", default=None,
              help="The AMQP message_id (default: a new UUID). After a timeout, send again "
                   "with the id it printed: the hub never makes a second document of it.")
def send(file: Path, gateway_id: str, password: str, timeout: float,
         message_id: str | None) -> None:
    """Submit an edXML package and print the hub's receipt (exit 65 when rejected).
    A file over LIENTHONG_LARGE_THRESHOLD_BYTES goes as a large package (chunked,
    resumable: after a failure, send again with the printed --message-id)."""
    try:
        file.stat()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror} / không đọc được tệp", EXIT_MISSING_FILE)
        return
    message_id = message_id or str(uuid.uuid4())

    async def go() -> dict[str, object]:
        settings = Settings.from_env()
        url = gateway_url(settings, gateway_id, password)
        async with GatewayClient(url, gateway_id=gateway_id, receipt_timeout=timeout,
                                 max_package_bytes=settings.max_package_bytes,
                                 large_threshold=settings.large_threshold_bytes,
                                 max_large_bytes=settings.max_large_package_bytes) as gw:
            receipt = await gw.send_file(file, message_id=message_id)
            if receipt is None:  # only with wait=False, which send never uses
                raise RuntimeError("no receipt")
            return receipt.as_dict()

    try:
        receipt = asyncio.run(go())
    except PackageRejected as exc:
        click.echo(json.dumps({"error": exc.as_dict()}, ensure_ascii=False, indent=2))
        raise SystemExit(EXIT_REJECTED) from exc
    except ReceiptTimeout as exc:
        fail(f"no receipt within {timeout} s: is a router running? Send again with "
             f"--message-id {exc.message_id} / không nhận được biên nhận: gửi lại với "
             f"--message-id {exc.message_id}", 1)
        return
    except PublishRefused as exc:
        fail(f"RabbitMQ refused the package: does gateway {gateway_id} serve the sender "
             f"agency code? / RabbitMQ từ chối gói tin ({exc})", 1)
        return
    except TransferRefused as exc:
        click.echo(json.dumps({"error": exc.as_dict(), "message_id": message_id},
                              ensure_ascii=False, indent=2))
        raise SystemExit(EXIT_REJECTED) from exc
    click.echo(json.dumps(receipt, ensure_ascii=False, indent=2))
    if receipt["type"] == "rejected":
        raise SystemExit(EXIT_REJECTED)


@click.command("inbox")
@_gateway
@_password
@click.option("--save", "save_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write each package to this folder as <hub id>.edxml.")
@click.option("--timeout", default=None, type=float,
              help="Stop after this many idle seconds (default: run until Ctrl-C).")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per package.")
@click.option("--seen-db", type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite file of the copies already taken, so a copy the hub delivers "
                   "again after a restart is dropped [default: SAVE/.seen-copies.sqlite "
                   "with --save, else kept in memory].")
def inbox(gateway_id: str, password: str, save_dir: Path | None, timeout: float | None,
          as_json: bool, seen_db: Path | None) -> None:
    """Take documents and status packages from your inbox (each acknowledged once shown)."""
    if seen_db is None and save_dir is not None:
        seen_db = save_dir / ".seen-copies.sqlite"
    seen = DurableSeenCopies(seen_db) if seen_db is not None else None

    async def go() -> None:
        url = gateway_url(Settings.from_env(), gateway_id, password)
        async with GatewayClient(url, gateway_id=gateway_id, seen=seen) as gw:
            async for msg in gw.inbox(timeout=timeout):
                async with msg.process():
                    if msg.reference is not None:  # a large package: fetched, verified
                        if save_dir:
                            await gw.fetch_large(msg, save_dir / f"{msg.hub_id}.edxml")
                        click.echo(json.dumps({"kind": msg.kind, "hub_id": msg.hub_id,
                                               "from": msg.sender, "to": msg.recipients,
                                               "document_id": msg.document_id,
                                               "large": msg.reference}, ensure_ascii=False))
                        continue
                    if save_dir:
                        save_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - tiny
                        (save_dir / f"{msg.hub_id}.edxml").write_bytes(msg.body)
                    pkg = msg.package
                    info = {
                        "kind": msg.kind,
                        "hub_id": msg.hub_id,
                        "from": msg.sender,
                        "to": msg.recipients,
                        "document_id": msg.document_id,
                        "status_code": msg.status_code,
                        "subject": pkg.subject if isinstance(pkg, EdocPackage) else
                        pkg.description,
                    }
                    if as_json:
                        click.echo(json.dumps(info, ensure_ascii=False))
                    else:
                        what = (f"status {msg.status_code}" if msg.kind == "status"
                                else "document")
                        click.echo(f"{what} {msg.hub_id} from {msg.sender} to "
                                   f"{', '.join(msg.recipients)}: {info['subject']}")
                    sys.stdout.flush()
            if gw.duplicates_dropped:
                click.echo(f"{gw.duplicates_dropped} copies taken before were delivered "
                           "again and dropped", err=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(go())
    finally:
        if seen is not None:
            seen.close()
