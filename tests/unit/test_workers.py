"""ui.workers with real worker processes: a real attack, comparison, defense and poisoning table, geometry probe,
training run (its model sent back), Table 1 and Papers quick run give the in-process result, Cancel (the flag, and
Streamlit's interruption) stops it and frees the queue slot, and a killed worker is a plain error after which the
next run works (in this thread while a new worker starts). One worker process serves the module (it starts once:
imports and a model load, ~3 s)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from json_util import untimed
from PIL import Image
from streamlit.runtime.scriptrunner_utils.exceptions import StopException
from test_shared import ThreadSessions, wait_until

from advcore.errors import AdvlabError, Cancelled
from ui import session as runs
from ui import shared, workers
from ui.views import attack as attack_view

IMAGE = Image.fromarray(np.random.default_rng(3).integers(0, 256, (28, 28, 3), dtype=np.uint8))


def request(steps: int = 6, eps: int = 8) -> attack_view.AttackRequest:
    return attack_view.AttackRequest(model="fmnist-naive", device="cpu", image_key="test:3", attack="pgd",
                                     norm="linf", eps=eps / 255, eps_text=f"{eps}/255", steps=steps,
                                     extra=(("random_start", True), ("seed", 5)))


@pytest.fixture(scope="module")
def pool():
    p = workers.Pool(keep=1, threads=torch.get_num_threads())  # as the tests' in-process runs
    yield p
    p.close()


def idle_worker(pool: workers.Pool) -> workers.Pool:
    """``pool`` once a worker waits in it (warm starts one in the background)."""
    pool.warm()
    wait_until(lambda: pool.idle() == 1, timeout=120)
    return pool


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch, pool: workers.Pool) -> workers.Pool:
    """Workers on, the module's pool as the process's, one run at a time, ui.session with thread sessions."""
    monkeypatch.setenv(workers.WORKERS_ENV, "1")
    monkeypatch.setattr(workers, "_POOL", pool)
    monkeypatch.setattr(shared, "_QUEUE", shared.RunQueue(1))
    monkeypatch.setattr(runs, "st", ThreadSessions())
    return idle_worker(pool)


def test_a_job_in_a_worker_equals_the_same_run_in_process(on: workers.Pool) -> None:
    req = request()
    here = attack_view.run_to_end(req, IMAGE)
    seen: list[attack_view.StepCount] = []
    there = runs.ATTACK_RUN.execute(attack_view.job(req, IMAGE), attack_view.cancelled, job=req,
                                    on_step=lambda s: seen.append(s))
    assert on.started == 1 and on.idle() == 1  # it ran in the worker, which is kept for the next run
    assert torch.equal(there.x_adv, here.x_adv) and torch.equal(there.x_adv_8bit, here.x_adv_8bit)
    assert there.png == here.png and np.array_equal(there.trajectory.frames, here.trajectory.frames)
    assert {**there.metrics, "seconds": 0} == {**here.metrics, "seconds": 0}
    assert seen == [attack_view.StepCount(s, 6) for s in range(1, 7)]  # every step reported, in order


def test_cancel_stops_the_worker_and_frees_the_slot(on: workers.Pool) -> None:
    req = request(steps=200)
    seen: list[int] = []

    def cancel_at_2(s: attack_view.StepCount) -> bool:
        seen.append(s.step)
        return s.step >= 2  # the Cancel flag, read at step 2

    said = runs.ATTACK_RUN.execute(attack_view.job(req, IMAGE), attack_view.cancelled, job=req, on_step=cancel_at_2)
    assert said is None and shared.queue().running() == 0
    assert 2 <= max(seen) < 50  # the worker stopped a step or two later, not after 200
    notices = runs.st.session_state[runs.ATTACK_RUN.notices_key]
    assert notices[0][0] == "warning" and notices[0][1].startswith("Cancelled")
    # Streamlit's interruption (a rerun or a closed tab, a BaseException at the next st call): the slot is
    # freed at once; the worker is told to stop and taken back, and runs the next job.
    def closing(s: attack_view.StepCount) -> bool:
        raise StopException()

    with pytest.raises(StopException):
        runs.ATTACK_RUN.execute(attack_view.job(req, IMAGE), attack_view.cancelled, job=req, on_step=closing)
    assert shared.queue().running() == 0
    wait_until(lambda: on.idle() == 1)
    assert runs.ATTACK_RUN.execute(attack_view.job(request(), IMAGE), attack_view.cancelled) is not None
    assert on.started == 1  # the same worker all along


def test_a_killed_worker_is_a_plain_error_and_the_next_run_works(on: workers.Pool) -> None:
    runs.ATTACK_RUN.execute(attack_view.job(request(steps=1), IMAGE), attack_view.cancelled)  # a worker idles
    (pid,) = on.pids()
    started = on.started
    req = request(steps=200)

    def kill_at_step_1(s: attack_view.StepCount) -> bool:
        if s.step == 1:
            os.kill(pid, signal.SIGKILL)
        return False

    assert runs.ATTACK_RUN.execute(attack_view.job(req, IMAGE), attack_view.cancelled, job=req,
                                   on_step=kill_at_step_1) is None
    kind, message = runs.st.session_state[runs.ATTACK_RUN.notices_key][-1]
    assert kind == "error" and message.startswith("The run's worker process was killed (signal 9)")
    assert issubclass(workers.WorkerCrashed, AdvlabError) and shared.queue().running() == 0
    # The next run does not wait for a new worker's imports: it runs in this thread while one starts.
    assert runs.ATTACK_RUN.execute(attack_view.job(request(), IMAGE), attack_view.cancelled) is not None
    wait_until(lambda: on.idle() == 1, timeout=120)
    assert on.started == started + 1  # the replacement, started once
    assert runs.ATTACK_RUN.execute(workers.Job(os.getpid), attack_view.cancelled) == on.pids()[0]  # in it


def in_the_worker(pool: workers.Pool, run):
    """``run()``, asserting that it used the pool's idle worker (the fixture's): no worker started, the same one
    back in the pool."""
    started, (pid,) = pool.started, pool.pids()
    out = run()
    assert pool.started == started and pool.pids() == [pid]
    return out


def test_a_comparison_in_a_worker_equals_the_same_run_in_process(on: workers.Pool) -> None:
    from ui.views import compare as cv

    req = cv.CompareRequest(dataset="fashion-mnist", sources=("fmnist-naive",),
                            targets=("fmnist-naive", "fmnist-fgsm"), attacks=("fgsm", "pgd"), norm="linf",
                            eps=(0.1,), eps_text="0.1", steps=3, seed=1, images="fashion-mnist", limit=3,
                            device="cpu")
    here = cv.compute(req)
    seen: list = []
    job = cv.job(req)
    assert not job.local
    there = in_the_worker(on, lambda: runs.COMPARE_RUN.execute(
        job, cv.cancelled, on_step=lambda p: seen.append((p.stage, p.step, p.total))))
    assert untimed(there.to_dict()) == untimed(here.to_dict()) and there.image_names == here.image_names
    assert seen and seen[-1][1] == seen[-1][2]  # progress reached the end, reported as plain data


def test_a_defense_table_in_a_worker_equals_the_same_run_in_process(on: workers.Pool) -> None:
    from ui.views import defense as dv

    req = dv.TableRequest(model="fmnist-naive", device="cpu", method="bayer", attacks=("fgsm",), eps=(0.1,),
                          n=4, steps=2, strong_steps=0, restarts=1)
    here = dv.run_table(req)
    job = dv.job(req)
    assert not job.local and job.args[1] == dv.trained_rows("fmnist-naive")  # looked up in the server
    seen: list = []
    there = in_the_worker(on, lambda: runs.DEFENSE_RUN.execute(
        job, dv.cancelled, on_step=lambda p: seen.append((p.step, p.total))))
    assert untimed(there.to_dict()) == untimed(here.to_dict())
    assert seen and seen[-1][0] == seen[-1][1]


def test_a_poisoning_table_in_a_worker_equals_the_same_run_in_process(on: workers.Pool) -> None:
    from ui.views import poisoning as pv

    req = pv.Request("lf", ("naive",), 0, share=0.2)
    here = req.run()
    seen: list = []
    there = in_the_worker(on, lambda: runs.POISON_RUN.execute(
        pv.job(req), lambda left: "cancelled", on_step=lambda p: seen.append(p.stage)))
    assert untimed(there.to_dict()) == untimed(here.to_dict()) and seen


def test_a_geometry_probe_in_a_worker_equals_the_same_run_in_process(on: workers.Pool) -> None:
    from ui.views import geometry as gv

    req = gv.GeometryRequest(model="fmnist-naive", image_key="test:3", T=10, radii=(0.02, 0.1), radii_text="0.02,0.1",
                             norm="linf", layer="penultimate", seed=0, permutations=20, device="cpu")
    here = gv.probe(req, IMAGE.convert("L"))
    job = gv.probe_job(req, IMAGE.convert("L"))
    assert not job.local
    seen: list = []
    there = in_the_worker(on, lambda: runs.GEOMETRY_RUN.execute(
        job, lambda left: "cancelled", on_step=lambda p: seen.append(p.stage)))
    assert untimed(there.to_dict(points=True)) == untimed(here.to_dict(points=True)) and seen


def test_a_training_run_in_a_worker_equals_the_same_run_in_process(on: workers.Pool) -> None:
    from ui.views import training as tv

    req = tv.RunRequest(dataset="digits", recipe="fgsm", strengths=(0.1,), epochs=1, limit=300, seed=2, eval_n=50,
                        device="cpu")
    (card, report, evaluation), model = tv.train_and_evaluate(req)
    seen: list = []
    job = tv.job(req)
    assert not job.local
    (card_w, report_w, evaluation_w), model_w = in_the_worker(on, lambda: runs.TRAIN_RUN.execute(
        job, tv.cancelled, on_step=lambda p: seen.append(p)))
    assert untimed(report_w) == untimed(report) and evaluation_w == evaluation
    assert untimed({**card_w, "training_seconds": 0}) == untimed({**card, "training_seconds": 0})
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model_w(x), model(x))  # the same weights came back, ready for the session's model list
    losses = [p.info["loss"] for p in seen if p.stage == "train" and p.message is None]
    assert losses and all(isinstance(v, float) for v in losses)  # what the live loss chart draws, as plain floats
    assert seen[-1].stage == "fgsm eval" and seen[-1].message.startswith("FGSM accuracy on 50 images")


def test_table1_and_a_papers_quick_run_in_a_worker_equal_the_same_runs_in_process(on: workers.Pool) -> None:
    from ui.views import papers as pv
    from ui.views import training as tv

    req = tv.Table1Request("fashion-mnist", 10, "0:0.3:0.1", "cpu")
    here = req.run()
    seen: list = []
    there = in_the_worker(on, lambda: runs.PageRun("_test_t1").execute(
        req.job(), lambda left: "cancelled", on_step=lambda p: seen.append((p.stage, p.step, p.total))))
    assert untimed(there) == untimed(here) and seen and seen[-1][1] == seen[-1][2]
    from advcore.labs import papers

    here = papers.reproduce("geometry", quick=True)
    there = in_the_worker(on, lambda: runs.PageRun("_test_papers").execute(pv.job("geometry"), pv.cancelled))
    assert untimed(there) == untimed(here) and there["claims"]


def test_a_worker_runs_at_the_lowest_priority_in_a_session_of_its_own(on: workers.Pool) -> None:
    """Nice 19, and where Linux has autogroups its own session's group at nice 19 too: otherwise a nice worker
    still gets as much CPU as a whole other session (a browser on the same machine)."""
    here = workers.priority()
    there = in_the_worker(on, lambda: workers.run(workers.Job(workers.priority)))
    assert there["nice"] == workers.WORKER_NICE and there["own_session"]
    writable = subprocess.run([sys.executable, "-c", f"open({workers.AUTOGROUP!r}, 'w').write('19')"],
                              start_new_session=True, capture_output=True).returncode == 0
    if os.path.exists(workers.AUTOGROUP) and writable:  # a sandbox may forbid it: then nice alone applies
        assert there["autogroup_nice"] == workers.WORKER_NICE
    assert workers.priority() == here  # the server's (this test's) process and session group are untouched


def test_lower_priority_leaves_the_callers_session_group_alone() -> None:
    """A process that shares its caller's session lowers only itself, never that session's group (the server's)."""
    script = ("import json; from ui import workers; workers.lower_priority(); "
              "print(json.dumps(workers.priority()))")
    env = {**os.environ, "PYTHONPATH": str(workers.ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    child = json.loads(out.stdout)
    assert child["nice"] == workers.WORKER_NICE and not child["own_session"]
    assert child["autogroup_nice"] == workers.priority()["autogroup_nice"]  # this session's group, unchanged


def test_a_worker_whose_server_is_gone_stops_at_its_next_step() -> None:
    """In a session of its own a worker gets no signal when the server dies: it stops at the next step it
    reports, once the server's end of its socket is closed, and exits cleanly."""
    w = workers._Worker(threads=1)
    try:
        assert w.ready(timeout=120)
        workers._send(w.conn, attack_view.job(request(steps=1000), IMAGE))
        assert pickle.loads(w.conn.recv_bytes())[0] == "step"  # it is running
        w.conn.close()  # as when the server process dies
        assert w.proc.wait(timeout=60) == 0
    finally:
        w.end()


def test_a_job_runs_here_while_no_worker_is_idle_and_the_pool_never_exceeds_keep() -> None:
    pool = workers.Pool(keep=1, threads=1)
    try:
        assert pool.run(workers.Job(threading.get_ident)) == threading.get_ident()  # none started yet: here
        assert pool.idle() == 0  # the one that run's miss started is importing torch: not given jobs yet
        wait_until(lambda: pool.idle() == 1, timeout=120)  # that run's miss started one in the background
        for _ in range(3):
            pool.warm()  # full: starts nothing
        assert pool.run(workers.Job(os.getpid)) == pool.pids()[0] != os.getpid()
        assert pool.started == 1 and pool.idle() == 1
    finally:
        pool.close()


def test_workers_off_or_local_jobs_run_here(monkeypatch: pytest.MonkeyPatch) -> None:
    here = threading.get_ident()
    job = workers.Job(threading.get_ident)
    monkeypatch.setenv(workers.WORKERS_ENV, "0")
    assert workers.run(job) == here
    monkeypatch.setenv(workers.WORKERS_ENV, "1")
    assert workers.run(workers.Job(threading.get_ident, local=True)) == here
    monkeypatch.delenv(workers.WORKERS_ENV)
    assert workers.enabled()  # on by default
    monkeypatch.setenv(workers.WORKERS_ENV, "yes")
    with pytest.raises(AdvlabError, match="ADVLAB_RUN_WORKERS must be 0"):
        workers.enabled()
    with pytest.raises(Cancelled):  # the job's own exception is raised where it was asked for
        workers.Job(attack_view.run_to_end, (request(steps=50), IMAGE), progress="callback").call(lambda s: True)
    assert workers.worker_threads() == torch.get_num_threads()


def test_prepare_starts_the_pool_only_when_workers_are_on(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[bool] = []
    monkeypatch.setattr(workers, "pool", lambda: started.append(True))
    monkeypatch.setenv(workers.WORKERS_ENV, "0")
    workers.prepare()
    assert started == []
    monkeypatch.setenv(workers.WORKERS_ENV, "1")
    workers.prepare()
    assert started == [True]
    monkeypatch.setenv(workers.WORKERS_ENV, "2")
    with pytest.raises(AdvlabError, match="ADVLAB_RUN_WORKERS must be 0"):
        workers.prepare()
