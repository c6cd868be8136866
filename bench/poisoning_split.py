"""Train the Poisoning lab's split-setting extractors (issue 16): small CNNs on Fashion-MNIST classes 0-4 only
(T-shirt/top, Trouser, Pullover, Dress, Coat), naive and PGD-trained (L-inf eps 0.1, 7 steps), so a binary task on
two classes of the other half (Sandal against Sneaker) is one the extractors never saw, as in the paper's Figure 2.

Run ``nice .venv/bin/python bench/poisoning_split.py``; writes
``assets/models/poisoning/fmnist04-{naive,pgd}.{pt,json}``
(outside the zoo folder's top level, so the other labs do not list them). Wall time per model is in its card.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from advcore import datasets  # noqa: E402
from advcore.labs import poisoning, training  # noqa: E402
from advcore.models.registry import Normalized  # noqa: E402
from advcore.models.zoo import build_network, count_parameters  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)
    x, y = datasets.load_fashion_mnist("train")
    keep = torch.isin(y, torch.tensor(poisoning.SPLIT_EXTRACTOR_CLASSES))
    x, y = x[keep], y[keep]
    arch = {"kind": "small-cnn", "in_channels": 1, "num_classes": len(poisoning.SPLIT_EXTRACTOR_CLASSES),
            "image_size": 28, "width": [16, 32], "hidden": 64}
    mean, std = training.data_stats(x)
    out = ROOT / "assets" / "models" / "poisoning"
    out.mkdir(parents=True, exist_ok=True)
    recipes = {"naive": dict(strengths=(), epochs=2), "pgd": dict(strengths=(0.1,), attack="pgd", epochs=1)}
    only = sys.argv[1:] or list(recipes)
    for role in only:
        kw = recipes[role]
        net = training.seeded(0, lambda: build_network(arch))
        model = Normalized(net, mean, std)
        t0 = time.perf_counter()
        hist = training.train_network(model, x, y, seed=0, pgd_steps=7, **kw)
        secs = time.perf_counter() - t0
        xt, yt = datasets.load_fashion_mnist("test")
        kt = torch.isin(yt, torch.tensor(poisoning.SPLIT_EXTRACTOR_CLASSES))
        acc = training.accuracy(model, xt[kt], yt[kt])
        card = {"name": f"fmnist04-{role}", "title": f"Fashion-MNIST classes 0-4 CNN, {role} training",
                "dataset": "fashion-mnist-04", "input_size": [1, 28, 28], "mean": list(mean), "std": list(std),
                "classes": list(poisoning.SPLIT_EXTRACTOR_CLASS_NAMES), "architecture": arch,
                "parameters": count_parameters(net),
                "data": {"train": "official Fashion-MNIST training images of classes 0-4", "train_images": int(len(y)),
                         "evaluation": "official test images of classes 0-4", "evaluation_images": int(kt.sum())},
                "recipe": {"name": "standard" if role == "naive" else "pgd", "optimizer": "Adam, lr 0.001",
                           "batch_size": 128, "pgd": {"steps": 7, "alpha": "2.5 * eps / steps"} if role == "pgd"
                           else None},
                "strengths": list(kw["strengths"]), "epochs": kw["epochs"], "seed": 0,
                "training_seconds": round(secs, 1), "history": hist, "clean_accuracy": round(acc, 4),
                "command": f"nice .venv/bin/python bench/poisoning_split.py {role}"}
        res = training.TrainResult(model=model, net=net, card=card, seconds=secs)
        training.save(res, out, card["name"], title=card["title"])
        print(f"{role}: {secs:.0f} s, clean accuracy on classes 0-4 {acc:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
