"""Shared pytest hooks and fixtures: one torch thread, and the real-browser fixtures.

The browser fixtures (``app_url``: one Streamlit server for the whole session; ``browser``: one headless
Chromium; ``page``: a fresh context per test, with a screenshot on failure) skip when Chromium or
playwright is missing, unless ADVLAB_REQUIRE_BROWSER=1, which turns the skip into a failure (CI).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import torch
from browser_util import (
    ARTIFACTS,
    CHROMIUM_ARGS,
    LOAD_MS,
    LOG,
    ROOT,
    browser_skip_reason,
    find_chromium,
    streamlit_server,
    tail,
    track_runs,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item (`item.rep_call`), so fixtures can act on a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def fresh_classroom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty shared result store and run queue (``ui.shared``'s process objects), as a
    fresh server would: a result another test computed is not a hit, and the queue is empty. Heavy runs stay in
    the test's process (``ADVLAB_RUN_WORKERS=0``; the app's default is 1): a monkeypatch reaches them, and no
    worker starts per test. tests/unit/test_workers.py tests the workers; the browser tests' servers (started
    before this fixture, from the environment the suite was given) run them in workers, as the app does."""
    from ui import shared, workers

    monkeypatch.setattr(shared, "_RESULTS", None)
    monkeypatch.setattr(shared, "_QUEUE", None)
    monkeypatch.setenv(workers.WORKERS_ENV, "0")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module that trains small networks, restored afterwards.

    On a busy shared 2-core CPU, two threads make tiny CNNs' small operations 10 to 30 times slower
    (the command line's --threads 1 exists for the same reason). Opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- browser fixtures (tests/browser/)


def _require_browser() -> None:
    reason = browser_skip_reason()
    if reason:
        if os.environ.get("ADVLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required but cannot run: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """Base URL of `streamlit run app.py`, started once for the session and always stopped."""
    _require_browser()
    if not (ROOT / "app.py").exists():
        pytest.fail("app.py is missing")
    with streamlit_server("app.py", log_path=LOG) as url:
        yield url


@pytest.fixture
def fresh_app_url() -> Iterator[str]:
    """A second server, started for one test, so that the test's first request is the server's first."""
    _require_browser()
    with streamlit_server("app.py", log_path=ARTIFACTS / "streamlit-fresh.log") as url:
        yield url


@pytest.fixture(scope="session")
def browser(app_url: str) -> Iterator[Browser]:
    """One headless Chromium for the session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context and page; page-level JavaScript errors are collected in `page.js_errors`.

    When the test fails, a screenshot goes to tests/artifacts/<test name>-failure.png.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = track_runs(context.new_page())
    pg.set_default_timeout(LOAD_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):  # a broken page must not hide the test's own failure
                pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failure.png"), full_page=True, timeout=10_000)
            print(f"--- end of {LOG} ---\n{tail(LOG)}")  # shown by pytest with the failure
    finally:
        context.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n``, scripts/test.sh) every browser test goes to one process, which starts the one
    server and Chromium. They run first: the longest group, while the other process takes the other tests."""
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.xdist_group("browser"))
    items.sort(key=lambda item: item.get_closest_marker("browser") is None)
