"""ui.session.PageRun on a plain dict in place of st.session_state, and the pages' interrupted-run wording."""

from types import SimpleNamespace

import pytest

from advcore.errors import AdvlabError, Cancelled
from ui import session as runs
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
    assert run.take_notices(lambda left, cancelled: "again") == [] and state == {}


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
