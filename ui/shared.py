"""What the sessions of one server share: finished results, and a queue for heavy runs (a classroom server).

Streamlit serves every browser tab from one process, each tab's script in its own thread (never on the tornado
event loop, which only moves messages). Everything else in ``ui`` keeps state in ``st.session_state``; this module
is the one deliberate exception, and it is made safe for that:

* every structure is guarded by one lock (``threading.Condition``) and holds only plain Python objects: no torch
  state, no models, no hooks, no seeds;
* values are never mutated here, and are **read-only** for everyone who gets them: a result one session computed
  is the very object other sessions draw (copying a result would cost memory for no gain, because pages only read
  results: they draw them, or make new arrays from them);
* keys are the pages' frozen request dataclasses, which hold everything a result depends on (model, device, image
  key, attack, parameters, seed). An upload's image key is the SHA-256 of its decoded pixels and its file name
  (:func:`ui.frame.upload_key`), so two students uploading the same file share its results.

:class:`SharedResults` is a bounded LRU of finished results with "in flight" entries: the second session that asks
for a result another session is computing waits for that computation (no double work), and may Cancel its wait.
If the computing session is cancelled, fails or disconnects, a waiting one computes it itself.

:class:`RunQueue` lets at most ``limit`` heavy runs execute at a time, first come first served; a waiting session
is told its place in line and may Cancel. A slot is released in a ``finally``: an exception, a Cancel click or a
disconnect (Streamlit interrupts the script with a ``RerunException`` or ``StopException``, both BaseExceptions,
raised at the script's next ``st`` call or ``st.session_state`` access, which the wait loop makes every
:data:`POLL_S`) frees it.

Settings (environment variables, read once when the server starts): ``ADVLAB_MAX_RUNS`` (heavy runs at a time,
default :func:`default_max_runs`) and ``ADVLAB_SHARED_RESULTS`` (results kept for all sessions, default
:data:`DEFAULT_SHARED_RESULTS`; 0 turns sharing off).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from advcore.errors import AdvlabError, Cancelled

T = TypeVar("T")

POLL_S = 0.2  # how often a waiting session redraws its place and looks for Cancel (and Streamlit's rerun/stop)
# An ImageAttack keeps at most 100 8-bit iterates: ~15 MB at 224x224 (PGD-10: 11 of them, ~2 MB); 64 of the largest
# are ~1 GB. The sessions' own caches hold the same objects, so sharing never adds a copy.
DEFAULT_SHARED_RESULTS = 64
MAX_RUNS_ENV, SHARED_ENV = "ADVLAB_MAX_RUNS", "ADVLAB_SHARED_RESULTS"

# wait(text) draws ``text`` ("waiting: 2nd in line") and returns True to give up the wait (Cancel was pressed).
Wait = Callable[[str], bool]


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def default_max_runs() -> int:
    """As many heavy runs at a time as the process may use cores (2 on a 2-core machine), at most 4: each run
    already spreads over torch's threads, so more at once only makes every run slower (the same total work
    finishes no sooner) and holds more memory; two rather than one keep a short run from waiting behind a long
    one on a 2-core machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def env_count(name: str, default: int, low: int) -> int:
    """The whole number in the environment variable ``name`` (``default`` when unset); AdvlabError when it is
    not a whole number >= ``low``."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise AdvlabError(f"{name} must be a whole number >= {low}, not {text!r}")
    return value


class RunQueue:
    """At most ``limit`` runs at a time, the others waiting first come first served (thread-safe)."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"a queue runs at least one run at a time, not {limit}")
        self.limit = limit
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._running = 0
        self._held = threading.local()  # this thread already holds a slot (a nested run does not queue again)

    def running(self) -> int:
        """Runs holding a slot now."""
        with self._cond:
            return self._running

    def waiting(self) -> int:
        """Runs waiting for a slot now."""
        with self._cond:
            return len(self._waiting)

    @contextlib.contextmanager
    def slot(self, wait: Wait | None = None) -> Iterator[None]:
        """Hold a slot for the ``with`` body: wait for it (calling ``wait("waiting: 2nd in line")`` every
        :data:`POLL_S`; Cancelled when it returns True), release it on any exit."""
        if getattr(self._held, "on", False):
            yield
            return
        ticket = object()
        got = False
        with self._cond:
            self._waiting.append(ticket)
        try:
            while True:
                with self._cond:
                    place = self._waiting.index(ticket) + 1
                    if place == 1 and self._running < self.limit:
                        self._waiting.popleft()
                        self._running += 1
                        got = True
                        break
                    ahead = place - 1 + self._running  # runs before this one: waiting ahead, and running
                if wait is not None and wait(f"waiting: {ordinal(place)} in line ({ahead} "
                                             f"run{'s' if ahead != 1 else ''} ahead, {self.limit} at a time)"):
                    raise Cancelled("cancelled while waiting in line")
                with self._cond:
                    if self._waiting[0] is not ticket or self._running >= self.limit:
                        self._cond.wait(POLL_S)
            self._held.on = True
            yield
        finally:
            with self._cond:
                if got:
                    self._running -= 1
                    self._held.on = False
                else:
                    self._waiting.remove(ticket)
                self._cond.notify_all()

    def run(self, work: Callable[[], T], wait: Wait | None = None) -> T:
        """``work()`` in a slot."""
        with self.slot(wait):
            return work()


class _Flight:
    """A result being computed by one session."""

    def __init__(self) -> None:
        self.done = threading.Event()


class SharedResults:
    """At most ``size`` finished results for every session (least recently used dropped first) and the results
    being computed now (thread-safe). Keys: hashable requests; values: read-only (see the module docstring)."""

    def __init__(self, size: int):
        if size < 0:
            raise ValueError(f"a shared store holds 0 or more results, not {size}")
        self.size = size
        self._lock = threading.Lock()
        self._done: OrderedDict[Hashable, Any] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self.computed = 0  # computations that ran here (a waiter that got another's result adds nothing)

    def get(self, key: Hashable) -> Any | None:
        """The finished result for ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._done:
                return None
            self._done.move_to_end(key)
            return self._done[key]

    def put(self, key: Hashable, value: Any) -> Any:
        """Keep ``value`` for ``key`` for every session; returns ``value``."""
        if value is None or self.size == 0:
            return value
        with self._lock:
            self._done[key] = value
            self._done.move_to_end(key)
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        return value

    def __len__(self) -> int:
        with self._lock:
            return len(self._done)

    def clear(self) -> None:
        """Forget every finished result (those in flight finish as usual)."""
        with self._lock:
            self._done.clear()

    def in_flight(self) -> int:
        """Results being computed now."""
        with self._lock:
            return len(self._flights)

    def compute(self, key: Hashable, make: Callable[[], T], wait: Wait | None = None) -> T:
        """The result for ``key``: kept, or being computed by another session (wait for it, calling
        ``wait(text)`` every :data:`POLL_S`; Cancelled when it returns True), or ``make()`` here (kept for every
        session when it returns, other sessions waiting for it meanwhile). If the computing session stops
        without a result (cancelled, refused, disconnected), one waiting session computes it instead. With a
        size of 0 (sharing off) every call computes its own."""
        if self.size == 0:
            return make()
        while True:
            with self._lock:
                if key in self._done:
                    self._done.move_to_end(key)
                    return self._done[key]
                flight = self._flights.get(key)
                if flight is None:
                    mine = self._flights[key] = _Flight()
                    break
            while not flight.done.wait(POLL_S):
                if wait is not None and wait("waiting for the same run, which another session started"):
                    raise Cancelled("cancelled while waiting for another session's run")
            with self._lock:  # it ended: take its result, or compute it (it ended without one)
                if key in self._done:
                    self._done.move_to_end(key)
                    return self._done[key]
        try:
            value = make()
            with self._lock:
                self.computed += 1
            self.put(key, value)
            return value
        finally:
            with self._lock:
                self._flights.pop(key, None)
            mine.done.set()


# --------------------------------------------------------------------------- the process's queue and results

_LOCK = threading.Lock()
_QUEUE: RunQueue | None = None
_RESULTS: SharedResults | None = None


def queue() -> RunQueue:
    """The process's run queue (``ADVLAB_MAX_RUNS`` at a time); AdvlabError when that setting is invalid."""
    global _QUEUE
    with _LOCK:
        if _QUEUE is None:
            _QUEUE = RunQueue(env_count(MAX_RUNS_ENV, default_max_runs(), 1))
        return _QUEUE


def results() -> SharedResults:
    """The process's shared results (``ADVLAB_SHARED_RESULTS`` of them); AdvlabError when that setting is
    invalid."""
    global _RESULTS
    with _LOCK:
        if _RESULTS is None:
            _RESULTS = SharedResults(env_count(SHARED_ENV, DEFAULT_SHARED_RESULTS, 0))
        return _RESULTS
