"""Defense throughput on the CPU, per preset of every registered defense (advcore.defenses: one per halftone method,
JPEG, bit depth, median smoothing, random resize-and-pad, each at its declared defaults).

(a) 1,000 Fashion-MNIST test images (1x28x28) in one call;
(b) one 224x224 colour image (the bundled cat, as EfficientNet-Lite0 sees it), each channel on its own.

Medians over repeats (minimums recorded too: on a shared machine the minimum is the better estimate of the
undisturbed cost), one torch thread. Run ``.venv/bin/python bench/defense.py``; writes
``bench/results/defense.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from advcore import data, datasets, defenses  # noqa: E402
from bench.common import environment  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeats: int) -> dict:
    fn()  # warm-up (wavefront index tables, Pillow)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 6), "min_s": round(min(times), 6), "repeats": repeats}


def main() -> dict:
    torch.set_num_threads(1)
    x_small, _ = datasets.load_subset(1000)
    x_small = datasets.to_float(x_small)
    cat = data.prepare(data.open_image(data.sample_path("cat.jpg")), (3, 224, 224))
    out = {"environment": environment(torch.device("cpu")), "methods": {}}
    for method, (name, params) in defenses.presets().items():
        ht = defenses.get_defense(name, **params)
        a = timed(lambda ht=ht: ht(x_small), 7)
        b = timed(lambda ht=ht: ht(cat), 21)
        out["methods"][method] = {
            "description": ht.describe().get("description", ht.title),
            "fmnist_1000": {**a, "images_per_s": round(1000 / a["median_s"])},
            "colour_224": {**b, "ms": round(1000 * b["median_s"], 3)},
        }
        print(f"{method:<24} 1,000 x 28x28: {a['median_s'] * 1000:8.1f} ms (min {a['min_s'] * 1000:.1f})   "
              f"224x224x3: {b['median_s'] * 1000:7.2f} ms (min {b['min_s'] * 1000:.2f})", flush=True)
    out["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "defense.json"
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} (load average {out['environment']['loadavg_1min_at_start']} at start, "
          f"{out['loadavg_1min_at_end']} at the end)")
    return out


if __name__ == "__main__":
    main()
