"""``python -m advcore poison lf|pf|ap``: the poisoning lab's tables (Chan-Hon-Tong, Tables 1-3) from the shell.

The numbers are those of :func:`advcore.labs.poisoning.run`, the function the Poisoning lab page calls.
"""

from __future__ import annotations

import argparse

from advcore.cli import framework as fw
from advcore.errors import AdvlabError
from advcore.labs import poisoning


def _share(text: str) -> float:
    value = fw.parse_eps(text, name="share")
    if value > 1:
        raise AdvlabError(f"share must be between 0 and 1, got {text!r}.")
    return value


def _eps(text: str) -> float:
    value = fw.parse_eps(text, name="eps")
    if value > 1:
        raise AdvlabError(f"eps must be at most 1 (pixels are in [0, 1]), got {text!r}.")
    return value


def _poison_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("attack", choices=tuple(poisoning.ATTACK_TITLES),
                   help="lf: label flip (Table 3), pf: poison frogs (Table 2), ap: adversarial poisoning (Table 1)")
    g = p.add_argument_group("setting")
    g.add_argument("--features", default="naive,fgsm,pgd", type=fw.arg_type(poisoning.check_kinds, "features"),
                   help="frozen extractors, comma-separated: naive, fgsm, pgd (the shipped Fashion-MNIST models, on "
                        "scikit-learn digits drawn as MNIST) and imagenet (EfficientNet-Lite0 on Fashion-MNIST Sandal "
                        "against Sneaker drawn as photos, two ImageNet categories, the paper's sanity check; minutes "
                        "on a CPU), split-naive and split-pgd (CNNs trained on "
                        "Fashion-MNIST classes 0-4 only, on Sandal against Sneaker) (default: naive,fgsm,pgd)")
    g.add_argument("--layer", help="feature layer (default: penultimate, the input of the last linear layer)")
    g.add_argument("--pair", default="01", help="pf: the two digits of the binary task (default: 01, as in the paper)")
    g = p.add_argument_group("attack")
    g.add_argument("--eps", type=fw.arg_type(_eps, "eps"), default=poisoning.DEFAULT_EPS,
                   help="L-inf budget in [0,1] pixel units, e.g. 7/255 (default: 7/255, the paper's MNIST budget)")
    g.add_argument("--share", type=fw.arg_type(_share, "share"),
                   help="lf: share of training labels made random (default: 0.02, the paper's 2%%); ap: share of "
                        "training images moved (default: 1)")
    g.add_argument("--trials", type=fw.int_type("trials", 1, poisoning.MAX_TRIALS), default=20,
                   help="pf: number of poison frog trials (default: 20; the paper runs 100)")
    g.add_argument("--method", choices=poisoning.METHODS, default="pgd",
                   help="pf, ap: craft with one FGSM step or PGD steps (default: pgd)")
    g.add_argument("--steps", type=fw.int_type("steps", 1, poisoning.MAX_STEPS),
                   help=f"pf, ap: PGD steps (default: pf {poisoning.PF_STEPS}, ap {poisoning.DEFAULT_STEPS})")
    g.add_argument("--schedule", choices=poisoning.SCHEDULES,
                   help="pf, ap: step size, decay: eps/4 * (1 - t/steps) keeping the best iterate; constant: "
                        "2.5*eps/steps (default: pf decay, ap constant)")
    g.add_argument("--poisons", type=fw.int_type("poisons", 1, poisoning.MAX_POISONS), default=1,
                   help="pf: poison images per target (default: 1)")
    g.add_argument("--bases", dest="base_choice", choices=poisoning.BASE_CHOICES, default="random",
                   help="pf: random bases, or the other class's training images nearest the target in feature "
                        "space (best-base search) (default: random)")
    g.add_argument("--repeats", type=fw.int_type("repeats", 1, 100), default=3,
                   help="lf: runs averaged, seeds seed..seed+repeats-1 (default: 3)")
    g.add_argument("--C", dest="C", type=fw.finite_type("C", positive=True, high=1e6), default=poisoning.DEFAULT_C,
                   help="the LinearSVC's C on the raw features, as the paper trains it (default: 1, LinearSVC's "
                        "default; C on features divided by their mean norm s is C*s^2)")
    g.add_argument("--seed", type=fw.int_type("seed", 0, fw.SEED_MAX), default=0, help="default: 0")
    g = p.add_argument_group("output")
    fw.add_run_options(g, json_help="write the results as JSON ('-': to stdout, instead of the table)",
                    device_default="cpu", quiet_help="no progress bars (the final line stays)")


def table_lines(result: poisoning.PoisoningTable) -> list[str]:
    """The human table of a :func:`advcore.labs.poisoning.run` result, with the paper's numbers beside it."""
    attack = result.attack
    paper = result.paper.values
    if attack == "lf":
        lines = [f"{result.title}, {result.share:.3g} of the training labels random, "
                 f"{result.repeats} run(s) averaged"]
    else:
        lines = [f"{result.title}, eps {result.eps:.4g} ({result.eps_255:.3g}/255, L-inf), "
                 + (f"{result.trials} trials" if attack == "pf"
                    else f"{100 * result.share:.3g}% of the training images moved")]
    if attack == "ap":
        lines.append("features    clean    poisoned   paper (MNIST)")
        for r in result.rows:
            ref = paper.get(r.kind, {}).get("MNIST")
            lines.append(f"{r.kind:<11} {r.clean_accuracy:.3f}    {r.poisoned_accuracy:.3f}      "
                         + ("–" if ref is None else f"{ref:.2f}"))
    elif attack == "pf":
        lines.append(f"{result.poisons} poison(s) per target, {result.base_choice} bases, "
                     + (f"{result.steps} steps, {result.schedule} step size" if result.method == "pgd"
                        else "one FGSM step") + f"; LinearSVC C {result.C:g} on raw features")
        lines.append("features     success   distance before -> after (nearest same-class)  margin clean -> poisoned"
                     "   C scaled   paper (CIFAR)")
        for r in result.rows:
            ref = result.paper.imagenet if r.kind == "imagenet" else paper.get(poisoning.KIND_ROLE[r.kind])
            lines.append(f"{r.kind:<12} {r.successes:>3}/{r.trials:<3}  {r.mean_distance_before:.3f} -> "
                         f"{r.mean_distance_after:.3f} ({r.mean_neighbour_distance:.3f})               "
                         f"{r.mean_margin_before:.3f} -> {r.mean_margin_after:.3f}              {r.C_scaled:<9.4g}  "
                         + ("–" if ref is None else f"{ref:.2f}"))
    else:
        lines.append("features    clean    poisoned   gap      paper (MNIST)")
        for r in result.rows:
            ref = paper.get(r.kind, {}).get("MNIST")
            lines.append(f"{r.kind:<11} {r.clean_accuracy:.3f}    {r.poisoned_accuracy:.3f}      "
                         f"{r.gap:+.3f}   " + ("–" if ref is None else f"{ref:+.2f}"))
    lines.append(result.verdict)
    return lines


@fw.command("poison", "poisoning attacks (label flip, poison frogs, adversarial poisoning) on frozen features",
         _poison_args, aliases=("poisoning",))
def cmd_poison(args: argparse.Namespace) -> int:
    """Run :func:`advcore.labs.poisoning.run` and print or write its table."""
    if args.attack != "pf" and args.pair != "01":
        raise AdvlabError("--pair only applies to pf (poison frogs).")
    if args.attack == "pf" and args.share is not None:
        raise AdvlabError("--share applies to lf and ap, not to pf.")
    if args.attack != "pf" and (args.poisons != 1 or args.base_choice != "random"):
        raise AdvlabError("--poisons and --bases only apply to pf (poison frogs).")
    poisoning.task_for("naive", args.attack, args.pair)  # checks --pair before any work
    json_out = None if args.json in (None, "-") else fw.output_path(args.json, flag="--json")
    fw.set_threads(args.threads)
    bars = fw.ProgressBars(args.quiet)
    try:
        result = poisoning.run(args.attack, args.features, eps=args.eps, share=args.share, trials=args.trials,
                               method=args.method, steps=args.steps, C=args.C, seed=args.seed, repeats=args.repeats,
                               pair=args.pair, device=args.device, layer=args.layer, poisons=args.poisons,
                               base_choice=args.base_choice, schedule=args.schedule, progress=bars)
    finally:
        bars.close()
    text = fw.json_text(result.to_dict())
    if json_out is not None:
        fw.write_file(json_out, (text + "\n").encode("utf-8"))
    if args.json == "-":
        print(text)
    else:
        lines = table_lines(result)
        if json_out is not None:
            lines.append(f"wrote {json_out}")
        print("\n".join(lines))
    fw.say(f"advcore: poison {args.attack} on {', '.join(result.kinds)}: {result.seconds:.1f} s")
    return fw.EXIT_OK
