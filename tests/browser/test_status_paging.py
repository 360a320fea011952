"""The status page's paging and search in a real browser (headless chromium, as
test_status_page.py): with more groups than a page holds, the page shows the totals and
24 groups, "next" shows the following ones, a group's button opens all its tablets, and
the search box lists the tablets whose names contain what was typed. One in-process zero
whose state is filled through proposals."""

from __future__ import annotations

import io
from typing import Any

import pytest

from support.aio import until
from test_status_page import MISSING, Loop, _browser, pytestmark  # noqa: F401 (the same skip rule)
from zero.app import ZeroApp
from zero.config import RunConfig
from zero.pb import state_pb2, zero_pb2

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - the [test] extra installs it
    pass

GROUPS = 60


@pytest.fixture(autouse=True)
def _browser_tools() -> None:
    if MISSING:
        pytest.fail(f"CI is set and the browser test cannot run; missing: {', '.join(MISSING)}", pytrace=False)


async def _zero(tmp_path: Any) -> ZeroApp:
    app = ZeroApp(RunConfig(data_dir=str(tmp_path / "zw"), grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0",
                            tick=0.01, log_format="json", rebalance_interval=0), log_stream=io.StringIO())
    await app.start()
    node = app.node
    assert node is not None
    await until(lambda: node.is_leader and bool(node.state.cluster_id), 20, message="the zero to lead")
    for i in range(GROUPS):
        await node.propose(state_pb2.Proposal(connect=state_pb2.ConnectMember(addr=f"dn{i}:7080", replicas=1)))
    # Group g holds 60 - g + 1 tablets (group 1 the most), 1,830 in all.
    tablets = [zero_pb2.Tablet(predicate=f"t{g}.{k}", group_id=g) for g in range(1, GROUPS + 1)
               for k in range(GROUPS - g + 1)]
    await node.propose(state_pb2.Proposal(claim_tablets=state_pb2.ClaimTablets(tablets=tablets)))
    return app


def _cards(driver: Any) -> list[str]:
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#groups [data-group-id]')].map(c => c.dataset.groupId);")
    return ids


@pytest.mark.timeout(120)
def test_groups_page_and_search(tmp_path: Any) -> None:
    loop = Loop()
    app = loop.run(_zero(tmp_path))
    driver = None
    try:
        driver = _browser()
        wait = WebDriverWait(driver, 15)
        driver.get(f"http://127.0.0.1:{app.http_port}/")
        wait.until(lambda d: "60 groups" in d.find_element(By.ID, "totals").text)
        assert "1,830 tablets" in driver.find_element(By.ID, "totals").text
        wait.until(lambda d: _cards(d) == [str(g) for g in range(1, 25)])  # the most tablets first
        # The next page.
        next_button = driver.find_element(By.XPATH, "//div[@id='groups-pager']//button[contains(., 'next')]")
        next_button.click()
        wait.until(lambda d: _cards(d) == [str(g) for g in range(25, 49)])
        assert "25–48 of 60" in driver.find_element(By.ID, "groups-pager").text
        # Group 30 holds 31 tablets, 12 shown: its button opens all of them.
        driver.find_element(By.CSS_SELECTOR, "button[data-open-group='30']").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#group-detail li.tablet")) == 31)
        # The search box.
        box = driver.find_element(By.ID, "tablet-search")
        box.send_keys("t59.")
        wait.until(lambda d: {li.get_attribute("data-tablet")
                              for li in d.find_elements(By.CSS_SELECTOR, "#search-results li.match")}
                   == {"t59.0", "t59.1"})
        assert "2 tablets contain" in driver.find_element(By.ID, "search-results").text
        driver.save_screenshot(str(tmp_path / "status-paging.png"))
    finally:
        if driver is not None:
            driver.quit()
        try:
            loop.run(app.stop(), timeout=30)
        finally:
            loop.close()
