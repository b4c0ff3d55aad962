"""Issue #13: registerAgency / deleteAgency through the VXP façade, allowed only when the
hub's operators let the gateway manage its own agencies, only for codes its ``serves``
covers; each change audited once with before and after, and published in the directory
feed (so getAgenciesList shows it). Real RabbitMQ + PostgreSQL, the façade's own database.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner, Result

from adapters import HubRefused
from router.cli import main as cli
from router.directory.registry import AgencyRow
from router.security.audit import verify_chain
from schemas import Reason
from tests.factory import edoc
from tests.hub import Hub
from tests.integration.test_vxp import VPCP, facade_for, sdk

NGHEAN = "000.00.00.H41"
NOIVU = "000.02.00.H41"  # a new agency of Nghệ An's tree
TAICHINH = "000.03.00.H41"  # in Nghệ An's tree but explicitly served by another gateway
SYSTEM = "00.53.W41"


async def _cli(hub: Hub, *args: str) -> Result:
    env = {**os.environ, "LIENTHONG_DATABASE_URL": hub.settings.database_url,
           "LIENTHONG_AMQP_URL": hub.settings.amqp_url,
           "LIENTHONG_AMQP_USER_PREFIX": hub.settings.amqp_user_prefix,
           "LIENTHONG_LOG_LEVEL": "WARNING"}
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)


async def _audit(hub: Hub, action: str) -> list[dict[str, Any]]:
    result = await _cli(hub, "audit", "list", "--action", action, "--json")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def test_a_gateway_manages_its_own_agencies_only_when_allowed(hub: Hub) -> None:
    await hub.add_gateway("vpcp", serves=[VPCP])
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    await hub.add_agencies([AgencyRow(VPCP, "Văn phòng Chính phủ"),
                            AgencyRow(NGHEAN, "UBND tỉnh Nghệ An"),
                            AgencyRow(TAICHINH, "Sở Tài chính", parent=NGHEAN,
                                      aliases=("000.13.00.H41",), gateway="vpcp")])
    await hub.start_router()
    register = json.dumps({"id": 0, "pcode": NGHEAN, "code": NOIVU, "name": "Sở Nội vụ Nghệ An",
                           "mail": "snv@nghean.gov.vn", "mobile": "", "fax": ""}).encode()
    async with facade_for(hub) as f, aiohttp.ClientSession() as session:
        await f.add_system(SYSTEM, "lgsp-nghean")
        nghean = sdk(f, session, SYSTEM)

        # the switch is off (the default): refused with a reason, nothing changed
        a = await nghean.call("registerAgency", body=register)
        assert (a["status"], a["ErrorCode"], a["reason"], a["reasonCode"]) == (
            "FAIL", "21", "AGENCY_MANAGEMENT_NOT_ALLOWED", 7181)
        assert "\\u" in json.dumps(a["ErrorDesc"]) and " / " in a["ErrorDesc"]  # vi / en
        a = await nghean.call("deleteAgency", AgencyCode=NGHEAN)
        assert a["reason"] == "AGENCY_MANAGEMENT_NOT_ALLOWED"
        assert await hub.pool.fetchval(
            "SELECT count(*) FROM agencies WHERE code = $1", NOIVU) == 0
        assert await hub.pool.fetchval(
            "SELECT removed_at FROM agencies WHERE code = $1", NGHEAN) is None

        # the operator allows it; the switch itself is audited
        on = await _cli(hub, "gateways", "set", "lgsp-nghean", "--manage-agencies", "on")
        assert on.exit_code == 0, on.output
        switched = await _audit(hub, "gateway.agency_management")
        assert len(switched) == 1
        assert (switched[0]["details"]["before"], switched[0]["details"]["after"]) == (
            {"manage_agencies": False}, {"manage_agencies": True})
        assert switched[0]["actor"].startswith("cli:")
        unknown = await _cli(hub, "gateways", "set", "nosuch", "--manage-agencies", "on")
        assert unknown.exit_code == 67 and "GATEWAY_UNKNOWN" in unknown.output
        listed = await _cli(hub, "gateways", "list", "--json")
        flags = {g["id"]: g["manage_agencies"] for g in json.loads(listed.stdout)}
        assert flags == {"vpcp": False, "lgsp-nghean": True}

        # registered: the envelope only, then listed at once from the published feed
        a = await nghean.call("registerAgency", body=register)
        assert a == {"status": "OK", "ErrorCode": "0", "ErrorDesc": ""}
        agencies = {x["code"]: x for x in (await nghean.call("getAgenciesList"))["data"]}
        assert agencies[NOIVU]["name"] == "Sở Nội vụ Nghệ An"
        assert agencies[NOIVU]["pid"] == agencies[NGHEAN]["id"] != 0
        units = {u["code"]: u for u in (await nghean.call("getSynchronizeUnit"))["data"]}
        assert units[NOIVU]["centerCode"] == "lgsp-nghean" and not units[NOIVU]["deleted"]
        rows = await _audit(hub, "agency.registered")
        assert len(rows) == 1
        row = rows[0]
        assert (row["actor"], row["subject"]) == (f"gateway:lgsp-nghean/vxp:{SYSTEM}", NOIVU)
        assert row["details"]["before"] is None
        assert row["details"]["after"] == {"name": "Sở Nội vụ Nghệ An", "parent": NGHEAN,
                                           "gateway": "lgsp-nghean", "aliases": [NOIVU]}
        # documents reach it
        async with hub.client("vpcp") as gw:
            receipt = await gw.send(edoc(VPCP, [NOIVU])[1])
            assert receipt is not None and receipt.type == "accepted", receipt

        # registering the same again changes nothing and records nothing
        assert (await nghean.call("registerAgency", body=register))["status"] == "OK"
        assert len(await _audit(hub, "agency.registered")) == 1

        # outside its serves, or another gateway's agency: refused, nothing changed
        outside = json.dumps({"code": "000.00.00.G12", "name": "Bộ Tài chính"}).encode()
        a = await nghean.call("registerAgency", body=outside)
        assert (a["status"], a["ErrorCode"], a["reason"], a["reasonCode"]) == (
            "FAIL", "21", "AGENCY_NOT_SERVED", 7182)
        a = await nghean.call("deleteAgency", AgencyCode=VPCP)
        assert a["reason"] == "AGENCY_NOT_SERVED"
        theirs = json.dumps({"code": TAICHINH, "name": "Sở Tài chính (mới)"}).encode()
        a = await nghean.call("registerAgency", body=theirs)
        assert (a["reason"], a["reasonCode"]) == ("AGENCY_OF_ANOTHER_GATEWAY", 7183)
        a = await nghean.call("deleteAgency", AgencyCode=TAICHINH)
        assert a["reason"] == "AGENCY_OF_ANOTHER_GATEWAY"
        # nor by taking one of its aliases as a new agency's code (its mail would follow)
        hijack = json.dumps({"code": "000.13.00.H41", "name": "Sở Tài chính giả"}).encode()
        a = await nghean.call("registerAgency", body=hijack)
        assert (a["status"], a["reason"]) == ("FAIL", "AGENCY_OF_ANOTHER_GATEWAY")
        assert await hub.pool.fetchval(
            """SELECT a.code FROM agency_aliases al JOIN agencies a ON a.id = al.agency_id
               WHERE al.alias = '000.13.00.H41'""") == TAICHINH
        a = await nghean.call("deleteAgency", AgencyCode="000.09.00.H41")
        assert (a["status"], a["reason"]) == ("FAIL", "OPS_UNKNOWN_AGENCY")
        a = await nghean.call("registerAgency", body=b'{"code": "000.04.00.H41"}')
        assert (a["status"], a["reason"]) == ("FAIL", "VXP_BAD_REQUEST")
        assert await hub.pool.fetchval(
            "SELECT count(*) FROM agencies WHERE code = '000.00.00.G12'") == 0
        assert await hub.pool.fetchval(
            "SELECT name FROM agencies WHERE code = $1", TAICHINH) == "Sở Tài chính"

        # deleted: gone from the list, a tombstone in getSynchronizeUnit, audited once
        a = await nghean.call("deleteAgency", AgencyCode=NOIVU)
        assert a == {"status": "OK", "ErrorCode": "0", "ErrorDesc": ""}
        codes = {x["code"] for x in (await nghean.call("getAgenciesList"))["data"]}
        assert codes == {VPCP, NGHEAN, TAICHINH}
        units = {u["code"]: u for u in (await nghean.call("getSynchronizeUnit"))["data"]}
        assert units[NOIVU]["deleted"] is True
        removed = await _audit(hub, "agency.removed")
        assert len(removed) == 1
        assert removed[0]["actor"] == f"gateway:lgsp-nghean/vxp:{SYSTEM}"
        assert removed[0]["details"]["before"]["name"] == "Sở Nội vụ Nghệ An"
        assert removed[0]["details"]["after"] is None

        # switched off again: refused again
        off = await _cli(hub, "gateways", "set", "lgsp-nghean", "--manage-agencies", "off")
        assert off.exit_code == 0, off.output
        a = await nghean.call("registerAgency", body=register)
        assert a["reason"] == "AGENCY_MANAGEMENT_NOT_ALLOWED"
        assert len(await _audit(hub, "gateway.agency_management")) == 2
    async with hub.pool.acquire() as conn:
        assert (await verify_chain(conn)).ok


async def test_a_bad_agency_request_is_refused_with_a_reason(hub: Hub) -> None:
    await hub.add_gateway("lgsp-nghean", serves=["#.H41"], kind="province-platform")
    async with hub.pool.acquire() as conn:
        from router.directory.registry import set_agency_management

        await set_agency_management(conn, "lgsp-nghean", True, actor="test")
    await hub.start_router()
    async with hub.client("lgsp-nghean") as gw:
        for body in ({"code": NOIVU}, {"code": 7, "name": "x"}, {"code": "a b/c", "name": "x"},
                     {"code": NOIVU, "name": "x", "by": "not an actor"}):
            with pytest.raises(HubRefused) as refused:
                await gw.ask_hub("directory.register_agency", body)
            assert refused.value.reason in (Reason.HUB_REQUEST_BAD, Reason.BAD_AGENCY_CODE)
        # the client and the routers go on
        kind, answer = await gw.ask_hub("directory.register_agency",
                                        {"code": NOIVU, "name": "Sở Nội vụ"})
        assert kind == "directory.agency_registered" and answer["changed"] is True
