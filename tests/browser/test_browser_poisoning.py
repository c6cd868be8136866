"""The Poisoning lab in real Chromium: the label flip table appears by itself, a poison frog run from the
button draws its table, the trial's four images and the feature-space chart."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from browser_util import MAIN, assert_no_error, full_page_screenshot, open_lab, wait_for_text, wait_idle

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_poisoning_page_runs_poison_frogs(page: Page, app_url: str) -> None:
    from playwright.sync_api import expect

    open_lab(page, app_url, "poisoning", "Accuracy under LF (measured)")
    assert page.locator("h1").first.inner_text().strip() == "Poisoning lab"
    main = page.locator(MAIN)
    assert "Paper, Table 3, MNIST" in main.inner_text()

    trials = page.get_by_role("spinbutton", name="Poison frog trials")
    trials.fill("2")
    trials.press("Enter")
    wait_idle(page, expect_rerun=True)
    button = page.get_by_role("button", name=re.compile(r"Run Table 2 \(poison frogs\)"))
    button.scroll_into_view_if_needed()
    button.click()
    wait_for_text(page, "One poison frog trial")
    wait_idle(page)
    # Streamlit draws a table once it is scrolled into view: bring Table 2 up and wait for its cells.
    page.get_by_text("Table 2: poison frogs").first.scroll_into_view_if_needed()
    wait_for_text(page, "Success rate (measured)")
    wait_for_text(page, re.compile(r"^\d of 2$"))
    text = main.inner_text()
    assert "Success rate (measured)" in text and "Paper, Table 2, CIFAR" in text
    assert re.search(r"\d of 2", text) and "--trials 2" in text, text[-2000:]
    assert "the boundary" in text
    page.get_by_text("One poison frog trial").scroll_into_view_if_needed()
    chart = main.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    expect(chart).to_contain_text("SVM boundary, poisoned", timeout=30_000)  # drawn after the svg
    page.wait_for_function(
        """sel => [...document.querySelectorAll(sel + ' img')]
                  .filter(i => i.complete && i.naturalWidth > 0).length >= 4""",
        arg=MAIN, timeout=30_000)
    assert_no_error(page)
    full_page_screenshot(page, "poisoning_page.png")
