"""Real-browser tests: Debian's Chromium, driven by Playwright, against the Streamlit app run as a server.

Skipped (with the reason) when Chromium or Python playwright is missing, unless ADVLAB_REQUIRE_BROWSER=1,
which turns the skip into a failure (for CI, where scripts/test.sh installs Chromium).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import pytest
import torch
from browser_util import (
    ARTIFACTS,
    LOAD_MS,
    MAIN,
    assert_no_error,
    full_page_screenshot,
    open_lab,
    wait_for_text,
    wait_idle,
)
from PIL import Image

from advcore import data, models

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

DEFAULT_CLASSES = {"espresso", "cup", "coffee mug"}  # the default photo, coffee.jpg (ui.frame's first sample)
# "Clean prediction: tabby (87.3%)"; the class name may itself contain commas or parentheses.
PREDICTION = re.compile(r"(Clean|Adversarial) prediction:\s*(.+?)\s*\((\d+(?:\.\d+)?)\s*%\)\s*$", re.MULTILINE)


def predictions(page: Page) -> dict[str, tuple[str, float]]:
    """{"Clean": (name, percent), "Adversarial": (name, percent)} read from the main area's text."""
    found = {kind: (name.strip(" *_"), float(p)) for kind, name, p in PREDICTION.findall(page.inner_text(MAIN))}
    for _, p in found.values():
        assert 0.0 <= p <= 100.0
    return found


def check_downloaded_png(path: Path, clean_name: str) -> None:
    """The downloaded file is a 224x224 RGB PNG that Lite0 no longer reads as the clean class."""
    blob = path.read_bytes()
    assert blob.startswith(b"\x89PNG\r\n\x1a\n"), blob[:16]
    im = Image.open(io.BytesIO(blob))
    assert (im.format, im.mode, im.size) == ("PNG", "RGB", (224, 224))
    model = models.load("efficientnet-lite0", device="cpu")
    with torch.no_grad():
        label = int(model(data.prepare(im.convert("RGB"), (3, 224, 224))).argmax(1))
    assert models.class_names("efficientnet-lite0")[label].lower() != clean_name.lower()


def follow_the_attack_link(page: Page) -> None:
    """From the open Home page, follow the sidebar link to the Attack lab, wait for the attack result."""
    link = page.locator('[data-testid="stSidebarNav"] a', has_text="Attack").first
    link.wait_for(timeout=LOAD_MS)
    link.click()
    page.wait_for_url(re.compile(r"/attack/?(\?|$)"), timeout=30_000)  # the URL then holds the settings
    wait_for_text(page, "Adversarial prediction:")
    wait_idle(page)


def test_home_page_then_the_attack_lab_runs_the_default_attack_then_pgd(page: Page, app_url: str) -> None:
    """The Home page; its sidebar link to the Attack lab; the default FGSM attack with its images, chart and
    download; then PGD picked in the Attack select box. (The /attack URL opened directly:
    test_attack_page_cancels_a_long_run and the fresh-server test.)"""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    open_lab(page, app_url, "", re.compile("advlab", re.IGNORECASE))
    text = page.locator(MAIN).inner_text()
    assert re.search(r"advlab", text, re.IGNORECASE), text
    assert re.search(r"attack lab", text, re.IGNORECASE), text
    assert page.locator("h1").count() >= 1
    assert page.locator('[data-testid="stSidebarNav"] a', has_text="Attack").count() >= 1
    assert_no_error(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "home_page.png"), full_page=True)

    follow_the_attack_link(page)
    assert urlparse(page.url).path.rstrip("/").endswith("/attack")

    preds = predictions(page)
    assert set(preds) == {"Clean", "Adversarial"}, page.inner_text(MAIN)[:2000]
    clean, adv = preds["Clean"][0], preds["Adversarial"][0]
    assert clean.lower() in DEFAULT_CLASSES, f"clean prediction {clean!r} is not a coffee class"
    assert adv.lower() != clean.lower(), f"FGSM at 4/255 did not change the prediction ({clean!r})"

    main = page.locator(MAIN)
    page.wait_for_function(
        """sel => [...document.querySelectorAll(sel + ' img')]
                  .filter(i => i.complete && i.naturalWidth > 0).length >= 3""",
        arg=MAIN,
        timeout=30_000,
    )
    # Vega's bundle loads lazily: wait for the first chart (the clean top-5) to draw.
    main.locator('[data-testid="stVegaLiteChart"] svg.marks').first.wait_for(timeout=30_000)
    # The numbers are in a section drawn only once it is open (ui.views.attack.SECTIONS): a click opens it.
    assert main.locator('[data-testid="stDownloadButton"]', has_text="Download adversarial PNG").count() == 0
    main.locator('[data-testid="stExpander"] summary', has_text="Heat map, metrics table and downloads").click()
    wait_idle(page, expect_rerun=True)
    download = main.locator('[data-testid="stDownloadButton"]', has_text="Download adversarial PNG")
    download.first.wait_for(timeout=30_000)
    assert download.count() == 1
    # Streamlit draws a table only once it is scrolled into view; the metrics table sits above the downloads.
    download.scroll_into_view_if_needed()
    main.locator('[data-testid="stTable"]').first.wait_for(timeout=30_000)
    with page.expect_download(timeout=30_000) as info:
        download.locator("button, a").first.click()
    check_downloaded_png(info.value.path(), clean)
    assert_no_error(page)

    full_page_screenshot(page, "attack_page.png")

    # PGD from the select box: the same clean prediction, a new adversarial one.
    # Streamlit's select box is an ARIA combobox named after its label.
    # React Aria may re-mount the input after a run, so wait for it rather than count it once.
    select = page.get_by_role("combobox", name="Attack", exact=True)
    try:
        select.wait_for(state="visible", timeout=30_000)
    except PlaywrightTimeout:
        pytest.fail(f"no select box labelled 'Attack':\n{page.inner_text(MAIN)[:2000]}")
    select.click()
    page.get_by_role("option", name=re.compile(r"\bPGD\b")).first.click()
    wait_idle(page, expect_rerun=True)

    assert re.search(r"\bPGD\b", select.input_value()), select.input_value()
    wait_for_text(page, "Adversarial prediction:")
    after = predictions(page)
    assert set(after) == {"Clean", "Adversarial"}, page.inner_text(MAIN)[:2000]
    assert after["Clean"] == preds["Clean"], "the clean prediction must not depend on the attack"
    assert after["Adversarial"][0].lower() != after["Clean"][0].lower(), "PGD at 4/255 did not fool the model"
    assert_no_error(page)


def test_attack_page_cancels_a_long_run(page: Page, app_url: str) -> None:
    """A link to PGD with 200 steps waits for Run attack (too long to rerun on every change); Run draws
    "PGD on efficientnet-lite0: step N of 200" and Cancel stops it mid-run with a warning and no result.
    200 Lite0 steps on the 224x224 photo take 13 s on one idle CPU thread, seconds more than the test needs to
    see the progress line and click."""
    open_lab(page, app_url, "attack?attack=pgd&steps=200", "press Run attack")
    assert "Adversarial prediction:" not in page.locator(MAIN).inner_text()  # nothing ran by itself
    page.get_by_role("button", name="Run attack").click()
    wait_for_text(page, re.compile(r"PGD on efficientnet-lite0: step \d+ of 200"), timeout_ms=60_000)
    page.get_by_role("button", name="Cancel").click()
    wait_for_text(page, re.compile(r"Cancelled at step \d+ of 200; nothing was kept"))
    wait_idle(page)
    text = page.locator(MAIN).inner_text()
    stopped = int(re.search(r"Cancelled at step (\d+) of 200", text).group(1))
    assert 1 <= stopped < 200, text[:2000]
    assert "Adversarial prediction:" not in text, text[:2000]
    assert page.get_by_role("button", name="Run attack").count() == 1
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert_no_error(page)


def test_fresh_server_opened_on_attack_shows_the_app_navigation(page: Page, fresh_app_url: str) -> None:
    """A new server's very first request is /attack (a tab reconnecting after a restart): the page must run
    through app.py's st.navigation (Home / Attack lab and the shared sidebar), not as a legacy page of its own."""
    open_lab(page, fresh_app_url, "attack", "Adversarial prediction:")
    # Each link's text is its Material icon's ligature name, then its label: "bolt\n\nAttack lab".
    nav = [t.strip().splitlines()[-1] for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
    from ui.frame import LABS

    assert nav == [lab.title for lab in LABS], nav
    assert nav[:2] == ["Home", "Attack lab"], nav
    assert urlparse(page.url).path.rstrip("/").endswith("/attack")
    assert page.locator("h1").first.inner_text().strip() == "Attack lab"
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    assert "Setup" in sidebar and "Model" in sidebar, sidebar[:1000]
    assert set(predictions(page)) == {"Clean", "Adversarial"}
    assert_no_error(page)


def test_training_page_renders_figure4_and_cancels_a_run(page: Page, app_url: str) -> None:
    """Figure 4 draws one line per shipped model; a started run shows live progress and stops on Cancel."""
    from playwright.sync_api import expect

    from advcore.models import zoo

    open_lab(page, app_url, "training", "Average accuracy over the strength range")
    assert page.locator("h1").first.inner_text().strip() == "Training lab"
    main = page.locator(MAIN)
    chart = main.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=30_000)
    cards = [c for c in (zoo.read_card(p) for p in zoo.shipped_cards()) if c.get("curves")]
    # Plotly draws the traces after the chart's svg: wait for all of them rather than count once (a loaded
    # machine once read 1 of 7).
    expect(chart.locator(".scatterlayer .trace")).to_have_count(len(cards), timeout=30_000)
    expect(chart).to_contain_text("Standard training", timeout=30_000)  # the legend, drawn after the traces
    page.get_by_text("Average accuracy over the strength range").scroll_into_view_if_needed()
    table = main.locator('[data-testid="stTable"]')  # drawn once scrolled into view
    table.wait_for(timeout=30_000)
    assert table.locator("tbody tr").count() == len(cards)
    assert_no_error(page)

    full_page_screenshot(page, "training_page.png")

    # PGD-7 adversarial training takes long enough to be cancelled half-way.
    recipe = page.get_by_role("combobox", name="Recipe", exact=True)
    recipe.scroll_into_view_if_needed()
    recipe.click()
    page.keyboard.type("PGD-7")  # typing opens the list filtered to that option, even if the click did not
    page.keyboard.press("Enter")
    wait_idle(page, expect_rerun=True)
    assert "PGD-7" in recipe.input_value(), recipe.input_value()
    page.get_by_role("button", name=re.compile("Train$")).click()
    wait_for_text(page, re.compile(r"training: step \d+ of \d+"))
    page.get_by_role("button", name=re.compile("Cancel training")).click()
    wait_for_text(page, "Training cancelled at training, step")
    wait_idle(page)
    text = main.inner_text()
    assert "nothing was kept" in text and "Your runs" not in text, text[-2000:]
    assert page.get_by_role("button", name=re.compile("Train$")).count() == 1
    assert_no_error(page)
