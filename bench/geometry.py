"""How fast the Geometry lab answers (``advcore.labs.geometry``).

(a) isotropy (Eq. 4) with T = 100 points at 20 radii (1/255 to 20/255) on the Fashion-MNIST
    ``fmnist-naive`` CNN, test image 0, with 1 torch thread and with torch's default threads
    (target: under 3 s);
(b) the Geometry page's defaults on ``efficientnet-lite0`` at 224 (the bundled coffee photo, the page's
    default): every probe (isotropy, symmetry, Mantel with the page's permutations, Lipschitz) through
    ``geometry.probe_image``, the same call the page makes, once cold (the min-max normalisers
    fitted on the bundled photos, the model already loaded) and then warm (target: under 15 s);
    the model's first load is timed separately;
(c) for reference, every probe with the 28x28 page defaults (T = 100, 20 radii).
(b2) the page's ImageNet default is shipped (``assets/geometry/probe-lite0-coffee.json``, Lite0 on the coffee photo):
    the time to read it back, and how far a fresh run lands from it;
(e) the page's survey default is shipped (``assets/geometry/survey-softmax.json``): the time to read, cut and
    filter it, and its readings with and without the paper's filter.

(d) the readings with their controls (``--readings``, default on): the median isotropy range on test images
    0-9 (no filter) and on the paper's protocol (the first 300 test images, kept when fmnist-naive and
    fmnist-pgd both get them right with > 99% confidence), for the softmax, log-probability and logit margin
    scores (T = 100, radii 1/255 to 20/255, seed 0); and on the first 10 kept images, Mantel r at every layer
    with the random-linear-map null, and the local Lipschitz ratio beside the global baseline.

Next to (b), a bare Lite0 forward pass of one batch of T images is timed: the page's defaults cost
2 x (number of radii) such batches, so that ratio shows how much of (b) is the network itself.

Run ``.venv/bin/python bench/geometry.py [--device cuda]``; writes ``bench/results/geometry.json``
(``geometry-cuda.json`` on a GPU). Figures are medians, minimums are recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advcore import data, datasets, models  # noqa: E402
from advcore.device import pick_device  # noqa: E402
from advcore.labs import geometry  # noqa: E402
from bench.common import environment  # noqa: E402
from ui.views import geometry as geometry_view  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# The paper's grid exactly as the CLI and the page parse it: the points at a radius are seeded by the radius's float
# bits, so k / 255 (which differs in the last bits) would draw other points than `--radii 1/255:20/255:1/255`.
RADII_20 = geometry.parse_radii(geometry.DEFAULT_RADII)
PARTS = ("a", "b", "b2", "c", "e", "d")


def measure(fn: Callable[[], object], repeats: int, warmup: int = 1) -> dict:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(runs), 4), "min_s": round(min(runs), 4),
            "runs_s": [round(r, 4) for r in runs]}


def readings(device: torch.device) -> dict:
    """(d): the numbers README's Geometry paragraph quotes."""
    import numpy as np

    names = ["fmnist-naive", "fmnist-pgd"]
    out: dict = {"radii": "1/255:20/255:1/255", "T": 100, "seed": 0, "scores": {}}
    for score in geometry.SCORES:
        first10 = geometry.survey(names, 10, radii=RADII_20, T=100, seed=0, score=score, min_confidence=0,
                                  device=device)
        paper = geometry.survey(names, 300, radii=RADII_20, T=100, seed=0, score=score, device=device)
        out["scores"][score] = {
            "images_0_9_no_filter": {m: first10.overall_median(m) for m in names},
            "paper_filter_300": {"kept": len(paper.kept), **{m: paper.overall_median(m) for m in names},
                                 "correct": {m: int(sum(c)) for m, c in paper.correct.items()}}}
        print(f"(d) {score}: images 0-9 median range " + ", ".join(
            f"{m} {first10.overall_median(m):.3g}" for m in names) + f"; paper filter ({len(paper.kept)} of 300 kept) "
            + ", ".join(f"{m} {paper.overall_median(m):.3g}" for m in names), flush=True)
    kept = paper.kept[:10]
    x = datasets.to_float(datasets.load_subset(max(kept) + 1)[0])
    for m in names:
        model = models.load(m, device)
        norms = geometry.normalisers_for(m, None, device)
        layer_r: dict[str, list[float]] = {}
        null, local, share = [], [], []
        for i in kept:
            rep = geometry.analyse(model, x[i:i + 1], radii=RADII_20, T=100, probes=["mantel", "lipschitz"],
                                   seed=geometry.image_seed(0, i), permutations=0, normalisers=norms,
                                   mantel_layers=geometry.sweep_layers(model))
            for name, rs in rep.topology.layer_r.items():
                layer_r.setdefault(name, []).append(float(np.mean(rs)))
            null.append(float(np.mean(rep.topology.null_r)))
            local.append(float(rep.lipschitz.ratio.median()))
            share.append(rep.lipschitz.share_below_1)
        base = norms.baseline.to_dict()
        out[m] = {"images": kept, "mantel_r_mean_by_layer": {k: float(np.mean(v)) for k, v in layer_r.items()},
                  "random_map_r_mean": float(np.mean(null)), "random_map_r_range": [min(null), max(null)],
                  "local_ratio_median_of_medians": float(np.median(local)),
                  "local_share_below_1_mean": float(np.mean(share)), "global_baseline": base}
        print(f"(d) {m}: Mantel r penultimate {out[m]['mantel_r_mean_by_layer']['penultimate']:.3f}, first conv "
              f"{out[m]['mantel_r_mean_by_layer']['net.features.0']:.3f}, random map {np.mean(null):.3f}; "
              f"local ratio median {np.median(local):.3g}, global baseline median {base['ratio_median']:.3g} "
              f"({base['share_ratio_below_1']:.0%} below 1)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-readings", dest="readings", action="store_false")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated parts to measure (default: all); the others are kept from the results file")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        ap.error(f"--parts takes some of {','.join(PARTS)}")
    if "d" not in parts:
        args.readings = False
    device = pick_device(args.device)
    default_threads = torch.get_num_threads()
    out: dict = {"environment": environment(device), "results": {}}
    res = out["results"]

    if "a" in parts:
        # (a) isotropy, T=100 x 20 radii, 28x28
        fm = models.load("fmnist-naive", device)
        x = datasets.to_float(datasets.load_subset(1)[0])
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            m = measure(lambda: geometry.analyse(fm, x, radii=RADII_20, T=100, probes=["isotropy"], seed=0),
                        args.repeats)
            res[f"isotropy_fmnist_T100_R20_threads{threads}"] = m
            print(f"(a) isotropy T=100 x 20 radii, fmnist-naive, {threads} thread(s): {m['median_s']:.3f} s "
                  f"(min {m['min_s']:.3f})", flush=True)
        torch.set_num_threads(default_threads)

    d = geometry_view.LARGE_DEFAULTS
    radii = geometry.parse_radii(d["radii"])
    coffee = data.open_image(data.sample_path("coffee"))  # the page's default photo (ui.frame.DEFAULT_SAMPLE)
    if "b" in parts:
        # (b) page defaults on Lite0
        t0 = time.perf_counter()
        models.load("efficientnet-lite0", device)
        res["lite0_first_load_s"] = round(time.perf_counter() - t0, 3)
        lite0 = models.load("efficientnet-lite0", device)
        batch = torch.rand(geometry_view.LARGE_DEFAULTS["T"], 3, 224, 224, device=device)
        with torch.no_grad():
            fwd = measure(lambda: lite0(batch), args.repeats)
        res["lite0_forward_batch_T"] = {**fwd, "batch": int(batch.shape[0])}
        print(f"    Lite0 bare forward of a batch of {batch.shape[0]}: {fwd['median_s']:.2f} s", flush=True)

        def page_lite0() -> geometry.ImageGeometry:
            return geometry.probe_image("efficientnet-lite0", coffee, radii=radii, T=d["T"], seed=0,
                                        permutations=geometry_view.PAGE_PERMUTATIONS, device=device)

        geometry._NORMALISERS.clear()
        t0 = time.perf_counter()
        r = page_lite0()
        cold = time.perf_counter() - t0
        m = measure(page_lite0, args.repeats, warmup=0)
        res["lite0_page_defaults"] = {"T": d["T"], "radii": d["radii"], "permutations": geometry_view.PAGE_PERMUTATIONS,
                                      "forward_passes": 2 * d["T"] * len(radii) + 1,
                                      "cold_s_incl_normaliser_fit": round(cold, 3), "warm": m,
                                      "image": "coffee.jpg", "clean": r.class_name,
                                      "share_ratio_below_1": r.report.lipschitz.share_below_1}
        print(f"(b) Lite0 page defaults (T={d['T']}, {len(radii)} radii, all probes): cold {cold:.2f} s, warm "
              f"{m['median_s']:.2f} s (min {m['min_s']:.2f}); first model load {res['lite0_first_load_s']:.2f} s",
              flush=True)
    if "b2" in parts:
        # (b2) what the page shows instead: the shipped result of the same call, and how far a fresh run is from it
        req = geometry_view.GeometryRequest(model="efficientnet-lite0", image_key="sample:coffee.jpg", T=d["T"],
                                            radii=tuple(radii), radii_text=d["radii"], norm="linf", layer="penultimate",
                                            seed=0, permutations=geometry_view.PAGE_PERMUTATIONS, device=str(device))
        shipped = geometry_view.saved_probe(req, "assets/samples/coffee.jpg")
        if shipped is not None:
            fresh = geometry.probe_image("efficientnet-lite0", coffee, radii=radii, T=d["T"], seed=0,
                                         permutations=geometry_view.PAGE_PERMUTATIONS, device=device).report
            old = shipped[0].report
            load = measure(lambda: geometry_view.saved_probe(req, "assets/samples/coffee.jpg"), args.repeats)
            diff = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(fresh.isotropy.range, old.isotropy.range,
                                                                         strict=True))
            res["lite0_page_default_shipped"] = {
                "file": shipped[1], "load": load, "fresh_s": round(fresh.seconds, 3),
                "isotropy_range_max_rel_diff_fresh_vs_shipped": diff,
                "mantel_r_max_abs_diff": max(abs(a - b) for a, b in zip(fresh.topology.r, old.topology.r, strict=True))}
            print(f"(b2) Lite0 page default from {shipped[1]}: {load['median_s']:.3f} s to load (a fresh run "
                  f"{fresh.seconds:.1f} s; isotropy ranges within {diff:.2g} relative of the shipped ones)", flush=True)

    if "c" in parts:
        # (c) 28x28 page defaults
        d = geometry_view.SMALL_DEFAULTS
        radii = geometry.parse_radii(d["radii"])
        im = datasets.load_subset(1)[0][0, 0].numpy()
        from PIL import Image

        pil = Image.fromarray(im, mode="L")
        for threads in sorted({1, default_threads}):
            torch.set_num_threads(threads)
            m = measure(lambda: geometry.probe_image("fmnist-naive", pil, radii=radii, T=d["T"], seed=0,
                                                     permutations=geometry_view.PAGE_PERMUTATIONS, device=device),
                        args.repeats)
            res[f"fmnist_page_defaults_threads{threads}"] = m
            print(f"(c) fmnist-naive page defaults (T=100, 20 radii, all probes), {threads} thread(s): "
                  f"{m['median_s']:.2f} s (min {m['min_s']:.2f})", flush=True)
        torch.set_num_threads(default_threads)

    if "e" in parts:
        # (e) the page's survey default: the shipped unfiltered survey, cut to N and filtered (what a page run costs)
        def survey_page() -> tuple:
            hit = geometry.saved_survey(["fmnist-naive", "fmnist-pgd"], 300, radii=RADII_20, T=100, norm="linf", seed=0,
                                        score="softmax")
            return hit[0], hit[0].filtered(geometry.PAPER_MIN_CONFIDENCE)

        if geometry.saved_survey(["fmnist-naive", "fmnist-pgd"], 300, radii=RADII_20, T=100, norm="linf", seed=0,
                                 score="softmax") is not None:
            m = measure(survey_page, args.repeats)
            whole, filt = survey_page()
            res["survey_page_default_shipped"] = {
                "load_and_filter": m, "kept": len(filt.kept), "images": len(whole.indices),
                "computed_s": whole.seconds,
                **{f"{name}_{m_}": s.median_image_range(m_) for name, s in (("filtered", filt), ("unfiltered", whole))
                   for m_ in whole.models},
                "filtered_share_pgd_smaller": filt.share_below("fmnist-pgd", "fmnist-naive"),
                "unfiltered_share_pgd_smaller": whole.share_below("fmnist-pgd", "fmnist-naive")}
            print(f"(e) survey page default (shipped, 300 images, softmax): {m['median_s']:.3f} s to load and filter; "
                  f"{len(filt.kept)} kept", flush=True)

    if args.readings:
        res["readings"] = readings(device)
    out["environment"]["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("geometry.json" if device.type == "cpu" else f"geometry-{device.type}.json")
    if set(parts) != set(PARTS) or not args.readings:
        # Some parts only: keep every other result (and the environment it was measured in) from the file.
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"results": {}, "updates": []}
        update = {"parts": parts, "keys": sorted(res), "environment": out["environment"]}
        out = {**old, "results": {**old.get("results", {}), **res}, "updates": [*old.get("updates", []), update]}
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
