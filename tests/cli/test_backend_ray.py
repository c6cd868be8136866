"""Sharded ``eval``/``compare``/``defend`` (``--workers N``, ``--backend local|ray``): the same JSON as a whole run.

The local backend runs the same shard and merge path as Ray, so most of the equality is checked without Ray; one
module-scoped 2-worker Ray cluster checks Ray's result and a worker killed mid-run (its shard alone retried).
Without Ray the Ray tests are skipped, except in CI (``CI=true``), where Ray must be installed
(``scripts/test.sh`` installs requirements-scale.txt).
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path

import pytest
from cli_util import run_cli

from advcore import shards
from tests.json_util import same_json, untimed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Tiny runs with batches of 2, so a 2-way split has shards of 1 and 2 batches (batch offsets 0 and 1).
EVAL = ["eval", "--model", "fmnist-naive", "--n", "6", "--attack", "pgd", "--eps", "0,0.15", "--steps", "2",
        "--batch-size", "2", "--device", "cpu"]
COMPARE = ["compare", "--models", "fmnist-naive,fmnist-fgsm", "--images", "fashion-mnist", "--limit", "5",
           "--attacks", "fgsm,pgd", "--eps", "0.1", "--steps", "2", "--batch-size", "2", "--device", "cpu",
           "--radius", "deepfool"]
DEFEND = ["defend", "--model", "fmnist-naive", "--defense", "bayer-random", "--attacks", "fgsm,pgd", "--eps",
          "0,0.1", "--n", "6", "--steps", "2", "--adaptive", "--eot", "2", "--strong-steps", "2",
          "--reference-model", "none", "--halftone-model", "none", "--hybrid-model", "none", "--batch-size", "2",
          "--device", "cpu"]


SHARD_LINE = re.compile(r"advcore: shard (?P<shard>\d+)/(?P<k>\d+) done: (?P<images>\d+) of (?P<n>\d+) images, "
                        r"(?P<shards>\d+) of (?P<of>\d+) shards, after \d+\.\d s")


def run_json(argv: list[str], path: Path) -> dict:
    code, _, err = run_cli([*argv, "--json", str(path), "-q"])
    assert code == 0, err
    return untimed(json.loads(path.read_text()))


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict[str, dict]:
    """Each command's JSON from the plain in-process run (no shards)."""
    d = tmp_path_factory.mktemp("whole")
    return {argv[0]: run_json(argv, d / f"{argv[0]}.json") for argv in (EVAL, COMPARE, DEFEND)}


def test_plan_covers_the_images_in_whole_batches() -> None:
    got = shards.plan(11, 2, 3)  # 6 batches over 3 shards
    assert [(s.lo, s.hi, s.batch_offset) for s in got] == [(0, 4, 0), (4, 8, 2), (8, 11, 4)]
    assert [(s.lo, s.hi) for s in shards.plan(5, 2, 8)] == [(0, 2), (2, 4), (4, 5)]  # no more shards than batches
    assert [(s.lo, s.hi) for s in shards.plan(6, 2, 2)] == [(0, 2), (2, 6)]


@pytest.mark.parametrize("argv", [EVAL, COMPARE, DEFEND], ids=lambda a: a[0])
def test_local_shards_give_the_whole_runs_json(argv, whole, tmp_path) -> None:
    got = run_json([*argv, "--workers", "2"], tmp_path / "sharded.json")
    same_json(got, whole[argv[0]])


def shard_lines(err: str, n: int, k: int) -> list[re.Match]:
    """The stderr lines of the ``k`` finished shards of ``n`` images, in the order they finished: the images and
    shards done so far count up to the whole run; every shard appears once."""
    lines = [line for line in err.splitlines() if line.startswith("advcore: shard ")]
    got = [SHARD_LINE.fullmatch(line) for line in lines]
    assert len(got) == k and all(got), err
    assert [int(m["shards"]) for m in got] == list(range(1, k + 1)), lines
    assert sorted(int(m["shard"]) for m in got) == list(range(1, k + 1)), lines
    assert {(int(m["k"]), int(m["n"]), int(m["of"])) for m in got} == {(k, n, k)}, lines
    images = [int(m["images"]) for m in got]
    assert images == sorted(images) and images[-1] == n, lines
    return got


def test_sharded_progress_is_one_stderr_line_per_shard_and_json_stays_clean(whole) -> None:
    """Progress across shards reaches a log (stderr is no terminal here, so no bar): one line per finished shard;
    with ``--json -`` stdout holds the JSON alone, and ``-q`` silences the lines."""
    code, out, err = run_cli([*EVAL, "--workers", "2", "--json", "-"])
    assert code == 0, err
    same_json(untimed(json.loads(out)), whole["eval"])
    got = shard_lines(err, 6, 2)
    assert [(int(m["shard"]), int(m["images"])) for m in got] == [(1, 2), (2, 6)]  # shards of 1 and 2 batches
    code, out, err = run_cli([*EVAL, "--workers", "2", "--json", "-", "-q"])
    assert code == 0 and "shard" not in err, err


def test_the_tiny_runs_are_seed_sensitive(whole) -> None:
    """So the equality above could fail: PGD's random start shows in compare's per-image cosines (a shard seeding
    its first batch from 0 again would change them), and the attack moves eval's accuracy."""
    cos = whole["compare"]["runs"][0]["sources"]["fmnist-naive"]["pgd"]["per_image"]["cosine_similarity"]
    assert len(set(round(c, 9) for c in cos)) == len(cos) == 5
    assert whole["eval"]["accuracy"][1] < whole["eval"]["accuracy"][0]


def test_backend_flags_are_checked(monkeypatch) -> None:
    code, out, err = run_cli([*EVAL, "--address", "auto"])
    assert code == 2 and out == "" and err.strip() == "advcore: error: --address needs --backend ray."
    code, _, err = run_cli([*EVAL, "--workers", "0"])
    assert code == 2 and err.startswith("advcore: error: argument --workers") and len(err.splitlines()) == 1
    code, _, err = run_cli([*EVAL, "--backend", "spark"])
    assert code == 2 and "choose one of local, ray" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(shards, "ray_available", lambda: False)  # as without requirements-scale.txt
    code, out, err = run_cli([*EVAL, "--backend", "ray"])
    assert code == 2 and out == "" and err.strip() == ("advcore: error: argument --backend: Ray is not installed; "
                                                       "pip install -r requirements-scale.txt (see 'python -m "
                                                       "advcore eval --help')")


def test_an_interrupted_sharded_run_leaves_no_file(tmp_path, monkeypatch) -> None:
    """Ctrl-C during a sharded run (here: while merging): exit 130, the old file untouched, no temporary file."""
    out = tmp_path / "e.json"
    out.write_text("old\n")

    def interrupted(self, parts, seconds):
        assert len(parts) == 2  # both shards ran
        raise KeyboardInterrupt

    monkeypatch.setattr(shards.EvalJob, "merge", interrupted)
    code, stdout, err = run_cli([*EVAL, "--workers", "2", "--json", str(out), "-q"])
    assert code == 130 and stdout == "" and err.strip() == "advcore: interrupted"
    assert out.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["e.json"]


# --------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster for the module; Ray missing: skipped, or a failure in CI."""
    if not shards.ray_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Ray is not installed; scripts/test.sh installs requirements-scale.txt")
        pytest.skip("Ray is not installed (pip install -r requirements-scale.txt)")
    import ray

    root = str(Path(__file__).resolve().parents[2])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": root, "OMP_NUM_THREADS": "1"}})
    yield ray
    ray.shutdown()


def test_ray_shards_give_the_whole_runs_json(ray_cluster, whole) -> None:
    code, out, err = run_cli([*EVAL, "--backend", "ray", "--workers", "2", "--json", "-"])
    assert code == 0, err
    same_json(untimed(json.loads(out)), whole["eval"])
    shard_lines(err, 6, 2)  # progress across the Ray shards, in the order they finished


def _dies_once(job, shard, folder: str):
    """A shard function whose worker process dies the first time it runs shard 1 (a marker file remembers);
    every attempt of every shard leaves a file ``attempt-SHARD-PID``."""
    marker = Path(folder) / "killed"
    (Path(folder) / f"attempt-{shard.index}-{os.getpid()}").touch()
    if shard.index == 1 and not marker.exists():
        marker.touch()
        os._exit(1)  # the worker dies mid-run, as if killed
    return shards.run_shard(job, shard)


def test_a_killed_worker_loses_only_its_shard(ray_cluster, whole, tmp_path) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(__import__(__name__))  # the workers need not import the tests
    job = shards.EvalJob("fmnist-naive", "subset", 6, "pgd", (0.0, 0.15), 2, 0, 2, {}, "cpu")
    curve = shards.run_job(job, 2, backend="ray", shard_fn=functools.partial(_dies_once, folder=str(tmp_path)))
    assert (tmp_path / "killed").exists()
    attempts = sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.glob("attempt-*"))
    assert attempts == ["attempt-0", "attempt-1", "attempt-1"]  # shard 0 once, shard 1 again after its death
    want = {k: v for k, v in whole["eval"].items() if k in curve and k != "seconds"}
    same_json(untimed(curve), want)


# --------------------------------------------------------------------------- the GPU path (no GPU needed)


def test_batch_sizes_follow_the_device(monkeypatch) -> None:
    import types

    import torch

    from advcore import device

    assert device.batch_size_for(torch.device("cpu"), 500) == 500
    for memory, want in ((80 * 2**30, 4000), (8 * 2**30, 1000)):
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d, m=memory: types.SimpleNamespace(
            total_memory=m))
        assert device.batch_size_for(torch.device("cuda"), 500) == want
        assert device.batch_size_for(torch.device("cuda"), 1000) == min(want * 2, device.MAX_GPU_BATCH)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_exits_2(capsys) -> None:
    from bench import speed

    assert speed.main(["--device", "cuda"]) == 2
    assert capsys.readouterr().err.strip() == "bench.speed: error: No CUDA GPU is available on this machine; use " \
                                              "--device cpu."
    code, out, err = run_cli([*EVAL[:-2], "--device", "cuda"])
    assert code == 2 and out == "" and err.strip().startswith("advcore: error: No CUDA GPU")
