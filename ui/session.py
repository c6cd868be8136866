"""What a session keeps between page runs: one cache and one run controller for every page.

Streamlit serves every session from one process, so nothing here lives on the process: each object below only
names keys of ``st.session_state`` (one browser tab's dict), and every method reads and writes that dict.

:class:`SessionCache` is a small LRU of results keyed by a hashable request (a frozen dataclass): moving a
slider back, or coming back to an attack, costs nothing.

:class:`PageRun` is a long run with a Cancel button. Two ways to start one:

* on a button (``request`` is the button's callback; the next page run calls :meth:`PageRun.take_request`, or
  :meth:`PageRun.should_run` with the page's own request);
* on load (``should_run(job, auto=True)``): the page starts the job by itself unless this very job was
  cancelled, which it then offers to start again with a Run button (``request``).

:meth:`PageRun.execute` runs the work; the progress adapters :meth:`PageRun.live` (an
``advcore.progress.Progress``) and :meth:`PageRun.live_steps` (an attack's ``StepInfo``) draw it on an
``st.progress`` bar, record where the run is (for a rerun that interrupts it) and return True, which stops
advcore, once Cancel's callback (:meth:`PageRun.request_cancel`) has set the flag. A Cancel click or a changed
widget reruns the page, which interrupts the run: the markers it left tell the next page run what to say
(:meth:`PageRun.take_notices`) and, for a job, that it was cancelled.

Sessions of one server share work through :mod:`ui.shared` (a classroom server): a cache declared
``shared=True`` also keeps its values for every session (a miss here is looked up there), and every
:meth:`PageRun.execute` waits for a slot of the process's run queue (``ADVLAB_MAX_RUNS`` heavy runs at a time),
showing its place in line, unless another session is computing the very same result (the run's ``key`` in the
PageRun's ``results`` cache), in which case it waits for that one instead. A cached result never waits.

The last section lists every cache and run of the app, with its size.
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import streamlit as st

from advcore import models
from advcore.errors import AdvlabError, Cancelled
from advcore.progress import Progress, ProgressFn
from ui import shared as _shared  # the process-wide store and queue (PageRun.shared is a method)
from ui import workers

T = TypeVar("T")
V = TypeVar("V")

# A progress bar redraws at most this often (and at the last step): every redraw is a message the browser turns into
# a render of the page, on the same cores as the server when a class's browsers run on it.
PROGRESS_EVERY_S = 0.5


def shared_key(cache: str, req: Hashable) -> Hashable:
    """The key of ``req`` in the process's shared results: ``(cache, req)``, plus, when this session has models of
    its own (an upload, a Training-lab run), their process-unique ids: another session's model may carry the same
    ``mine:`` name with other weights, so a result that may depend on one is never handed to another session."""
    own = models.session_models()
    if not own:
        return (cache, req)
    return (cache, req, tuple(sorted((name, sm.uid) for name, sm in own.items())))


class SessionCache(Generic[V]):
    """At most ``size`` values of this session under the ``st.session_state`` key ``key``, least recently used
    dropped first. Keys are requests: anything hashable, compared by value (frozen dataclasses, tuples) and
    holding everything the value depends on.

    ``shared``: the values are deterministic results, also kept for every session of the process
    (:func:`ui.shared.results`, under ``(key, request)``): a request another session computed is a hit here.
    Shared values are read-only."""

    def __init__(self, key: str, size: int, shared: bool = False):
        if size < 1:
            raise ValueError(f"a cache holds at least one value, not {size}")
        self.key, self.size, self.shared = key, size, shared

    def _store(self) -> OrderedDict:
        return st.session_state.setdefault(self.key, OrderedDict())

    def _everyone(self) -> _shared.SharedResults | None:
        """The process's shared results when this cache shares (None when not, or when the setting is invalid:
        a heavy run then says why)."""
        if not self.shared:
            return None
        try:
            return _shared.results()
        except AdvlabError:
            return None

    def get(self, req: Hashable) -> V | None:
        """The value kept for ``req`` (now the most recently used) in this session or, for a shared cache, by
        any session; or None."""
        store = self._store()
        if req not in store:
            everyone = self._everyone()
            hit = None if everyone is None else everyone.get(shared_key(self.key, req))
            return None if hit is None else self._keep(req, hit)
        store.move_to_end(req)
        return store[req]

    def _keep(self, req: Hashable, value: V) -> V:
        store = self._store()
        store[req] = value
        store.move_to_end(req)
        while len(store) > self.size:
            store.popitem(last=False)
        return value

    def put(self, req: Hashable, value: V) -> V:
        """Keep ``value`` for ``req`` (the most recently used), dropping the least recently used beyond the size
        (and, for a shared cache, for every session); returns ``value``."""
        everyone = self._everyone()
        if everyone is not None:
            everyone.put(shared_key(self.key, req), value)
        return self._keep(req, value)

    def get_or_put(self, req: Hashable, make: Callable[[], V]) -> V:
        """The value kept for ``req``, or ``make()`` kept for it."""
        hit = self.get(req)
        return hit if hit is not None else self.put(req, make())

    def items(self) -> list[tuple[Any, V]]:
        """(request, value) pairs, least recently used first."""
        return list(st.session_state.get(self.key, {}).items())

    def values(self) -> list[V]:
        """The values, least recently used first."""
        return [v for _, v in self.items()]

    def last(self, where: Callable[[Any], bool] | None = None) -> tuple[Any, V] | None:
        """The most recently used (request, value) whose request passes ``where`` (any when None), or None."""
        return next(((k, v) for k, v in reversed(self.items()) if where is None or where(k)), None)

    def clear(self) -> None:
        """Forget every value (the key leaves the session state)."""
        st.session_state.pop(self.key, None)

    def __contains__(self, req: Hashable) -> bool:
        return req in st.session_state.get(self.key, {})

    def __len__(self) -> int:
        return len(st.session_state.get(self.key, {}))


def next_number(key: str) -> int:
    """1, 2, 3, ... on successive calls in a session: the session-state counter ``key``."""
    n = int(st.session_state.get(key, 0)) + 1
    st.session_state[key] = n
    return n


class PageRun:
    """One page's long runs: the session-state keys ``{prefix}_request`` (or ``_{request}``), ``_cancel``,
    ``_running`` (where the run is), ``_notices``, ``_job`` (what runs) and ``_cancelled`` (a cancelled job).

    ``results``: the cache the runs' results go to, keyed by the run's ``key`` (see :meth:`execute`); when it is
    shared, a run another session is computing is waited for instead of computed again."""

    def __init__(self, prefix: str, request: str = "request", results: SessionCache | None = None):
        self.results = results
        self.request_key = f"{prefix}_{request}"
        self.cancel_key = f"{prefix}_cancel"
        self.running_key = f"{prefix}_running"
        self.notices_key = f"{prefix}_notices"
        self.job_key = f"{prefix}_job"
        self.cancelled_key = f"{prefix}_cancelled"
        self.shown_key = f"{prefix}_shown"  # the notices the last page run drew
        self.repeat_key = f"{prefix}_repeat"  # a late Cancel click: draw them again

    # ------------------------------------------------------------------ starting

    def request(self, req: Any) -> None:
        """A Run button's callback: remember the request, clear an old cancel (and a cancelled job's block)."""
        st.session_state[self.request_key] = req
        st.session_state[self.cancel_key] = False
        st.session_state.pop(self.cancelled_key, None)

    def pending(self) -> Any | None:
        """The pending request, left in place."""
        return st.session_state.get(self.request_key)

    def take_request(self) -> Any | None:
        """The pending request, removed so that a rerun never starts it twice."""
        return st.session_state.pop(self.request_key, None)

    def blocked(self, job: Hashable) -> bool:
        """Whether ``job`` is the job that Cancel stopped (an automatic run does not restart it)."""
        return self.cancelled_key in st.session_state and st.session_state[self.cancelled_key] == job

    def should_run(self, job: Hashable, auto: bool = False) -> bool:
        """Whether to run ``job`` now: its Run button was pressed (the request is taken), or ``auto`` and it is
        not the job Cancel stopped. An automatic start clears an old Cancel flag and block: a cancelled job
        runs again on its own once another one has run."""
        if self.request_key in st.session_state and st.session_state[self.request_key] == job:
            self.take_request()
            return True
        if auto and not self.blocked(job):
            st.session_state.pop(self.cancel_key, None)
            st.session_state.pop(self.cancelled_key, None)
            return True
        return False

    # ------------------------------------------------------------------ cancelling

    def request_cancel(self) -> None:
        """The Cancel button's callback (it runs at the start of the rerun its click causes, after that rerun
        interrupted the run): set the flag, and remember the interrupted job as cancelled."""
        if st.session_state.get(self.shown_key) and not any(
                k in st.session_state for k in (self.running_key, self.job_key, self.request_key)):
            # A second (late) click, after the run was already stopped and its notice drawn: there is nothing to
            # cancel, so set no flag (it would stop the next run at once) and keep the notice on screen.
            st.session_state[self.repeat_key] = True
            return
        st.session_state[self.cancel_key] = True
        if self.job_key in st.session_state:
            st.session_state[self.cancelled_key] = st.session_state[self.job_key]

    def cancel_requested(self) -> bool:
        """Whether Cancel was pressed: a progress callback returns this (True stops advcore)."""
        return bool(st.session_state.get(self.cancel_key))

    def cancel_button(self, where: Any = None, *, key: str, label: str = "Cancel") -> Any:
        """A Cancel button in an ``st.empty()`` placeholder (in ``where``, a container, when given); returns the
        placeholder, to be emptied when the run is over."""
        slot = (where or st).empty()
        slot.button(label, key=key, icon=":material/stop:", on_click=self.request_cancel)
        return slot

    # ------------------------------------------------------------------ running

    def update(self, marker: Any) -> None:
        """Record where the run is (the RUNNING marker), for a rerun that interrupts it."""
        st.session_state[self.running_key] = marker

    def finish(self) -> Any | None:
        """The run ended by itself (finished, cancelled from its callback or refused): clear the markers and the
        cancel flag; returns the last RUNNING marker (None if the run never reported progress)."""
        left = st.session_state.pop(self.running_key, None)
        st.session_state.pop(self.cancel_key, None)
        st.session_state.pop(self.job_key, None)
        return left

    def _wait(self) -> tuple[_shared.Wait, Callable[[], None]]:
        """A wait callback for :mod:`ui.shared` drawing its text in a placeholder (made at the first wait) and
        returning the Cancel flag (reading it is where Streamlit stops a rerun or closed session), and what
        clears the placeholder."""
        shown: dict[str, Any] = {}

        def wait(text: str) -> bool:
            if shown.get("text") != text:
                if "slot" not in shown:
                    shown["slot"] = st.empty()
                shown["slot"].info(text, icon=":material/hourglass_top:")
                shown["text"] = text
            return self.cancel_requested()

        def clear() -> None:
            if "slot" in shown:
                shown["slot"].empty()

        return wait, clear

    def shared(self, key: Hashable, make: Callable[[], T]) -> T:
        """``make()`` computed once for every session: the result for ``key`` in the ``results`` cache, when a
        session already kept it or is computing it (waited for), else computed here. Without a shared
        ``results`` cache: ``make()``."""
        if self.results is None or self.results.shared is False:
            return make()
        wait, clear = self._wait()
        try:
            return _shared.results().compute(shared_key(self.results.key, key), make, wait)
        finally:
            clear()

    def queued(self, work: Callable[[], T]) -> T:
        """``work()`` in a slot of the process's run queue, waiting for one with its place in line shown."""
        wait, clear = self._wait()
        try:
            return _shared.queue().run(work, wait)
        finally:
            clear()

    def execute(self, work: Callable[[], T] | workers.Job, cancelled: Callable[[Any], str],
                job: Hashable | None = None, key: Hashable | None = None,
                on_step: Callable[[Any], bool | None] | None = None) -> T | None:
        """``work()`` in a slot of the run queue (:meth:`queued`), then :meth:`finish`; on Cancelled leave the
        warning ``cancelled(last marker)`` (and block ``job``), on an AdvlabError its message as an error, and
        return None. ``key`` (default: ``job``, when the PageRun has ``results``) names the result in the
        ``results`` cache: a run another session is computing is waited for (:meth:`shared`).

        ``work`` may be a :class:`ui.workers.Job`: it then runs in a worker process at a lower priority (unless
        workers are off or the job is ``local``), ``on_step`` drawing the steps it reports (a live_steps
        callback); a worker that dies is reported as an error like any AdvlabError.

        Streamlit's rerun (a Cancel click, a changed widget) is a BaseException: it passes through and leaves
        the markers for the next page run."""
        if isinstance(work, workers.Job):
            work = functools.partial(workers.run, work, on_step)
        if job is not None:
            st.session_state[self.job_key] = job
        if key is None and self.results is not None:
            key = job
        try:
            if key is None:
                out = self.queued(work)
            else:
                out = self.shared(key, lambda: self.queued(work))
        except Cancelled:
            self.notice("warning", cancelled(self.finish()))
            if job is not None:
                st.session_state[self.cancelled_key] = job
            return None
        except AdvlabError as exc:
            self.finish()
            self.notice("error", str(exc))
            return None
        self.finish()
        return out

    def live(self, bar: Any, label: str = "", *, text: Callable[[Progress], str] | None = None,
             marker: Callable[[Progress], Any] | None = None,
             then: Callable[[Progress], None] | None = None) -> ProgressFn:
        """advcore's progress callback: record ``marker(p)`` (default: label, stage, step, total), draw ``p`` on
        ``bar`` (an ``st.progress``) with ``text(p)`` (default: ``label: stage, step s of n``), call ``then(p)``
        (more drawing), and return True, which stops advcore, once Cancel was pressed."""

        def report(p: Progress) -> bool:
            self.update(marker(p) if marker else {"label": label, "stage": p.stage, "step": p.step, "total": p.total})
            words = text(p) if text else f"{label + ': ' if label else ''}{p.stage}, step {p.step} of {p.total}"
            bar.progress(p.fraction, text=words)
            if then is not None:
                then(p)
            return self.cancel_requested()

        return report

    def live_steps(self, bar: Any, label: str) -> Callable[[Any], bool]:
        """An attack's per-step callback (``advcore.attacks.StepInfo``: ``.step`` of ``.steps``) drawn on ``bar``
        as ``label: step s of n``; the marker is ``{"step", "steps"}``; True (cancel) once Cancel was pressed."""

        drawn = [-math.inf]

        def on_step(info: Any) -> bool:
            self.update({"label": label, "step": info.step, "steps": info.steps})
            now = time.monotonic()
            if now - drawn[0] >= PROGRESS_EVERY_S or info.step >= info.steps:
                drawn[0] = now
                bar.progress(min(1.0, info.step / max(info.steps, 1)),
                             text=f"{label}: step {info.step} of {info.steps}")
            return self.cancel_requested()

        return on_step

    # ------------------------------------------------------------------ what to say

    def notice(self, kind: str, message: str) -> None:
        """A message (``kind``: a Streamlit call such as ``warning``) for the next page run, after st.rerun."""
        st.session_state.setdefault(self.notices_key, []).append((kind, message))

    def take_notices(self, interrupted: Callable[[Any, bool], str | None]) -> list[tuple[str, str]]:
        """Messages left for this page run, each shown once, and a warning ``interrupted(marker, cancelled)``
        about a run that a rerun interrupted (a Cancel click, or a widget changed while it ran); ``interrupted``
        may return None to say nothing."""
        out = list(st.session_state.pop(self.notices_key, []))
        if st.session_state.pop(self.repeat_key, False):
            out = list(st.session_state.get(self.shown_key, [])) + out
        left = st.session_state.pop(self.running_key, None)
        st.session_state.pop(self.job_key, None)
        if left is not None:  # the run ended without reaching its own end: a rerun stopped it
            said = interrupted(left, bool(st.session_state.pop(self.cancel_key, False)))
            if said:
                out.append(("warning", said))
        if out:
            st.session_state[self.shown_key] = out
        else:
            st.session_state.pop(self.shown_key, None)
        return out

    def show_notices(self, interrupted: Callable[[Any, bool], str | None]) -> None:
        """Draw :meth:`take_notices`' messages."""
        for kind, message in self.take_notices(interrupted):
            getattr(st, kind)(message)


# --------------------------------------------------------------------------- every page's caches and runs

ATTACK_RESULTS: SessionCache = SessionCache("_advlab_attack_results", 8, shared=True)  # PGD and back: free
ATTACK_RUN = PageRun("_advlab_attack", results=ATTACK_RESULTS)  # jobs are the results' requests
ATTACK_FRAMES: SessionCache = SessionCache("_advlab_attack_frames", 16, shared=True)  # (model, device, frame hash)
# (a result's five charts are built once for every session too: ui.views.attack.figures, 32 results)
ATTACK_REVEALED: SessionCache = SessionCache("_advlab_attack_revealed", 8)  # "predict, then reveal": request -> guess
COMPARE_RESULTS: SessionCache = SessionCache("_advlab_compare_results", 4, shared=True)  # tables, eps sweeps
COMPARE_RUN = PageRun("_advlab_compare", request="pending", results=COMPARE_RESULTS)  # Run/sweep requests
DEFENSE_PANELS: SessionCache = SessionCache("_advlab_defense_panels", 3, shared=True)  # the four views of one image
DEFENSE_TABLES: SessionCache = SessionCache("_advlab_defense_tables", 3, shared=True)  # keyed by request
DEFENSE_RUN = PageRun("_advlab_defense", results=DEFENSE_TABLES)  # Measure (and the image attack progress)
GEOMETRY_RESULTS: SessionCache = SessionCache("_advlab_geometry_results", 6, shared=True)  # (request, model)
GEOMETRY_RUN = PageRun("_advlab_geometry", results=GEOMETRY_RESULTS)  # runs on load: jobs are (request, model)
POISON_RESULTS: SessionCache = SessionCache("_advlab_poison_results", 24, shared=True)
POISON_EXAMPLES: SessionCache = SessionCache("_advlab_poison_examples", 24)  # one poison frog trial in full
POISON_RUN = PageRun("_advlab_poison", results=POISON_RESULTS)  # a Run button's table
TRAIN_RUNS: SessionCache = SessionCache("_advlab_train_runs", 3)  # run number -> card (this session's: unshared)
TRAIN_RUN_COUNT = "_advlab_train_run_count"  # next_number(): runs keep their number after "Forget my runs"
TRAIN_RUN = PageRun("_advlab_train")  # the Train button's run
