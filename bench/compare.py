"""How long the Compare attacks page waits: 5 attacks x 10 steps on 12 photos with EfficientNet-Lite0.

The 12 images are the 9 bundled photos plus mirror images of the first 3 (the repository ships 9 photos).
Budget L-inf 4/255, 10 steps, seed 0, labels = Lite0's clean predictions, torch's default threads, one
``advcore.labs.compare.compare`` call as the page and ``python -m advcore compare`` make it (target: under
2 minutes on the 2-core CPU). ``--transfer`` times a second call that also shows the adversarial images
to Lite1 and Lite2 (the transfer matrix); ``--eps`` changes the budget (a list gives a sweep).

``--policies`` measures the fairness study of issue 15 instead (about 5 minutes on 2 cores): the 9 bundled
photos on Lite0 at L-inf 4/255 and 0.1/255, 10 steps, under each stop policy (``all``/``none``) and AGR base
step (``eps``/``eps/steps``), and the Fashion-MNIST zoo (naive, fgsm, pgd; the first 100 test images, L-inf
0.1, 10 steps, stop policy ``all``) with transfer on the images every model classifies correctly, after 8-bit
rounding and each target's clean agreement. It writes the ``policies`` entry of the results file.

``--l2-grid EPS:ATTACK,...`` measures the ImageNet L2 sweep grid: one ``compare`` call per budget and attack
(Lite0, the 9 bundled photos, 10 steps, seed 0, stop policy all, AGR alpha = eps), so a partial run under a
time cap keeps every pair it finished; it writes the ``l2_grid`` entry (pairs measured before are kept).

Run ``.venv/bin/python bench/compare.py [--transfer] [--policies] [--l2-grid PAIRS] [--device cuda]``; writes
``bench/results/compare.json`` (``compare-<device>.json`` for another device).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/compare.py` as well as `python -m bench.compare`
    sys.path.insert(0, str(ROOT))

from PIL import ImageOps  # noqa: E402

from advcore import models  # noqa: E402
from advcore.cli.framework import parse_eps_list  # noqa: E402
from advcore.device import pick_device  # noqa: E402
from advcore.errors import AdvlabError  # noqa: E402
from advcore.labs import compare  # noqa: E402
from bench.common import environment  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
N_IMAGES = 12


def images() -> list[compare.ImageItem]:
    """The 9 bundled photos, then mirror images of the first ones, up to :data:`N_IMAGES`."""
    photos = compare.bundled_images()
    extra = [compare.ImageItem(f"{p.name} (mirrored)", ImageOps.mirror(p.image)) for p in photos]
    return (photos + extra)[:N_IMAGES]


def timed(items, targets, eps, device) -> tuple[compare.CompareResult, dict]:
    updates = []
    t0 = time.perf_counter()
    result = compare.compare(items, ["efficientnet-lite0"], targets=targets, eps=eps, steps=10, seed=0,
                             device=device, progress=lambda p: updates.append(time.perf_counter() - t0))
    wall = time.perf_counter() - t0
    gaps = [b - a for a, b in zip(updates, updates[1:], strict=False)]
    return result, {"wall_s": round(wall, 2), "progress_updates": len(updates),
                    "longest_gap_between_updates_s": round(max(gaps), 2) if gaps else None}


def rows(result: compare.CompareResult) -> list[dict]:
    """The per-attack table at every eps of the run."""
    keep = ("eps", "attack", "asr", "asr_8bit", "cosine_similarity", "cosine_similarity_std", "amp", "l2", "linf",
            "steps_to_success", "grad_evals", "seconds")
    return [{k: r[k] for k in keep} for e in result.eps for r in compare.table_rows(result, e)]


def policy_rows(result: compare.CompareResult) -> list[dict]:
    keep = ("eps", "source", "attack", "asr", "asr_8bit", "amp", "p_clean", "linf", "steps_to_success", "grad_evals")
    return [{k: r[k] for k in keep} for e in result.eps for r in compare.table_rows(result, e)]


def policies(device) -> dict:
    """The stop-policy x AGR-base-step grid on the photos, and the Fashion-MNIST transfer subsets."""
    photos = compare.bundled_images()
    out: dict = {"imagenet": [], "fashion_mnist": None}
    for stop in compare.STOP_POLICIES:
        for alpha in compare.AGR_ALPHAS:
            r = compare.compare(photos, ["efficientnet-lite0"], attack_names=["ifgsm", "mifgsm", "agr"],
                                eps=[0.1 / 255, 4 / 255], steps=10, device=device, stop_on_success=stop,
                                agr_alpha=alpha)
            out["imagenet"].append({"stop_on_success": stop, "agr_alpha": alpha, "n_images": len(photos),
                                    "table": policy_rows(r)})
            print(f"Lite0 photos, stop {stop}, AGR alpha {alpha}: {r.seconds:.0f} s", file=sys.stderr)
    zoo = ["fmnist-naive", "fmnist-fgsm", "fmnist-pgd"]
    r = compare.compare(compare.dataset_images("fashion-mnist", 100), zoo, eps=0.1, steps=10, device=device)
    out["fashion_mnist"] = {
        "models": zoo, "n_images": 100, "eps": 0.1, "steps": 10, "stop_on_success": "all", "agr_alpha": "eps",
        "table": policy_rows(r), "agreement": r.agreement,
        "n_correct_for_every_model": {s: len(v) for s, v in (r.correct or {}).items()},
        "clean_accuracy": {m: c.accuracy for m, c in r.clean.items()},
        "transfer": {a: m.to_dict() for a, m in r.runs[0].transfer_matrix.items()},
        "transfer_finding": {a: compare.transfer_finding(r, a) for a in r.attacks},
    }
    return out


def l2_grid(pairs: list[tuple[float, str]], device, path: Path) -> dict:
    """ASR, 8-bit ASR, p_clean and mean L2 per (L2 eps, attack) on Lite0's 9 photos; saved after every pair."""
    photos = compare.bundled_images()
    doc = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    entry = doc.get("l2_grid") or {"model": "efficientnet-lite0", "images": [p.name for p in photos], "norm": "l2",
                                   "steps": 10, "seed": 0, "stop_on_success": "all", "agr_alpha": "eps",
                                   "results": {}}
    entry["environment"] = environment(device)
    for e, a in pairs:
        r = compare.compare(photos, ["efficientnet-lite0"], attack_names=[a], norm="l2", eps=e, steps=10, seed=0,
                            device=device, stop_on_success="all", agr_alpha="eps")
        st = r.runs[0].sources["efficientnet-lite0"][a]
        entry["results"].setdefault(f"{e:g}", {})[a] = {"asr": st.asr, "asr_8bit": st.asr_8bit,
                                                        "p_clean": st.p_clean, "l2": st.l2,
                                                        "seconds": round(r.seconds, 1),
                                                        "loadavg_1min": round(os.getloadavg()[0], 2)}
        print(f"L2 {e:g} {a}: ASR {100 * st.asr:.1f}% ({r.seconds:.0f} s)", file=sys.stderr)
        doc["l2_grid"] = entry
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return entry


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--eps", default="4/255", help="L-inf budget(s): 4/255, or a list/range for a sweep")
    ap.add_argument("--transfer", action="store_true", help="also time the run with Lite1 and Lite2 as targets")
    ap.add_argument("--policies", action="store_true", help="measure the stop policies and AGR base steps instead")
    ap.add_argument("--l2-grid", metavar="EPS:ATTACK,...",
                    help="measure the ImageNet L2 sweep grid instead, one (L2 eps, attack) pair at a time")
    args = ap.parse_args(argv)
    device = pick_device(args.device)
    if args.l2_grid:
        try:
            pairs = [(float(e), compare.check_attacks([a])[0])
                     for e, a in (p.split(":") for p in args.l2_grid.split(","))]
        except (ValueError, AdvlabError) as exc:
            ap.error(f"--l2-grid wants EPS:ATTACK pairs such as 0.01:fgsm,0.03:ifgsm ({exc})")
        name = "compare.json" if device.type == "cpu" else f"compare-{device.type}.json"
        l2_grid(pairs, device, RESULTS / name)
        print(f"wrote the l2_grid entry of {RESULTS / name}", file=sys.stderr)
        return 0
    if args.policies:
        name = "compare.json" if device.type == "cpu" else f"compare-{device.type}.json"
        path = RESULTS / name
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        old["policies"] = {"environment": environment(device), **policies(device)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(old, indent=2) + "\n", encoding="utf-8")
        print(f"wrote the policies entry of {path}", file=sys.stderr)
        return 0
    eps = parse_eps_list(args.eps)
    items = images()
    t0 = time.perf_counter()
    for m in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
        models.load(m, device)
    load_s = time.perf_counter() - t0
    env = environment(device)
    out: dict = {"environment": env, "images": [it.name for it in items], "n_images": len(items),
                 "attacks": list(compare.DEFAULT_ATTACKS), "norm": "linf", "eps": eps, "steps": 10, "seed": 0,
                 "model_load_s": round(load_s, 2), "target_s": 120}
    result, timing = timed(items, ["efficientnet-lite0"], eps, device)
    out["white_box"] = {**timing, "table": rows(result)}
    print(f"Lite0, {len(items)} images, 5 attacks x 10 steps, eps {args.eps}: {timing['wall_s']:.1f} s "
          f"(target 120 s), {timing['progress_updates']} progress updates, longest gap "
          f"{timing['longest_gap_between_updates_s']} s", file=sys.stderr)
    if args.transfer:
        result, timing = timed(items, ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"], eps, device)
        out["with_transfer"] = {**timing, "table": rows(result),
                                "transfer": {str(r.eps): {a: m.to_dict() for a, m in r.transfer_matrix.items()}
                                             for r in result.runs}}
        print(f"... with Lite1 and Lite2 as targets: {timing['wall_s']:.1f} s", file=sys.stderr)
    env["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    for r in out["white_box"]["table"]:
        print(f"eps {r['eps']:.4g}  {r['attack']:<7} ASR {100 * r['asr']:5.1f}% (8-bit {100 * r['asr_8bit']:5.1f}%)  "
              f"cosine {r['cosine_similarity']:.7f}  AMP {r['amp']:.4g}  L2 {r['l2']:.3f}  "
              f"steps to success {r['steps_to_success']:.2f}  "
              f"grad evals {r['grad_evals']:.2f}  {r['seconds']:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "compare.json" if device.type == "cpu" else f"compare-{device.type}.json"
    (RESULTS / name).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS / name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
