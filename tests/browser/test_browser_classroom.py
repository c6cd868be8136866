"""Issue 14, item 4 in real Chromium: a tab closed mid-run frees its queue slot for the session waiting behind it.

A server of its own admits one heavy run at a time (ADVLAB_MAX_RUNS=1). Tab A starts a long APGD run on the
PGD-trained Fashion-MNIST model (100 restarts x 200 steps at eps 0.01, which it resists: over a minute on this
2-core machine); tab B asks for a different, short run on the same model (I-FGSM, 6 steps) and waits, first in
line. Closing tab A must let B start at once: B's result
(checked against advcore run here) comes sooner than A could have finished at the pace its progress showed. The
test reads only what the pages show, not how the server runs heavy work.

Skipped (with the reason) when Chromium or Python playwright is missing, unless ADVLAB_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from browser_util import ARTIFACTS, MAIN, assert_no_error, streamlit_server, tail, track_runs

from advcore.labs import attack as attack_lab

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

LOG = ARTIFACTS / "streamlit-classroom.log"
MODEL = "fmnist-pgd"
LONG = f"attack?model={MODEL}&image=3&attack=apgd&eps=0.01&steps=200&restarts=100"  # 20,100 gradient steps
SHORT = f"attack?model={MODEL}&image=7&attack=ifgsm&eps=0.15&steps=6"
PROGRESS = re.compile(r"step (\d+) of (\d+)")
PREDICTION = re.compile(r"Adversarial prediction:\s*(.+?)\s*\((\d+(?:\.\d+)?)\s*%\)\s*$", re.MULTILINE)
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def one_run_url() -> Iterator[str]:
    """A server of its own that runs one heavy run at a time (the environment it starts with)."""
    from conftest import _require_browser

    _require_browser()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ADVLAB_MAX_RUNS", "1")
        with streamlit_server("app.py", log_path=LOG) as url:
            mp.delenv("ADVLAB_MAX_RUNS")
            yield url


def new_page(browser: Browser) -> Page:
    """A page in a browser context of its own (its own Streamlit session), collecting JavaScript errors."""
    page = track_runs(browser.new_context(viewport={"width": 1400, "height": 1000}).new_page())
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors  # type: ignore[attr-defined]
    return page


def progress(page: Page) -> tuple[int, int]:
    """The (step, of steps) the page's progress text shows now."""
    m = PROGRESS.search(page.locator(MAIN).inner_text())
    assert m, page.locator(MAIN).inner_text()[-2000:]
    return int(m.group(1)), int(m.group(2))


def test_closing_a_running_tab_lets_the_waiting_tab_run(browser: Browser, one_run_url: str) -> None:
    from ui.frame import gallery_image

    a, b = new_page(browser), new_page(browser)
    try:
        a.goto(f"{one_run_url}/{LONG}")
        a.get_by_text(PROGRESS).first.wait_for()  # A holds the slot and is stepping
        a_started = time.monotonic()
        b.goto(f"{one_run_url}/{SHORT}")
        b.get_by_text(re.compile(r"^waiting: 1st in line")).wait_for()
        assert not PREDICTION.search(b.locator(MAIN).inner_text())  # B has no result while it waits
        step, total = progress(a)
        assert total == 20_100 and step < total, (step, total)  # 100 restarts x 200 steps (+1 each), not over
        # A's pace so far (it started no later than a_started): at that pace it would need `left` s more.
        left = (total - step) * (time.monotonic() - a_started) / max(step, 1)
        closed = time.monotonic()
        a.context.close()
        b.get_by_text("Adversarial prediction:").first.wait_for()
        b_took = time.monotonic() - closed
        assert b_took < left, f"B's result came {b_took:.1f} s after A closed, A alone would need {left:.1f} s more"

        want = attack_lab.attack_image(MODEL, gallery_image("fashion-mnist", 7)[0], "ifgsm", eps=0.15,
                                       steps=6, device="cpu")
        shown = PREDICTION.search(b.locator(MAIN).inner_text())
        assert shown and (shown.group(1).strip(" *_"), float(shown.group(2))) == (
            want.adversarial.name, float(f"{100 * want.adversarial.prob:.1f}")), shown
        assert not b.get_by_text(re.compile(r"^waiting: ")).count()
        assert_no_error(b)
    finally:
        for page in (a, b):
            page.context.close()
    log = tail(LOG, 200_000)
    assert "Traceback" not in log, log[-4000:]
