"""How long the Poisoning lab's poison frogs take: 20 PF trials on one kind of features (target: under a
minute on the 2-core CPU), plus the three tables at the lab's defaults, for the record.

Run ``.venv/bin/python bench/poisoning.py [--kind naive] [--trials 20] [--tables]``; writes
``bench/results/poisoning.json``. Seconds are wall time on this machine; the load average at the start is
recorded with the environment (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from advcore.device import pick_device  # noqa: E402
from advcore.labs import poisoning  # noqa: E402
from advcore.records import json_safe  # noqa: E402
from bench.common import environment  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


IMAGENET_RUN = dict(kinds=["imagenet"])  # Lite0 on Sandal against Sneaker drawn as photos, the lab's PF defaults


def pf_setting(name: str, kw: dict) -> dict:
    """One PF setting's table, without the trials' detail (the ImageNet setting keeps its trials: few and slow)."""
    t2 = time.perf_counter()
    res = poisoning.run("pf", **kw).to_dict()
    keep = kw["kinds"] == ["imagenet"]
    res["rows"] = [{k: v for k, v in r.items() if keep or k != "trial_results"} for r in res["rows"]]
    out = {**res, "wall_s": round(time.perf_counter() - t2, 2)}
    print(f"{name}: {out['wall_s']} s; {res['verdict']}", flush=True)
    return out


def imagenet_only(trials: int, env: dict) -> int:
    """Rerun the ImageNet PF setting into the saved file, keeping every other result in it."""
    path = RESULTS / "poisoning.json"
    out = json.loads(path.read_text(encoding="utf-8"))
    out["pf_settings"]["imagenet"] = {**pf_setting("imagenet", IMAGENET_RUN | {"trials": trials}),
                                      "environment": env}
    out["pf_settings"]["imagenet"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    path.write_text(json.dumps(json_safe(out), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="naive", choices=poisoning.KINDS)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the tiny CNNs' best)")
    ap.add_argument("--tables", action="store_true", help="also time the three tables on naive, fgsm and pgd")
    ap.add_argument("--settings", action="store_true",
                    help="issue 16: PF at 7/255 with the lab's defaults (200 decaying steps, LinearSVC C 1 on raw "
                         "features) on digits, the split setting (random and nearest bases, 8 poisons) and ImageNet")
    ap.add_argument("--imagenet-trials", type=int, default=16)
    ap.add_argument("--imagenet-only", action="store_true",
                    help="with --settings: rerun only the ImageNet setting and keep the other saved settings")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device("cpu")
    env = environment(device, sklearn=__import__("sklearn").__version__)
    out: dict = {"environment": env}
    if args.imagenet_only:
        return imagenet_only(args.imagenet_trials, env)

    t0 = time.perf_counter()
    fs = poisoning.feature_set(args.kind, poisoning.task_for(args.kind, "pf"))
    features_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    pf = poisoning.poison_frog(fs, eps=poisoning.DEFAULT_EPS, trials=args.trials)
    pf_s = time.perf_counter() - t1
    out["poison_frogs"] = {"kind": args.kind, "trials": args.trials, "eps": pf.eps, "steps": pf.steps,
                           "feature_extraction_s": round(features_s, 2), "trials_s": round(pf_s, 2),
                           "total_s": round(features_s + pf_s, 2), "target_s": 60,
                           "success_rate": pf.success_rate, "mean_distance_before": pf.mean_distance_before,
                           "mean_distance_after": pf.mean_distance_after,
                           "mean_margin_before": pf.mean_margin_before, "mean_margin_after": pf.mean_margin_after}
    print(f"{args.trials} PF trials on {args.kind} features: {features_s:.1f} s features + {pf_s:.1f} s trials "
          f"(load average {os.getloadavg()[0]:.2f})")
    if args.tables:
        tables = {}
        for attack in ("lf", "pf", "ap"):
            t2 = time.perf_counter()
            res = poisoning.run(attack, ["naive", "fgsm", "pgd"], trials=args.trials).to_dict()
            res["rows"] = [{k: v for k, v in r.items() if k not in ("trial_results", "runs")} for r in res["rows"]]
            tables[attack] = {**res, "wall_s": round(time.perf_counter() - t2, 2)}
            print(f"{attack}: {tables[attack]['wall_s']} s; {res['verdict']}")
        out["tables"] = tables
    if args.settings:
        runs = {"digits": dict(kinds=["naive", "fgsm", "pgd"], trials=args.trials),
                "split": dict(kinds=["split-naive", "split-pgd"], trials=50),
                "split-nearest-8": dict(kinds=["split-naive", "split-pgd"], trials=20, poisons=8,
                                        base_choice="nearest"),
                "imagenet": IMAGENET_RUN | {"trials": args.imagenet_trials}}
        settings = {}
        for name, kw in runs.items():
            settings[name] = pf_setting(name, kw)
            out["pf_settings"] = settings
            (RESULTS / "poisoning.json").write_text(json.dumps(json_safe(out), indent=2) + "\n", encoding="utf-8")
    out["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "poisoning.json").write_text(json.dumps(json_safe(out), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / 'poisoning.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
