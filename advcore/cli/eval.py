"""``eval``: accuracy of a model under an attack at a range of strengths."""

from __future__ import annotations

import argparse

from advcore import shards
from advcore.attacks import ATTACKS
from advcore.cli import backend
from advcore.cli.attack import add_param_flags, param_values
from advcore.cli.framework import (
    EXIT_OK,
    SEED_MAX,
    ProgressBars,
    add_run_options,
    arg_type,
    batch_help,
    batch_size,
    command,
    int_type,
    json_text,
    output_path,
    parse_steps,
    positive_int,
    say,
    set_threads,
    write_file,
)
from advcore.units import parse_eps_list


def _eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--model", required=True,
                   help="registered model name (e.g. fmnist-fgsm) or the card JSON written by 'train'")
    g.add_argument("--data", default="subset", choices=("subset", "test"),
                   help="Fashion-MNIST: the shipped 3,000-image test subset (default) or the installed test set")
    g.add_argument("--n", type=positive_int("n", 10**6), default=2000,
                   help="number of evaluation images (default: 2000, class-balanced)")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default="fgsm", metavar="NAME", help=f"one of {', '.join(ATTACKS)} (default: fgsm)")
    g.add_argument("--eps", type=arg_type(parse_eps_list, "eps"), default="0:0.3:0.03",
                   help="L-inf strengths: start:stop:step (stop included), a list 0,0.05,0.1, or one value "
                        "(default: 0:0.3:0.03)")
    g.add_argument("--steps", type=arg_type(parse_steps, "steps"), help="iterations (default: 10; FGSM takes one)")
    g.add_argument("--seed", type=int_type("seed", 0, SEED_MAX),
                   default=0, help="seed of PGD's random start (default: 0; batch b uses seed + b)")
    g.add_argument("--batch-size", type=positive_int("batch size", 100000), help=batch_help(500))
    g = p.add_argument_group("attack parameters (each attack's own, from its declaration)")
    add_param_flags(g, skip=("seed",))
    g = p.add_argument_group("output")
    add_run_options(g, json_help="write the results as JSON ('-': to stdout, instead of the table)",
                    quiet_help="no progress bar (the final line stays)")
    backend.add_backend_options(p)


@command("eval", "accuracy of a model under an attack at a range of strengths", _eval_args)
def cmd_eval(args: argparse.Namespace) -> int:
    """Accuracy per eps with :func:`advcore.labs.training.accuracy_curve` (attacks from :mod:`advcore.attacks`)."""
    from advcore import attacks, datasets, models
    from advcore.device import describe, pick_device
    from advcore.labs import training

    spec = models.get_spec(args.model)  # a card JSON given to --model is loaded by fw.resolve_model_files
    name = spec.name
    attack = attacks.get_attack(args.attack)
    params, notes = param_values(args, attack.name, skip=("seed",))
    if args.steps is not None and "steps" not in attacks.accepted_params(attack.name):
        notes.insert(0, f"--steps does not apply to {attack.name}; ignored.")
    if not args.quiet:
        for note in notes:
            say(f"advcore: note: {note}")
    json_out = None if args.json in (None, "-") else output_path(args.json, flag="--json")
    x, y, what = datasets.eval_set(spec.dataset, args.n, source=args.data)
    device = pick_device(args.device)
    set_threads(args.threads)
    args.batch_size = batch_size(args.batch_size, args.device, 500)
    if backend.sharded(args):  # every worker loads the model itself
        curve = backend.run(args, shards.EvalJob(name, args.data, len(x), attack.name, tuple(args.eps),
                                                 args.steps, args.seed, args.batch_size, params, args.device))
    else:
        model = models.load(name, device)
        with ProgressBars(args.quiet) as bars:
            curve = training.accuracy_curve(model, x, y, attack=attack.name, eps=args.eps, steps=args.steps,
                                            seed=args.seed, batch_size=args.batch_size, progress=bars, **params)
    result = {"model": name, "title": spec.title, "dataset": spec.dataset, "data": what, "device": describe(device),
              **curve}
    clean = [a for e, a in zip(curve["eps"], curve["accuracy"], strict=True) if e == 0]
    result["clean_accuracy"] = clean[0] if clean else None
    if json_out is not None:
        write_file(json_out, (json_text(result) + "\n").encode("utf-8"))
    if args.json == "-":
        print(json_text(result))
    else:
        steps = f", {curve['steps']} steps" if curve["steps"] > 1 else ""
        lines = [f"{name}: {attack.title} (L-inf{steps}) on {curve['n']} images of the {what}",
                 "eps        accuracy"]
        lines += [f"{e:<10.4g} {a:.4f}" for e, a in zip(curve["eps"], curve["accuracy"], strict=True)]
        lines.append(f"average    {curve['average_accuracy']:.4f}")
        if json_out is not None:
            lines.append(f"wrote      {json_out}")
        print("\n".join(lines))
    say(f"advcore: eval {attack.name} on {name}: {len(curve['eps'])} strength(s), {curve['n']} images, "
         f"{curve['seconds']:.1f} s")
    return EXIT_OK
