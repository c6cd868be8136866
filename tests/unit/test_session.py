"""ui.session's cache and run controller on a plain dict in place of st.session_state, and the pages' words for a
run that stopped."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from advcore.errors import AdvlabError, Cancelled
from advcore.progress import Progress, report
from ui import session as runs
from ui.views import attack as attack_view
from ui.views import compare as compare_view
from ui.views import defense as defense_view
from ui.views import poisoning as poisoning_view
from ui.views import training as training_view


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> dict:
    session: dict = {}
    monkeypatch.setattr(runs, "st", SimpleNamespace(session_state=session))
    return session


def test_request_cancel_and_take(state: dict) -> None:
    run = runs.PageRun("_t")
    run.request("req")
    assert state == {"_t_request": "req", "_t_cancel": False}
    assert run.pending() == "req" and not run.cancel_requested()
    run.request_cancel()
    assert run.cancel_requested()
    assert run.take_request() == "req" and run.take_request() is None
    assert runs.PageRun("_c", request="pending").request_key == "_c_pending"


def test_interrupted_run_is_reported_once(state: dict) -> None:
    run = runs.PageRun("_t")
    run.notice("info", "earlier")
    run.update({"step": 3})
    run.request_cancel()
    said = run.take_notices(lambda left, cancelled: f"{left['step']} {cancelled}")
    assert said == [("info", "earlier"), ("warning", "3 True")]
    assert run.take_notices(lambda left, cancelled: "again") == []
    assert state == {}


def test_a_second_cancel_click_keeps_the_cancelled_message(state: dict) -> None:
    """The second click arrives after the run was stopped and its warning drawn: the warning is drawn again, and
    no cancel flag is left behind to stop the next run at once."""
    run = runs.PageRun("_t")
    run.update({"step": 3})
    run.request_cancel()
    first = run.take_notices(lambda left, cancelled: f"Cancelled at step {left['step']}")
    run.request_cancel()  # the late click
    assert not run.cancel_requested()
    assert run.take_notices(lambda left, cancelled: "unused") == first == [("warning", "Cancelled at step 3")]
    assert run.take_notices(lambda left, cancelled: "unused") == []


def test_execute_finishes_and_notices(state: dict) -> None:
    run = runs.PageRun("_t")
    assert run.execute(lambda: 7, lambda left: "cancelled") == 7 and state == {}

    def cancelled_at_step_2():
        run.update(2)
        raise Cancelled("stop")

    assert run.execute(cancelled_at_step_2, lambda left: f"cancelled at {left}") is None
    assert state == {"_t_notices": [("warning", "cancelled at 2")]}
    state.clear()

    def refused():
        raise AdvlabError("no")

    assert run.execute(refused, lambda left: "cancelled") is None
    assert state == {"_t_notices": [("error", "no")]}


def test_the_pages_wording() -> None:
    assert defense_view.interrupted({"done": 2, "total": 9}, False) == (
        "The measurement stopped because the page reran at step 2 of 9; nothing was kept. Press Measure to start "
        "again.")
    left = {"title": "Table 2", "stage": "crafting", "step": 1, "total": 4}
    assert poisoning_view.interrupted(left, True) == (
        "The Table 2 run was cancelled at crafting, step 1 of 4; nothing was kept. Press its button to start again.")
    assert poisoning_view.cancelled("Table 2", None) == "Table 2 cancelled at the start, step 0 of ?; nothing was kept."
    assert training_view.interrupted({"stage": "training", "step": 7, "total": 16}, False).startswith(
        "The training run stopped at training, step 7 of 16 because the page reran")
    assert compare_view.interrupted("PGD", False).startswith("The run stopped during PGD because the page reran")


# --------------------------------------------------------------------------- SessionCache


@dataclass(frozen=True)
class Req:
    """A request like the pages' (a frozen dataclass: compared by value)."""

    model: str
    method: str = "bayer"
    eps: float = 0.1


def test_cache_keeps_the_least_recently_used_last_and_drops_it_first(state: dict) -> None:
    cache = runs.SessionCache("_c", 3)
    for i in range(3):
        assert cache.put(Req("m", eps=i), i) == i
    assert cache.get(Req("m", eps=0)) == 0  # now the most recently used
    cache.put(Req("m", eps=3), 3)  # over the size: the least recently used (eps 1) goes
    assert [k.eps for k, _ in cache.items()] == [2, 0, 3] and cache.values() == [2, 0, 3]
    assert len(cache) == 3 and Req("m", eps=1) not in cache and cache.get(Req("m", eps=1)) is None
    assert cache.get(Req("m", eps=2)) == 2 and Req("m", eps=2) == list(state["_c"])[-1]  # equal requests hit
    cache.put(Req("m", eps=0), "again")  # the same request replaces its value, no growth
    assert len(cache) == 3 and cache.values() == [3, 2, "again"]
    assert list(state) == ["_c"]  # one session-state key per cache
    cache.clear()
    assert len(cache) == 0 and cache.items() == [] and state == {}


def test_cache_size_bound_and_get_or_put(state: dict) -> None:
    cache = runs.SessionCache("_c", 1)
    made = []

    def make(v: int):
        return lambda: made.append(v) or v

    assert cache.get_or_put("a", make(1)) == 1 and cache.get_or_put("a", make(2)) == 1
    assert cache.get_or_put("b", make(3)) == 3 and cache.items() == [("b", 3)] and made == [1, 3]
    with pytest.raises(ValueError):
        runs.SessionCache("_c", 0)


def test_last_finds_the_latest_of_a_kind(state: dict) -> None:
    """What the Compare page ("the last table") and the Defense page ("tables for this model/method") ask."""
    tables = runs.SessionCache("_t", 3)
    assert tables.last() is None
    tables.put(Req("a", "bayer"), {"n": 1})
    tables.put(Req("b", "bayer"), {"n": 2})
    tables.put(Req("a", "atkinson"), {"n": 3})
    assert tables.last() == (Req("a", "atkinson"), {"n": 3})
    assert tables.last(lambda r: r.model == "a" and r.method == "bayer") == (Req("a", "bayer"), {"n": 1})
    tables.get(Req("b", "bayer"))
    assert tables.last()[0] == Req("b", "bayer")  # the latest used, whether computed or shown
    assert tables.last(lambda r: r.model == "c") is None
    mine = tables.get(Req("a", "bayer"))
    assert any(v is mine for v in tables.values())  # "measured in this session" by identity


def test_each_session_has_its_own_cache_and_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The objects are the process's; what they hold is each session's own (two tabs, two dicts)."""
    one: dict = {}
    two: dict = {}
    cache, run = runs.SessionCache("_c", 2), runs.PageRun("_r")

    def session(d: dict) -> None:
        monkeypatch.setattr(runs, "st", SimpleNamespace(session_state=d))

    session(one)
    cache.put(Req("m"), "one's result")
    run.request(Req("m"))
    run.request_cancel()
    assert runs.next_number("_n") == 1 and runs.next_number("_n") == 2
    session(two)
    assert cache.get(Req("m")) is None and len(cache) == 0 and cache.last() is None
    assert run.pending() is None and not run.cancel_requested()
    assert runs.next_number("_n") == 1
    cache.put(Req("m"), "two's result")
    session(one)
    assert cache.get(Req("m")) == "one's result" and run.pending() == Req("m") and run.cancel_requested()
    assert two["_c"] == {Req("m"): "two's result"}


def test_every_page_has_its_own_keys() -> None:
    caches = [v for v in vars(runs).values() if isinstance(v, runs.SessionCache)]
    pages = [v for v in vars(runs).values() if isinstance(v, runs.PageRun)]
    keys = [c.key for c in caches] + [k for p in pages for k in vars(p).values()] + [runs.TRAIN_RUN_COUNT]
    assert len(keys) == len(set(keys)) and len(caches) >= 6 and len(pages) >= 5
    assert runs.ATTACK_RESULTS.size >= 8  # switching back to PGD must not recompute for 45 s


# --------------------------------------------------------------------------- PageRun: jobs started on load


def test_a_job_started_on_load_is_not_restarted_once_cancelled(state: dict) -> None:
    """Geometry's and the Attack lab's flow: run on load; Cancel blocks that job until its Run button."""
    run = runs.PageRun("_g")
    a, b = ("req", "model-a"), ("req", "model-b")
    assert run.should_run(a, auto=True)
    run.execute(lambda: None, str, job=a)  # finished: nothing left
    assert state == {}

    # A Cancel click reruns the page mid-run; its callback finds the job the rerun interrupted.
    state[run.job_key] = a
    run.update({"step": 3})
    run.request_cancel()
    assert run.blocked(a) and not run.blocked(b)
    assert not run.should_run(a, auto=True) and not run.should_run(a, auto=True)  # every rerun: still blocked
    assert not run.should_run(b)  # a job that waits for its button
    run.request(a)  # its Run button
    assert not run.blocked(a) and not run.cancel_requested()
    assert run.should_run(a, auto=True) and run.pending() is None


def test_an_automatic_start_clears_a_stale_cancel(state: dict) -> None:
    run = runs.PageRun("_g")
    state[run.job_key] = "a"
    run.request_cancel()
    assert run.should_run("b", auto=True)  # another job: runs, and the old flag must not stop it
    assert not run.cancel_requested() and not run.blocked("a")  # a's block is lifted once another ran
    assert run.should_run("a", auto=True)


def test_a_job_cancelled_from_its_callback_is_blocked_and_said(state: dict) -> None:
    run = runs.PageRun("_g")

    def work():
        run.update({"step": 2, "steps": 9})
        raise Cancelled("stop")

    assert run.execute(work, lambda left: f"cancelled at {left['step']}", job="a") is None
    assert run.blocked("a") and not run.should_run("a", auto=True)
    assert run.take_notices(lambda left, c: "never") == [("warning", "cancelled at 2")]
    assert run.blocked("a")  # the notice is said once; the block stays until the button or another job


def test_interrupted_may_say_nothing(state: dict) -> None:
    run = runs.PageRun("_a")
    state[run.job_key] = "a"
    run.update({"step": 1, "steps": 5})  # a widget changed mid-run: no Cancel
    assert run.take_notices(lambda left, cancelled: None if not cancelled else "cancelled") == []
    assert state == {}


# --------------------------------------------------------------------------- the progress adapters


class Bar:
    """A stand-in for ``st.progress``: records what it was asked to draw."""

    def __init__(self) -> None:
        self.drawn: list[tuple[float, str]] = []

    def progress(self, value: float, text: str = "") -> None:
        self.drawn.append((value, text))


def test_live_draws_progress_and_returns_true_after_cancel(state: dict) -> None:
    run, bar = runs.PageRun("_p"), Bar()
    seen = []
    live = run.live(bar, "Probing m", then=seen.append)
    assert live(Progress("isotropy", 1, 4)) is False
    assert bar.drawn == [(0.25, "Probing m: isotropy, step 1 of 4")]
    assert state[run.running_key] == {"label": "Probing m", "stage": "isotropy", "step": 1, "total": 4}
    assert [p.step for p in seen] == [1]
    run.request_cancel()
    assert live(Progress("isotropy", 2, 4)) is True
    # advcore's report() turns that True into Cancelled, which execute() turns into a notice.
    said = run.execute(lambda: report(live, "symmetry", 3, 4), lambda left: f"stopped at {left['stage']}")
    assert said is None and run.take_notices(lambda left, c: "") == [("warning", "stopped at symmetry")]


def test_live_takes_the_pages_words_and_markers(state: dict) -> None:
    run, bar = runs.PageRun("_p"), Bar()
    log = training_view.TrainingLog()
    live = run.live(bar, text=log.record, marker=log.marker)
    live(Progress("train", 3, 10, {"loss": 0.5}))
    live(Progress("fgsm eval", 0, 0, {"eps": 0.1}))  # nothing to do: a full bar
    assert bar.drawn == [(0.3, "training: step 3 of 10, loss 0.500"), (1.0, "FGSM evaluation: step 0 of 0 (eps 0.1)")]
    assert state[run.running_key] == {"stage": "FGSM evaluation", "step": 0, "total": 0}
    assert log.losses == {"training": [0.5]} and log.chart_due() and not log.chart_due()


def test_live_steps_stops_the_attack_loop(state: dict) -> None:
    """The Attack lab's adapter: advcore's per-step callback returns True once Cancel was pressed."""
    import torch
    from torch import nn

    from advcore import attacks

    run, bar = runs.PageRun("_a"), Bar()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).eval()
    x = torch.rand(1, 3, 2, 2)
    steps = run.live_steps(bar, "I-FGSM")

    def cancel_after_two(info) -> bool:
        if info.step == 2:
            run.request_cancel()
        return steps(info)

    res = attacks.run("ifgsm", model, x, eps=8 / 255, steps=10, callback=cancel_after_two)
    assert res.cancelled and int(res.grad_evals[0]) == 2
    assert [t for _, t in bar.drawn] == ["I-FGSM: step 1 of 10"]  # step 2 came under 0.5 s later: not drawn
    assert state[run.running_key] == {"label": "I-FGSM", "step": 2, "steps": 10}
    assert attack_view.cancelled(state[run.running_key]).startswith("Cancelled at step 2 of 10; nothing was kept")
    assert attack_view.interrupted({"step": 2, "steps": 10}, False) is None


def test_progress_bar_redraws_at_most_every_half_second_and_at_the_last_step(
        state: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step is recorded (a Cancel says where it stopped) and checks Cancel, but the bar is redrawn only
    :data:`PROGRESS_EVERY_S` apart and at the end: each redraw makes the browser draw the page again."""
    clock = [100.0]
    monkeypatch.setattr(runs.time, "monotonic", lambda: clock[0])
    drawn: list[str] = []
    bar = SimpleNamespace(progress=lambda value, text: drawn.append(text))
    run = runs.PageRun("_t")
    on_step = run.live_steps(bar, "PGD")
    for step in range(1, 11):  # 10 steps, 0.2 s apart: redraws at 1, 4, 7 (0.6 s apart) and the last
        assert on_step(SimpleNamespace(step=step, steps=10)) is False
        assert state["_t_running"] == {"label": "PGD", "step": step, "steps": 10}
        clock[0] += 0.2
    assert drawn == ["PGD: step 1 of 10", "PGD: step 4 of 10", "PGD: step 7 of 10", "PGD: step 10 of 10"]
    run.request_cancel()
    assert on_step(SimpleNamespace(step=3, steps=10)) is True  # Cancel is read at every step, drawn or not


def test_the_shipped_server_config_is_read_by_streamlit_and_skips_the_full_gc_after_each_run() -> None:
    """.streamlit/config.toml: every option it sets is one this Streamlit knows (a renamed option would be ignored
    silently), and runner.postScriptGC is off (a full collection after every rerun held the GIL 0.19-0.24 s)."""
    import tomllib
    from pathlib import Path

    from streamlit import config

    shipped = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    names = [f"{section}.{option}" for section, options in shipped.items() for option in options]
    known = config._config_options_template  # noqa: SLF001 - Streamlit's table of every option it accepts
    assert [n for n in names if n not in known] == []
    assert shipped["runner"]["postScriptGC"] is False
    assert shipped["server"]["enableXsrfProtection"] is True


def test_the_classroom_benchmark_refuses_an_unknown_section_with_one_line() -> None:
    """``bench.classroom --open`` names the Attack lab's detail sections (ui.views.attack.SECTIONS): another name
    is exit 2 with one line on stderr, before any server or browser starts."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "bench.classroom", "--open", "steps,charts"], cwd=root,
                         capture_output=True, text=True, timeout=120)
    if "Chromium" in out.stderr or "playwright" in out.stderr.lower():
        pytest.skip(out.stderr.strip())  # no browser here: the benchmark stops before reading --open
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "classroom: --open takes comma-separated section names of steps, where, numbers"], out.stderr
