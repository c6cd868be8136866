"""The Defense lab in real Chromium: four views, the adaptive switch, the clean effect of halftoning on ImageNet."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from browser_util import MAIN, assert_no_error, full_page_screenshot, open_lab, wait_for_text, wait_idle

from ui.views import defense as dv

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_defense_page_shows_views_and_the_adaptive_attacker(page: Page, app_url: str) -> None:
    open_lab(page, app_url, "defense", "Halftone(adversarial)", "at inference only, the model keeps")
    assert page.locator("h1").first.inner_text().strip() == "Defense lab"
    text = page.inner_text(MAIN)
    for title in dv.PANEL_TITLES.values():
        assert title in text, text[:2000]
    # the sentence on the bundled photos (its counts are checked against advcore in test_app_defense.py)
    m = re.search(r"keeps its clean top-1 answer on (\d+) of (\d+) photos, and that answer stays in the top 5 on "
                  r"(\d+) of (\d+)", " ".join(text.split()))
    assert m and m[2] == m[4] == "9" and int(m[1]) <= int(m[3]) <= 9, text[-3000:]
    page.wait_for_function(
        """sel => [...document.querySelectorAll(sel + ' img')]
                  .filter(i => i.complete && i.naturalWidth > 0).length >= 4""",
        arg=MAIN, timeout=30_000)
    assert "the paper's protocol" in text

    page.get_by_text(re.compile(r"^Attacker knows the defense")).first.click()
    wait_for_text(page, "knows the defense (BPDA)")  # the rerun is short: wait for its result, not its start
    wait_idle(page)
    assert_no_error(page)
    full_page_screenshot(page, "defense_page.png")
