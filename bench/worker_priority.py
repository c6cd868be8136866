"""What a worker's lowest priority costs a heavy run: the Attack lab's run at nice 0 and at nice 19 (ui.workers'
WORKER_NICE), alone and beside another heavy run at normal priority (a run on a session's own model, which stays in
the server process, or another program): attacks in a loop (PGD-20 on EfficientNet-Lite1) or the Training lab's
PGD training (``advcore train``, 20,000 Fashion-MNIST images, the page's largest run); and, for the limit, 800x800
matrix products on 2 threads in a loop, which keep both cores busy as none of the labs' runs does. Each process runs
in a session of its own, as the server and each worker do, at its niceness, its session's autogroup included
(ui.workers.lower_priority).

    .venv/bin/python -m bench.worker_priority [--repeats 3]   # ~2 min on 2 cores

Writes bench/results/worker-priority.json: per case the median and minimum seconds of the timed run (after one
untimed run that loads the model). Run it with nothing else busy: the figures are only worth something then.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "worker-priority.json"
RUN = {"model": "efficientnet-lite0", "attack": "pgd", "eps": 4 / 255, "norm": "linf", "steps": 5}  # the lesson's
LOAD = {"model": "efficientnet-lite1", "attack": "pgd", "eps": 4 / 255, "norm": "linf", "steps": 20}


def attack(settings: dict) -> float:
    """Seconds of one attack with ``settings`` on the coffee photo (the Attack lab's default)."""
    from PIL import Image

    from advcore import data
    from advcore.labs import attack as attack_lab
    from ui.frame import DEFAULT_SAMPLE

    s = dict(settings)
    image = Image.open(data.sample_path(DEFAULT_SAMPLE)).convert("RGB")
    start = time.monotonic()
    attack_lab.attack_image(s.pop("model"), image, s.pop("attack"), device="cpu", **s)
    return time.monotonic() - start


def child(role: str, repeats: int) -> None:
    """``timed``: print the seconds of ``repeats`` runs after one untimed run; ``load``: attack until killed;
    ``matmul``: multiply matrices until killed."""
    if role == "load":
        while True:
            attack(LOAD)
    if role == "matmul":
        import torch

        a = torch.randn(800, 800)
        while True:
            a @ a
    attack(RUN)
    print(json.dumps([round(attack(RUN), 3) for _ in range(repeats)]), flush=True)


TRAINING = ["-m", "advcore", "train", "--recipe", "pgd", "--dataset", "fashion-mnist", "--limit", "20000",
            "--epochs", "3", "-q", "--out-dir"]  # + a temporary directory
LOADS = {"none": "alone", "attacks": "beside attacks in a loop at nice 0",
         "training": "beside PGD training at nice 0", "matmul": "beside matrix products at nice 0"}


def spawn(args: list[str], niceness: int, **kw) -> subprocess.Popen:
    """``python ARGS`` in a session of its own at ``niceness``, its session's autogroup too, as a worker starts
    (ui.workers.lower_priority; the server also runs in a session of its own)."""
    from ui.workers import child_environment, lower_priority

    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=child_environment(), start_new_session=True,
                            preexec_fn=functools.partial(lower_priority, niceness), **kw)


def timed(niceness: int, repeats: int, load: str) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        busy = None
        if load in ("attacks", "matmul"):
            busy = spawn(["-m", "bench.worker_priority", "--child", "load" if load == "attacks" else "matmul"], 0)
        elif load == "training":
            busy = spawn([*TRAINING, tmp], 0, stdout=subprocess.DEVNULL)
        try:
            if busy is not None:
                time.sleep(10)  # its imports and model or data load are done, its work running
                if busy.poll() is not None:
                    raise RuntimeError(f"the {load} load ended early (code {busy.returncode})")
            cmd = ["-m", "bench.worker_priority", "--child", "timed", "--repeats", str(repeats)]
            out, _ = spawn(cmd, niceness, stdout=subprocess.PIPE, text=True).communicate(timeout=900)
            if busy is not None and busy.poll() is not None:
                raise RuntimeError(f"the {load} load ended before the timed runs did")
            return json.loads(out.strip().splitlines()[-1])
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.worker_priority", description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case, 1-20 (default 3)")
    ap.add_argument("--child", choices=("timed", "load", "matmul"), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    if not 1 <= a.repeats <= 20:
        print("worker_priority: --repeats must be 1-20", file=sys.stderr)
        return 2
    if a.child:
        child(a.child, a.repeats)
        return 0
    import torch

    from bench.common import environment, sched_autogroup
    from ui.workers import WORKER_NICE

    load0 = os.getloadavg()[0]
    cases = {}
    for load, words in LOADS.items():
        for niceness in (0, WORKER_NICE):
            runs = timed(niceness, a.repeats, load)
            name = f"nice {niceness}, {words}"
            cases[name] = {"median_s": round(statistics.median(runs), 3), "min_s": min(runs), "runs_s": runs}
            print(f"{name:50s} median {cases[name]['median_s']:.2f} s, min {min(runs):.2f} s", flush=True)
    record = {"environment": {**environment(torch.device("cpu")), "loadavg_1min_at_start": round(load0, 2),
                              "loadavg_1min_at_end": round(os.getloadavg()[0], 2)},
              "run": {**RUN, "eps": "4/255"}, "loads": {"attacks": {**LOAD, "eps": "4/255", "loop": True},
                                                        "training": "python " + " ".join(TRAINING) + " TMP",
                                                        "matmul": "800x800 float32 products, 2 threads, in a loop"},
              "worker_nice": WORKER_NICE, "sched_autogroup": sched_autogroup(), "cases": cases}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
