"""ui.shared's run queue and shared results with real threads, and concurrent sessions (threads, each with its own
session state) running a real attack through ui.session against a sequential run: equal numbers, computed once."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

from advcore.errors import AdvlabError, Cancelled
from ui import session as runs
from ui import shared
from ui.views import attack as attack_view

# What Streamlit raises in a script thread whose session closed (RerunException, for a rerun, is its sibling).
Interrupted = StopException


def wait_until(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def test_ordinal_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [shared.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]
    monkeypatch.delenv("ADVLAB_MAX_RUNS", raising=False)
    assert shared.env_count("ADVLAB_MAX_RUNS", 2, 1) == 2
    monkeypatch.setenv("ADVLAB_MAX_RUNS", " 3 ")
    assert shared.env_count("ADVLAB_MAX_RUNS", 2, 1) == 3
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv("ADVLAB_MAX_RUNS", bad)
        with pytest.raises(AdvlabError, match=f"ADVLAB_MAX_RUNS must be a whole number >= 1, not '{bad}'"):
            shared.env_count("ADVLAB_MAX_RUNS", 2, 1)
    assert 1 <= shared.default_max_runs() <= 4


def test_queue_limits_runs_and_serves_first_come_first() -> None:
    q = shared.RunQueue(2)
    gate = threading.Event()
    lock = threading.Lock()
    now = {"in": 0, "max": 0}
    order: list[int] = []
    texts: dict[int, list[str]] = {i: [] for i in range(5)}

    def work(i: int) -> int:
        with lock:
            order.append(i)
            now["in"] += 1
            now["max"] = max(now["max"], now["in"])
        gate.wait(10)
        with lock:
            now["in"] -= 1
        return i * 10

    out: dict[int, int] = {}

    def session(i: int) -> None:
        out[i] = q.run(lambda: work(i), lambda text: texts[i].append(text) and False)

    threads = []
    for i in range(5):  # one after the other, so that the line's order is known
        t = threading.Thread(target=session, args=(i,))
        t.start()
        threads.append(t)
        wait_until(lambda i=i: q.running() + q.waiting() == i + 1)
    assert q.running() == 2 and q.waiting() == 3 and order == [0, 1]
    wait_until(lambda: texts[4])
    assert texts[2][0] == "waiting: 1st in line (2 runs ahead, 2 at a time)"
    assert texts[4][0] == "waiting: 3rd in line (4 runs ahead, 2 at a time)"
    assert texts[0] == texts[1] == []  # a free slot never waits
    gate.set()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3, 4] and now["max"] == 2 and out == {i: i * 10 for i in range(5)}
    assert q.running() == 0 and q.waiting() == 0


def test_cancel_while_waiting_and_release_on_any_exit() -> None:
    q = shared.RunQueue(1)
    gate, holding = threading.Event(), threading.Event()

    def hold() -> None:
        with q.slot():
            holding.set()
            gate.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    holding.wait(10)
    calls: list[str] = []
    with pytest.raises(Cancelled, match="waiting in line"):
        q.run(lambda: 1, lambda text: calls.append(text) or len(calls) == 2)  # Cancel at the second look
    assert calls == ["waiting: 1st in line (1 run ahead, 1 at a time)"] * 2 and q.waiting() == 0
    with pytest.raises(Interrupted):  # a rerun or a closed tab while waiting frees the place in line
        q.run(lambda: 1, lambda text: (_ for _ in ()).throw(Interrupted()))
    assert q.waiting() == 0 and q.running() == 1
    gate.set()
    t.join(10)
    for exc in (ValueError("refused"), Interrupted()):  # a run that stops by an exception frees its slot
        with pytest.raises(type(exc)):
            q.run(lambda exc=exc: (_ for _ in ()).throw(exc))
        assert q.running() == 0
    assert q.run(lambda: 7) == 7
    with q.slot(), q.slot():  # a run nested in a run holds one slot, not two (it would wait for itself)
        assert q.running() == 1


def test_two_concurrent_requests_compute_once() -> None:
    store = shared.SharedResults(4)
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []
    waited: list[str] = []

    def make() -> list[int]:
        calls.append("made")
        started.set()
        release.wait(10)
        return [1, 2, 3]

    got: dict[str, list[int]] = {}
    first = threading.Thread(target=lambda: got.update(a=store.compute("k", make)))
    first.start()
    started.wait(10)
    look = lambda t: waited.append(t) and False  # noqa: E731 - a wait that never cancels
    second = threading.Thread(target=lambda: got.update(b=store.compute("k", make, look)))
    second.start()
    wait_until(lambda: waited)
    assert store.in_flight() == 1
    release.set()
    first.join(10)
    second.join(10)
    assert calls == ["made"] and got["a"] is got["b"] and got["a"] == [1, 2, 3] and store.computed == 1
    assert waited[0] == "waiting for the same run, which another session started"
    assert store.compute("k", make) is got["a"] and calls == ["made"] and store.in_flight() == 0


def test_a_waiter_computes_when_the_first_run_fails_and_may_cancel() -> None:
    store = shared.SharedResults(4)
    started, release = threading.Event(), threading.Event()

    def failing() -> int:
        started.set()
        release.wait(10)
        raise Cancelled("the first session cancelled")

    t = threading.Thread(target=lambda: pytest.raises(Cancelled, store.compute, "k", failing))
    t.start()
    started.wait(10)
    with pytest.raises(Cancelled, match="another session"):
        store.compute("k", lambda: 5, lambda text: True)
    looks: list[str] = []
    waiter = threading.Thread(target=lambda: looks.append(store.compute("k", lambda: 5, lambda text: False)))
    waiter.start()
    wait_until(lambda: store.in_flight() == 1 and waiter.is_alive())
    release.set()
    t.join(10)
    waiter.join(10)
    assert looks == [5] and store.get("k") == 5 and store.computed == 1 and store.in_flight() == 0


def test_shared_results_are_bounded_and_can_be_off() -> None:
    store = shared.SharedResults(2)
    for k in "abc":
        store.put(k, k.upper())
    assert store.get("a") is None and store.get("b") == "B" and len(store) == 2
    store.put("d", "D")  # "b" was used last: "c" goes
    assert store.get("c") is None and store.get("b") == "B"
    off = shared.SharedResults(0)
    off.put("k", 1)
    assert off.get("k") is None and off.compute("k", lambda: 2) == 2 and len(off) == 0


class ThreadSessions:
    """``st`` for ui.session with one session state per thread (Streamlit gives each session its thread)."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def session_state(self) -> dict:
        if not hasattr(self._local, "state"):
            self._local.state = {}
        return self._local.state

    def empty(self):
        return SimpleNamespace(info=lambda *a, **k: None, empty=lambda: None)


def test_a_shared_cache_serves_every_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "_RESULTS", shared.SharedResults(8))
    one, two = {}, {}
    cache, own = runs.SessionCache("_cs", 2, shared=True), runs.SessionCache("_co", 2)
    monkeypatch.setattr(runs, "st", SimpleNamespace(session_state=one))
    value = cache.put("req", ["result"])
    own.put("req", "one's own")
    monkeypatch.setattr(runs, "st", SimpleNamespace(session_state=two))
    assert cache.get("req") is value and own.get("req") is None and "req" in cache  # now kept here too
    monkeypatch.setenv("ADVLAB_SHARED_RESULTS", "-2")
    monkeypatch.setattr(shared, "_RESULTS", None)
    monkeypatch.setattr(runs, "st", SimpleNamespace(session_state={}))
    assert runs.SessionCache("_cs", 2, shared=True).get("req") is None  # an invalid setting: no sharing


def test_concurrent_sessions_equal_a_sequential_run_and_compute_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four sessions ask for two PGD results (random start, seed 0) at once through ATTACK_RUN.execute: each gets
    exactly the sequential run's numbers, each result is computed once, at most 2 runs at a time."""
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    reqs = [attack_view.AttackRequest(model="fmnist-naive", device="cpu", image_key="test:0", attack="pgd",
                                      norm="linf", eps=e / 255, eps_text=f"{e}/255", steps=4,
                                      extra=(("random_start", True), ("seed", 0))) for e in (8, 16)]
    sequential = [attack_view.run(r, image) for r in reqs]  # also loads the model before the threads start
    monkeypatch.setattr(shared, "_RESULTS", shared.SharedResults(8))
    monkeypatch.setattr(shared, "_QUEUE", shared.RunQueue(2))
    monkeypatch.setattr(runs, "st", ThreadSessions())
    made: list[float] = []
    start = threading.Barrier(4)
    got: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []

    def work(req):
        made.append(req.eps)
        return attack_view.run(req, image, lambda info: runs.ATTACK_RUN.cancel_requested())

    def session(i: int) -> None:
        try:
            start.wait(10)
            for j in (i % 2, 1 - i % 2):  # half the class starts with the other eps
                req = reqs[j]
                res = runs.ATTACK_RESULTS.get(req)
                if res is None:
                    res = runs.ATTACK_RUN.execute(lambda req=req: work(req), attack_view.cancelled, job=req)
                    runs.ATTACK_RESULTS.put(req, res)
                got[i, j] = res
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(got) == 8
    assert sorted(made) == [8 / 255, 16 / 255] and shared.results().computed == 2  # once each, for everyone
    for (_, j), res in got.items():
        ref = sequential[j]
        def timeless(m: dict) -> dict:
            return {k: v for k, v in m.items() if k != "seconds"}  # how long it took: not a result

        assert torch.equal(res.x_adv, ref.x_adv) and timeless(res.metrics) == timeless(ref.metrics)
        assert res.adversarial.name == ref.adversarial.name
    assert shared.queue().running() == 0 and shared.results().in_flight() == 0


def test_an_invalid_setting_is_said_by_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad ADVLAB_MAX_RUNS stops each heavy run with one sentence (the page shows it), never a traceback."""
    state: dict = {}
    monkeypatch.setattr(runs, "st", SimpleNamespace(session_state=state))
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "lots")
    run = runs.PageRun("_inv")
    assert run.execute(lambda: 1, lambda left: "cancelled") is None
    assert state["_inv_notices"] == [("error", "ADVLAB_MAX_RUNS must be a whole number >= 1, not 'lots'")]
    monkeypatch.setenv("ADVLAB_MAX_RUNS", "1")
    assert run.execute(lambda: 1, lambda left: "cancelled") == 1 and shared.queue().limit == 1


class ShownSessions(ThreadSessions):
    """ThreadSessions whose placeholders record what they show, per session (``state["_shown"]``)."""

    def empty(self):
        shown = self.session_state.setdefault("_shown", [])
        return SimpleNamespace(info=lambda text, **k: shown.append(text), empty=lambda: None)


def test_a_session_closed_mid_run_frees_its_slot_and_its_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Session A runs PGD alone (1 run at a time); B asks for another eps (waits in line), C for A's very result
    (waits for A's run). A's tab closes at step 2: Streamlit's StopException, raised in A's progress callback,
    passes through advcore and ATTACK_RUN.execute, frees the slot (B runs) and the in-flight result (C computes
    it itself); B and C get exactly the sequential run's numbers."""
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    reqs = [attack_view.AttackRequest(model="fmnist-naive", device="cpu", image_key="test:1", attack="pgd",
                                      norm="linf", eps=e / 255, eps_text=f"{e}/255", steps=4) for e in (8, 16)]
    sequential = [attack_view.run(r, image) for r in reqs]
    monkeypatch.setattr(shared, "_RESULTS", shared.SharedResults(8))
    monkeypatch.setattr(shared, "_QUEUE", shared.RunQueue(1))
    sessions = ShownSessions()
    monkeypatch.setattr(runs, "st", sessions)
    at_step, close = threading.Event(), threading.Event()
    got: dict[str, object] = {}
    shown: dict[str, list[str]] = {}

    def closing(info) -> bool:
        if info.step == 2:
            at_step.set()
            close.wait(10)
            raise StopException()  # what Streamlit raises at a closed session's next st call
        return False

    def session(name: str, req, callback) -> None:
        try:
            got[name] = runs.ATTACK_RUN.execute(lambda: attack_view.run(req, image, callback), attack_view.cancelled,
                                                job=req)
        except BaseException as exc:  # noqa: BLE001 - what the thread ended with
            got[name] = exc
        shown[name] = list(sessions.session_state.get("_shown", []))

    a = threading.Thread(target=session, args=("a", reqs[0], closing))
    a.start()
    assert at_step.wait(20)
    b = threading.Thread(target=session, args=("b", reqs[1], lambda info: False))
    b.start()
    wait_until(lambda: shared.queue().waiting() == 1)
    c = threading.Thread(target=session, args=("c", reqs[0], lambda info: False))
    c.start()
    wait_until(lambda: shared.results().in_flight() == 2 and c.is_alive())
    time.sleep(2 * shared.POLL_S)  # both waiters have drawn their notice
    close.set()
    for t in (a, b, c):
        t.join(60)
    assert isinstance(got["a"], StopException) and shown["a"] == []
    assert shown["b"][0] == "waiting: 1st in line (1 run ahead, 1 at a time)"
    assert shown["c"][0] == "waiting for the same run, which another session started"
    for name, ref in (("b", sequential[1]), ("c", sequential[0])):
        res = got[name]
        assert torch.equal(res.x_adv, ref.x_adv) and res.adversarial.name == ref.adversarial.name
    assert shared.results().computed == 2  # A's closed run kept nothing; B's and C's were computed
    assert shared.queue().running() == 0 and shared.queue().waiting() == 0 and shared.results().in_flight() == 0


def test_a_results_charts_are_built_once_and_equal_fresh_ones() -> None:
    from ui import plots

    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (28, 28, 3), dtype=np.uint8))
    req = attack_view.AttackRequest(model="fmnist-naive", device="cpu", image_key="test:2", attack="pgd",
                                    norm="linf", eps=8 / 255, eps_text="8/255", steps=3)
    res = attack_view.run(req, image)
    figs = attack_view.figures(req, res)
    assert attack_view.figures(req, attack_view.run(req, image)) is figs  # another session's rerun: not rebuilt
    watch = res.metrics["clean_name"]
    loss, prob = attack_view.history(res.result)
    delta = plots.to_numpy_image(res.x_adv) - plots.to_numpy_image(res.x)
    fresh = [plots.topk_bars(res.adversarial.names, res.adversarial.probs, "Top-5 after (adversarial)", watch),
             plots.history_figures(loss, prob, watch, False)[0], plots.perturbation_heatmap(delta, 8.0)]
    for kept, new in zip((figs.top5_adv, figs.loss), fresh[:2], strict=True):
        assert kept == new
    assert figs.heatmap.colour_bar == fresh[2].colour_bar and np.array_equal(figs.heatmap.image, fresh[2].image)


def test_results_that_may_depend_on_a_sessions_own_model_are_not_shared() -> None:
    """Two sessions' own models may share a ``mine:`` name with other weights: the shared key names the very
    models (their process-unique ids), so neither session is handed the other's result; without own models the key
    is the plain request."""
    from torch import nn

    from advcore import models
    from ui.session import shared_key

    spec = models.get_spec("fmnist-naive")
    a = models.SessionModel(spec=spec, model=nn.Identity())
    b = models.SessionModel(spec=spec, model=nn.Identity())
    assert a.uid != b.uid
    assert shared_key("cache", "req") == ("cache", "req")
    with models.session_scope({"mine:net": a}):
        key_a = shared_key("cache", "req")
    with models.session_scope({"mine:net": b}):
        key_b = shared_key("cache", "req")
    with models.session_scope({"mine:net": a}):
        assert shared_key("cache", "req") == key_a  # the same session, the same key: its own results still hit
    assert key_a != key_b and key_a[:2] == key_b[:2] == ("cache", "req")
