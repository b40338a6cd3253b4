"""A real headless Chromium for the live view's tests, driven by selenium.

Debian's ``chromium`` and ``chromium-driver`` (``make setup`` installs both): selenium is
given their paths, so it never tries to download a driver (the machines have no network).
Root needs ``--no-sandbox``; the rest keeps Chromium from calling home, and a fresh profile
keeps runs apart.
"""

import contextlib
import os
import shutil
import tempfile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1500,950")


@contextlib.contextmanager
def chromium():
    """A selenium WebDriver of a fresh headless Chromium; quit on exit, profile removed."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            raise RuntimeError(f"{path} is missing: run `make setup` (Debian's chromium and "
                               "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    profile = tempfile.mkdtemp(prefix="aifabric-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_script_timeout(20)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def refresh(driver, ok=True):
    """Make the page refresh now and wait until it has drawn (window.fabricView.refresh);
    returns its refresh count. With ``ok``, a refresh the page reports as failed (its status
    line in error) fails the test with the page's message."""
    error = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.fabricView.refresh().then(() => {"
        "  const s = document.getElementById('status');"
        "  done(s.classList.contains('error') ? s.textContent : null);"
        "}, (e) => done(String(e)));")
    assert not ok or error is None, f"the page failed to refresh: {error}"
    return int(driver.find_element("id", "fabric").get_attribute("data-refreshes"))


def click(driver, css, tries=5):
    """Click the element ``css`` selects; the page redraws every second, so an element can go
    stale between finding and clicking it: find it again."""
    from selenium.common.exceptions import StaleElementReferenceException
    for _ in range(tries - 1):
        try:
            return driver.find_element("css selector", css).click()
        except StaleElementReferenceException:
            continue
    return driver.find_element("css selector", css).click()


def drawn_links(driver):
    """Every drawn link at one instant: ``{(a, b): {"util", "colour", "stroke", "on_path"}}``
    (``stroke``: the colour the browser computed for it, as ``rgb(r, g, b)``)."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#fabric line.link')].map((e) => ["
        "Number(e.dataset.a), Number(e.dataset.b), Number(e.dataset.util), e.dataset.colour,"
        "getComputedStyle(e).stroke, e.dataset.onPath === '1']);")
    out = {}
    for a, b, util, colour, stroke, on_path in rows:
        assert (a, b) not in out, f"link {a}->{b} drawn twice"
        out[(a, b)] = {"util": util, "colour": colour, "stroke": stroke, "on_path": on_path}
    return out


def legend(driver):
    """The legend the page shows: ``[(lo, hi or None, colour)]``, lowest bin first."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#legend .legend-bin')].map((e) => ["
        "Number(e.dataset.lo), e.dataset.hi === '' ? null : Number(e.dataset.hi),"
        "e.dataset.colour, getComputedStyle(e.querySelector('.swatch')).backgroundColor]);")
    return sorted(rows)


def rgb(hex_colour):
    """``#rrggbb`` as the browser computes it: ``rgb(r, g, b)``."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"
