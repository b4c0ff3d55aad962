"""The dashboard passes axe-core (from the npm registry, tests/browser/package.json) with
no serious or critical violation, on the login form, on every section once loaded and with
the audit log filtered, in headless Chromium against the real services."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from router.directory.registry import AgencyRow, set_gateway_status
from router.ops.auth import TokenStore
from router.ops.server import create_app
from tests.factory import edoc
from tests.hub import Hub

TOKEN = "browser-read-token-0123456789"
AXE = Path(__file__).with_name("node_modules") / "axe-core" / "axe.min.js"


def _axe(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Serious and critical violations on the page as it is now."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text("utf-8"))
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then((r) => done(JSON.stringify(r.violations)))"
        "  .catch((e) => done(JSON.stringify([{id: 'axe-error', impact: 'critical',"
        "                                       help: String(e), nodes: []}])));")
    violations: list[dict[str, Any]] = json.loads(result)
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def _explain(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(n["target"][0] if n.get("target") else "?" for n in v["nodes"][:5])
        for v in violations)


def _session(driver: webdriver.Chrome, base: str) -> None:
    wait = WebDriverWait(driver, 30)
    driver.set_script_timeout(30)
    driver.get(base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token-input")))
    login = _axe(driver)
    assert not login, _explain(login)
    driver.find_element(By.ID, "token-input").send_keys(TOKEN)
    driver.find_element(By.ID, "token-save").click()
    wait.until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, "#gateways-table tr[data-gateway='nghean']")))
    wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#stats-table tbody tr")))
    wait.until(lambda d: "Routers consuming" in d.find_element(By.ID, "overview-figures").text)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#chart svg")))
    loaded = _axe(driver)
    assert not loaded, _explain(loaded)

    # the gateway table sorts by keyboard: Enter on a focused header, and says so
    th = driver.find_element(By.CSS_SELECTOR, "#gateways-table th[data-key='gateway_id']")
    th.send_keys(Keys.ENTER)
    assert th.get_attribute("aria-sort") == "ascending"
    ids = [r.get_attribute("data-gateway") for r in
           driver.find_elements(By.CSS_SELECTOR, "#gateways-table tbody tr")]
    assert ids == sorted(ids) and len(ids) == 2
    th.send_keys(Keys.SPACE)
    assert th.get_attribute("aria-sort") == "descending"
    # the delivery lists are tabs: the arrow keys move the selection
    first = driver.find_element(By.CSS_SELECTOR, "#list-tabs [data-list='failed']")
    first.send_keys(Keys.ARROW_RIGHT)
    chosen = driver.find_element(By.CSS_SELECTOR, "#list-tabs [aria-selected='true']")
    assert chosen.get_attribute("data-list") == "not_arrived"
    assert driver.switch_to.active_element == chosen
    chosen.send_keys(Keys.END)
    assert driver.find_element(By.CSS_SELECTOR, "#list-tabs [aria-selected='true']"
                               ).get_attribute("data-list") == "overdue"
    again = _axe(driver)
    assert not again, _explain(again)

    # the audit log, filtered by action prefix from the keyboard: the suspension is there
    box = driver.find_element(By.ID, "audit-action")
    box.send_keys("gateway.")
    box.send_keys(Keys.ENTER)
    # read in one script: the rows are replaced as each answer arrives
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#audit-table tbody tr')]"
        ".map((r) => r.dataset.action)") == ["gateway.suspended", "gateway.added", "gateway.added"])
    wait.until(lambda d: "No anchor published yet" in d.find_element(By.ID, "audit-anchor").text)
    audit = _axe(driver)
    assert not audit, _explain(audit)


async def test_dashboard_has_no_serious_accessibility_violation(hub: Hub, browser: Any) -> None:
    assert AXE.exists(), f"{AXE} is missing: make setup (npm ci in tests/browser)"
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"], name="Văn phòng Chính phủ")
    await hub.add_gateway("nghean", serves=["#.H41"], name="LGSP Nghệ An")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"], paper="0")[1])
    assert r is not None and r.type == "accepted", r
    async with hub.pool.acquire() as conn:
        await set_gateway_status(conn, hub.admin, hub.settings.vhost, "nghean", "suspended")
    app = create_app(hub.settings, tokens=TokenStore.parse(f"viewer:read:{TOKEN}"),
                     pool=hub.pool, refresh_interval=None, snapshot_ttl=0)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await asyncio.to_thread(_session, browser, str(server.make_url("")).rstrip("/"))
    finally:
        await server.close()
