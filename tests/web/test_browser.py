"""A real headless Chromium uses the console: pipeline, a stage's bets, a bet's timeline, a live count.

Debian's ``chromium`` and ``chromium-driver`` drive it (``make test`` installs them
with ``fleet services install --browser``). Without them the test is skipped, but
with CI=true it fails. A screenshot of each page is kept in
``.fleet/artifacts/web/`` as the test's artifact.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet.definitions.protocols import load_protocols
from fleet.settings import get_settings

from ..conftest import IN_CI, ROOT, wait_for
from .conftest import AUTH, Seeded, Server

ARTIFACTS = ROOT / ".fleet" / "artifacts" / "web"


def browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        message = "chromium/chromedriver missing: run `fleet services install --browser`"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = browser_paths()
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1100"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    # Basic auth on every request the page makes (htmx's too), as a logged-in browser sends it.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": AUTH})
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def count_at(driver: Any, stage: str) -> str:
    """The stage's count as shown; "" while htmx is swapping the table (the element went stale)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, f'tr[data-stage="{stage}"] td.count').text)
    except (StaleElementReferenceException, NoSuchElementException):
        return ""


def test_a_browser_follows_a_bet_and_sees_counts_change_live(
    browser: Any, server: Server, seeded: Seeded
) -> None:
    from selenium.webdriver.common.by import By

    initial = seeded.registry.pipeline.initial_stage
    # Given the pipeline page
    browser.get(f"{server.url}/pipeline")
    assert count_at(browser, initial) == "3"
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.stage-graph g.node")) == len(
        seeded.registry.pipeline.stages
    )
    shot(browser, "pipeline")
    # When the operator follows the stage to its bets, then to one bet
    browser.find_element(By.CSS_SELECTOR, f'tr[data-stage="{initial}"] a').click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "a.bet-link"), 10, "the bets list")
    shot(browser, "bets")
    browser.find_element(By.CSS_SELECTOR, "a.bet-link").click()
    wait_for(lambda: browser.find_elements(By.ID, "timeline"), 10, "the bet's timeline")
    # Then the bet's timeline shows its creation
    assert browser.find_element(By.ID, "bet-stage").text == initial
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")) == 1
    shot(browser, "bet")
    # And back on the pipeline, a transition shows up without a reload
    browser.get(f"{server.url}/pipeline")
    bet = next(b for b in seeded.bets[1:])
    edge = seeded.registry.pipeline.edges_from(initial)[0]
    stamp = load_protocols(get_settings().protocols_dir).stamp
    seeded.enforcer.advance(bet.bet_id, edge.dest, edge.owner, 0, verdict="pass", stamp=stamp)
    wait_for(lambda: count_at(browser, initial) == "2", 20, "the live count to change")
    assert count_at(browser, edge.dest) == "2"
    for page in ("agents", "board", "schedule"):
        browser.get(f"{server.url}/{page}")
        wait_for(lambda: browser.find_elements(By.TAG_NAME, "h1"), 10, f"the {page} page")
        shot(browser, page)
    # And the browser logged no error on any page
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    assert all((ARTIFACTS / f"{name}.png").stat().st_size > 0 for name in ("pipeline", "bets", "bet"))


def test_artifacts_folder_is_ignored_by_git() -> None:
    assert ".fleet/" in Path(ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize(("width", "mobile"), [(390, True), (1500, False)], ids=["phone-390px", "desktop"])
def test_no_page_is_wider_than_its_viewport_and_actions_stay_reachable(
    browser: Any, server: Server, seeded: Seeded, db: Any, width: int, mobile: bool
) -> None:
    from selenium.webdriver.common.by import By

    from fleet.errors import TokenRejected
    from fleet.mcp.rejections import Rejections

    # Given a long claimed name among the rejected tokens (it must wrap, not widen the page)
    Rejections(db, per_minute=5).record(TokenRejected("bad signature", "x" * 64), "203.0.113.9", {})
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    bet = seeded.moved.bet_id
    stage = seeded.registry.pipeline.initial_stage
    for path in ("/pipeline", f"/bets?stage={stage}", f"/bets/{bet}", "/agents", "/board", "/schedule"):
        browser.get(f"{server.url}{path}")
        wait_for(lambda: browser.find_elements(By.TAG_NAME, "h1"), 10, f"the page {path}")
        # Then the page is no wider than the viewport (wide tables scroll inside their box)
        page_w, view_w = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        shot(browser, f"{path.strip('/').split('?')[0].replace('/', '-') or 'root'}-{width}")
        assert page_w <= view_w, f"{path} is {page_w} px wide in a {view_w} px viewport"
    # And each table's row action is on screen without scrolling the page (found and measured
    # in one script: the live part of a page is swapped every second)
    measure = (
        "const b = [...document.querySelectorAll('button')].find(e => e.textContent.trim() === arguments[0]);"
        "if (!b) return null; const r = b.getBoundingClientRect(); return [r.left, r.right];"
    )
    for path, button in (("/board", "close"), ("/agents", "heartbeat now")):
        browser.get(f"{server.url}{path}")
        found = wait_for(lambda b=button: browser.execute_script(measure, b), 10, f"the {button} button")
        left, right = found  # type: ignore[misc]
        assert left >= 0 and right <= width, f"{button} on {path} is at {left}..{right} of {width} px"
