"""Sharded evaluation: split a set of images into shards, run each shard anywhere, merge the results.

The engine-neutral half of ``eval``/``compare``/``defend --workers N``: :func:`plan` splits the images into
contiguous shards on batch boundaries, a job (:class:`EvalJob`, :class:`CompareJob`, :class:`DefendJob`) runs
one shard from plain settings (each worker loads its models from the registry by name; no model object is ever
shipped) and merges the shards' per-image results in image order with the same aggregation code as a whole run.

Seeds: every lab function seeds batch ``b`` from ``seed + b`` (and the defense's draws from ``b``). A shard
starts on a batch boundary and passes its first batch's index (``batch_offset``), so every image sees the
batches, seeds and draws it sees in a whole run: a sharded run equals the whole run value for value (only the
``seconds`` fields differ).

Executors: :func:`run_local` (in this process, one shard after another: the same shard and merge path, for
tests and for checking a merge) and :func:`run_ray` (Ray tasks, one CPU each, or one GPU each on ``cuda``;
a task whose worker dies is retried ``max_retries`` times, so a killed worker costs only its shard). Ray is
imported only inside :func:`run_ray`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from advcore.errors import AdvlabError
from advcore.progress import Progress, ProgressFn

BACKENDS = ("local", "ray")
MAX_WORKERS = 1024
#: Ray retries of a shard whose worker process died (a task's own exception is not retried).
MAX_RETRIES = 2


@dataclass(frozen=True)
class Shard:
    """Images ``lo`` to ``hi - 1`` of the set, shard ``index`` of ``count``; ``lo`` is a multiple of the batch
    size, so ``batch_offset = lo // batch_size`` is the whole run's index of its first batch."""

    index: int
    count: int
    lo: int
    hi: int
    batch_offset: int

    @property
    def size(self) -> int:
        return self.hi - self.lo


def plan(n: int, batch_size: int, workers: int) -> list[Shard]:
    """Split ``n`` images into at most ``workers`` contiguous shards of whole batches, as even as whole batches
    allow (fewer shards than workers when there are fewer batches)."""
    if n < 1:
        raise AdvlabError("No images to shard.")
    if batch_size < 1 or workers < 1:
        raise AdvlabError("The batch size and the number of workers must be positive.")
    batches = math.ceil(n / batch_size)
    k = min(workers, batches)
    cuts = [i * batches // k for i in range(k + 1)]
    return [Shard(i, k, cuts[i] * batch_size, min(cuts[i + 1] * batch_size, n), cuts[i]) for i in range(k)]


class ShardJob(Protocol):
    """A sharded computation: ``n`` images in batches of ``batch_size``; :meth:`run` one shard (in any process),
    :meth:`merge` the shards' results (in order) into the whole run's result."""

    n: int
    batch_size: int
    device: str

    def run(self, shard: Shard, progress: ProgressFn | None = None) -> Any: ...

    def merge(self, parts: Sequence[Any], seconds: float) -> Any: ...


# --------------------------------------------------------------------------- eval


@dataclass(frozen=True)
class EvalJob:
    """``eval``: accuracy under one attack at every eps (:func:`advcore.labs.training.curve_counts`).

    ``model``: a registered name or the path of a card JSON written by ``train``; ``n`` images of ``data``."""

    model: str
    data: str
    n: int
    attack: str
    eps: tuple[float, ...]
    steps: int | None
    seed: int
    batch_size: int
    params: dict = field(default_factory=dict)
    device: str = "cpu"

    def _load(self):
        from pathlib import Path

        from advcore import datasets, models
        from advcore.device import pick_device
        from advcore.models import zoo

        device = pick_device(self.device)
        if self.model.endswith(".json") and Path(self.model).is_file():
            spec = zoo.spec_from_card(zoo.read_card(self.model), Path(self.model).parent)
            model = zoo.load_from_card(self.model, device)[1]
        else:
            spec = models.get_spec(self.model)
            model = models.load(spec.name, device)
        x, y, _ = datasets.eval_set(spec.dataset, self.n, source=self.data)
        return model, x, y

    def run(self, shard: Shard, progress: ProgressFn | None = None) -> list[int]:
        """The correct counts of the shard's images at each eps."""
        from advcore.labs import training

        model, x, y = self._load()
        return training.curve_counts(model, x[shard.lo:shard.hi], y[shard.lo:shard.hi], attack=self.attack,
                                     eps=self.eps, steps=self.steps, seed=self.seed, batch_size=self.batch_size,
                                     batch_offset=shard.batch_offset, progress=progress, **self.params)

    def merge(self, parts: Sequence[list[int]], seconds: float) -> dict:
        """:func:`~advcore.labs.training.curve_record` of the summed counts."""
        from advcore.labs import training

        counts = [sum(c) for c in zip(*parts, strict=True)]
        return training.curve_record(self.attack, self.eps, counts, self.n, steps=self.steps, seed=self.seed,
                                     seconds=seconds, **self.params)


# --------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class CompareJob:
    """``compare``: every attack per source model and the transfer matrix (:func:`advcore.labs.compare.compare`).

    ``images`` travel with the job (decoded 8-bit images); ``options`` are compare's keyword arguments."""

    images: tuple
    sources: tuple[str, ...]
    options: dict
    batch_size: int
    device: str = "cpu"

    @property
    def n(self) -> int:
        return len(self.images)

    def run(self, shard: Shard, progress: ProgressFn | None = None):
        from advcore.labs import compare

        return compare.compare(list(self.images[shard.lo:shard.hi]), list(self.sources), device=self.device,
                               batch_size=self.batch_size, batch_offset=shard.batch_offset, progress=progress,
                               **self.options)

    def merge(self, parts: Sequence, seconds: float):
        """:func:`merge_compare`; ``device`` describes this process's device, as ``eval`` and ``defend`` do (a
        worker's thread count may differ; its numbers do not)."""
        from advcore.device import describe, pick_device

        return dataclasses.replace(merge_compare(parts, seconds), device=describe(pick_device(self.device)))


def merge_compare(parts: Sequence, seconds: float):
    """One :class:`~advcore.labs.compare.CompareResult` from those of consecutive shards: per-image arrays
    joined in order, then the statistics of :func:`~advcore.labs.compare.attack_stats`, the transfer rates and
    the matrices computed as :func:`~advcore.labs.compare.compare` computes them."""
    import numpy as np
    import torch

    from advcore.labs import compare as cmp

    first = parts[0]
    if len(parts) == 1:
        return dataclasses.replace(first, seconds=seconds)
    sources, targets, attack_names = first.sources, first.targets, first.attacks
    images = [im for p in parts for im in p.images]
    n_img = len(images)
    true = [im.true_label for im in images]
    known = all(t is not None for t in true)
    clean = {}
    for m, c in first.clean.items():
        labels = [v for p in parts for v in p.clean[m].labels]
        accuracy = (float(np.mean([int(p) == int(t) for p, t in zip(labels, true, strict=True)]))
                    if known else None)
        clean[m] = dataclasses.replace(c, labels=labels, names=[v for p in parts for v in p.clean[m].names],
                                       accuracy=accuracy)
    # agreement: each shard's share times its size is its whole count (exact for any realistic size)
    agreement = {s: {t: sum(round(p.agreement[s][t] * len(p.images)) for p in parts) / n_img for t in targets}
                 for s in sources}
    correct_mask = {}
    if known:
        offsets = np.cumsum([0] + [len(p.images) for p in parts])
        for s in sources:
            mask = torch.zeros(n_img, dtype=torch.bool)
            for p, off in zip(parts, offsets, strict=False):
                mask[[off + i for i in p.correct[s]]] = True
            correct_mask[s] = mask
    runs = []
    for i, run in enumerate(first.runs):
        by_source = {}
        for s in sources:
            by_attack = {}
            for a in attack_names:
                shard_stats = [p.runs[i].sources[s][a] for p in parts]
                lists: dict[str, Any] = {}
                for k, v in shard_stats[0].per_image.items():
                    if isinstance(v, dict):
                        lists[k] = {t: [x for st in shard_stats for x in st.per_image[k][t]] for t in v}
                    else:
                        lists[k] = [x for st in shard_stats for x in st.per_image[k]]
                per_image = {k: np.array(v) for k, v in lists.items() if not isinstance(v, dict)}
                fooled = {t: torch.tensor(lists["transfer_success"][t], dtype=torch.bool) for t in targets}
                fooled_q = {t: torch.tensor(lists["transfer_success_8bit"][t], dtype=torch.bool) for t in targets}
                ok = correct_mask.get(s)
                by_attack[a] = cmp.AttackStats(
                    **cmp.attack_stats(per_image), seconds=sum(st.seconds for st in shard_stats),
                    transfer={t: float(fooled[t].double().mean()) for t in targets}, per_image=lists,
                    transfer_8bit={t: float(fooled_q[t].double().mean()) for t in targets},
                    transfer_correct={t: (float(fooled[t][ok].double().mean())
                                          if ok is not None and bool(ok.any()) else None) for t in targets})
            by_source[s] = by_attack
        matrix = {a: cmp.TransferMatrix(
            rows=list(sources), columns=list(targets),
            values=[[by_source[s][a].transfer[t] for t in targets] for s in sources],
            values_8bit=[[by_source[s][a].transfer_8bit[t] for t in targets] for s in sources],
            values_correct=[[by_source[s][a].transfer_correct[t] for t in targets] for s in sources])
            for a in attack_names}
        runs.append(cmp.CompareRun(eps=run.eps, sources=by_source, transfer_matrix=matrix))
    sweep = {s: {a: cmp.SweepCurve(eps=list(first.eps), asr=[r.sources[s][a].asr for r in runs])
                 for a in attack_names} for s in sources}
    radius = None
    if first.radius is not None:  # per-image lists joined in order, the median over the whole set
        radius = {}
        for s, by in first.radius.items():
            radius[s] = {}
            for a, r0 in by.items():
                parts_r = [p.radius[s][a] for p in parts]
                rad = [v for r in parts_r for v in r.radius]
                radius[s][a] = dataclasses.replace(
                    r0, found=[v for r in parts_r for v in r.found], radius=rad,
                    l2=[v for r in parts_r for v in r.l2], linf=[v for r in parts_r for v in r.linf],
                    median=cmp.median_radius(rad), seconds=sum(r.seconds for r in parts_r))
    return dataclasses.replace(
        first, images=images, clean=clean, runs=runs, sweep=sweep, agreement=agreement, seconds=seconds,
        radius=radius,
        correct={s: m.nonzero().squeeze(1).tolist() for s, m in correct_mask.items()} if known else None)


# --------------------------------------------------------------------------- defend


@dataclass(frozen=True)
class DefendJob:
    """``defend``: the Defense lab's table (:func:`advcore.labs.defense.evaluate_defense`) on ``n`` images;
    ``options`` are its keyword arguments (``n`` included)."""

    model: str
    method: str
    n: int
    options: dict
    batch_size: int
    device: str = "cpu"

    def run(self, shard: Shard, progress: ProgressFn | None = None):
        from advcore.labs import defense

        return defense.evaluate_defense(self.model, self.method, batch_size=self.batch_size, device=self.device,
                                        image_range=(shard.lo, shard.hi), progress=progress, **self.options)

    def merge(self, parts: Sequence, seconds: float):
        """:func:`~advcore.labs.defense.tabulate` of the shards' joined per-image masks."""
        from advcore.labs import defense

        table = defense.tabulate(parts[0], defense.DefenseMasks.cat([p.masks for p in parts]))
        return dataclasses.replace(table, seconds=round(seconds, 2))


# --------------------------------------------------------------------------- executors

#: ``fn(job, shard) -> part``: what an executor runs for one shard (tests wrap it to inject faults).
ShardFn = Callable[[Any, Shard], Any]


def run_shard(job: ShardJob, shard: Shard) -> Any:
    """Run one shard of ``job`` (a worker's whole task)."""
    return job.run(shard)


def _call(shard_fn: ShardFn, job: ShardJob, shard: Shard) -> Any:
    """A Ray task's body: ``shard_fn(job, shard)`` (any callable, a :func:`functools.partial` too)."""
    return shard_fn(job, shard)


class _ShardProgress:
    """Maps one shard's progress onto the whole run's, in images (the shard's fraction times its size)."""

    def __init__(self, progress: ProgressFn, done: int, shard: Shard, n: int):
        self.progress, self.done, self.shard, self.n = progress, done, shard, n

    def __call__(self, p: Progress) -> bool | None:
        step = self.done + round(p.fraction * self.shard.size)
        stage = f"shard {self.shard.index + 1}/{self.shard.count}: {p.stage}"
        return self.progress(Progress(stage, step, self.n, p.info, p.message))


def shard_done(shard: Shard, done: int, n: int, finished: int, seconds: float) -> Progress:
    """The progress report of a finished shard: the whole run's images done, and a message for a person (one line
    per shard, shown even where a progress bar is not, e.g. in a log): ``shard 2/4 done: 6 of 12 images, 2 of 4
    shards, after 3.1 s`` (the seconds since the run began)."""
    return Progress(f"{done} of {n} images ({finished} of {shard.count} shards)", done, n,
                    message=f"shard {shard.index + 1}/{shard.count} done: {done} of {n} images, {finished} of "
                            f"{shard.count} shards, after {seconds:.1f} s")


def run_local(job: ShardJob, shards: Sequence[Shard], progress: ProgressFn | None = None) -> list[Any]:
    """Every shard in this process, one after another (the sharded path without an engine); ``progress`` hears
    of each shard's steps and of each finished shard (:func:`shard_done`)."""
    parts, done, t0 = [], 0, time.perf_counter()
    for shard in shards:
        parts.append(job.run(shard, _ShardProgress(progress, done, shard, job.n) if progress else None))
        done += shard.size
        if progress is not None and progress(shard_done(shard, done, job.n, len(parts), time.perf_counter() - t0)):
            raise KeyboardInterrupt
    return parts


def ray_available() -> bool:
    """True when Ray can be imported."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def run_ray(job: ShardJob, shards: Sequence[Shard], *, address: str | None = None,
            progress: ProgressFn | None = None, shard_fn: ShardFn = run_shard,
            max_retries: int = MAX_RETRIES) -> list[Any]:
    """Every shard as a Ray task (``num_cpus=1``; ``num_gpus=1`` too for ``device="cuda"``), results in shard
    order. Connects to the cluster at ``address`` (``auto``: the one ``ray start`` runs here), or to the one
    already initialised in this process, or starts a local one. ``progress`` hears of each finished shard
    (:func:`shard_done`, in images; the workers' own steps stay on the workers). A task whose worker dies is
    retried up to ``max_retries`` times."""
    if not ray_available():
        raise AdvlabError("--backend ray needs Ray: pip install -r requirements-scale.txt")
    import ray

    if not ray.is_initialized():
        # the workers import advcore from this checkout's path (the same path on every machine of a cluster)
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": path}})
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise AdvlabError(f"Could not connect to the Ray cluster at {address or 'a new local one'}: "
                              f"{' '.join(str(exc).split())[:200]}") from None
    task = ray.remote(_call).options(num_cpus=1, num_gpus=1 if job.device == "cuda" else 0,
                                        max_retries=max_retries)
    job_ref = ray.put(job)
    refs = [task.remote(shard_fn, job_ref, s) for s in shards]
    index = {r: i for i, r in enumerate(refs)}
    parts: list[Any] = [None] * len(refs)
    pending, done, t0 = list(refs), 0, time.perf_counter()
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            try:
                parts[i] = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, Exception) else exc
                if isinstance(cause, AdvlabError):
                    raise cause from None
                raise RuntimeError(f"shard {i + 1} failed: {type(cause).__name__}: {cause}") from None
            except ray.exceptions.RayError as exc:  # the worker died more often than it is retried
                raise RuntimeError(f"shard {i + 1} lost after {max_retries} retries: "
                                   f"{' '.join(str(exc).split())[:200]}") from None
            done += shards[i].size
            if progress is not None and progress(shard_done(shards[i], done, job.n, len(refs) - len(pending),
                                                            time.perf_counter() - t0)):
                raise KeyboardInterrupt
    finally:
        for r in pending:
            ray.cancel(r, force=True)
    return parts


def run_job(job: ShardJob, workers: int, *, backend: str = "local", address: str | None = None,
            progress: ProgressFn | None = None, shard_fn: ShardFn = run_shard) -> Any:
    """Split ``job`` into ``workers`` shards, run them on ``backend`` and merge: the whole run's result."""
    if backend not in BACKENDS:
        raise AdvlabError(f"Unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    shards = plan(job.n, job.batch_size, workers)
    t0 = time.perf_counter()
    if backend == "ray":
        parts = run_ray(job, shards, address=address, progress=progress, shard_fn=shard_fn)
    elif shard_fn is run_shard:
        parts = run_local(job, shards, progress)
    else:
        parts = [shard_fn(job, s) for s in shards]
    return job.merge(parts, time.perf_counter() - t0)
