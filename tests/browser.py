"""A real headless Chromium for the HTML pages (Debian's chromium + chromium-driver, which
`make test` and .ci/run install when absent), driven with Selenium: the `browser` fixture
(tests/conftest.py) and `image_widths`."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make test installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1600", "--allow-file-access-from-files"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def image_widths(driver) -> list[int]:
    """Every <img>'s naturalWidth once all have loaded or failed (0 for one that failed)."""
    driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([...document.images].map(i => i.complete ? null : new Promise(r => {i.onload = i.onerror = r;})))
          .then(() => done());""")
    return driver.execute_script("return [...document.images].map(i => i.naturalWidth)")
