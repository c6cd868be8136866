"""Real-browser test of the Geometry lab: Debian's Chromium, driven by Playwright, against the app as a server."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from browser_util import MAIN, assert_no_error, full_page_screenshot, open_lab, wait_for_text

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser


def test_geometry_page_draws_figure1_on_the_default_model(page: Page, app_url: str) -> None:
    """Opened directly, the page probes the default model (EfficientNet-Lite0) and the cat with its defaults."""
    open_lab(page, app_url, "geometry", "reads the clean image as")
    assert page.locator("h1").first.inner_text().strip() == "Geometry lab"
    main = page.locator(MAIN)
    chart = main.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    assert "Figure 1" in chart.inner_text()  # the title drawn in the svg
    # One marker per radius of the page's default grid (5 radii for an ImageNet model).
    assert chart.locator(".scatterlayer .trace .points path").count() == 5
    text = main.inner_text()
    assert re.search(r"20 points at each of 5 radii, L-inf distance, seed 0: [\d.]+ s", text), text[:1500]
    assert "A locally isotropic model would give a range of 0 at every radius." in text
    assert "python -m advcore geometry all --model efficientnet-lite0" in text

    page.get_by_role("tab", name="Topology (Mantel)").click()
    mantel = main.locator('[data-testid="stPlotlyChart"]', has_text="Figure 4")
    mantel.locator(".main-svg").first.wait_for(timeout=30_000)
    main.locator('[data-testid="stPlotlyChart"]', has_text="Input space, r =").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Naive vs robust").click()
    wait_for_text(page, "pick a Fashion-MNIST model in the sidebar")
    assert_no_error(page)
    full_page_screenshot(page, "geometry_page.png")
