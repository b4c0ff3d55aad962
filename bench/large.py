"""``make bench-large`` (``python -m bench.large``): large packages end to end.

For each size (100 MiB, and 1 GiB unless ``--quick``): a fresh hub (its own vhost and
database), one router process (``lienthong router -n 1``), a receiver (``lienthong inbox
--save``) and a sender (``lienthong send``) as separate processes, so each one's memory is
its own. Reported:

* end-to-end time: from starting ``lienthong send`` to the file saved, verified, by the
  receiver; MB/s over it;
* the raw relay: the same bytes published as chunk-sized messages through RabbitMQ (with
  publisher confirms) and consumed back, in the same run, MB/s;
* peak RSS: the router worker's growth over its idle RSS (target: at most 64 MB), the
  sender's and the receiver's peak (``getrusage`` of the child processes);
* RabbitMQ's memory (management API ``mem_used``, sampled), its peak over its value before.

The package is written to disk as it is generated (one attachment of random bytes), never
held whole, and checked byte for byte against what the receiver saved.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import click

from bench.processes import ProcessGroup, read_memory
from bench.run import bench_environment
from bench.workload import BenchGateway
from router.broker_admin import BrokerAdmin
from router.settings import Settings
from schemas import build_package
from tests.factory import edoc

MiB = 1024 * 1024
_PLACEHOLDER = b"TEFSR0UtUEFZTE9BRC1IRVJF"  # base64 of b"LARGE-PAYLOAD-HERE"


def write_package(path: Path, size_mib: int, sender: str, recipient: str) -> int:
    """An edoc with one attachment of ``size_mib`` MiB of random bytes, written in pieces."""
    pkg, _ = edoc(sender, [recipient], attachment=b"LARGE-PAYLOAD-HERE")
    body = build_package(pkg)
    head, _, tail = body.partition(_PLACEHOLDER)
    assert tail, "placeholder not found"
    block = 3 * 1024 * 1024  # a multiple of 3: base64 pieces join without padding
    with path.open("wb") as out:
        out.write(head)
        left = size_mib * MiB
        while left > 0:
            n = min(block, left)
            out.write(base64.b64encode(os.urandom(n)))
            left -= n
        out.write(tail)
    return path.stat().st_size


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.with_suffix(".log").open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _rabbit_mem(admin: BrokerAdmin) -> int | None:
    with contextlib.suppress(Exception):
        nodes = await admin.request("GET", "/nodes?columns=name,mem_used")
        return int(sum(n.get("mem_used", 0) for n in nodes))
    return None


async def raw_relay(settings: Settings, path: Path, chunk: int) -> float:
    """MB/s of the same bytes through RabbitMQ: chunk-sized persistent messages published
    with confirms to a quorum-free temporary queue, consumed back."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True)
        size = os.stat(path).st_size
        got = 0
        done = asyncio.Event()

        async def on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            got += len(message.body)
            await message.ack()
            if got >= size:
                done.set()

        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=4)
        cq = await consumer.get_queue(queue.name)
        await cq.consume(on)
        started = time.perf_counter()
        window = asyncio.Semaphore(4)
        pending: list[asyncio.Task[Any]] = []

        async def pub(data: bytes) -> None:
            try:
                await channel.default_exchange.publish(
                    aio_pika.Message(data, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue.name)
            finally:
                window.release()

        with path.open("rb") as fh:
            while data := fh.read(chunk):
                await window.acquire()
                pending.append(asyncio.create_task(pub(data)))
        await asyncio.gather(*pending)
        await asyncio.wait_for(done.wait(), 3600)
        return size / MiB / (time.perf_counter() - started)


async def one_size(base: Settings, size_mib: int, work: Path, logs: Path,
                   say: Any) -> dict[str, Any]:
    gateways = [BenchGateway("bench-sender", "000.00.00.G22", "Văn phòng Chính phủ"),
                BenchGateway("bench-receiver", "000.00.00.H41", "UBND tỉnh Nghệ An")]
    async with bench_environment(base, gateways, progress=say) as env:
        settings = env.settings
        package = work / f"large-{size_mib}.edxml"
        say(f"writing a {size_mib} MiB package")
        size = write_package(package, size_mib, "000.00.00.G22", "000.00.00.H41")
        want = _sha256(package)
        proc_env = env.process_env()
        routers = ProcessGroup("router", proc_env, logs)
        routers.start(1)
        admin = BrokerAdmin(settings.management_url)
        try:
            worker = routers.pids[0]  # `router -n 1` is the worker itself
            await asyncio.sleep(8)  # started, consuming, idle
            idle = read_memory(worker)
            assert idle is not None
            save = work / f"inbox-{size_mib}"

            def gw_env(gw: str) -> dict[str, str]:
                return {**proc_env, "LIENTHONG_GATEWAY_PASSWORD": env.credentials[gw].password,
                        "LIENTHONG_AMQP_USER_PREFIX": settings.amqp_user_prefix}

            cli = [sys.executable, "-m", "router.cli"]
            receiver = _spawn(
                [*cli, "inbox", "--gateway", "bench-receiver", "--save", str(save),
                 "--timeout", "3600"], gw_env("bench-receiver"), logs / "receiver")
            await asyncio.sleep(3)  # connected, consuming, idle
            idle_cli = read_memory(receiver.pid)
            cli_idle = idle_cli.rss_kb if idle_cli is not None else 0
            rabbit_before = await _rabbit_mem(admin)
            say(f"sending {size_mib} MiB")
            started = time.perf_counter()
            sender = _spawn(
                [*cli, "send", str(package), "--gateway", "bench-sender", "--timeout", "600"],
                gw_env("bench-sender"), logs / "sender")
            rabbit_peak = rabbit_before or 0
            router_peak = idle.peak_kb
            hwm = {"sender": 0, "receiver": 0}
            saved: Path | None = None
            while saved is None:
                await asyncio.sleep(0.2)
                mem = read_memory(worker)
                if mem is not None:
                    router_peak = max(router_peak, mem.peak_kb, mem.rss_kb)
                for role, proc in (("sender", sender), ("receiver", receiver)):
                    m = read_memory(proc.pid)
                    if m is not None:
                        hwm[role] = max(hwm[role], m.peak_kb)
                r = await _rabbit_mem(admin)
                if r is not None:
                    rabbit_peak = max(rabbit_peak, r)
                if save.is_dir():
                    done = [p for p in save.glob("*.edxml") if not p.name.startswith(".")]
                    saved = done[0] if done else None
                if receiver.poll() is not None and saved is None:
                    raise RuntimeError("the receiver stopped before the package arrived")
                if time.perf_counter() - started > 3600:
                    raise RuntimeError("no package after an hour")
            elapsed = time.perf_counter() - started
            _, status, usage = await asyncio.to_thread(os.wait4, sender.pid, 0)
            # /proc's VmHWM, not getrusage: a child's ru_maxrss keeps the peak of the forked
            # bench process it was before exec
            sender_peak = hwm["sender"]
            m = read_memory(receiver.pid)
            receiver_peak = max(hwm["receiver"], m.peak_kb if m is not None else 0)
            receiver.terminate()
            await asyncio.to_thread(os.wait4, receiver.pid, 0)
            del usage
            mem = read_memory(worker)
            if mem is not None:
                router_peak = max(router_peak, mem.peak_kb)
            identical = _sha256(saved) == want
            say("raw relay through RabbitMQ (the same bytes, after)")
            relay = await raw_relay(settings, package, settings.chunk_bytes)
        finally:
            await routers.stop()
            await admin.close()
        return {
            "size_mib": size_mib, "package_bytes": size,
            "chunk_bytes": settings.chunk_bytes,
            "end_to_end_s": round(elapsed, 2),
            "end_to_end_mb_s": round(size / MiB / elapsed, 1),
            "raw_rabbitmq_mb_s": round(relay, 1),
            "router_idle_rss_mb": round(idle.rss_kb / 1024, 1),
            "router_peak_rss_mb": round(router_peak / 1024, 1),
            "router_rss_growth_mb": round((router_peak - idle.rss_kb) / 1024, 1),
            "sdk_idle_rss_mb": round(cli_idle / 1024, 1),
            "sender_peak_rss_mb": round(sender_peak / 1024, 1),
            "receiver_peak_rss_mb": round(receiver_peak / 1024, 1),
            "sender_rss_growth_mb": round((sender_peak - cli_idle) / 1024, 1),
            "receiver_rss_growth_mb": round((receiver_peak - cli_idle) / 1024, 1),
            "rabbitmq_mem_before_mb": round((rabbit_before or 0) / MiB, 1),
            "rabbitmq_mem_peak_mb": round(rabbit_peak / MiB, 1),
            "sender_exit": os.waitstatus_to_exitcode(status),
            "byte_identical": identical,
        }


@click.command("bench-large")
@click.option("--size", "sizes", multiple=True, type=click.IntRange(1, 4096),
              help="Package sizes in MiB. [default: 100 and 1024; 100 with --quick]")
@click.option("--quick", is_flag=True, help="Only 100 MiB.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench-large-results.json"), show_default=True)
@click.option("--logs", "log_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".bench/large"), show_default=True,
              help="Router, sender and receiver logs go here.")
def main(sizes: tuple[int, ...], quick: bool, json_path: Path, log_dir: Path) -> None:
    """Large packages: end-to-end time, MB/s against RabbitMQ alone, peak memory."""
    chosen = sizes or ((100,) if quick else (100, 1024))
    base = Settings.from_env()

    def say(text: str) -> None:
        click.echo(f"bench-large: {text}", err=True)

    results = []
    log_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-large-") as tmp:
        for size in chosen:
            r = asyncio.run(one_size(base, size, Path(tmp), log_dir, say))
            results.append(r)
            click.echo(json.dumps(r, indent=2))
    json_path.write_text(json.dumps({"runs": results}, indent=2) + "\n", encoding="utf-8")
    if any(not r["byte_identical"] or r["sender_exit"] != 0 for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
