"""``python -m advcore defend``: the Defense lab's table (any registered defense, attacker ignoring or knowing it),
with its gradient-masking check. Each defense's flags (``--quality``, ``--bits``, ``--window``, ``--enlarge``,
``--bayer-size``, ...) are generated from its declared parameters (``Defense.PARAMS``)."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from advcore import shards
from advcore.cli import backend
from advcore.cli import framework as fw
from advcore.errors import AdvlabError


def _attack_list(text: str) -> list[str]:
    from advcore import attacks
    from advcore.labs import defense as lab

    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not names:
        raise AdvlabError("--attacks needs at least one of fgsm, ifgsm, pgd.")
    out = []
    for n in names:
        if n not in lab.EVAL_ATTACKS:
            raise AdvlabError(f"Unknown attack {n!r} for the defense table; choose from "
                              f"{', '.join(lab.EVAL_ATTACKS)}.")
        out.append(attacks.get_attack(n).name)
    if len(set(out)) != len(out):
        raise AdvlabError(f"--attacks lists an attack twice: {text!r}.")
    return out


def defense_choices() -> list[str]:
    """What ``--defense`` takes: every preset (one per halftone method) and every registered defense's name."""
    from advcore import defenses

    return list(dict.fromkeys([*defenses.presets(), *defenses.DEFENSES]))


def _method(text: str) -> str:
    key = str(text).strip().lower()
    if key not in defense_choices():
        raise AdvlabError(f"Unknown defense {text!r}; choose one of {', '.join(defense_choices())}.")
    return key


def declared_params() -> dict:
    """Every parameter any registered defense declares, by name (the first declaration of a name wins), and the
    defenses that declare it."""
    from advcore import defenses

    out: dict = {}
    for cls in defenses.DEFENSES.values():
        for p in cls.PARAMS:
            out.setdefault(p.name, (p, []))[1].append(cls.name)
    return out


def add_defense_flags(g: argparse._ArgumentGroup) -> None:
    """One flag per declared defense parameter (``--quality``, ``--bits``, ...), typed and ranged by its
    declaration; unset (None) unless given."""
    for name, (p, owners) in declared_params().items():
        text = (p.cli_help or p.help).rstrip(".") + f" ({', '.join(owners)}; default: {p.format(p.default)})"
        if p.kind == "choice":
            g.add_argument(p.flag, type=fw.arg_type(p.parse, name), metavar="|".join(p.choices),
                           help=text.replace("%", "%%"))
        else:
            g.add_argument(p.flag, type=fw.arg_type(p.parse, name), metavar=name.upper(),
                           help=text.replace("%", "%%"))


def defense_params(args: argparse.Namespace) -> dict:
    """The defense parameters given on the command line, checked against the chosen ``--defense``: a flag of
    another defense is refused (AdvlabError, exit 2)."""
    from advcore import defenses

    presets = defenses.presets()
    name, fixed = presets.get(args.defense, (args.defense, {}))
    cls = defenses.DEFENSES[name]
    mine = {p.name for p in cls.PARAMS}
    out = {}
    for pname, (p, owners) in declared_params().items():
        value = getattr(args, pname, None)
        if value is None:
            continue
        if pname not in mine:
            raise AdvlabError(f"{p.flag} is a parameter of {', '.join(owners)}, not of {args.defense}.")
        if pname in fixed and value != fixed[pname]:
            raise AdvlabError(f"{p.flag} {value} contradicts --defense {args.defense} ({pname} {fixed[pname]}).")
        out[pname] = value
    return out


def _defend_args(p: argparse.ArgumentParser) -> None:
    from advcore import defenses
    from advcore.attacks import MAX_STEPS
    from advcore.labs import defense as lab

    g = p.add_argument_group("what to evaluate")
    g.add_argument("--model", required=True,
                   help="the undefended (naively trained) model, e.g. fmnist-naive or efficientnet-lite0")
    g.add_argument("--defense", type=fw.arg_type(_method, "defense"), default="floyd-steinberg", metavar="NAME",
                   help=f"a halftone ({', '.join(defenses.METHODS)}) or another registered defense "
                        f"({', '.join(k for k in defenses.DEFENSES if k != 'halftone')}) (default: floyd-steinberg)")
    g = p.add_argument_group("defense parameters (each defense's own, from its declaration)")
    add_defense_flags(g)
    g = p.add_argument_group("the table's other rows")
    g.add_argument("--halftone-model", metavar="NAME",
                   help="model trained on halftones (default: fmnist-halftone for Fashion-MNIST; 'none': no row)")
    g.add_argument("--hybrid-model", metavar="NAME",
                   help="model trained on intensity + halftone images (default: fmnist-hybrid; 'none': no row)")
    g.add_argument("--reference-model", metavar="NAME",
                   help="adversarially trained model shown without the defense as the reference (default: "
                        "fmnist-pgd for Fashion-MNIST, by role; 'none': no row)")
    g.add_argument("--n", type=fw.positive_int("n", 10**6),
                   help="evaluation images (default: 500 of the shipped Fashion-MNIST test subset; ImageNet: "
                        "all 9 bundled photos)")
    g = p.add_argument_group("attacks")
    g.add_argument("--attacks", type=fw.arg_type(_attack_list, "attacks"), default="fgsm,ifgsm,pgd",
                   help="comma-separated, from fgsm, ifgsm, pgd (default: all three)")
    g.add_argument("--eps", type=fw.arg_type(fw.parse_eps_list, "eps"), default="0,0.05,0.1,0.2",
                   help="L-inf strengths: a list 0,0.05,0.1, a range 0:0.3:0.05, fractions 8/255 "
                        "(default: 0,0.05,0.1,0.2)")
    g.add_argument("--steps", type=fw.arg_type(fw.parse_steps, "steps"), default=10,
                   help="I-FGSM and PGD steps (default: 10)")
    exact = [c.name for c in defenses.DEFENSES.values() if c.differentiable]
    g.add_argument("--adaptive", action="store_true",
                   help="add the columns of the attackers who know the defense: its exact gradient where it is "
                        f"differentiable ({', '.join(exact)}), else BPDA (identity gradient); + EOT for a "
                        "randomised one (bayer-random, resize-pad)")
    g.add_argument("--strong-steps", type=fw.int_type("strong steps", 0, MAX_STEPS),
                   default=lab.STRONG_STEPS,
                   help="steps of the strong adaptive attacker, PGD through the defense (+EOT), counted in the "
                        "per-example worst "
                        "case (0: not run; default: 50)")
    g.add_argument("--restarts", type=fw.int_type("restarts", 1, lab.MAX_RESTARTS),
                   default=lab.RESTARTS,
                   help="random starts of the strong attacker; an image counts as correct only if it survives "
                        "all of them (default: 1)")
    g.add_argument("--eot", type=fw.positive_int("EOT samples", 1000), default=8,
                   help="draws of a randomised defense averaged per gradient step (default: 8)")
    g.add_argument("--seed", type=fw.int_type("seed", 0, fw.SEED_MAX),
                   default=0, help="seed of PGD's random start and of a randomised defense (default: 0)")
    g.add_argument("--batch-size", type=fw.positive_int("batch size", 100000), help=fw.batch_help(250))
    g = p.add_argument_group("output")
    fw.add_run_options(g, json_help="write the results as JSON ('-': to stdout, instead of the table)",
                    quiet_help="no progress bar (the final line stays)")
    backend.add_backend_options(p)


def _trained(args: argparse.Namespace, dataset: str, input_size, halftone: bool = True) -> dict[str, str]:
    from advcore import models
    from advcore.labs import defense as lab

    defaults = lab.trained_models_for(dataset)
    out = {}
    for key, given in (("halftone-trained", args.halftone_model), ("hybrid", args.hybrid_model),
                       ("adversarial", args.reference_model)):
        if key in lab.TRAINED_ROLES and not halftone:
            if given is not None and given.lower() != "none":
                flag = "--halftone-model" if key == "halftone-trained" else "--hybrid-model"
                raise AdvlabError(f"{flag} applies to a halftone defense only, not to {args.defense}.")
            continue
        name = defaults.get(key) if given is None else given
        if given is None and name not in models.names():
            continue
        if name is None or name.lower() == "none":
            continue
        spec = models.get_spec(name)
        if spec.input_size != tuple(input_size):
            raise AdvlabError(f"{name} takes {spec.input_size} images, not {tuple(input_size)} like {args.model}.")
        out[key] = name
    return out


def table_text(r) -> str:
    """The result (a :class:`~advcore.labs.defense.DefenseTable`) as a plain-text table: one line per row, attack
    and eps; one column per attacker, then the strong attacker and the per-example worst case (the same for every
    attack of a row); ``!`` marks an adaptive attacker who did worse than a non-adaptive one."""
    from advcore.units import eps_fraction_text

    cols = list(r.columns)
    ks = r.topk
    extra = (["strong"] if r.strong else []) + ["worst"]
    head = f"{'row':<30} {'attack':<6} {'eps':>7}  " + "  ".join(
        f"{c + ' ' + k:>15}" for c in cols + extra for k in ks)
    flagged = {(f.row, f.attack, f.eps, f.attacker) for f in r.flags}
    lines = [head]
    for row in r.rows:
        for a in r.attacks:
            for i, e in enumerate(r.eps):
                vals = []
                for c in cols + extra:
                    for k in ks:
                        v = (r.strong[row.key][k][i] if c == "strong" else r.robust[row.key][k][i] if c == "worst"
                             else r.values(row.key, a, c, k)[i])
                        mark = "!" if k == "top1" and (row.key, "pgd" if c == "strong" else a, e, c) in flagged else " "
                        vals.append(f"{v:>14.4f}{mark}")
                lines.append(f"{row.title[:30]:<30} {a:<6} {eps_fraction_text(e):>7}  " + "  ".join(vals))
    return "\n".join(lines)


def masking_text(r) -> str:
    """The gradient-masking check in plain text: the verdict, then one line per sign with its rule."""
    m = r.masking
    lines = [m["verdict"]]
    for c in m["checks"]:
        lines.append(f"  [{c['status']}] {c['title']} (rule: {c['rule']})" + (f": {c['text']}" if c["status"] != "pass"
                                                                             else ""))
    return "\n".join(lines)


@fw.command("defend", "accuracy under attack behind an input defense (halftone, JPEG, bit depth, median, resize-pad), "
            "attacker ignoring or knowing it, with a gradient-masking check",
         _defend_args, aliases=("defense",))
def cmd_defend(args: argparse.Namespace) -> int:
    """The Defense lab's table with :func:`advcore.labs.defense.evaluate_defense`."""
    from advcore import defenses, models
    from advcore.device import describe, pick_device
    from advcore.labs import defense as lab

    spec = models.get_spec(args.model)
    params = defense_params(args)
    defense = lab.make_defense(args.defense, seed=args.seed, params=params)  # checks every declared parameter
    trained = _trained(args, spec.dataset, spec.input_size, isinstance(defense, defenses.Halftone))
    json_out = None if args.json in (None, "-") else fw.output_path(args.json, flag="--json")
    n = args.n if args.n is not None else (500 if spec.dataset in ("fashion-mnist", "digits") else None)
    device = pick_device(args.device)
    fw.set_threads(args.threads)
    args.batch_size = fw.batch_size(args.batch_size, args.device, 250)
    options = dict(attack_names=args.attacks, eps=args.eps, n=n, steps=args.steps, adaptive=args.adaptive,
                   eot=args.eot, strong_steps=args.strong_steps, restarts=args.restarts, seed=args.seed,
                   trained=trained, params=params)
    if backend.sharded(args):
        count = len(lab.evaluation_images(spec.name, n)[0])
        result = backend.run(args, shards.DefendJob(spec.name, args.defense, count, options, args.batch_size,
                                                    args.device))
    else:
        with fw.ProgressBars(args.quiet, per_stage=False, unit="batch") as progress:
            result = lab.evaluate_defense(spec.name, defense, batch_size=args.batch_size, device=device,
                                          progress=progress, **options)
    result = dataclasses.replace(result, device=describe(device))
    if sys.argv[1:2] in (["defend"], ["defense"]):
        result = dataclasses.replace(result, command="python -m advcore " + shlex.join(sys.argv[1:]))
    if json_out is not None:
        fw.write_file(json_out, (fw.json_text(result.to_dict()) + "\n").encode("utf-8"))
    if args.json == "-":
        print(fw.json_text(result.to_dict()))
    else:
        what = result.defense.get("description") or result.defense.get("title") or result.defense["name"]
        lines = [f"{spec.name}: {what} on {result.n} images of the {result.data} "
                 f"(labels: {result.labels})", table_text(result), "", result.lesson, "", masking_text(result)]
        if json_out is not None:
            lines.append(f"wrote {json_out}")
        print("\n".join(lines))
    fw.say(f"advcore: defend {args.defense} on {spec.name}: {len(result.rows)} rows, {len(result.attacks)} "
         f"attack(s), {len(result.eps)} eps, {result.n} images, {result.seconds:.1f} s")
    return fw.EXIT_OK
