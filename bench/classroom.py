"""A class on one server: N real Chromium sessions take the same scripted lesson on the Attack lab at once.

Each session (its own browser context, so its own Streamlit session) opens PGD on the coffee photo, picks its own
random-start seed (a heavy run of its own: the run queue admits ``ADVLAB_MAX_RUNS`` at a time), goes back to seed 0
(light: a cached result), moves eps up one step (heavy, the same for everyone: computed once and shared) and back
(light), switches the model (heavy, shared) and back (light). For every step it records how long the page took to
finish its script run after the interaction (measured in the page: the interaction to the last "notRunning"), how
long the browser's renderer main thread worked for it (Chrome's TaskDuration: drawing what the server sent, on the
same cores as the server here, where in a class each student's laptop does it), and
the numbers the page shows (clean and adversarial prediction with percent, L-inf and L2 of the change), which must
equal a sequential run of the same attacks in this process (advcore, one at a time, no sharing). Then the probe
(``--probe N``): one session moves eps between two cached results N times while the others keep starting heavy runs
of their own. The CPU seconds each kind of process used (server, workers, Chromium, the rest) are recorded too.

    .venv/bin/python -m bench.classroom --sessions 4 [--max-runs 2] [--steps 5] [--no-workers] [--probe 8]
        [--no-lesson] [--others-nice 19] [--open steps]

Writes bench/results/classroom.json (the server's log: tests/artifacts/classroom-streamlit.log). Needs Chromium
and Python playwright (requirements-dev.txt); exits 2 with one line when they are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from browser_util import (  # noqa: E402
    CHROMIUM_ARGS,
    RUN_SIGNALS,
    browser_skip_reason,
    find_chromium,
    streamlit_server,
)

OUT = ROOT / "bench" / "results" / "classroom.json"
MAIN = '[data-testid="stMain"]'
MODELS = ("efficientnet-lite0", "efficientnet-lite1")
EPS = 4  # x/255, the lesson's first eps; a step up is EPS + 1
PREDICTION = re.compile(r"(Clean|Adversarial) prediction:\s*(.+?)\s*\((\d+(?:\.\d+)?)\s*%\)\s*$", re.MULTILINE)
NORMS = re.compile(r"L-inf (\d+\.\d\d)/255, L2 (\d+\.\d\d\d)")

# Counts the script runs that ended (data-test-script-state back to "notRunning") and when the last one did. Each
# mutation record's new value is the next record's old value (the attribute's current value for the last): a run
# that starts and ends between two callbacks still counts. The "waiting" check reads textContent, which (unlike
# innerText) does not make the browser lay out the page on every change.
OBSERVER = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  window.__ends = 0; window.__endAt = 0; window.__last = app.getAttribute('data-test-script-state');
  new MutationObserver((records) => {
    const now = app.getAttribute('data-test-script-state');
    records.forEach((r, i) => {
      const value = i + 1 < records.length ? records[i + 1].oldValue : now;
      if (value === 'notRunning' && r.oldValue !== 'notRunning') {
        window.__ends++; window.__endAt = performance.now();
      }
    });
    window.__last = now;
  }).observe(app, {attributes: true, attributeOldValue: true, attributeFilter: ['data-test-script-state']});
  window.__sawWaiting = false; window.__changedAt = 0;
  new MutationObserver(() => {
    window.__changedAt = performance.now();
    if (!window.__sawWaiting && /waiting: \\d+\\w\\w in line|waiting for the same run/.test(document.body.textContent))
      window.__sawWaiting = true;
  }).observe(document.body, {childList: true, subtree: true, characterData: true, attributes: true});
}"""


def lesson(i: int) -> list[tuple[str, str, dict]]:
    """Session ``i``'s steps: (name, kind, the settings after it) with kind "heavy" or "light"."""
    own_seed = i + 1
    base = {"model": MODELS[0], "eps": EPS, "seed": 0}
    return [
        ("open PGD (shared)", "heavy", base),
        (f"own seed {own_seed}", "heavy", {**base, "seed": own_seed}),
        ("seed back to 0 (cached)", "light", base),
        (f"eps {EPS + 1}/255 (shared)", "heavy", {**base, "eps": EPS + 1}),
        (f"eps back to {EPS}/255 (cached)", "light", base),
        ("switch model (shared)", "heavy", {**base, "model": MODELS[1]}),
        ("model back (cached)", "light", base),
    ]


async def mark(page) -> dict:
    """Where the page's counters stand before an interaction: script runs ended, messages received and sent."""
    return await page.evaluate("({ends: window.__ends, recv: window.__recv, sent: window.__sent})")


UNSEEN_QUIET_S = 1.5  # a run seen only in its messages is over once none has come for this long


async def settle(page, before: dict, timeout_s: float) -> bool:
    """Wait until a script run that started after ``before`` (a :func:`mark`) is over and no other follows within
    0.5 s; True when the page's script state showed it. A run the state never showed (browser_util.RUN_SIGNALS) is
    over once the state is "notRunning" and no message has come for UNSEEN_QUIET_S. On a timeout, says which it was:
    the server still running the script (a server that hangs) or no run after the interaction (the interaction did
    not reach the server), with the end of the page's text."""
    e0, r0 = before["ends"], before["recv"]
    try:
        await page.wait_for_function(f"(window.__ends > {e0} || window.__recv > {r0}) && "
                                     "window.__last === 'notRunning'", timeout=timeout_s * 1000)
    except Exception as exc:
        state = await page.evaluate("[window.__last, window.__ends]")
        text = (await page.locator(MAIN).inner_text())[-400:].replace("\n", " | ")
        what = ("the server's script run never ended" if state[0] != "notRunning" else
                "no script run followed the interaction")
        raise RuntimeError(f"{what} within {timeout_s:.0f} s (script state {state[0]!r}, runs ended "
                           f"{state[1]} vs {e0} before); page ends with: {text}") from exc
    while True:
        n, r = await page.evaluate("[window.__ends, window.__recv]")
        seen = n > e0
        await asyncio.sleep(0.5 if seen else UNSEEN_QUIET_S)
        if await page.evaluate(f"window.__ends === {n} && window.__recv === {r} && window.__last === 'notRunning'"):
            return seen
        await page.wait_for_function("window.__last === 'notRunning'", timeout=timeout_s * 1000)


RESEND_AFTER_S = 15.0  # no run this long after an interaction: it was dropped (its record says where)


async def run_started(page, before: dict, within_s: float) -> bool:
    """Whether a script run began (or began and ended) within ``within_s`` of an interaction: the script state
    changed or the server sent a message. A run starts at once even when the server is busy (a heavy one then waits
    in the queue, saying so), so none in 15 s means the interaction was lost."""
    try:
        await page.wait_for_function(f"window.__ends > {before['ends']} || window.__last !== 'notRunning' || "
                                     f"window.__recv > {before['recv']}", timeout=within_s * 1000)
        return True
    except Exception:  # playwright's TimeoutError
        return False


async def read_numbers(page) -> dict:
    text = await page.locator(MAIN).inner_text()
    preds = {kind: f"{name.strip(' *_')} ({p}%)" for kind, name, p in PREDICTION.findall(text)}
    m = NORMS.search(text)
    return {"clean": preds.get("Clean"), "adversarial": preds.get("Adversarial"),
            "linf_255": m.group(1) if m else None, "l2": m.group(2) if m else None}


async def act(page, step: str, before: dict, after: dict) -> None:
    """The interaction that turns the settings ``before`` into ``after``. Idempotent, so that a dropped one can be
    sent again: the seed is typed whole and committed with Enter, eps is set to its value by key presses from the
    slider's current one, the model is picked by name."""
    if after["seed"] != before["seed"]:
        box = page.get_by_role("spinbutton", name="Seed")
        await box.fill(str(after["seed"]))
        await box.press("Enter")
    elif after["eps"] != before["eps"]:
        slider = page.get_by_role("slider", name="eps (x/255)")
        await slider.focus()
        now = float(await slider.input_value())
        if now == after["eps"]:  # the browser took the last press but sent nothing: away and back
            await slider.press("ArrowLeft" if after["eps"] > before["eps"] else "ArrowRight")
            now = float(await slider.input_value())
        for _ in range(round(abs(after["eps"] - now))):
            await slider.press("ArrowRight" if after["eps"] > now else "ArrowLeft")
    elif after["model"] != before["model"]:
        box = page.get_by_role("combobox", name="Model", exact=True)
        await box.click()
        await page.keyboard.type("Lite1" if after["model"] == MODELS[1] else "Lite0")
        await page.keyboard.press("Enter")
    else:
        raise ValueError(f"step {step!r} changes nothing")


async def widget_shown(page, before: dict, after: dict) -> str | None:
    """What the widget the interaction changes shows now (for a dropped interaction's record)."""
    if after["seed"] != before["seed"]:
        return await page.get_by_role("spinbutton", name="Seed").input_value()
    if after["eps"] != before["eps"]:
        return await page.get_by_role("slider", name="eps (x/255)").input_value()
    return await page.get_by_role("combobox", name="Model", exact=True).input_value()


async def main_thread_s(cdp) -> float:
    """Seconds the page's renderer main thread has spent on tasks so far (Chrome's Performance.TaskDuration)."""
    metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "TaskDuration")


async def open_page(browser, url: str, steps: int, timeout_s: float, sections: str | None = None):
    """A new browser context (its own Streamlit session) on the lesson's first settings, with the Attack lab's
    detail ``sections`` open (ui.views.attack.SECTIONS, comma-separated; None: all closed, as the page opens),
    settled: (context, page, cdp)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.add_init_script(RUN_SIGNALS)  # messages sent and received
    cdp = await context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    await page.goto(f"{url}/attack?model={MODELS[0]}&attack=pgd&steps={steps}&eps={EPS}"
                    + (f"&open={sections}" if sections else ""))
    await page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_s * 1000)
    await page.evaluate(OBSERVER)
    await page.get_by_text("Adversarial prediction:").first.wait_for(timeout=timeout_s * 1000)
    await settle(page, {"ends": -1, "recv": 1 << 30}, timeout_s)
    return context, page, cdp


async def interact(page, cdp, who: str, name: str, kind: str, before: dict, after: dict, timeout_s: float) -> dict:
    """One interaction (``before`` -> ``after``) until the page settles: its record (seconds from the interaction
    to the end of the last script run it caused, the browser's main-thread work, the numbers shown)."""
    at = await mark(page)
    busy0 = await main_thread_s(cdp)
    t_act = await page.evaluate("performance.now()")
    await act(page, name, before, after)
    resent, dropped, sent0 = 0, [], at["sent"]
    while not await run_started(page, at, RESEND_AFTER_S):
        resent += 1  # no run came: do it again, timed from the second try
        # what the browser did with it: how many messages it sent the server since, what the widget shows
        dropped.append({"messages_sent": await page.evaluate("window.__sent") - sent0,
                        "widget_shows": await widget_shown(page, before, after)})
        if resent > 2:
            shot = ROOT / "tests" / "artifacts" / f"classroom-stuck-{who}.png"
            await page.screenshot(path=str(shot), full_page=True)
            raise RuntimeError(f"session {who}, step {name!r}: no script run after 3 tries {dropped} "
                               f"(the page: {shot})")
        t_act, sent0 = await page.evaluate("performance.now()"), await page.evaluate("window.__sent")
        await act(page, name, before, after)
    state_seen = await settle(page, at, timeout_s)
    await page.get_by_text("Adversarial prediction:").first.wait_for(timeout=timeout_s * 1000)
    # the end: the last run's "notRunning" as drawn; for a run the state never showed, the later of its last
    # message and the page's last change
    end = await page.evaluate("window.__endAt" if state_seen else "Math.max(window.__recvAt, window.__changedAt)")
    return {"step": name, "kind": kind, "settings": after, "seconds": round((end - t_act) / 1000, 3),
            # the browser's own work for it (drawing what the server sent), on the same cores here
            "browser_main_thread_s": round(await main_thread_s(cdp) - busy0, 3),
            "script_runs": await page.evaluate("window.__ends") - at["ends"],  # reruns the interaction cost
            "run_state_seen": state_seen, "resent": resent, **({"dropped": dropped} if dropped else {}),
            "numbers": await read_numbers(page)}


async def session(browser, url: str, i: int, steps: int, timeout_s: float, start: asyncio.Event,
                  sections: str | None) -> list[dict]:
    """Session ``i`` takes the whole lesson: a record per step, then whether it ever saw itself waiting."""
    await start.wait()
    plan = lesson(i)
    t0 = time.perf_counter()
    context, page, cdp = await open_page(browser, url, steps, timeout_s, sections)
    try:
        out = [{"step": plan[0][0], "kind": plan[0][1], "settings": plan[0][2],
                "seconds": round(time.perf_counter() - t0, 3), "numbers": await read_numbers(page)}]
        for (name, kind, after), (_, _, before) in zip(plan[1:], plan[:-1], strict=True):
            out.append(await interact(page, cdp, str(i), name, kind, before, after, timeout_s))
        out.append({"saw_waiting": await page.evaluate("window.__sawWaiting")})
    finally:
        await context.close()
    return out


PROBE_SEED0 = 100  # the probe phase's heavy runs use seeds from here on: none of them is cached


async def probe(browser, others, url: str, n: int, toggles: int, steps: int, timeout_s: float,
                sections: str | None) -> dict:
    """The issue's claim itself: one session moves eps between two cached results ``toggles`` times while the
    other ``n - 1`` sessions (in the browser ``others``) keep starting heavy runs of their own (a new random-start
    seed each, never cached). Each light move records how many heavy runs were in flight on the server when it
    began and ended."""
    base = {"model": MODELS[0], "eps": EPS, "seed": 0}
    pages = [await open_page(browser, url, steps, timeout_s, sections)]
    up = {**base, "eps": EPS + 1}
    for before, after in ((base, up), (up, base)):  # both results cached before the clock starts (the lesson did)
        await interact(pages[0][1], pages[0][2], "probe", "warm", "light", before, after, timeout_s)
    pages += [await open_page(others, url, steps, timeout_s, sections) for _ in range(1, n)]
    in_flight = [0]
    done = asyncio.Event()
    heavy: list[dict] = []

    async def keep_running(j: int) -> None:
        _, page, cdp = pages[j]
        before, k = base, 0
        while not done.is_set():
            after = {**base, "seed": PROBE_SEED0 + 1000 * j + k}
            in_flight[0] += 1
            try:
                heavy.append(await interact(page, cdp, f"heavy-{j}", f"seed {after['seed']}", "heavy", before,
                                            after, timeout_s))
            finally:
                in_flight[0] -= 1
            before, k = after, k + 1

    runners = [asyncio.create_task(keep_running(j)) for j in range(1, n)]
    light: list[dict] = []
    try:
        _, page, cdp = pages[0]
        while in_flight[0] < n - 1:  # every other session has started its first heavy run
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        before = base
        for t in range(toggles):
            after = {**base, "eps": EPS + 1 if t % 2 == 0 else EPS}  # both cached (warmed above)
            at_start = in_flight[0]
            rec = await interact(page, cdp, "probe", f"eps {after['eps']}/255 (cached)", "light", before, after,
                                 timeout_s)
            light.append({**rec, "heavy_in_flight_at_start": at_start, "heavy_in_flight_at_end": in_flight[0]})
            before = after
            await asyncio.sleep(0.5)
    finally:
        done.set()
        await asyncio.gather(*runners)
        for context, _, _ in pages:
            await context.close()
    return {"light": light, "heavy": heavy}


def health_seconds(url: str) -> float:
    """How long the server's /_stcore/health (answered on Streamlit's event loop, not a script thread) takes."""
    t = time.perf_counter()
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=60) as r:
        r.read()
    return time.perf_counter() - t


async def poll_health(url: str, stop: asyncio.Event, out: list[float]) -> None:
    """The event loop's answer time every 0.5 s while the class runs: a run blocking the loop would show here."""
    while not stop.is_set():
        out.append(await asyncio.to_thread(health_seconds, url))
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def niced_chromium(niceness: int) -> Iterator[str]:
    """A Chromium launcher whose every process (browser, renderers, GPU) runs at ``niceness``, its session's
    autogroup too when the launcher leads a session of its own (Playwright starts a browser in a new session;
    ui.workers.lower_priority, as a worker does: a nice value alone does not rank a process below other sessions):
    a script that lowers its priority and execs Chromium, in a temporary directory removed on exit."""
    import tempfile

    code = (f"import os, sys; sys.path.insert(0, {str(ROOT)!r}); from ui.workers import lower_priority; "
            f"lower_priority({int(niceness)}); os.execv(sys.argv[1], sys.argv[1:])")
    with tempfile.TemporaryDirectory(prefix="advlab-chromium-") as folder:
        path = Path(folder) / "chromium"
        path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {shlex.quote(code)} '
                        f'{shlex.quote(find_chromium())} "$@"\n', encoding="utf-8")
        path.chmod(0o755)
        yield str(path)


async def drive(url: str, n: int, steps: int, timeout_s: float, health: list[float], probe_toggles: int,
                lesson_too: bool, others_nice: int, sections: str | None) -> tuple[list[list[dict]], dict | None]:
    """The lesson (all ``n`` sessions at once), then the probe; ``others_nice`` > 0 runs the probe's other sessions
    in a second Chromium at that niceness."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p, contextlib.AsyncExitStack() as stack:
        browser = await p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        others = browser
        if others_nice:
            launcher = stack.enter_context(niced_chromium(others_nice))
            others = await p.chromium.launch(executable_path=launcher, args=CHROMIUM_ARGS)
        try:
            stop = asyncio.Event()
            poller = asyncio.create_task(poll_health(url, stop, health))
            try:
                runs: list[list[dict]] = []
                if lesson_too:
                    start = asyncio.Event()
                    tasks = [asyncio.create_task(session(browser, url, i, steps, timeout_s, start, sections))
                             for i in range(n)]
                    await asyncio.sleep(1.0)  # every context open before the class starts
                    start.set()
                    runs = await asyncio.gather(*tasks)
                probed = (await probe(browser, others, url, n, probe_toggles, steps, timeout_s, sections)
                          if probe_toggles else None)
                return runs, probed
            finally:
                stop.set()
                await poller
        finally:
            if others is not browser:
                await others.close()
            await browser.close()


def sequential(settings: list[dict], steps: int) -> dict[str, dict]:
    """The numbers the Attack lab shows for each setting, computed one at a time with advcore (no server)."""
    from advcore import data
    from ui.views import attack as attack_view

    image = data.open_image(ROOT / "assets" / "samples" / "coffee.jpg", name="coffee.jpg")
    out = {}
    for s in settings:
        key = json.dumps(s, sort_keys=True)
        if key in out:
            continue
        req = attack_view.AttackRequest(
            model=s["model"], device="auto", image_key="sample:coffee.jpg", attack="pgd", norm="linf",
            eps=s["eps"] / 255.0, eps_text=f"{s['eps']}/255", steps=steps,  # alpha: the page's default, auto
            extra=(("random_start", True), ("seed", s["seed"])))
        res = attack_view.run(req, image, image_name="coffee.jpg")
        m = res.metrics
        out[key] = {"clean": f"{res.clean.name} ({100.0 * res.clean.prob:.1f}%)",
                    "adversarial": f"{res.adversarial.name} ({100.0 * res.adversarial.prob:.1f}%)",
                    "linf_255": f"{255 * m['linf']:.2f}", "l2": f"{m['l2']:.3f}"}
    return out


class CpuUse:
    """CPU seconds used while the class ran, by who used them: the server (Streamlit, every session's script
    runs and heavy runs in it), its worker processes, the benchmark's Chromium processes, and the rest of the
    machine. Read from /proc every 0.5 s (a process is counted with what it had used when last seen, and named by
    its command line when first seen); None where there is no /proc."""

    def __init__(self) -> None:
        self.kinds: dict[str, str] = {}
        self.used: dict[str, float] = {}
        self.stop = threading.Event()
        self.base = self._read()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _kind(cmd: str) -> str:
        if "chrom" in cmd:
            return "chromium"
        if "streamlit" in cmd:
            return "server"
        if "multiprocessing" in cmd or "ui.workers" in cmd:
            return "server_workers"
        return "other"

    def _read(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if pid not in self.kinds:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        self.kinds[pid] = self._kind(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
            out[pid] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            self.used.update(self._read())

    def __enter__(self) -> CpuUse:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def seconds(self) -> dict[str, float]:
        by: dict[str, float] = {}
        for pid, used in self.used.items():
            kind = self.kinds.get(pid, "other")
            by[kind] = by.get(kind, 0.0) + used - self.base.get(pid, 0.0)
        return {k: round(v, 1) for k, v in sorted(by.items())}


def post_script_gc() -> bool:
    """Whether the server collects all garbage after each script run: Streamlit's runner.postScriptGC, from the
    environment (STREAMLIT_RUNNER_POST_SCRIPT_GC, which the server inherits) or else .streamlit/config.toml."""
    import tomllib

    if (env := os.environ.get("STREAMLIT_RUNNER_POST_SCRIPT_GC")) is not None:
        return env.strip().lower() == "true"
    shipped = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    return bool(shipped.get("runner", {}).get("postScriptGC", True))  # Streamlit's default is on


def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3), "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.classroom", description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=4, help="browser sessions at once, 1-16 (default 4)")
    ap.add_argument("--max-runs", type=int, default=None, help="ADVLAB_MAX_RUNS of the server (default: its own)")
    ap.add_argument("--steps", type=int, default=5, help="PGD steps, 1-50 (default 5)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds one step may take (default 240)")
    ap.add_argument("--workers", action=argparse.BooleanOptionalAction, default=True,
                    help="heavy runs in worker processes at the lowest priority (ADVLAB_RUN_WORKERS=1, the app's "
                         "default; the default here too); --no-workers: in the server process")
    ap.add_argument("--probe", type=int, default=8, metavar="N",
                    help="after the lesson, N cached eps moves of one session while the others keep starting heavy "
                         "runs, 0-50 (default 8; 0: none)")
    ap.add_argument("--no-lesson", action="store_true", help="the probe alone (it warms its two results itself)")
    ap.add_argument("--others-nice", type=int, default=0, metavar="K",
                    help="run the probe's other sessions in a Chromium at niceness K, its session's autogroup "
                         "too, 0-19 (default 0): they stand for other students' laptops, whose drawing does not "
                         "take this machine's cores from the probe's browser or the server")
    ap.add_argument("--open", default=None, metavar="SECTIONS",
                    help="the Attack lab's detail sections every session opens, comma-separated: steps, where, "
                         "numbers (default: none, as the page opens)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    if (not 1 <= a.sessions <= 16 or not 1 <= a.steps <= 50 or (a.max_runs is not None and a.max_runs < 1)
            or not 0 <= a.probe <= 50 or not 0 <= a.others_nice <= 19 or (a.no_lesson and not a.probe)):
        print("classroom: --sessions must be 1-16, --steps 1-50, --max-runs >= 1, --probe 0-50 (above 0 with "
              "--no-lesson) and --others-nice 0-19", file=sys.stderr)
        return 2
    reason = browser_skip_reason()
    if reason:
        print(f"classroom: {reason}", file=sys.stderr)
        return 2
    if a.max_runs is not None:
        os.environ["ADVLAB_MAX_RUNS"] = str(a.max_runs)  # the server inherits it
    os.environ["ADVLAB_RUN_WORKERS"] = "1" if a.workers else "0"  # the server inherits it
    # as scripts/app.sh starts the server (idle OpenMP threads sleep); the results record the value. Runs before
    # 2026-12-02 21:30 UTC had it unset: the server's torch threads spun while the browsers wanted the cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ui import shared, workers
    from ui.frame import UrlError, url_choices
    from ui.views.attack import SECTIONS, in_section_order

    if a.open is not None:  # read as the page reads its link's open= (the same parser)
        try:
            names = in_section_order(url_choices(list(SECTIONS))(a.open))
        except UrlError:
            names = None
        if not names:
            print(f"classroom: --open takes comma-separated section names of {', '.join(SECTIONS)}", file=sys.stderr)
            return 2
        a.open = ",".join(names)
    max_runs = shared.env_count(shared.MAX_RUNS_ENV, shared.default_max_runs(), 1)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    cpu = CpuUse() if os.path.isdir("/proc") else None
    with streamlit_server(log_path=ROOT / "tests" / "artifacts" / "classroom-streamlit.log", timeout=120) as url, \
            (cpu or contextlib.nullcontext()):
        health: list[float] = []
        runs, probed = asyncio.run(drive(url, a.sessions, a.steps, a.timeout, health, a.probe,
                                         not a.no_lesson, a.others_nice, a.open))
    browser_s = time.perf_counter() - t0
    steps_out = [[r for r in run if "step" in r] for run in runs]
    probe_out = [*probed["light"], *probed["heavy"]] if probed else []
    t1 = time.perf_counter()
    ref = sequential([r["settings"] for run in [*steps_out, probe_out] for r in run], a.steps)
    sequential_s = time.perf_counter() - t1
    mismatches = [{"session": i, "step": r["step"], "page": r["numbers"],
                   "sequential": ref[json.dumps(r["settings"], sort_keys=True)]}
                  for i, run in enumerate([*steps_out, probe_out]) for r in run
                  if r["numbers"] != ref[json.dumps(r["settings"], sort_keys=True)]]
    light = [r["seconds"] for run in steps_out for r in run if r["kind"] == "light"]
    light_browser = [r["browser_main_thread_s"] for run in steps_out for r in run if r["kind"] == "light"]
    heavy = [r["seconds"] for run in steps_out for r in run if r["kind"] == "heavy"]
    by_step = {}
    for j, (name, kind, _) in enumerate(lesson(0) if steps_out else []):
        by_step[re.sub(r" ?\d+", "", name) if "own seed" in name else name] = {
            "kind": kind, **summary([run[j]["seconds"] for run in steps_out])}
    from advcore.device import pick_device
    from bench.common import environment, sched_autogroup

    record = {
        # environment() reads the load now, at the end: the start's is the one taken before the browsers began
        "environment": {**environment(pick_device("cpu"), loadavg_1min_at_end=round(os.getloadavg()[0], 2)),
                        "loadavg_1min_at_start": round(load0, 2)},
        "sessions": a.sessions, "max_runs": max_runs, "run_workers": workers.enabled(),
        "worker_nice": workers.WORKER_NICE if workers.enabled() else None, "sched_autogroup": sched_autogroup(),
        "pgd_steps": a.steps,
        "lesson": not a.no_lesson, "probe_others_nice": a.others_nice, "post_script_gc": post_script_gc(),
        "open_sections": a.open,  # the Attack lab's detail sections open in every session (None: all closed)
        "models": list(MODELS), "light": summary(light), "heavy": summary(heavy),
        "light_browser_main_thread": summary(light_browser), "steps": by_step, "health": summary(health),
        "light_under_1s": sum(s < 1.0 for s in light), "light_count": len(light),
        "interactions_resent": sum(r.get("resent", 0) for run in [*steps_out, probe_out] for r in run),
        # runs the page's script state never showed (timed by their last message, see browser_util.RUN_SIGNALS)
        "runs_state_unseen": sum(not r.get("run_state_seen", True) for run in [*steps_out, probe_out] for r in run),
        "probe": None if not probed else {
            "light": summary([r["seconds"] for r in probed["light"]]),
            "light_under_1s": sum(r["seconds"] < 1.0 for r in probed["light"]), "light_count": len(probed["light"]),
            "light_browser_main_thread": summary([r["browser_main_thread_s"] for r in probed["light"]]),
            "heavy_in_flight_at_start": [r["heavy_in_flight_at_start"] for r in probed["light"]],
            "heavy_in_flight_at_end": [r["heavy_in_flight_at_end"] for r in probed["light"]],
            "heavy": summary([r["seconds"] for r in probed["heavy"]]) if probed["heavy"] else None,
            "per_interaction": probed["light"], "heavy_runs": probed["heavy"]},
        "sessions_that_saw_waiting": sum(bool(run[-1].get("saw_waiting")) for run in runs),
        "equal_to_sequential": not mismatches, "mismatches": mismatches,
        # CPU seconds by process while the class ran (the machine has 2 cores: 2 per second of browser phase)
        "cpu_seconds": cpu.seconds() if cpu else None,
        "distinct_runs": len(ref), "browser_phase_s": round(browser_s, 1), "sequential_phase_s": round(sequential_s, 1),
        "per_session": steps_out,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: record[k] for k in ("sessions", "max_runs", "run_workers", "light", "heavy",
                                            "light_browser_main_thread", "health", "light_under_1s",
                                            "light_count", "interactions_resent", "runs_state_unseen",
                                            "equal_to_sequential",
                                            "sessions_that_saw_waiting", "cpu_seconds",
                                            "browser_phase_s", "sequential_phase_s")}, indent=1))
    for name, s in by_step.items():
        print(f"  {name:32s} {s['kind']:5s} median {s['median_s']:7.2f} s, max {s['max_s']:7.2f} s")
    if probed:
        pr = record["probe"]
        print(f"  probe: {pr['light_count']} cached eps moves while {a.sessions - 1} sessions ran heavy runs: median "
              f"{pr['light']['median_s']:.2f} s, max {pr['light']['max_s']:.2f} s, {pr['light_under_1s']} under 1 s; "
              f"heavy runs in flight at their start {pr['heavy_in_flight_at_start']}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
