"""The hub overview on the dashboard, in headless Chromium against the real services: the
routers stop → the red banner appears within the overview's refresh interval; they start
again → it clears. The statistics page shows the ranking and its chart."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

from aiohttp.test_utils import TestServer
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from router import topology
from router.directory.registry import AgencyRow
from router.ops.auth import TokenStore
from router.ops.server import create_app
from tests.factory import edoc
from tests.hub import Hub
from tests.polling import eventually

TOKEN = "browser-read-token-0123456789"
REFRESH_S = 5.0  # OVERVIEW_EVERY_MS in router/ops/static/hub.js
MARGIN_S = 3.0  # one request and one render on 2 shared cores


def _banner_shown(driver: webdriver.Chrome) -> bool:
    return bool(driver.execute_script(
        "const b = document.getElementById('hub-banner');"
        "return !b.hidden && b.querySelector('[data-alert=LienthongNoRouter]') !== null"))


def _log_in_and_see_routing(driver: webdriver.Chrome, base: str) -> None:
    wait = WebDriverWait(driver, 30)
    driver.get(base + "/")
    wait.until(ec.visibility_of_element_located((By.ID, "token-input")))
    driver.find_element(By.ID, "token-input").send_keys(TOKEN)
    driver.find_element(By.ID, "token-save").click()
    figures = wait.until(ec.visibility_of_element_located((By.ID, "overview-figures")))
    wait.until(lambda d: "Routers consuming" in figures.text)
    assert not _banner_shown(driver)
    assert not driver.find_element(By.ID, "hub-banner").is_displayed()
    # the statistics page: Văn phòng Chính phủ sent one document with a paper copy
    row = wait.until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, "#stats-table tbody tr")))
    assert "Văn phòng Chính phủ" in row.text and "0.0 %" in row.text, row.text
    chart = driver.find_element(By.CSS_SELECTOR, "#stats-chart svg")
    assert chart.get_attribute("data-bars") == "1"


def _banner_within(driver: webdriver.Chrome, shown: bool, seconds: float) -> float:
    started = time.monotonic()
    WebDriverWait(driver, seconds, poll_frequency=0.2).until(
        lambda d: _banner_shown(d) == shown)
    return time.monotonic() - started


async def test_banner_follows_the_routers(hub: Hub, browser: Any) -> None:
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"], name="Văn phòng Chính phủ")
    await hub.add_gateway("nghean", serves=["#.H41"], name="LGSP Nghệ An")
    await hub.add_agencies([AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
                            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An")])
    await hub.start_router()
    async with hub.client("vpcp") as vpcp:
        r = await vpcp.send(edoc("000.00.00.G22", ["000.00.00.H41"], paper="1")[1])
    assert r is not None and r.type == "accepted", r
    await eventually(lambda: _managed_consumers(hub, 1), timeout=30, interval=0.5,
                     what="the router on lt.router.in in the management API")
    app = create_app(hub.settings, tokens=TokenStore.parse(f"viewer:read:{TOKEN}"),
                     pool=hub.pool, refresh_interval=None, snapshot_ttl=0)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        await asyncio.to_thread(_log_in_and_see_routing, browser, base)

        await hub.stop_routers()
        # the broker's statistics lag a few seconds: the clock starts when it knows
        await eventually(lambda: _managed_consumers(hub, 0), timeout=30, interval=0.5,
                         what="no consumer on lt.router.in in the management API")
        took = await asyncio.to_thread(_banner_within, browser, True, REFRESH_S + MARGIN_S)
        assert browser.find_element(By.ID, "hub-banner").is_displayed()
        assert "No router consumes lt.router.in" in browser.find_element(By.ID, "hub-banner").text
        colour = browser.execute_script(
            "return getComputedStyle(document.getElementById('hub-banner')).backgroundColor")
        assert colour == "rgb(180, 35, 24)", colour
        shot = os.environ.get("LIENTHONG_SCREENSHOT_OVERVIEW") or os.path.join(
            tempfile.gettempdir(), "lienthong-ops-overview-banner.png")
        browser.save_screenshot(shot)

        await hub.start_router()
        await eventually(lambda: _managed_consumers(hub, 1), timeout=30, interval=0.5,
                         what="a consumer on lt.router.in in the management API")
        cleared = await asyncio.to_thread(_banner_within, browser, False, REFRESH_S + MARGIN_S)
        assert not browser.find_element(By.ID, "hub-banner").is_displayed()
        print(f"banner shown {took:.1f} s after the broker saw no router; "
              f"cleared {cleared:.1f} s after it saw one again")
    finally:
        await server.close()


async def _managed_consumers(hub: Hub, expected: int) -> bool:
    """The management API (what the ops service reads) shows ``expected`` consumers."""
    q = await hub.admin.get_queue(hub.settings.vhost, topology.ROUTER_IN)
    return q is not None and q.get("consumers") == expected
