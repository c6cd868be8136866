"""``--backend local|ray [--address ADDR] [--workers N]``: where ``eval``, ``compare`` and ``defend`` run.

Declared once here (:func:`add_backend_options`) and added to each of the three commands, which call
:func:`sharded` and :func:`run` with their :mod:`advcore.shards` job. ``--workers 1`` on the local backend (the
default) is the plain in-process run; anything else splits the images into shards and merges them
(:func:`advcore.shards.run_job`), which gives the same JSON value for value.
"""

from __future__ import annotations

import argparse

from advcore import shards
from advcore.cli import framework as fw
from advcore.errors import AdvlabError


def _backend(text: str) -> str:
    name = str(text).strip().lower()
    if name not in shards.BACKENDS:
        raise argparse.ArgumentTypeError(f"choose one of {', '.join(shards.BACKENDS)}, got {text!r}")
    if name == "ray" and not shards.ray_available():
        raise argparse.ArgumentTypeError("Ray is not installed; pip install -r requirements-scale.txt")
    return name


def add_backend_options(p: argparse.ArgumentParser) -> None:
    """The ``scale out`` flag group."""
    g = p.add_argument_group("scale out (README: Scaling out)")
    g.add_argument("--backend", type=_backend, default="local", metavar="{local,ray}",
                   help="local: in this process (default); ray: shards as Ray tasks, one CPU each (one GPU each "
                        "with --device cuda), every worker loading the models by name")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join: auto (the one 'ray start' runs on this machine) or HEAD:6379 of "
                        "'ray start --head' (default: RAY_ADDRESS if set, else a new local cluster)")
    g.add_argument("--workers", type=fw.positive_int("workers", shards.MAX_WORKERS), default=1,
                   help="shards the images are split into, on whole batches (default: 1; local backend: the "
                        "shards run one after another, which checks the merge, not a speed-up)")


def sharded(args: argparse.Namespace) -> bool:
    """True when the run goes through shards (``--backend ray`` or ``--workers`` above 1)."""
    if args.address is not None and args.backend != "ray":
        raise AdvlabError("--address needs --backend ray.")
    return args.backend == "ray" or args.workers > 1


def run(args: argparse.Namespace, job: shards.ShardJob):
    """Run ``job`` sharded as the flags say, with one progress bar (in images) over every shard on stderr (a
    terminal only) and one line there per finished shard (always, unless ``-q``: a log shows the progress too)."""
    from advcore.models import session_models

    if args.backend == "ray" and session_models():
        raise AdvlabError("--backend ray takes registered model names: a model given as a file is loaded in this "
                          "process only; use --backend local --workers N for it.")
    with fw.ProgressBars(args.quiet, per_stage=False, unit="image") as bars:
        return shards.run_job(job, args.workers, backend=args.backend, address=args.address, progress=bars)
