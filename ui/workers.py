"""Heavy runs in worker processes at a lower OS priority, so that a classroom server's light reruns win the cores.

Streamlit runs every session's script in a thread of one process: a heavy run there (an attack's forward and
backward passes) holds the GIL between torch calls and competes with every other session's light reruns (a
cached result redrawn) for the cores. :func:`run` sends a picklable :class:`Job` (a module-level function and
its arguments) to a worker process instead: the worker lowers its own priority (:func:`lower_priority`), sets
its torch thread count (the server's own count, set in the worker process only) and keeps its own loaded
models, and the server's script thread only waits, drawing the progress the worker sends. At the lowest priority
a worker gets little of a core that a server thread or a browser wants, so a light rerun hardly waits for a heavy
run's arithmetic (README "Classroom server" has the measurement).

* Progress: the job's function takes a per-step callback under the keyword ``Job.progress``; in the worker it
  sends ``Job.report(info)`` (a small picklable summary) to the server, where the page's callback draws it; when
  that callback returns True (Cancel), a ``STOP`` message on the worker's socket makes the worker's callback
  return True, and advcore stops at that step, as in-process.
* The run queue's slot (:mod:`ui.shared`) is held by the waiting script thread, so ``ADVLAB_MAX_RUNS`` still
  bounds the runs at a time. A rerun or closed tab interrupts the wait (a BaseException at the page's next ``st``
  call): the worker is told to stop and is taken back once it has (or ended after :data:`DRAIN_S`), and the slot
  is freed at once.
* Workers start in the background when the server's first page runs (:func:`prepare`), and again after one
  died. A job that finds no idle worker (the server has just started, or a worker died) runs in the calling
  thread rather than waiting seconds for a worker's imports: the same numbers either way.
* A worker that dies mid-run (killed, out of memory) raises :class:`WorkerCrashed`, an AdvlabError with a plain
  message; the next run goes on without it while a new worker starts.
* Workers are on by default, ``ADVLAB_RUN_WORKERS=1`` (:func:`enabled`); with 0 jobs run in the calling thread (the
  in-process tests' setting, see tests/conftest.py). Every lab's heavy runs are jobs: the Attack lab's attacks, the
  Compare lab's runs, the Defense and Poisoning labs' tables, the Geometry lab's probes and surveys, the Training
  lab's training runs (the trained module travels back pickled) and Table 1, and the Papers page's quick runs.
  Session-only models (the sidebar's ``mine:`` uploads) live in the server's session, not in a worker: a job on one
  is ``local`` and runs in-process, where a worker's run beside it gets the cores it leaves
  (bench/worker_priority.py).

A worker is a plain subprocess (``python -c "from ui.workers import serve; ..."``, never a fork of the threaded
server) in a session of its own (so its own autogroup, which :func:`lower_priority` lowers too; it ends when the
server's end of its socket closes, as no terminal signal reaches it), talking over a socket pair with
``multiprocessing.connection``. Jobs, results and exceptions travel pickled (plain pickle: tensors are copied,
never shared). Nothing here touches the server process's models, seeds or thread counts; the pool is a list of
processes under one lock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from advcore.errors import AdvlabError

WORKERS_ENV = "ADVLAB_RUN_WORKERS"  # 1 (default): heavy runs in worker processes; 0: in the server process
# os.nice increment of a worker, to the lowest priority: CFS gives a nice-19 thread 15/1024 of a nice-0 thread's
# share when both want a core. Measured against +5 and in-process runs (README "Classroom server").
WORKER_NICE = 19
AUTOGROUP = "/proc/self/autogroup"  # Linux's per-session CPU group (sched(7), "The autogroup feature")
POLL_S = 0.1  # how often a waiting script thread looks for a worker's message or death
DRAIN_S = 30.0  # an interrupted run's worker is ended if it has not stopped by then
START_S = 300.0  # a starting worker is ended if it has not imported torch by then (at the lowest priority)
ROOT = Path(__file__).resolve().parents[1]  # workers import ui and advcore from here
STOP = "stop"  # the server's message to a job: return True from your next step's callback
READY = ("ready", None)  # a new worker's first message: its imports are done


class WorkerCrashed(AdvlabError):
    """The worker process running a job died before it answered."""


def _same(info: Any) -> Any:
    return info


@dataclass(frozen=True)
class Job:
    """``fn(*args, **kwargs)``, picklable: ``fn`` (and ``report``) are module-level functions or methods of
    picklable objects (a frozen request's ``run``), the arguments plain data. ``progress``: the keyword under
    which ``fn`` takes its per-step callback (which returns True to stop), or None; ``report(info)`` is what of a
    step's info travels to the server (keep it small) and what the caller's callback sees, in a worker or not."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    progress: str | None = None
    report: Callable[[Any], Any] = _same
    local: bool = False  # run it in the calling process: it needs this session's state (a mine: model)

    def call(self, on_step: Callable[[Any], bool | None] | None) -> Any:
        """The job here, with ``on_step`` as its callback (when it takes one)."""
        kwargs = dict(self.kwargs)
        if self.progress is not None and on_step is not None:
            kwargs[self.progress] = lambda info: on_step(self.report(info))
        return self.fn(*self.args, **kwargs)


def plain_progress(p: Any) -> Any:
    """What of an ``advcore.progress.Progress`` travels from a worker: stage, step, total and message, not its
    ``info`` (which may hold tensors); a Job's ``report`` for advcore's progress callbacks."""
    from advcore.progress import Progress

    return Progress(p.stage, p.step, p.total, message=p.message)


def progress_job(fn: Callable[..., Any], args: tuple = (), kwargs: Mapping[str, Any] | None = None, *,
                 models: Iterable[str] = ()) -> Job:
    """A job whose ``fn`` takes advcore's progress callback as ``progress=``, its reports sent as
    :func:`plain_progress`; ``local`` (in-process) when one of ``models`` is a model of the session's own."""
    from advcore.models import is_session_model

    return Job(fn, tuple(args), dict(kwargs or {}), progress="progress", report=plain_progress,
               local=any(is_session_model(m) for m in models))


def enabled() -> bool:
    """Whether heavy runs go to worker processes (``ADVLAB_RUN_WORKERS``, default 1 on POSIX systems, which have
    ``os.nice`` and inherited socket descriptors; 0 elsewhere); AdvlabError when the setting is not 0 or 1."""
    text = os.environ.get(WORKERS_ENV, "").strip() or ("1" if os.name == "posix" else "0")
    if text not in ("0", "1"):
        raise AdvlabError(f"{WORKERS_ENV} must be 0 (runs in the server process) or 1 (in workers), not {text!r}")
    return text == "1"


def worker_threads() -> int:
    """Torch threads per worker: the server process's own count (read, never set). Not the cores split between
    the runs at a time: a float sum over another number of threads rounds differently, and PGD's sign steps
    amplify that (measured on EfficientNet-Lite0, PGD-5 seed 1: L2 4.337 at 1 thread, 4.340 at 2), so a worker
    with fewer threads would show other numbers than the same run on the command line."""
    import torch

    return torch.get_num_threads()


# --------------------------------------------------------------------------- the worker process


def _send(conn: Connection, message: object) -> None:
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def lower_priority(niceness: int = WORKER_NICE) -> None:
    """Lower this process to ``niceness`` (never raises). Where Linux shares the CPU between sessions before it
    looks at nice values (autogroup, ``kernel.sched_autogroup_enabled``, on by default in most distributions), a
    nice process of one session still gets as much as the whole of another session (a browser on the same
    machine, the server itself when it runs in a session of its own): so a worker, which starts in a session of
    its own (``start_new_session``), sets its session's group to the same nice. The group is written only by a
    process that leads its own session: one that shares its caller's session leaves the caller's group alone."""
    with contextlib.suppress(OSError):
        os.nice(niceness - os.getpriority(os.PRIO_PROCESS, 0))
    if not os.path.exists(AUTOGROUP) or os.getsid(0) != os.getpid():
        return
    for _ in range(20):  # an unprivileged write is refused (EAGAIN) within 0.1 s of another one, system-wide
        try:
            with open(AUTOGROUP, "w") as f:
                f.write(str(niceness))
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return
            time.sleep(0.1)


def priority() -> dict[str, Any]:
    """This process's priority: its nice value, whether it leads a session of its own, and that session's
    autogroup nice (None where Linux has no autogroup)."""
    group = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(AUTOGROUP) as f:
            group = int(f.read().split("nice")[1])
    return {"nice": os.getpriority(os.PRIO_PROCESS, 0), "own_session": os.getsid(0) == os.getpid(),
            "autogroup_nice": group}


def serve(fd: int, threads: int) -> None:
    """A worker process's life (``python -c "from ui.workers import serve; serve(FD, THREADS)"``): lower its
    priority, set its own torch threads, then answer jobs on the socket ``fd`` until it closes (the server
    ended: a worker in a session of its own gets no signal from a terminal). A ``STOP`` message during a job
    makes the job's callback return True, and so does the socket's end."""
    lower_priority()
    import torch

    torch.set_num_threads(threads)  # this worker process only
    conn = Connection(fd)
    try:
        _send(conn, READY)  # imported: the pool may give it jobs now
    except OSError:
        return
    while True:
        try:
            job = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if not isinstance(job, Job):  # a STOP that came after its job had answered
            continue
        stopped = False

        def on_step(report: Any) -> bool:
            nonlocal stopped
            try:
                _send(conn, ("step", report))
                while not stopped and conn.poll(0):
                    stopped = pickle.loads(conn.recv_bytes()) == STOP
            except (EOFError, OSError):  # the server is gone: stop at this step
                stopped = True
            return stopped

        try:
            out: tuple = ("done", job.call(on_step))
        except Exception as exc:  # the job's own exception, raised again where the job was asked for
            out = ("raise", exc)
        try:
            _send(conn, out)
        except OSError:  # the server is gone
            return
        except Exception as exc:  # an unpicklable result or exception
            with contextlib.suppress(OSError):  # if the server is gone, the next recv ends this loop
                _send(conn, ("raise", RuntimeError(f"the worker could not send its answer back: {exc}")))


def child_environment() -> dict[str, str]:
    """A worker process's environment: this one's, with ``ui`` and ``advcore`` importable from :data:`ROOT` and
    ``OMP_WAIT_POLICY=PASSIVE`` unless set (OpenMP threads sleep, not spin, while they wait; see :func:`pool`)."""
    return {"OMP_WAIT_POLICY": "PASSIVE", **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


class _Worker:
    """One worker process and the server's end of its socket."""

    def __init__(self, threads: int):
        mine, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from ui.workers import serve; serve({theirs.fileno()}, {threads})"],
            pass_fds=(theirs.fileno(),), cwd=ROOT, env=child_environment(), stdin=subprocess.DEVNULL,
            start_new_session=True)  # its own session, so its own autogroup (lower_priority)
        theirs.close()
        self.conn = Connection(mine.detach())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self, timeout: float = START_S) -> bool:
        """Wait for the worker's READY (its imports done); False when it died or took over ``timeout`` s."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.alive():
                if self.conn.poll(POLL_S):
                    return pickle.loads(self.conn.recv_bytes()) == READY
        except (EOFError, OSError):
            pass
        return False

    def stop(self) -> None:
        """Tell the job to stop at its next step."""
        with contextlib.suppress(OSError):
            _send(self.conn, STOP)

    def end(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _crash_message(proc: subprocess.Popen) -> str:
    code = proc.poll()
    how = f"was killed (signal {-code})" if code is not None and code < 0 else f"exited with code {code}"
    return (f"The run's worker process {how} before it finished (perhaps out of memory); nothing was kept. "
            "Press Run again to start it in a new worker.")


# --------------------------------------------------------------------------- the server's pool


class Pool:
    """``keep`` worker processes for jobs, started in the background (:meth:`warm`) and kept for the next job,
    so that a worker's imports and loaded models serve many runs. Thread-safe."""

    def __init__(self, keep: int, threads: int):
        self.keep, self.threads = keep, threads
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._busy = 0  # workers taken for a job (or being drained) and not yet given back or ended
        self._warming = False  # a warm thread is starting workers
        self.started = 0  # workers started so far

    def _take(self) -> _Worker | None:
        """A live idle worker, or None (and :meth:`warm`) when there is none."""
        dead: list[_Worker] = []
        with self._lock:
            w = None
            while self._idle and w is None:
                w = self._idle.pop()
                if not w.alive():
                    dead.append(w)
                    w = None
            if w is not None:
                self._busy += 1
        for d in dead:
            d.end()
        if w is None:
            self.warm()
        return w

    def _give(self, w: _Worker, taken: bool = True) -> None:
        """Keep ``w`` for the next job when it is alive and fewer than ``keep`` are, else end it; ``taken``:
        it came from :meth:`_take` (not from :meth:`warm`)."""
        with self._lock:
            if taken:
                self._busy -= 1
            if w.alive() and len(self._idle) + self._busy < self.keep:
                self._idle.append(w)
                return
        w.end()
        if taken:
            self.warm()  # a replacement when this one died (nothing when the pool is full)

    def _drain(self, w: _Worker) -> None:
        """Take back a worker whose wait was interrupted, once its job has answered (it was told to stop)."""
        deadline = time.monotonic() + DRAIN_S
        try:
            while time.monotonic() < deadline and w.alive():
                if w.conn.poll(POLL_S) and pickle.loads(w.conn.recv_bytes())[0] != "step":
                    self._give(w)
                    return
        except (EOFError, OSError):
            pass
        self._drop(w)

    def _drop(self, w: _Worker) -> None:
        """End a taken worker (it died, or would not stop) and start a replacement."""
        with self._lock:
            self._busy -= 1
        w.end()
        self.warm()

    def warm(self) -> None:
        """Start workers, in the background, until ``keep`` are idle or busy (a worker's start, its imports at the
        lowest priority, takes seconds; jobs meanwhile run in their calling thread). One warm thread at a time."""
        with self._lock:
            if self._warming or len(self._idle) + self._busy >= self.keep:
                return
            self._warming = True

        def start() -> None:
            try:
                for _ in range(self.keep):  # at most keep: a worker that dies at once is not started again
                    with self._lock:
                        if len(self._idle) + self._busy >= self.keep:
                            return
                        self.started += 1
                    w = _Worker(self.threads)
                    if w.ready():  # only a worker that has imported torch is idle: a job never waits for it
                        self._give(w, taken=False)
                    else:
                        w.end()
            finally:
                with self._lock:
                    self._warming = False

        threading.Thread(target=start, daemon=True, name="advlab-warm").start()

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        """End every idle worker."""
        with self._lock:
            idle, self._idle = self._idle, []
        for w in idle:
            w.end()

    def pids(self) -> list[int]:
        """The idle workers' process ids."""
        with self._lock:
            return [w.proc.pid for w in self._idle]

    def run(self, job: Job, on_step: Callable[[Any], bool | None] | None = None) -> Any:
        """``job`` in an idle worker, else in this thread: ``on_step(report)`` for every step it reports (True:
        tell it to stop); its result, or its exception raised here; WorkerCrashed when the worker dies first."""
        w = self._take()
        if w is None:
            return job.call(on_step)
        try:
            _send(w.conn, job)
        except OSError:  # it died while idle
            self._drop(w)
            raise WorkerCrashed(_crash_message(w.proc)) from None
        except BaseException:  # an unpicklable job: the worker never got it
            self._give(w)
            raise
        answered = False
        try:
            while True:
                try:
                    ready = w.conn.poll(POLL_S)
                    message = pickle.loads(w.conn.recv_bytes()) if ready else None
                except (EOFError, OSError):
                    message = None
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        w.proc.wait(1)
                if message is None:
                    if not w.alive():
                        answered = True  # nothing to drain: it is gone
                        raise WorkerCrashed(_crash_message(w.proc))
                    continue
                if message[0] == "step":
                    if on_step is not None and on_step(message[1]):
                        w.stop()
                    continue
                answered = True
                if message[0] == "done":
                    return message[1]
                raise message[1]
        finally:
            if answered:
                self._give(w)
            else:  # interrupted (a rerun, a closed tab): the slot is freed now, the worker once it has stopped
                w.stop()
                threading.Thread(target=self._drain, args=(w,), daemon=True, name="advlab-drain").start()


_LOCK = threading.Lock()
_POOL: Pool | None = None


def pool() -> Pool:
    """The server process's worker pool, started on the first call: as many kept as the run queue runs at a
    time, each with the server's torch thread count (:func:`worker_threads`)."""
    global _POOL
    from ui import shared

    with _LOCK:
        if _POOL is None:
            _POOL = Pool(shared.queue().limit, worker_threads())
            _POOL.warm()  # they import in the background; runs meanwhile go on in their own threads
        return _POOL


def prepare() -> None:
    """Start the worker pool when workers are on (a page run calls this first, so that workers import while the
    first student reads the page); AdvlabError when ``ADVLAB_RUN_WORKERS`` is not 0 or 1."""
    if enabled():
        pool()


def run(job: Job, on_step: Callable[[Any], bool | None] | None = None) -> Any:
    """``job`` in a worker process when workers are on (:func:`enabled`) and the job is not ``local``, else
    here; ``on_step`` sees ``job.report(info)`` of every step either way (True: stop)."""
    if not job.local and enabled():
        return pool().run(job, on_step)
    return job.call(on_step)
