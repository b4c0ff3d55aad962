"""Browser tests: the dashboard in real headless Chromium (Debian's ``chromium`` and
``chromium-driver``), driven by Selenium, against the ops service on a throwaway hub."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

# the same throwaway hub as the integration tests
from tests.integration.conftest import hub, template_db  # noqa: F401

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("LIENTHONG_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LIENTHONG_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        message = (
            f"browser tests need {', '.join(missing)}: "
            "apt-get install -y chromium chromium-driver (make setup does it)"
        )
        pytest.fail(message)  # a missing browser is a failure, never a skip
    profile = tempfile.mkdtemp(prefix="lt-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000",
        "--lang=vi-VN",
    ):
        options.add_argument(arg)
    # an explicit driver path: Selenium Manager never tries to download anything
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
