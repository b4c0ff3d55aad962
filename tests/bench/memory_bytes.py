"""A router's peak RSS with large packages in flight (issue #11, item 3), on a throwaway
vhost and database, the router run as an operator runs it (``python -m router.cli router``):

    .venv/bin/python -m tests.bench.memory_bytes --case accepted   # ten 29 MiB packages
    .venv/bin/python -m tests.bench.memory_bytes --case refused    # twelve 100 MiB ones
    .venv/bin/python -m tests.bench.memory_bytes --case refused --mib 30.5

``--code DIR`` runs the router from another checkout (e.g. ``git archive`` of an older
commit) to compare. The packages are published first and the router started then, so
that they are all in flight at once. Prints the router's peak RSS (VmHWM), its RSS once
everything is answered, what the ledger holds and what the publisher saw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aio_pika
import aiormq

from router import topology
from router.directory.registry import AgencyRow
from tests.factory import edoc
from tests.hub import Hub, create_template, drop_database, require_services, throwaway_hub

MiB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024  # MiB
    return 0


async def _publish(hub: Hub, bodies: list[bytes], kind: str) -> tuple[int, list[str]]:
    """Publish as gateway vpcp; a message the broker refuses closes the channel, so each
    goes on a channel of its own. Returns (confirmed, broker errors)."""
    user = hub.credentials["vpcp"].user
    ok, errors = 0, []
    connection = await aio_pika.connect(hub.gateway_url("vpcp"))
    async with connection:
        async def one(i: int, body: bytes) -> None:
            nonlocal ok
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.SUBMIT, ensure=False)
            try:
                await exchange.publish(
                    aio_pika.Message(body, message_id=f"big-{i}", user_id=user, type=kind),
                    routing_key="000.00.00.G22")
                ok += 1
            except aiormq.exceptions.AMQPError as exc:
                errors.append(type(exc).__name__)
            finally:
                if not channel.is_closed:
                    await channel.close()
        for start in range(0, len(bodies), 100):  # at most 100 channels at a time
            await asyncio.gather(*(one(i, bodies[i])
                                   for i in range(start, min(start + 100, len(bodies)))))
    return ok, errors


async def run(case: str, mib: float, count: int, code: str | None) -> None:
    require_services()
    template = await create_template()
    try:
        async with throwaway_hub(template) as hub:
            await hub.add_gateway("vpcp", serves=["000.00.00.G22"])
            await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
            await hub.add_agencies([
                AgencyRow("000.00.00.G22", "Văn phòng Chính phủ", aliases=("G22",)),
                AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",)),
            ])
            if case == "accepted":
                # a PDF of random bytes: base64 makes the package ~4/3 of it
                size = max(1000, int(mib * MiB * 3 / 4) - 64 * 1024)
                bodies = [edoc("000.00.00.G22", ["000.00.00.H41"],
                               attachment=os.urandom(size))[1] for _ in range(count)]
            else:
                bodies = [b"<edXML>" + os.urandom(int(mib * MiB)) for _ in range(count)]
            print(f"{case}: {count} x {len(bodies[0]) / MiB:.1f} MiB", flush=True)
            env = dict(os.environ, LIENTHONG_AMQP_URL=hub.settings.amqp_url,
                       LIENTHONG_DATABASE_URL=hub.settings.database_url,
                       LIENTHONG_LOG_LEVEL="WARNING", LIENTHONG_SWEEP_SECONDS="0")
            if code:
                env["PYTHONPATH"] = code
            # all of them wait in lt.router.in before the router starts: "in flight" at once
            t0 = time.monotonic()
            ok, errors = await _publish(hub, bodies, "edoc")
            del bodies
            router = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
                [sys.executable, "-m", "router.cli", "router"], env=env)
            t1 = time.monotonic()
            try:
                deadline = time.monotonic() + 600
                while True:
                    done = await hub.pool.fetchval(
                        "SELECT (SELECT count(*) FROM documents)"
                        " + (SELECT count(*) FROM rejections)")
                    if done >= ok:
                        break
                    assert time.monotonic() < deadline, f"only {done} of {ok} answered"
                    await asyncio.sleep(0.2)
                took, routed = time.monotonic() - t0, time.monotonic() - t1
                await asyncio.sleep(2)  # the last acks and receipts
                peak = _status(router.pid, "VmHWM")
                rows = await hub.pool.fetch(
                    "SELECT reason, size_bytes, octet_length(body) AS kept FROM rejections")
                print(f"router RSS peak {peak} MiB, after {_status(router.pid, 'VmRSS')} MiB; "
                      f"all answered {took:.1f} s after the first publish, "
                      f"{routed:.1f} s after the router started")
                print(f"publisher: {ok} confirmed, broker refused {len(errors)} {set(errors)}")
                documents = await hub.pool.fetchval("SELECT count(*) FROM documents")
                print(f"ledger: {documents} documents, {len(rows)} rejections "
                      f"{sorted({(r['reason'], r['kept']) for r in rows}, key=str)}")
            finally:
                router.terminate()
                router.wait(30)
    finally:
        await drop_database(template)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=("accepted", "refused"), required=True)
    p.add_argument("--mib", type=float, default=None, help="package size (29 / 100)")
    p.add_argument("--count", type=int, default=None, help="packages (10 / 12)")
    p.add_argument("--code", default=None, help="run the router from this checkout")
    a = p.parse_args()
    mib = a.mib or (29.0 if a.case == "accepted" else 100.0)
    count = a.count or (10 if a.case == "accepted" else 12)
    asyncio.run(run(a.case, mib, count, a.code))


if __name__ == "__main__":
    main()
