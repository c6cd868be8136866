"""Sharded evaluation on Ray: 1 against 2 workers on one fixed workload, and that every run equals the whole run.

Workload (default): ``eval`` of PGD (10 steps, eps 0.1 L-inf, seed 0) on fmnist-naive over 200 images of the
shipped Fashion-MNIST test subset, batches of 50 (so 2 workers get 2 batches each). A local Ray cluster of
``--cpus`` CPUs is started once and warmed up (its workers import torch and load the model once); then each
configuration runs ``--repeats`` times and the median wall time is reported:

* ``in-process``: the plain run (``eval`` without shards), torch at one thread, like one Ray worker;
* ``ray, 1 worker``: one shard;
* ``ray, 2 workers``: two shards on two Ray workers (one CPU each).

Every result's JSON (timings left out) must equal the in-process one. On a 2-core machine the best 2 workers can
do is twice as fast; on a machine shared with other jobs they get less. Writes ``bench/results/shards.json``.

Run ``.venv/bin/python -m bench.shards [--n 200] [--repeats 3] [--address ADDR]`` (needs requirements-scale.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from advcore import shards
from bench.common import environment

OUT = Path(__file__).parent / "results" / "shards.json"


def _timings(obj):
    if isinstance(obj, dict):
        return {k: _timings(v) for k, v in obj.items() if k != "seconds"}
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="images (default: 200)")
    ap.add_argument("--batch-size", type=int, default=50, help="default: 50")
    ap.add_argument("--steps", type=int, default=10, help="PGD steps (default: 10)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default: 3)")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster (default: 2)")
    ap.add_argument("--address", help="an existing Ray cluster instead of a local one")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if not shards.ray_available():
        print("bench.shards: error: Ray is not installed; pip install -r requirements-scale.txt", file=sys.stderr)
        return 2
    import ray

    load_at_start = round(os.getloadavg()[0], 2)
    job = shards.EvalJob("fmnist-naive", "subset", args.n, "pgd", (0.1,), args.steps, 0, args.batch_size, {}, "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the in-process reference at one thread, as a Ray worker (num_cpus=1) runs
    try:
        t0 = time.perf_counter()
        whole = job.merge([job.run(shards.Shard(0, 1, 0, args.n, 0))], 0.0)
        local_s = [time.perf_counter() - t0]
        for _ in range(args.repeats - 1):
            t0 = time.perf_counter()
            job.merge([job.run(shards.Shard(0, 1, 0, args.n, 0))], 0.0)
            local_s.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
    t0 = time.perf_counter()
    runtime_env = {"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}}
    if args.address:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, runtime_env=runtime_env)
    init_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        shards.run_job(job, 2, backend="ray")  # warm-up: workers import torch and advcore
        warm_s = time.perf_counter() - t0
        runs = {}
        for workers in (1, 2):
            times, equal = [], True
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                got = shards.run_job(job, workers, backend="ray")
                times.append(time.perf_counter() - t0)
                equal &= _timings(got) == _timings(whole)
            runs[workers] = {"seconds": [round(t, 2) for t in times], "median_s": round(statistics.median(times), 2),
                             "equal_to_in_process": equal}
    finally:
        ray.shutdown()
    doc = {
        "environment": environment(torch.device("cpu"), ray=ray.__version__, ray_cpus=args.cpus,
                                   address=args.address, loadavg_1min_at_start=load_at_start,
                                   loadavg_1min_at_end=round(os.getloadavg()[0], 2)),
        "workload": {"command": "eval", "model": "fmnist-naive", "attack": "pgd", "eps": 0.1, "steps": args.steps,
                     "n": args.n, "batch_size": args.batch_size},
        "accuracy": whole["accuracy"][0],
        "in_process_1_thread": {"seconds": [round(t, 2) for t in local_s],
                                "median_s": round(statistics.median(local_s), 2)},
        "ray_init_s": round(init_s, 2), "ray_warmup_s": round(warm_s, 2),
        "ray_1_worker": runs[1], "ray_2_workers": runs[2],
        "speedup_2_over_1": round(runs[1]["median_s"] / runs[2]["median_s"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"eval PGD-{args.steps} on {args.n} images (batches of {args.batch_size}); load average at start "
          f"{doc['environment']['loadavg_1min_at_start']}, at end {doc['environment']['loadavg_1min_at_end']}")
    print(f"in-process, 1 thread  {doc['in_process_1_thread']['median_s']:7.2f} s")
    print(f"ray init / warm-up    {init_s:7.2f} s / {warm_s:.2f} s")
    for w in (1, 2):
        r = runs[w]
        print(f"ray, {w} worker(s)      {r['median_s']:7.2f} s  (equal to in-process: {r['equal_to_in_process']})")
    print(f"2 workers over 1: {doc['speedup_2_over_1']:.2f}x; wrote {args.out}")
    return 0 if all(r["equal_to_in_process"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
