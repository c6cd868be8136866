"""``train``: standard, adversarial and MAT training; writes a checkpoint and its model card (the Training lab)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from advcore.cli import framework as fw
from advcore.errors import AdvlabError
from advcore.units import parse_eps_list


def _train_args(p: argparse.ArgumentParser) -> None:
    from advcore.labs import training

    g = p.add_argument_group("what to train")
    g.add_argument("--recipe", required=True, metavar="NAME",
                   help=f"one of {', '.join(training.RECIPES)}")
    g.add_argument("--strengths", type=fw.arg_type(fw.parse_strengths, "strengths"), metavar="EPS",
                   help="L-inf strengths in (0,1]: one for fgsm/pgd (default 0.1), a list for MAT (default "
                        "0.05,0.1,0.15), or 'auto' (MAT: the paper's random walk over --grid)")
    g.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"),
                   help="default: fashion-mnist (needs the Debian package dataset-fashion-mnist)")
    g.add_argument("--epochs", type=fw.positive_int("epochs", 1000), default=1, help="default: 1")
    g.add_argument("--seed", type=fw.int_type("seed", 0, fw.SEED_MAX),
                   default=0, help="seed of initialisation, shuffling and PGD starts (default: 0)")
    g.add_argument("--limit", type=fw.positive_int("limit", 10**7), metavar="N",
                   help="train on the first N training images only (quick runs)")
    g.add_argument("--reduced", action="store_true",
                   help="reduced size: split each batch into clean + one part per strength instead of adding "
                        "a full adversarial copy per strength")
    g.add_argument("--examples", choices=training.EXAMPLE_ATTACKS,
                   help="attack crafting MAT's training examples (default: fgsm, as in the paper)")
    g.add_argument("--example-labels", choices=training.EXAMPLE_LABELS, default="true",
                   help="craft training examples away from the true labels (default) or from the model's "
                        "predictions ('predicted': Kurakin et al.'s cure for label leaking)")
    g.add_argument("--input", choices=training.INPUT_TRANSFORMS, dest="input_transform",
                   help="standard recipe: train on halftone images, or on intensity + halftone images (hybrid)")
    g.add_argument("--halftone", default="floyd-steinberg", metavar="METHOD",
                   help="halftone of --input (advcore.defenses; default: floyd-steinberg)")
    g.add_argument("--batch-size", type=fw.positive_int("batch size", 65536), default=128, help="default: 128")
    g.add_argument("--lr", type=fw.finite_type("learning rate", positive=True, high=10.0), default=1e-3,
                   help="Adam (default: 0.001)")
    g.add_argument("--pgd-steps", type=fw.positive_int("PGD steps", 100), default=7,
                   help="PGD training steps (default: 7, step 2.5*eps/steps)")
    g.add_argument("--vote-images", type=fw.positive_int("vote images", 10**6), default=2000,
                   help="parallel MAT: validation images that fit the voting weights (default: 2000)")
    g.add_argument("--vote-attack", choices=training.SELECTION_ATTACKS,
                   help="parallel MAT: attack crafting the vote-fitting images (default: the --examples attack)")
    g = p.add_argument_group("random walk (--strengths auto)")
    g.add_argument("--grid", type=fw.arg_type(lambda s: parse_eps_list(s, name="grid", allow_zero=False), "grid"),
                   default="0.05:0.3:0.05", help="allowed strengths (default: 0.05:0.3:0.05)")
    g.add_argument("--penalty", type=fw.finite_type("penalty", high=1.0), default=0.005,
                   help="accuracy given up per extra strength, a in G = H - a*S (default: 0.005)")
    g.add_argument("--walks", type=fw.positive_int("walks", 100000), default=200,
                   help="number of walks t (default: 200)")
    g.add_argument("--walk-length", type=fw.positive_int("walk length", 1000),
                   help="steps per walk l (default: grid size)")
    g.add_argument("--matrix-images", type=fw.positive_int("matrix images", 10**7), default=10000,
                   help="training images of each single-strength model of the accuracy matrix (default: 10000)")
    g.add_argument("--matrix-attack", choices=training.SELECTION_ATTACKS, default="fgsm",
                   help="attack measuring the accuracy matrix A (default: fgsm, as in the paper; pgd or rfgsm "
                        "keep a label-leaking row from looking robust)")
    g.add_argument("--matrix-from", metavar="CARD",
                   help="reuse the accuracy matrix recorded in a model card instead of training it again")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval-eps", type=fw.arg_type(parse_eps_list, "eval eps"), default="0:0.3:0.03",
                   help="strengths of the card's accuracy curves (default: 0:0.3:0.03)")
    g.add_argument("--eval-n", type=fw.int_type("eval n", 0, 10**6),
                   help="images of the FGSM curve (default: the whole evaluation set; 0: none)")
    g.add_argument("--pgd-n", type=fw.int_type("pgd n", 0, 10**6),
                   default=1000, help="images of the PGD-10 curve (default: 1000; 0: none)")
    g.add_argument("--rfgsm-n", type=fw.int_type("rfgsm n", 0, 10**6),
                   help="images of the white-box R+FGSM curve (default: as --eval-n; 0: none)")
    g.add_argument("--protocol", choices=training.PROTOCOLS, default="white-box",
                   help="white-box (default): attacks crafted on the model itself; paper: also the MAT paper's "
                        "transfer-FGSM curve, static FGSM sets crafted on the dataset's naive model (Sec. 5.1)")
    g.add_argument("--out-dir", required=True, metavar="DIR", help="where NAME.pt and NAME.json are written")
    g.add_argument("--name", help="model name (default: DATASET-RECIPE, e.g. fmnist-fgsm)")
    fw.add_run_options(g, quiet_help="no progress bars or epoch lines (the final line stays)")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@fw.command("train", "train a model (standard, adversarial, MAT) and write its checkpoint and model card", _train_args,
            aliases=("training",))
def cmd_train(args: argparse.Namespace) -> int:
    """Train with :func:`advcore.labs.training.train`, evaluate, write ``NAME.pt`` and ``NAME.json``."""
    import time

    from advcore import datasets
    from advcore.labs import training
    from advcore.models import zoo

    recipe = args.recipe
    if recipe not in training.RECIPES:
        raise AdvlabError(f"Unknown recipe {recipe!r}; choose one of {', '.join(training.RECIPES)}.")
    strengths = args.strengths
    if strengths is None:
        strengths = [] if recipe == "standard" else [0.1] if recipe in ("fgsm", "pgd") else [0.05, 0.1, 0.15]
    if strengths == "auto" and not recipe.startswith("mat-"):
        raise AdvlabError("--strengths auto (the random walk) applies to the mat-mixed and mat-parallel recipes.")
    if args.matrix_from and strengths != "auto":
        raise AdvlabError("--matrix-from only applies with --strengths auto.")
    prefix = {"fashion-mnist": "fmnist", "digits": "digits"}[args.dataset]
    name = args.name or f"{prefix}-{args.input_transform or ('naive' if recipe == 'standard' else recipe)}"
    if not _NAME.fullmatch(name):
        raise AdvlabError(f"--name must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}.")
    cfg = training.TrainConfig(recipe=recipe, strengths=() if strengths == "auto" else tuple(strengths),
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               reduced=args.reduced, example_attack=args.examples, example_labels=args.example_labels,
                               pgd_steps=args.pgd_steps, vote_attack=args.vote_attack,
                               dataset=args.dataset, limit=args.limit, vote_images=args.vote_images,
                               input_transform=args.input_transform, halftone=args.halftone)
    if strengths == "auto":
        training.check_config(training.TrainConfig(**{**cfg.__dict__, "strengths": (0.1,)}))
    else:
        training.check_config(cfg)
    out_dir = fw.output_path(str(Path(args.out_dir) / f"{name}.json"), flag="--out-dir").parent
    matrix = None
    if args.matrix_from:
        prior = zoo.read_card(args.matrix_from) if Path(args.matrix_from).is_file() else None
        matrix = (prior or {}).get("strength_selection", {}).get("matrix")
        if matrix is None:
            raise AdvlabError(f"{args.matrix_from} holds no random-walk accuracy matrix.")
    source = _source_model(args.dataset, args.device) if args.protocol == "paper" else None
    fw.set_threads(args.threads)
    task = datasets.load_task(args.dataset, limit=args.limit)
    bars = fw.ProgressBars(args.quiet)
    t0 = time.perf_counter()
    try:
        selection = None
        if strengths == "auto":
            selection = training.select_strengths(
                task, grid=args.grid, images=args.matrix_images, penalty=args.penalty, walks=args.walks,
                walk_length=args.walk_length, seed=args.seed, attack=cfg.attack, matrix_attack=args.matrix_attack,
                matrix=matrix, device=args.device, progress=bars)
            cfg.strengths = tuple(selection["chosen"])
            walk = selection["walk"]
            if not args.quiet:
                fw.say(f"advcore: random walk chose {', '.join(f'{s:g}' for s in cfg.strengths)} (estimated average "
                     f"accuracy {walk['H']:.3f}, path {' -> '.join(f'{s:g}' for s in walk['path'])})")
        result = training.train(cfg, task, device=args.device, progress=bars, selection=selection)
        report = training.evaluate(result.model, datasets.to_float(task.x_eval), task.y_eval, eps=args.eval_eps,
                                   fgsm_images=args.eval_n, pgd_images=args.pgd_n, seed=args.seed,
                                   rfgsm_images=args.eval_n if args.rfgsm_n is None else args.rfgsm_n,
                                   source=source, progress=bars)
    finally:
        bars.close()
    result.card.update(report)
    result.card["evaluation"] = task.description["evaluation"]
    command_line = "python -m advcore " + shlex.join(sys.argv[1:]) if sys.argv[1:2] in (["train"], ["training"]) \
        else None
    weights, card_path = training.save(result, out_dir, name, extra={"command": command_line,
                                                                    "wall_seconds": round(time.perf_counter() - t0, 1)})
    card = json.loads(card_path.read_text(encoding="utf-8"))
    s = training.summary(card)
    lines = [f"{name}: {card['title']}",
             f"clean accuracy   {s['clean_accuracy']:.4f} on {card['evaluation_images']} evaluation images"]
    for attack in ("fgsm", "pgd", "rfgsm", "transfer_fgsm"):
        if f"{attack}_average" in s:
            at = s.get(f"{attack}_at_0.1")
            at_text = f"at eps 0.1 {at:.4f}, " if at is not None else ""
            lines.append(f"{_CURVE_TITLES[attack]:<16} {at_text}average over the range {s[f'{attack}_average']:.4f}")
    lines.append(f"training         {card['training_seconds']:.1f} s")
    lines.append(f"wrote            {weights}, {card_path}")
    print("\n".join(lines))
    fw.say(f"advcore: trained {name} ({recipe}) in {card['training_seconds']:.0f} s, clean accuracy "
         f"{s['clean_accuracy']:.4f}")
    return fw.EXIT_OK




_CURVE_TITLES = {"fgsm": "FGSM", "pgd": "PGD-10", "rfgsm": "R+FGSM", "transfer_fgsm": "transfer FGSM"}


def _source_model(dataset: str, device: str):
    """The paper protocol's fixed source model: the dataset's naive model, found by role."""
    from advcore import models

    name = models.with_role(dataset, "naive")
    if name is None:
        raise AdvlabError(f"The paper's protocol crafts its FGSM sets on a naive {dataset} model; none is "
                          "registered (assets/models).")
    return name, models.load(name, device)


def _table1_args(p: argparse.ArgumentParser) -> None:
    from advcore.labs import training

    p.add_argument("--protocol", choices=training.PROTOCOLS, default="paper",
                   help="paper (default): static FGSM sets crafted once on the naive model, shown to every model "
                        "(Sec. 5.1, Table 1); white-box: FGSM crafted on each model itself")
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"),
                   help="the shipped models of this dataset (default: fashion-mnist)")
    p.add_argument("--eps", type=fw.arg_type(parse_eps_list, "eps"), default="0:0.3:0.03",
                   help="attack strengths (default: 0:0.3:0.03, the paper's range)")
    p.add_argument("--n", type=fw.positive_int("n", 10**6), help="evaluation images (default: all of the set)")
    p.add_argument("--update-cards", action="store_true",
                   help="also store the paper protocol's transfer-FGSM curve and the white-box R+FGSM curve in "
                        "the shipped model cards (assets/models/*.json; the weights are not touched)")
    fw.add_run_options(p, quiet_help="no progress bars", json_help="write the table as JSON ('-': to stdout)")


@fw.command("table1", "the MAT paper's Table 1 for the shipped models under its protocol or the white-box one",
            _table1_args)
def cmd_table1(args: argparse.Namespace) -> int:
    """Average accuracy over eps under :func:`advcore.labs.training.protocol_table` for every shipped model."""
    from advcore.files import write_bytes
    from advcore.labs import training
    from advcore.models import zoo
    from advcore.records import json_safe

    if args.update_cards and args.protocol != "paper":
        raise AdvlabError("--update-cards stores the paper protocol's curves; use it with --protocol paper.")
    json_out = None if args.json in (None, "-") else fw.output_path(args.json, flag="--json")
    fw.set_threads(args.threads)
    bars = fw.ProgressBars(args.quiet)
    try:
        table, rfgsm = training.table1(args.dataset, protocol=args.protocol, eps=args.eps, n=args.n,
                                       device=args.device, progress=bars)
    finally:
        bars.close()
    what = table["data"]
    if args.update_cards:
        for name in table["models"]:
            path = zoo.MODELS_DIR / f"{name}.json"
            card = zoo.read_card(path)
            card.setdefault("curves", {})["transfer_fgsm"] = table["models"][name] | {"data": what}
            for k in ("clean_accuracy", "rfgsm_average", "white_box_fgsm_average", "label_leaking"):
                card["curves"]["transfer_fgsm"].pop(k, None)
            card["curves"]["rfgsm"] = rfgsm[name]
            card["paper_protocol_command"] = "python -m advcore " + shlex.join(sys.argv[1:])
            write_bytes(path, (json.dumps(json_safe(card), indent=1) + "\n").encode("utf-8"))
    if json_out is not None:
        write_bytes(json_out, (fw.json_text(table) + "\n").encode("utf-8"))
    if args.json == "-":
        print(fw.json_text(table))
        return fw.EXIT_OK
    how = (f"FGSM crafted once on {table['source']} (static sets, the paper's Sec. 5.1)" if args.protocol == "paper"
           else "FGSM crafted on each model itself (white-box)")
    eps = table["eps"]
    print(f"Average accuracy over eps {eps[0]:g} to {eps[-1]:g} ({len(eps)} strengths, L-inf), {how}, "
          f"on {table['n']} images of the {what}")
    print(f"{'model':<22} {'clean':>7} {'average':>8} {'R+FGSM avg':>11}  label leaking (white-box FGSM)")
    rows = sorted(table["models"].items(), key=lambda kv: -kv[1]["average_accuracy"])
    for name, r in rows:
        leak = r["label_leaking"]
        note = "–"
        if leak is not None:
            note = (f"FGSM {leak['fgsm']:.3f} at eps {leak['eps']:g} "
                    f"{'>' if leak['above_clean'] else '<='} clean {leak['clean']:.3f}")
            if leak["rfgsm"] is not None:
                note += f"; R+FGSM there {leak['rfgsm']:.3f}"
        print(f"{name:<22} {r['clean_accuracy']:>7.3f} {r['average_accuracy']:>8.3f} {r['rfgsm_average']:>11.3f}  "
              f"{note}")
    return fw.EXIT_OK
