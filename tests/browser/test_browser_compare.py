"""Real Chromium on the Compare attacks page: run a small Fashion-MNIST comparison, see the table and heat map."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from browser_util import MAIN, assert_no_error, full_page_screenshot, open_lab, wait_for_text, wait_idle

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_compare_page_runs_a_small_comparison(page: Page, app_url: str) -> None:
    open_lab(page, app_url, "compare", "Compare attacks")
    page.get_by_text("Fashion-MNIST: the model zoo").click()
    page.locator(".st-key-compare_limit").get_by_text("20").first.wait_for()  # only Fashion-MNIST has it
    wait_idle(page)
    page.locator(".st-key-compare_run button").click()
    wait_for_text(page, "Per-attack results")
    wait_idle(page)
    main = page.locator(MAIN)
    wait_for_text(page, re.compile(r"python -m advcore compare"))  # a code block, drawn once its component loads
    text = main.inner_text()
    assert re.search(r"AGR fooled \d+\.\d%", text), text[:2000]
    assert "quoted, not measured here" in text
    assert "Mean black-box success" in text and "Stop policy: every iterative attack stops" in text
    assert "p(clean label) left" in text and "Clean agreement" in text
    # Tables and charts are drawn once scrolled into view: wait for each instead of counting once.
    table = main.locator('[data-testid="stTable"]').first
    table.scroll_into_view_if_needed()
    table.wait_for(timeout=30_000)
    heat = main.locator(".js-plotly-plot").filter(has_text="Transfer of AGR")
    heat.first.scroll_into_view_if_needed()
    heat.first.wait_for(timeout=30_000)
    main.locator(".js-plotly-plot").nth(4).wait_for(timeout=30_000)  # four bar charts and the heat map
    assert "python -m advcore compare" in text
    assert_no_error(page)
    full_page_screenshot(page, "compare_page.png")
