"""``attack``: attack one image and write the adversarial PNG and its metrics (the Attack lab's numbers)."""

from __future__ import annotations

import argparse
import math

from advcore.attacks import ATTACKS, MAX_STEPS, Param, accepted_params, declared_params, param_default
from advcore.attacks.core import MAX_ALPHA
from advcore.cli.framework import (
    EXIT_OK,
    add_run_options,
    arg_type,
    command,
    finite_type,
    json_text,
    load_image,
    output_path,
    parse_steps,
    say,
    stderr_bar,
    write_file,
)
from advcore.errors import AdvlabError
from advcore.units import MAX_L2, format_eps


def _flag_help(p: Param) -> str:
    """A flag's help from its declaration, with each attack's default: "MI-FGSM: ... (default: 1)"."""
    takers = [a for a in ATTACKS.values() if p.name in accepted_params(a.name)]
    by_default: dict[str, list[str]] = {}
    for a in takers:
        by_default.setdefault(p.format(param_default(a.name, p.name)), []).append(a.short_title)
    text = p.cli_help or p.help
    if p.unit:
        text += f", in {p.unit} units"
    if len(by_default) == 1:
        (default, titles), = by_default.items()
        text = f"{', '.join(titles)}: {text} (default: {default})"
    else:
        text += " (default: " + "; ".join(f"{d} for {', '.join(t)}" for d, t in by_default.items()) + ")"
    return text.replace("%", "%%")


def add_param_flags(g: argparse._ArgumentGroup, *, skip: tuple[str, ...] = ()) -> None:
    """One flag per attack parameter any attack declares (``--mu``, ``--[no-]random-start``), typed,
    ranged and explained by its declaration; ``skip`` leaves out names the command defines itself."""
    for p in declared_params().values():
        if p.name in skip:
            continue
        if p.kind == "bool":
            g.add_argument(p.flag, action=argparse.BooleanOptionalAction, default=None, help=_flag_help(p))
        elif p.kind == "choice":
            g.add_argument(p.flag, choices=p.choices, help=_flag_help(p))
        else:
            g.add_argument(p.flag, type=arg_type(p.parse, p.name), metavar=p.name.upper(), help=_flag_help(p))


def param_values(args: argparse.Namespace, attack: str, *,
                 skip: tuple[str, ...] = ()) -> tuple[dict[str, object], list[str]]:
    """The attack parameters given on the command line that ``attack`` takes, and a note for each other flag."""
    accepted = accepted_params(attack)
    values, notes = {}, []
    for p in declared_params().values():
        value = getattr(args, p.name, None)
        if p.name in skip or value is None:
            continue
        if p.name in accepted:
            values[p.name] = value
        else:
            notes.append(f"{p.flag_text} does not apply to {attack}; ignored.")
    return values, notes


def _attack_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to attack")
    g.add_argument("--model", required=True, help="registered model name (see the 'models' command)")
    g.add_argument("--image", required=True, metavar="PATH",
                   help="PNG/JPEG/WebP/BMP file, '-' for stdin, or (when no such file exists) a bundled sample "
                        "name such as 'cat' (see the 'samples' command)")
    g.add_argument("--target", metavar="CLASS", help="make the attack targeted: class index or name ('tabby')")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default="pgd", metavar="NAME",
                   help=f"one of {', '.join(ATTACKS)} (default: pgd)")
    g.add_argument("--norm", default="linf", choices=("linf", "l2"), help="threat model (default: linf)")
    g.add_argument("--eps", required=True, type=finite_type("eps", high=MAX_L2),
                   help="budget in [0,1] pixel units: 4/255, 0.0157, 1e-2 (L-inf at most 1; L2 at most sqrt of the "
                        "number of pixel values)")
    g.add_argument("--steps", type=arg_type(parse_steps, "steps"),
                   help=f"iterations, 1-{MAX_STEPS} (default: 10; FGSM takes one step)")
    g.add_argument("--alpha", type=finite_type("alpha", positive=True, high=MAX_ALPHA),
                   help="step size (default: the attack's own, e.g. 2.5*eps/steps for PGD)")
    g = p.add_argument_group("attack parameters (each attack's own, from its declaration)")
    add_param_flags(g)
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="PNG", help="write the adversarial image (exactly the 8-bit PNG measured)")
    add_run_options(g, json_help="write the metrics as JSON ('-': to stdout, instead of the summary)",
                    threads_help=None, quiet_help="no progress bar or notes (the final line stays)")


def _summary(m: dict, files: list[str]) -> str:
    """The human summary of an attack's metrics dict."""
    alpha = f", alpha {m['alpha']:.4g}" if m.get("alpha") is not None else ""
    norm = "L-inf" if m["norm"] == "linf" else "L2"
    title = m["attack"]
    try:
        from advcore.attacks import get_attack

        title = get_attack(m["attack"]).title
    except AdvlabError:
        pass
    lines = [
        f"{m['model']} on {m['device']}: {title}, {norm} eps {format_eps(m['eps'], m['norm'])}, "
        f"{m['steps']} step(s){alpha}",
        f"clean        {m['clean_label']} {m['clean_name']} ({m['clean_confidence']:.1%})",
    ]
    if m.get("targeted"):
        lines.append(f"target       {m['target']} {m['target_name']}")
    lines.append(f"adversarial  {m['adv_label']} {m['adv_name']} ({m['adv_confidence']:.1%})")
    verdict = "yes" if m["success"] else "no"
    png = "yes" if m["success_8bit"] else "no"
    lines.append(f"success      {verdict} (8-bit PNG: {png}, label {m['adv_8bit_label']})")
    psnr = "inf" if not math.isfinite(m["psnr"]) else f"{m['psnr']:.1f}"
    lines.append(f"perturbation linf {format_eps(m['linf'], 'linf')}, l2 {m['l2']:.4g}, cosine "
                 f"{m['cosine_similarity']:.4f}, AMP {m['amp']:.4g}, SSIM {m['ssim']:.4f}, PSNR {psnr} dB")
    lines.append(f"time         {m['seconds']:.2f} s, {m['grad_evals']} gradient evaluation(s)")
    if files:
        lines.append(f"wrote        {', '.join(files)}")
    return "\n".join(lines)


@command("attack", "attack one image and write the adversarial PNG and its metrics", _attack_args)
def cmd_attack(args: argparse.Namespace) -> int:
    """Run one attack with :func:`advcore.labs.attack.attack_image`; write the PNG and JSON."""
    from advcore import attacks, models
    from advcore.labs import attack as attack_lab
    from advcore.predictions import resolve_class

    spec = models.get_spec(args.model)
    attack = attacks.get_attack(args.attack)
    accepted = attacks.accepted_params(attack.name)
    notes = []
    if args.steps is not None and "steps" not in accepted:
        notes.append(f"--steps does not apply to {attack.name}; ignored.")
    if args.alpha is not None and "alpha" not in accepted:
        notes.append(f"--alpha does not apply to {attack.name}; ignored.")
    extra, ignored = param_values(args, attack.name)
    notes += ignored
    steps = 10 if args.steps is None else args.steps
    # Fail fast on the budget and the target, before loading the image or the model.
    attacks.check_budget(eps=args.eps, alpha=args.eps if args.alpha is None else args.alpha, steps=steps,
                         norm=args.norm)
    target = None if args.target is None else resolve_class(args.target, spec.classes())
    out = None if args.out is None else output_path(args.out, flag="--out", suffix=".png")
    json_out = None if args.json in (None, "-") else output_path(args.json, flag="--json")
    if out is not None and json_out is not None and out.resolve() == json_out.resolve():
        raise AdvlabError("--out and --json name the same file.")
    image = load_image(args.image)
    if not args.quiet:
        for note in notes:
            say(f"advcore: note: {note}")

    models.load(spec.name, args.device)  # cached: loading now keeps it out of the progress bar's rate
    total = steps if "steps" in accepted else 1
    with stderr_bar(f"{attack.name} {spec.name}", args.quiet, total=total) as bar:

        def progress(info: attacks.StepInfo) -> None:
            bar.total = info.steps
            bar.update(info.step - bar.n)
            loss = float(info.loss.float().nanmean()) if info.loss.numel() else float("nan")
            if math.isfinite(loss):
                bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)

        result = attack_lab.attack_image(spec.name, image, attack.name, eps=args.eps, norm=args.norm, steps=steps,
                                         alpha=args.alpha, target=target, device=args.device, callback=progress,
                                         image_name=args.image, **extra)
    metrics = dict(result.metrics)
    metrics["out"] = None if out is None else str(out)
    files = []
    if out is not None:
        write_file(out, result.png)
        files.append(str(out))
    if json_out is not None:
        write_file(json_out, (json_text(metrics) + "\n").encode("utf-8"))
        files.append(str(json_out))
    if args.json == "-":
        print(json_text(metrics))
    else:
        print(_summary(metrics, files))
    outcome = "success" if metrics["success"] else "failure"
    outcome_8bit = "success" if metrics["success_8bit"] else "failure"
    say(f"advcore: {attack.name} on {spec.name}: {outcome} (8-bit PNG: {outcome_8bit}), "
         f"{metrics['clean_name']} -> {metrics['adv_name']}, linf {metrics['linf']:.4g}, {metrics['seconds']:.2f} s")
    return EXIT_OK


