"""Real-browser test of the Geometry lab: Debian's Chromium, driven by Playwright, against the app as a server."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pytest
from browser_util import MAIN, assert_no_error, full_page_screenshot, open_lab, wait_for_text, wait_idle

from advcore.cli.framework import load_image
from advcore.labs import geometry
from ui.frame import DEFAULT_GALLERY

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser
CHART = '[data-testid="stPlotlyChart"]'


def test_geometry_page_draws_figure1_on_the_default_model(page: Page, app_url: str) -> None:
    """Opened directly, the page shows the default model's (EfficientNet-Lite0 on the coffee photo) shipped result
    with its Run button, drawn like a computed one."""
    from playwright.sync_api import expect

    open_lab(page, app_url, "geometry", "reads the clean image as")
    assert page.locator("h1").first.inner_text().strip() == "Geometry lab"
    main = page.locator(MAIN)
    chart = main.locator(CHART).first
    chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    # Plotly draws the title and the markers after the chart's svg: wait for them rather than read once.
    expect(chart).to_contain_text("Figure 1", timeout=30_000)
    # One marker per radius of the page's default grid (5 radii for an ImageNet model).
    expect(chart.locator(".scatterlayer .trace .points path")).to_have_count(5, timeout=30_000)
    # the command line is a code block, drawn once its lazily loaded component arrives (a run read the text of the
    # caption after it without it): wait for it before reading the text
    wait_for_text(page, re.compile(r"python -m advcore geometry all --model efficientnet-lite0"))
    text = main.inner_text()
    assert "Shipped result (assets/geometry/probe-lite0-coffee.json" in text
    assert page.get_by_role("button", name=re.compile("Run")).count() >= 1
    assert re.search(r"20 points at each of 5 radii, L-inf distance, seed 0: [\d.]+ s", text), text[:1500]
    assert "A locally isotropic model would give a range of 0 at every radius." in text
    assert "python -m advcore geometry all --model efficientnet-lite0" in text

    page.get_by_role("tab", name="Topology (Mantel)").click()
    mantel = main.locator(CHART, has_text="Figure 4")
    mantel.locator(".main-svg").first.wait_for(timeout=30_000)
    main.locator(CHART, has_text="Input space, r =").first.wait_for(timeout=30_000)
    page.get_by_role("tab", name="Naive vs robust").click()
    wait_for_text(page, "pick a Fashion-MNIST model in the sidebar")
    assert_no_error(page)
    full_page_screenshot(page, "geometry_page.png")


def test_geometry_controls_on_fashion_mnist_with_values(page: Page, app_url: str) -> None:
    """One load of a Fashion-MNIST link: the score choice, Mantel r per layer with the random-map null, the global
    Lipschitz baseline and the many-image survey (Run), each with the library's numbers."""
    radii = [0.02, 0.05, 0.1]
    open_lab(page, app_url, "geometry?model=fmnist-naive&T=20&radii=0.02,0.05,0.1&score=log-prob&robust=fmnist-pgd"
             "&survey_n=12&survey_conf=0.99", "reads the clean image as")
    ref = geometry.probe_image("fmnist-naive", load_image(f"fashion-mnist:{DEFAULT_GALLERY}"), radii=radii, T=20,
                               permutations=199, score="log-prob", mantel_layers="all")
    main = page.locator(MAIN)
    iso = main.locator(CHART, has_text="Figure 1")
    iso.locator(".main-svg").first.wait_for(timeout=30_000)
    assert "log-probability (nats)" in iso.inner_text()  # the chosen score names the axis

    page.get_by_role("tab", name="Topology (Mantel)").click()
    layers = main.locator(CHART, has_text="Mantel r at every layer")
    layers.locator(".main-svg").first.wait_for(timeout=30_000)
    topo = ref.report.topology
    assert layers.locator(".barlayer .point").count() == len(topo.layer_r)
    assert f"random linear map to {topo.null_dim} values" in main.locator(CHART, has_text="Figure 4").inner_text()
    text = main.inner_text()
    assert f"gives {np.nanmin(topo.null_r):.3f} to {np.nanmax(topo.null_r):.3f}" in text

    page.get_by_role("tab", name="Local Lipschitz").click()
    base = ref.report.lipschitz.normalisers.baseline
    wait_for_text(page, f"has median {float(base.ratio.median()):.3g} and "
                        f"{float((base.ratio < 1).double().mean()):.1%} of its pairs below 1")

    page.get_by_role("tab", name="Naive vs robust").click()
    page.get_by_role("button", name="Run the survey").click()
    wait_idle(page, expect_rerun=True)
    page.get_by_role("tab", name="Naive vs robust").click()  # the rerun may show the first tab again
    main.locator(CHART, has_text="Median isotropy range over the kept images").locator(".main-svg").first.wait_for(
        timeout=30_000)
    whole = geometry.survey(["fmnist-naive", "fmnist-pgd"], 12, radii=radii, T=20, score="log-prob",
                            min_confidence=0, device="cpu")
    filt = whole.filtered(0.99)
    wait_for_text(page, re.compile(r"python -m advcore geometry-survey"))  # a code block, drawn once it loads
    text = main.inner_text()
    assert f"{len(filt.kept)} of 12 test images" in text
    for s in (filt, whole):
        for m in s.models:
            assert f"{s.median_image_range(m):.3e}" in text, (m, text[-2500:])
    assert ("python -m advcore geometry-survey --models fmnist-naive,fmnist-pgd --images 12 --min-confidence 0.99"
            in text)
    assert_no_error(page)
