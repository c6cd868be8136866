"""``models`` and ``samples``: list the registered models and the bundled sample images."""

from __future__ import annotations

import argparse
from pathlib import Path

from advcore.cli import framework as fw


def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the registry as JSON")


@fw.command("models", "list the registered models", _models_args)
def cmd_models(args: argparse.Namespace) -> int:
    """Print every registered model: name, dataset, role, input size, classes, title."""
    from advcore import models

    rows = []
    for name in models.names():
        spec = models.get_spec(name)
        curves = (spec.card or {}).get("curves", {})
        rows.append({"name": spec.name, "title": spec.title, "dataset": spec.dataset, "role": spec.role,
                     "input_size": list(spec.input_size), "num_classes": spec.num_classes,
                     "rfgsm_average": curves.get("rfgsm", {}).get("average_accuracy"),
                     "transfer_fgsm_average": curves.get("transfer_fgsm", {}).get("average_accuracy")})
    if args.json:
        print(fw.json_text(rows))
        return fw.EXIT_OK
    def avg(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    table = [("NAME", "DATASET", "ROLE", "INPUT", "CLASSES", "R+FGSM", "TRANSFER-FGSM", "TITLE")]
    table += [(r["name"], r["dataset"], r["role"], "x".join(map(str, r["input_size"])), str(r["num_classes"]),
               avg(r["rfgsm_average"]), avg(r["transfer_fgsm_average"]), r["title"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(7)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:7], widths, strict=True)) + "  " + row[7])
    print("R+FGSM, TRANSFER-FGSM: average accuracy over eps 0-0.3 (L-inf; white-box R+FGSM with a random step "
          "eps/2; FGSM crafted on the naive model, the MAT paper's protocol), from the model cards.")
    return fw.EXIT_OK


@fw.command("samples", "list the bundled sample images (usable as --image NAME)", _models_args)
def cmd_samples(args: argparse.Namespace) -> int:
    """Print the bundled sample photos with their sources and licences."""
    from advcore import data

    rows = [{"name": Path(s.file).stem, "file": s.file, "title": s.title, "source": s.source,
             "licence": s.licence} for s in data.samples()]
    if args.json:
        print(fw.json_text(rows))
        return fw.EXIT_OK
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name'].ljust(width)}  {r['title']} ({r['licence']})")
    return fw.EXIT_OK


