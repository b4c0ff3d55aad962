"""Ledger-scale figures: the report and a deadline sweep over N deliveries, and batch
re-delivery of M deliveries (dry run and real), on a throwaway vhost and database.

    .venv/bin/python -m tests.bench.ledger_scale --deliveries 1000000 --redeliver 100000
    .venv/bin/python -m tests.bench.ledger_scale --deliveries 0   # count triggers' cost

Synthetic rows are generated in SQL (95 agencies, 5 recipients per document, realistic
answer times); re-delivered copies are small (1 KB) documents published for real.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from statistics import median as statistics_median

import aio_pika

from router import topology
from router.directory.registry import AgencyRow
from router.ops.gauges import GaugeRefresher
from router.ops.queue_health import QueueSnapshot
from router.outbox.outbox import Outbox
from router.recovery import deadlines, redelivery
from router.reporting import national, statistics
from tests.hub import Hub, create_template, drop_database, require_services, throwaway_hub

_FILL = """
WITH ag AS (SELECT array_agg(id ORDER BY id) AS ids FROM agencies),
docs AS (
    INSERT INTO documents (hub_id, kind, dedup_key, edxml_document_id, sender_agency_id,
        sender_code, sender_gateway_id, business_type, content_sha256, size_bytes, subject,
        promulgation_date, due_date, received_at, body, paper)
    SELECT gen_random_uuid(), 'edoc', 'bench|' || g, 'X,2026/11/01,' || g || '/BENCH',
        (SELECT ids[1 + g % 95] FROM ag), 'BENCH', $3, 0, '\\x00', 1024, 'bench',
        date '2026-11-01', date '2026-11-01' + (g % 40),
        $2::timestamptz + (g % 2592000) * interval '1 s',
        convert_to(repeat('x', 1024), 'UTF8'), g % 10 = 0
    FROM generate_series(1, $1) g
    RETURNING hub_id, sender_agency_id, received_at)
INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code, gateway_id, copy_id,
    state, kind, due_at, created_at, queued_at, arrived_at, accepted_at, done_at,
    not_arrived_at)
SELECT gen_random_uuid(), d.hub_id, r.agency, 'R', $3, gen_random_uuid(),
    (ARRAY['queued','arrived','accepted','processing','done','done','done','refused',
           'undeliverable','revoked'])[1 + (hashtext(d.hub_id::text || k) & 1023) % 10],
    'edoc', date '2026-11-01' + (k * 7 % 40), d.received_at, d.received_at + interval '50 ms',
    d.received_at + (k * 13 % 600) * interval '1 s',
    d.received_at + (k * 131 % 7200) * interval '1 s',
    CASE WHEN k % 2 = 0 THEN d.received_at + (k * 977 % 86400) * interval '1 s' END,
    NULL
FROM docs d, generate_series(1, 5) k,
     LATERAL (SELECT (SELECT ids[1 + (k * 17 + length(d.hub_id::text)) % 95] FROM ag) AS agency) r
"""


async def _fill(hub: Hub, documents: int, gateway: str) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    async with hub.pool.acquire() as conn:
        await conn.execute(_FILL, documents, start, gateway)
        await conn.execute("ANALYZE")


_BATCH = """
WITH d AS (
    INSERT INTO documents (hub_id, kind, dedup_key, sender_agency_id, sender_code,
        sender_gateway_id, content_sha256, size_bytes, body)
    SELECT gen_random_uuid(), 'edoc', gen_random_uuid()::text, $1, 'BENCH', $2, '\\x00', 1,
           '\\x00'
    FROM generate_series(1, 200)
    RETURNING hub_id)
INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code, gateway_id, copy_id,
    state, queued_at)
SELECT gen_random_uuid(), hub_id, $1, 'R', $2, gen_random_uuid(), 'submitted', now() FROM d
"""


async def trigger_cost(hub: Hub, gateway: str, batches: int = 100, rounds: int = 10) -> None:
    """What the per-state count triggers (migration 0007) add to a router batch: 200
    deliveries inserted, then moved to queued, per transaction; rounds with and without
    them alternate (the machine is shared: compare the medians)."""
    per: dict[bool, list[float]] = {False: [], True: []}
    async with hub.pool.acquire() as conn:
        agency = await conn.fetchval("SELECT min(id) FROM agencies")
        for i in range(rounds):
            enabled = i % 2 == 1
            await conn.execute(
                f"ALTER TABLE deliveries {'ENABLE' if enabled else 'DISABLE'} TRIGGER USER")
            t = time.perf_counter()
            for _ in range(batches):
                async with conn.transaction():
                    await conn.execute(_BATCH, agency, gateway)
                    await conn.execute("UPDATE deliveries SET state = 'queued' "
                                       "WHERE state = 'submitted'")
            per[enabled].append((time.perf_counter() - t) / batches * 1000)
        await conn.execute("ALTER TABLE deliveries ENABLE TRIGGER USER")
    for enabled, ms in per.items():
        print(f"batch of 200 deliveries (insert + update), triggers {'on ' if enabled else 'off'}"
              f": median {statistics_median(ms):.2f} ms over {len(ms)} rounds of {batches}")


async def main(deliveries: int, redeliver_n: int) -> None:
    require_services()
    template = await create_template()
    try:
        async with throwaway_hub(template) as hub:
            await hub.add_gateway("bench", serves=["#.G01"])
            await hub.add_agencies([AgencyRow(f"000.00.00.H{i:02d}", f"Tỉnh {i}")
                                    for i in range(1, 64)]
                                   + [AgencyRow(f"000.00.00.G{i:02d}", f"Bộ {i}")
                                      for i in range(1, 33)])
            if deliveries == 0:
                await trigger_cost(hub, "bench")
                return
            t = time.perf_counter()
            await _fill(hub, deliveries // 5, "bench")
            print(f"generated {deliveries} deliveries in {time.perf_counter() - t:.1f} s")
            async with hub.pool.acquire() as conn:
                t = time.perf_counter()
                rows = await statistics.agency_report(
                    conn, start=datetime(2026, 11, 1, tzinfo=UTC),
                    end=datetime(2026, 12, 1, tzinfo=UTC))
                print(f"report over {deliveries} deliveries: {len(rows)} agencies in "
                      f"{time.perf_counter() - t:.2f} s")
                t = time.perf_counter()
                units = await national.national_report(
                    conn, start=datetime(2026, 11, 1, tzinfo=UTC),
                    end=datetime(2026, 12, 1, tzinfo=UTC))
                print(f"national ranking over {deliveries} deliveries: {len(units)} units in "
                      f"{time.perf_counter() - t:.2f} s")
                t = time.perf_counter()
                tree = await national.national_report(
                    conn, start=datetime(2026, 11, 1, tzinfo=UTC),
                    end=datetime(2026, 12, 1, tzinfo=UTC), within="H41")
                print(f"drill-down into H41 over {deliveries} deliveries: {len(tree)} agencies "
                      f"in {time.perf_counter() - t:.2f} s")
                t = time.perf_counter()
                await conn.fetch("SELECT state, count(*) FROM deliveries GROUP BY state")
                print(f"a full count by state (what the gauges no longer run): "
                      f"{time.perf_counter() - t:.2f} s")
            gauges = GaugeRefresher(hub.pool, QueueSnapshot(hub.admin, hub.settings.vhost))
            for what in ("first gauge refresh (folds the fill's deltas)", "next gauge refresh"):
                t = time.perf_counter()
                await gauges.refresh()
                print(f"{what} over {deliveries} deliveries: "
                      f"{(time.perf_counter() - t) * 1000:.1f} ms")
            async with hub.pool.acquire() as conn:
                t = time.perf_counter()
                res = await deadlines.sweep(conn, now=datetime(2026, 12, 20, tzinfo=UTC))
                print(f"first deadline sweep: {res.not_arrived} not arrived, {res.overdue} "
                      f"overdue flagged in {time.perf_counter() - t:.2f} s")
                t = time.perf_counter()
                res = await deadlines.sweep(conn, now=datetime(2026, 12, 20, 0, 1, tzinfo=UTC))
                print(f"next sweep, right after (nothing new due): {res.not_arrived + res.overdue}"
                      f" flagged in {(time.perf_counter() - t) * 1000:.1f} ms")
                await conn.execute("VACUUM ANALYZE deliveries")  # what autovacuum does
                t = time.perf_counter()
                res = await deadlines.sweep(conn, now=datetime(2026, 12, 20, 0, 2, tzinfo=UTC))
                print(f"steady sweep after vacuum (nothing new due): "
                      f"{res.not_arrived + res.overdue} flagged in "
                      f"{(time.perf_counter() - t) * 1000:.1f} ms")
            t = time.perf_counter()
            await gauges.refresh()
            print(f"gauge refresh after the sweeps flagged deliveries: "
                  f"{(time.perf_counter() - t) * 1000:.1f} ms")
            async with hub.pool.acquire() as conn:
                if redeliver_n == 0:
                    return
                # re-delivery: the first `redeliver_n` undeliverable ones
                await conn.execute(
                    """UPDATE deliveries SET state = 'undeliverable' WHERE id IN (
                           SELECT id FROM deliveries ORDER BY id LIMIT $1)""", redeliver_n)
            flt = redelivery.RedeliveryFilter(gateway="bench")
            async with hub.pool.acquire() as conn:
                t = time.perf_counter()
                pv = await redelivery.preview(conn, flt)
                print(f"re-delivery dry run: {pv.total} deliveries in "
                      f"{time.perf_counter() - t:.2f} s")
            connection = await aio_pika.connect(hub.settings.amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                outbox = await Outbox.open(channel, hub.settings)
                t = time.perf_counter()
                job = await redelivery.run(hub.pool, outbox, flt, actor="bench")
                took = time.perf_counter() - t
                print(f"re-delivery: {job.done} deliveries ({job.queued} queued) in {took:.1f} s "
                      f"= {job.done / took:.0f}/s")
                inbox = await channel.get_queue(topology.inbox_queue("bench"))
                await inbox.purge()
    finally:
        await drop_database(template)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--deliveries", type=int, default=1_000_000)
    ap.add_argument("--redeliver", type=int, default=100_000)
    a = ap.parse_args()
    asyncio.run(main(a.deliveries, a.redeliver))
