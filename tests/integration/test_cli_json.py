"""``--json`` on the CLI's listing and show commands (issue #16): one JSON document on
stdout that a script can parse, with the figures the table shows, against the real ledger."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from click.testing import CliRunner

from router.cli import main
from router.cli.exit_codes import EXIT_NOT_FOUND, EXIT_REJECTED, EXIT_USAGE
from router.directory.registry import AgencyRow
from tests.hub import Hub


def _json(hub: Hub, *args: str) -> Any:
    result = CliRunner().invoke(main, list(args),
                                env={"LIENTHONG_DATABASE_URL": hub.settings.database_url})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_listings_and_shows_speak_json(hub: Hub) -> None:
    await hub.add_gateway("nghean", serves=["#.H41"], name="LGSP Nghệ An")
    await hub.add_agencies([AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An", aliases=("H41",),
                                      gateway="nghean")])
    gws = await asyncio.to_thread(_json, hub, "gateways", "list", "--json")
    assert [(g["id"], g["name"], g["serves"], g["agencies"]) for g in gws] == [
        ("nghean", "LGSP Nghệ An", ["#.H41"], 1)]
    agency = await asyncio.to_thread(_json, hub, "agencies", "show", "H41", "--json")
    assert (agency["code"], agency["gateway_id"]) == ("000.00.00.H41", "nghean")
    assert "H41" in agency["aliases"]
    status = await asyncio.to_thread(_json, hub, "db", "status", "--json")
    assert status and all(m["applied"] for m in status)
    assert {"version": "0007", "name": "national_statistics", "applied": True} in status

    parked_id = uuid.uuid4()
    await hub.pool.execute(
        """INSERT INTO parked_messages (id, reason, reason_code, gateway_id, body,
               content_sha256) VALUES ($1, 'POISON', 5003, 'nghean', $2, '\\x00')""",
        parked_id, b"<edXMLEnvelope/>")
    parked = await asyncio.to_thread(_json, hub, "parking", "show", str(parked_id), "--json")
    assert (parked["reason"], parked["gateway_id"], parked["body"]) == (
        "POISON", "nghean", "<edXMLEnvelope/>")

    agency_id = await hub.pool.fetchval("SELECT id FROM agencies WHERE code = '000.00.00.H41'")
    hub_id = uuid.uuid4()
    await hub.pool.execute(
        """INSERT INTO documents (hub_id, kind, dedup_key, sender_agency_id, sender_code,
               sender_gateway_id, content_sha256, size_bytes, body)
           VALUES ($1, 'edoc', 'k', $2, 'H41', 'nghean', '\\x00', 1, '\\x00')""",
        hub_id, agency_id)
    await hub.pool.execute(
        """INSERT INTO deliveries (id, hub_id, recipient_agency_id, recipient_code, gateway_id,
               copy_id, state) SELECT gen_random_uuid(), $1, $2, 'H41', 'nghean',
               gen_random_uuid(), 'undeliverable'""", hub_id, agency_id)
    dry = await asyncio.to_thread(_json, hub, "redeliver", "--gateway", "nghean", "--dry-run",
                                  "--json")
    assert dry["job"] is None and dry["preview"]["total"] == 1
    assert dry["preview"]["per_recipient"][0]["gateway"] == "nghean"
    # a dry run changed nothing
    assert await hub.pool.fetchval("SELECT count(*) FROM redelivery_jobs") == 0


def _code(hub: Hub, *args: str) -> int:
    result = CliRunner().invoke(main, list(args),
                                env={"LIENTHONG_DATABASE_URL": hub.settings.database_url})
    return result.exit_code


async def test_exit_codes_tell_usage_rejected_and_not_found_apart(hub: Hub) -> None:
    """One table (router.cli.exit_codes): 2 only for click's usage errors."""
    assert len({EXIT_USAGE, EXIT_REJECTED, EXIT_NOT_FOUND, 0, 1}) == 5
    assert await asyncio.to_thread(_code, hub, "gateways", "list", "--no-such-option") \
        == EXIT_USAGE
    for args in (("track", "000.00.00.G22,2026/11/20,1/NOPE"),
                 ("agencies", "show", "H99"),
                 ("parking", "show", str(uuid.uuid4())),
                 ("report", "--from", "2026-11-01", "--to", "2026-12-01", "--agency", "H99")):
        assert await asyncio.to_thread(_code, hub, *args) == EXIT_NOT_FOUND, args
    for args in (("report", "--from", "yesterday", "--to", "2026-12-01"),
                 ("report", "--from", "2026-11-01", "--to", "2026-12-01", "--within", "H41;DROP"),
                 ("redeliver", "--since", "not a time", "--dry-run")):
        assert await asyncio.to_thread(_code, hub, *args) == EXIT_REJECTED, args


async def test_deadlines_speaks_json(hub: Hub) -> None:
    """``lienthong deadlines --json``: one JSON line per sweep, with what it flagged."""
    await hub.add_gateway("nghean", serves=["#.H41"], name="LGSP Nghệ An")
    env = {"LIENTHONG_DATABASE_URL": hub.settings.database_url,
           "LIENTHONG_AMQP_URL": hub.settings.amqp_url}
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["deadlines", "--json"], env=env)
    assert result.exit_code == 0, result.output
    # the sweep's line is the last one (a warning such as receipts_unsigned may come first)
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert (line["not_arrived"], line["overdue"], line["events"]) == (0, 0, 0)
    assert line["at"].endswith("+00:00")
