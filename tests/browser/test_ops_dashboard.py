"""The ops dashboard as an operator uses it, in headless Chromium against the real services:
log in with a token, see a stopped gateway as unhealthy, sort the table, find a document
and read its timeline, preview a re-delivery (dry run: nothing is sent), find a gateway's
suspension in the audit log and the latest signed anchor of the audit chain."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

import aio_pika
from aiohttp.test_utils import TestServer
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from router.directory.registry import AgencyRow, set_gateway_status
from router.ops.auth import TokenStore
from router.ops.server import create_app
from router.outbox.signing import generate_hub_key
from router.security.anchors import publish_anchor
from router.topology import RECEIPTS, inbox_queue
from tests.factory import edoc
from tests.hub import Hub

TOKEN = "browser-read-token-0123456789"


async def _scene(hub: Hub) -> tuple[str, str, int]:
    """Three recipient gateways: btc consumes, nghean is stopped, danang lost its inbox;
    once the document is sent, the operator suspends the sender (audited) and the hub
    publishes a signed anchor of the audit chain (its head id is returned)."""
    await hub.add_gateway("vpcp", serves=["000.00.00.G22"], name="Văn phòng Chính phủ")
    await hub.add_gateway("btc", serves=["000.00.00.G12"], name="Bộ Tài chính")
    await hub.add_gateway("nghean", serves=["#.H41"], name="LGSP Nghệ An")
    await hub.add_gateway("danang", serves=["#.H17"], name="LGSP Đà Nẵng")
    await hub.add_agencies(
        [
            AgencyRow("000.00.00.G22", "Văn phòng Chính phủ"),
            AgencyRow("000.00.00.G12", "Bộ Tài chính"),
            AgencyRow("000.00.00.H41", "UBND tỉnh Nghệ An"),
            AgencyRow("000.00.00.H17", "UBND TP Đà Nẵng"),
        ]
    )
    await hub.admin.request(
        "DELETE", f"/queues/{hub.settings.vhost}/{inbox_queue('danang')}", ok_missing=True
    )
    await hub.start_router()
    doc, body = edoc(
        "000.00.00.G22", ["000.00.00.G12", "000.00.00.H41", "000.00.00.H17"],
        subject="Về việc kiểm thử bảng điều khiển",
    )
    async with hub.client("vpcp") as vpcp:
        receipt = await vpcp.send(body)
    assert receipt is not None
    assert receipt.type == "accepted", receipt
    assert doc.document_id is not None
    async with hub.pool.acquire() as conn:
        await set_gateway_status(conn, hub.admin, hub.settings.vhost, "vpcp", "suspended",
                                 actor="cli:operator")
    signer = generate_hub_key(os.path.join(tempfile.mkdtemp(prefix="lt-hub-key-"), "hub.key"))
    amqp = await aio_pika.connect(hub.settings.amqp_url)
    async with amqp:
        exchange = await (await amqp.channel(publisher_confirms=True)).get_exchange(RECEIPTS)
        anchor = await publish_anchor(hub.pool, exchange, signer, interval=0, force=True)
    assert anchor is not None and anchor.number == 1
    return doc.document_id, str(receipt.hub_id), anchor.seq


def _operator_session(
    driver: webdriver.Chrome, base: str, document_id: str, hub_id: str, head_id: int
) -> None:
    wait = WebDriverWait(driver, 20)
    driver.get(base + "/")
    # no token yet: the page asks for one
    wait.until(ec.visibility_of_element_located((By.ID, "token-input")))
    driver.find_element(By.ID, "token-input").send_keys(TOKEN)
    driver.find_element(By.ID, "token-save").click()

    # the gateway table: the stopped gateway is unhealthy, the consuming one is fine
    row = wait.until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, "#gateways-table tr[data-gateway='nghean']")))
    assert "health-no_consumer" in (row.get_attribute("class") or "")
    assert "unhealthy" in (row.get_attribute("class") or "")
    assert "Không có kết nối nhận / No consumer" in row.text
    ok_row = driver.find_element(By.CSS_SELECTOR, "#gateways-table tr[data-gateway='btc']")
    assert "health-ok" in (ok_row.get_attribute("class") or "")
    assert "Bình thường / OK" in ok_row.text
    colour = driver.execute_script(
        "return getComputedStyle(arguments[0].querySelector('.health')).color", row)
    assert colour == "rgb(180, 35, 24)", colour  # the red of unhealthy gateways
    assert driver.execute_script(
        "return sessionStorage.getItem('lienthong.ops.token')") == TOKEN

    # sorting: unhealthy first by default; clicking "Mã / Id" sorts by id, again reverses
    def ids() -> list[str]:
        return [r.get_attribute("data-gateway") or "" for r in
                driver.find_elements(By.CSS_SELECTOR, "#gateways-table tbody tr")]
    assert ids()[-1] == "btc"
    driver.find_element(By.CSS_SELECTOR, "#gateways-table th[data-key='gateway_id']").click()
    assert ids() == ["btc", "danang", "nghean", "vpcp"]
    driver.find_element(By.CSS_SELECTOR, "#gateways-table th[data-key='gateway_id']").click()
    assert ids() == ["vpcp", "nghean", "danang", "btc"]

    # the throughput chart has one point per minute of the last hour
    chart = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#chart svg")))
    assert chart.get_attribute("data-points") == "60"

    # document search by edXML DocumentId: facts and a timeline per recipient
    box = driver.find_element(By.ID, "doc-search-input")
    box.send_keys(document_id)
    driver.find_element(By.ID, "doc-search-button").click()
    doc = wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#timeline article.doc")))
    assert doc.get_attribute("data-hub-id") == hub_id
    assert "Về việc kiểm thử bảng điều khiển" in doc.text
    recipients = {r.get_attribute("data-agency"): r for r in
                  doc.find_elements(By.CSS_SELECTOR, ".recipient")}
    assert set(recipients) == {"000.00.00.G12", "000.00.00.H41", "000.00.00.H17"}
    assert recipients["000.00.00.H17"].get_attribute("data-state") == "undeliverable"
    assert "Trục đã nhận / Submitted" in recipients["000.00.00.H41"].text
    assert "Trong hàng đợi / Queued" in recipients["000.00.00.H41"].text

    # the failed list holds Đà Nẵng's copy; "Re-deliver…" shows a dry run, sends nothing
    failed = wait.until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, "#deliveries-table tbody tr")))
    assert "000.00.00.H17" in failed.text
    driver.find_element(By.ID, "redeliver-preview").click()
    summary = wait.until(ec.visibility_of_element_located((By.ID, "redeliver-summary")))
    wait.until(lambda d: "Dry run" in summary.text)
    assert driver.find_element(By.ID, "redeliver-panel").get_attribute("data-total") == "1"
    assert "000.00.00.H17" in driver.find_element(By.ID, "redeliver-table").text
    assert driver.find_element(By.ID, "redeliver-confirm").is_enabled()

    def audit_actions(d: webdriver.Chrome) -> list[str]:
        # read in one script: the rows are replaced as each answer arrives
        actions: list[str] = d.execute_script(
            "return [...document.querySelectorAll('#audit-table tbody tr')]"
            ".map((r) => r.dataset.action)")
        return actions

    # the audit log: filtered by "gateway." it shows only gateway changes, among them the
    # suspension of vpcp by the CLI operator with the status before and after
    anchor = wait.until(ec.visibility_of_element_located((By.ID, "audit-anchor")))
    wait.until(lambda d: anchor.get_attribute("data-number") == "1")
    assert "Latest anchor" in anchor.text and f"head id {head_id}" in anchor.text, anchor.text
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr"))
    unfiltered = set(audit_actions(driver))
    assert "agencies.imported" in unfiltered, unfiltered  # before filtering: not only gateways
    driver.find_element(By.ID, "audit-action").send_keys("gateway.")
    driver.find_element(By.ID, "audit-load").click()

    wait.until(lambda d: audit_actions(d) and all(a.startswith("gateway.")
                                                  for a in audit_actions(d)))
    rows = driver.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
    suspended = [r for r in rows if r.get_attribute("data-action") == "gateway.suspended"]
    assert len(suspended) == 1, [r.text for r in rows]
    cells = [c.text for c in suspended[0].find_elements(By.TAG_NAME, "td")]
    assert cells[1:4] == ["cli:operator", "gateway.suspended", "vpcp"], cells
    assert '"before":{"status":"active"}' in cells[4], cells[4]
    assert '"after":{"status":"suspended"}' in cells[4], cells[4]
    added = {r.find_elements(By.TAG_NAME, "td")[3].text for r in rows
             if r.get_attribute("data-action") == "gateway.added"}
    assert added == {"vpcp", "btc", "nghean", "danang"}, added
    assert driver.find_element(By.ID, "audit-count").text == f"{len(rows)} mục / entries"
    assert driver.find_element(By.ID, "audit-error").text == ""
    shot = os.environ.get("LIENTHONG_SCREENSHOT") or os.path.join(
        tempfile.gettempdir(), "lienthong-ops-dashboard.png")
    driver.save_screenshot(shot)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(shot.replace(".png", "-top.png"))


async def test_dashboard_operator_session(hub: Hub, browser: Any) -> None:
    document_id, hub_id, head_id = await _scene(hub)
    app = create_app(hub.settings, tokens=TokenStore.parse(f"viewer:read:{TOKEN}"),
                     pool=hub.pool, refresh_interval=None, snapshot_ttl=0)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    conn = await aio_pika.connect(hub.settings.amqp_url)
    try:
        async with conn:
            ch = await conn.channel()

            async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                await message.ack()

            await (await ch.get_queue(inbox_queue("btc"), ensure=False)).consume(take)
            # the management API's statistics lag a few seconds behind the consumer
            deadline = time.monotonic() + 30
            while True:
                q = await hub.admin.get_queue(hub.settings.vhost, inbox_queue("btc"))
                if q and q.get("consumers"):
                    break
                assert time.monotonic() < deadline, "consumer not visible in management API"
                await asyncio.sleep(0.5)
            base = str(server.make_url("")).rstrip("/")
            # Selenium blocks: drive the browser from a thread while this loop serves
            await asyncio.to_thread(
                _operator_session, browser, base, document_id, hub_id, head_id)
    finally:
        await server.close()
    # the dry run sent nothing and started no job
    assert await hub.pool.fetchval("SELECT count(*) FROM redelivery_jobs") == 0
    assert await hub.pool.fetchval(
        "SELECT state FROM deliveries WHERE recipient_code = '000.00.00.H17'") == "undeliverable"
