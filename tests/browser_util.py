"""Helpers for the real-browser tests: find Debian's Chromium, run the Streamlit app as a server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
LOG = ARTIFACTS / "streamlit.log"
MAIN = '[data-testid="stMain"]'
EXCEPTION = '[data-testid="stException"]'
LOAD_MS = 120_000  # first model load + attack on a busy 2-core CPU (PGD-10 took 30 s at load average 7)

# Flags for Debian's Chromium in a container without a GPU or outside network (see DESIGN.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """Path of Debian's Chromium (/usr/bin/chromium or `chromium` on PATH), or None when missing."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def browser_skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium and Playwright are both available."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (pip install -r requirements-dev.txt)"
    if find_chromium() is None:
        return "Chromium is missing (apt-get install chromium; scripts/test.sh does it as root)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate the process group of `proc` (Streamlit and any children), then kill what is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Children may outlive the leader; the group id is the leader's pid (start_new_session=True).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def streamlit_server(
    script: str = "app.py", *, cwd: Path = ROOT, log_path: Path | None = None, timeout: float = 60.0
) -> Iterator[str]:
    """Run `streamlit run script` on a free local port; yield its base URL once /_stcore/health says "ok".

    The server runs in its own process group and is always terminated on exit. Its output goes to
    `log_path` (tests/artifacts/streamlit.log by default) and is quoted in the error when the server dies
    or never becomes healthy.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = log_path or (ROOT / "tests" / "artifacts" / "streamlit.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "streamlit", "run", script,
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false",
        # No file watcher: it would rerun the app when someone edits the tree mid-test, and watching the
        # whole repository (with .venv) overflows inotify.
        "--server.fileWatcherType", "none",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(f"{base}/_stcore/health"):
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode}:\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not become healthy in {timeout:.0f} s:\n{tail(log_path)}")
            time.sleep(0.25)
        yield base
    finally:
        _stop(proc)


def tail(path: Path, n: int = 4000) -> str:
    """The last `n` characters of a text file (empty when it does not exist)."""
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# --------------------------------------------------------------------------- page helpers


# Installed in a page before the app's own scripts (track_runs; bench/classroom.py too): when the person last gave
# input (a key, a pointer, a typed value), how many messages the page sent the server (Streamlit's BackMsgs: a widget
# change is one) and got from it (ForwardMsgs: a script run is several), and when the last came. A message after the
# input means the rerun it caused has begun, even when React draws a short run's "running" and "notRunning" states
# in one commit, so that the script-state attribute never changes (seen for cached reruns in a busy browser).
RUN_SIGNALS = """(() => {
  window.__inputAt = 0; window.__sent = 0; window.__recv = 0; window.__recvAt = 0;
  for (const type of ['keydown', 'pointerdown', 'input', 'change'])
    document.addEventListener(type, () => { window.__inputAt = performance.now(); }, true);
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (!this.__watched) {
      this.__watched = true;
      this.addEventListener('message', () => { window.__recv++; window.__recvAt = performance.now(); });
    }
    window.__sent++;
    return send.call(this, data);
  };
})();"""
RUNNING = "document.querySelector('[data-testid=\"stApp\"]').getAttribute('data-test-script-state') !== 'notRunning'"
RUN_STARTED = f"{RUNNING} || window.__recvAt > window.__inputAt"
QUIET_MS = 1000  # a rerun seen only in its messages is over once none has come for this long


def track_runs(page: Page) -> Page:
    """Make ``page`` (before it opens the app) record the signals wait_idle's expect_rerun reads (RUN_SIGNALS)."""
    page.add_init_script(RUN_SIGNALS)
    return page


def wait_idle(page: Page, timeout_ms: int = LOAD_MS, expect_rerun: bool = False) -> None:
    """Wait until the Streamlit script run is over (stApp's data-test-script-state is "notRunning").

    With `expect_rerun`, first give the rerun triggered by an interaction up to 10 s to start, so that
    the idle state from before the interaction is not mistaken for the end of the rerun. On a page made with
    track_runs a message from the server after the last input also counts as started; if the script state never
    showed the run, it is over once no message has come for QUIET_MS.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    if expect_rerun:
        try:
            page.wait_for_function(RUN_STARTED, timeout=10_000, polling=50)
        except PlaywrightTimeout:  # the rerun may already be over
            pass
        else:
            page.wait_for_function(f"{RUNNING} || performance.now() - window.__recvAt > {QUIET_MS}",
                                   timeout=timeout_ms)
    page.wait_for_selector(
        '[data-testid="stApp"][data-test-script-state="notRunning"][data-test-connection-state="CONNECTED"]',
        timeout=timeout_ms,
    )
    # Elements of the previous run left over (faded) are dropped once the run is over.
    page.wait_for_selector('[data-testid="stElementContainer"][data-stale="true"]', state="detached", timeout=10_000)


def wait_for_text(page: Page, text: str | re.Pattern[str], timeout_ms: int = LOAD_MS) -> None:
    """Wait until `text` is shown; fail at once, with the server log, if the app shows an exception instead."""
    page.get_by_text(text).or_(page.locator(EXCEPTION)).first.wait_for(timeout=timeout_ms)
    if page.locator(EXCEPTION).count():
        pytest.fail(f"the app shows an exception instead of {text!r}:\n{page.inner_text('body')[:2000]}\n{tail(LOG)}")


def open_lab(page: Page, app_url: str, path: str, *ready: str | re.Pattern[str]) -> None:
    """Open the page at ``path`` (``"attack"``; ``""``: Home), wait until each text of ``ready`` is shown and the
    script run is over."""
    page.goto(app_url.rstrip("/") + (f"/{path}" if path else ""))
    for text in ready:
        wait_for_text(page, text)
    wait_idle(page)


def assert_no_error(page: Page) -> None:
    """No Streamlit exception box, no traceback text, no uncaught JavaScript error."""
    text = page.inner_text("body")
    assert page.locator(EXCEPTION).count() == 0, f"Streamlit exception shown:\n{text[:2000]}\n{tail(LOG)}"
    assert "Traceback" not in text, text[:2000]
    assert not page.js_errors, page.js_errors  # type: ignore[attr-defined]


def full_page_screenshot(page: Page, name: str) -> None:
    """Save tests/artifacts/<name>; the main area scrolls inside the viewport, so grow it to the content first."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate(f"document.querySelector('{MAIN}').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 50, 12_000))})
    wait_idle(page)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})
