"""``python -m advcore compare``: every attack on a set of images, per source model, and the transfer matrix."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from advcore import shards
from advcore.cli import backend
from advcore.cli import framework as fw
from advcore.units import MAX_L2, percent_cell
from advcore.units import number as _num

if TYPE_CHECKING:
    from advcore.labs.compare import CompareResult


def _names(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",")]


def _compare_args(p: argparse.ArgumentParser) -> None:
    from advcore.labs import compare

    g = p.add_argument_group("what to attack")
    g.add_argument("--models", required=True, type=_names, metavar="A,B,...",
                   help="source models, comma-separated (e.g. efficientnet-lite0,efficientnet-lite1); all of one "
                        "dataset")
    g.add_argument("--targets", type=_names, metavar="A,B,...",
                   help="models the adversarial images are shown to (default: the source models)")
    g.add_argument("--images", metavar="DIR",
                   help="a folder of PNG/JPEG/WebP/BMP images, 'samples' (the bundled photos) or 'fashion-mnist' "
                        "(the shipped test subset); default: samples, or fashion-mnist for Fashion-MNIST models")
    limit = fw.positive_int("limit", compare.MAX_IMAGES)
    g.add_argument("--limit", type=limit, metavar="N",
                   help=f"use the first N images (fashion-mnist: default {compare.DEFAULT_DATASET_IMAGES})")
    g = p.add_argument_group("attacks")
    g.add_argument("--attacks", default="default", metavar="LIST",
                   help=f"'default' (the AGR paper's {', '.join(compare.DEFAULT_ATTACKS)}), 'all' or a comma-separated "
                        f"list of {', '.join(compare.ALL_ATTACKS)} (default: default)")
    g.add_argument("--norm", default="linf", choices=("linf", "l2"), help="threat model (default: linf)")
    g.add_argument("--eps", required=True, metavar="EPS",
                   help="budget in [0,1] pixel units: one value (4/255), a list (1/255,4/255) or a range "
                        "start:stop:step (1/255:8/255:1/255) for the ASR-against-eps sweep")
    g.add_argument("--steps", type=fw.arg_type(fw.parse_steps, "steps"), default=10,
                   help="gradient iterations (default: 10; FGSM: 1; not Square's: see --square-queries)")
    q = compare.SQUARE_QUERIES
    g.add_argument("--square-queries", type=fw.int_type("square queries", int(q.low), int(q.high)),
                   default=compare.DEFAULT_SQUARE_QUERIES, metavar="N",
                   help="Square's budget: model queries per image (its n_queries; its steps to success count "
                        f"queries; default: {compare.DEFAULT_SQUARE_QUERIES})")
    g.add_argument("--seed", type=fw.int_type("seed", 0, fw.SEED_MAX),
                   default=0, help="seed of PGD's random start (default: 0)")
    g.add_argument("--stop-on-success", default="all", choices=compare.STOP_POLICIES,
                   help="one stop policy for every iterative attack: 'all' stops each image at its first adversarial "
                        "iterate (AGR's Algorithm 1), 'none' runs every step (default: all, so the comparison is fair)")
    g.add_argument("--agr-alpha", default="eps", choices=compare.AGR_ALPHAS,
                   help="AGR's base step: 'eps' as Eq. 11, or 'eps/steps', I-FGSM's step (default: eps)")
    g.add_argument("--resolution", type=fw.int_type("resolution", compare.MIN_RESOLUTION, compare.MAX_RESOLUTION),
                   metavar="PX", help="ImageNet models only: attack and evaluate every model at PX x PX, so no "
                                      "target needs a resize (e.g. 224; default: each model's own input size)")
    g.add_argument("--batch-size",
                   type=fw.positive_int("batch size", 4096),
                   help=fw.batch_help(compare.DEFAULT_BATCH))
    g = p.add_argument_group("robustness radius (minimal-norm attacks: no budget, their own stop rules)")
    g.add_argument("--radius", default="", metavar="LIST",
                   help=f"also measure each image's smallest adversarial perturbation with these minimal-norm "
                        f"attacks, comma-separated ({', '.join(compare.RADIUS_ATTACKS)}), at their own defaults; "
                        "JSON key 'radius'")
    g.add_argument("--radius-sort", default="ascending", choices=("ascending", "descending"),
                   help="order of the per-image radius table, by the first radius attack's radius (default: "
                        "ascending, the most fragile image first)")
    g = p.add_argument_group("output")
    fw.add_run_options(g, json_help="write the whole run as JSON ('-': to stdout, instead of the tables)",
                    threads_help="CPU threads for torch (default: torch's choice)",
                    quiet_help="no progress bar or notes (the final line stays)")
    backend.add_backend_options(p)


def _pct(v: float | None) -> str:
    return percent_cell(v, width=5)


def _tables(result: CompareResult) -> str:
    """The per-attack table and the transfer matrix of each eps, or the ASR sweep for several eps."""
    from advcore.labs import compare

    lines = [f"{len(result.images)} image(s), {result.norm} ball, {result.steps} steps, seed "
             f"{result.seed}, on {result.device}; labels: each source's clean prediction",
             f"stop policy --stop-on-success {result.stop_on_success}: {compare.policy_words(result)}"
             + (f"; every model at {result.resolution}x{result.resolution}" if result.resolution else "")]
    if any(a in compare.QUERY_ATTACKS for a in result.attacks):
        lines.append(f"Square: {result.square_queries} queries per image (q: its steps to success are queries). "
                     f"{compare.QUERY_NOTE}")
    titles = result.attack_titles
    width = max(len(titles[a]) for a in result.attacks)
    if len(result.eps) > 1:
        for s in result.sources:
            lines.append(f"\nASR against eps on {s}")
            lines.append(" " * width + "  " + "  ".join(f"{e:>8.4g}" for e in result.eps))
            for a in result.attacks:
                lines.append(titles[a].ljust(width) + "  " + "  ".join(f"{_pct(v):>8}" for v in
                                                                      result.sweep[s][a].asr))
    run = compare.run_at(result, result.eps[-1])
    lines.append(f"\neps {run.eps:.4g}")
    head = (f"{'attack'.ljust(width)}  {'ASR':>6}  {'8-bit':>6}  {'cosine (sd)':>19}  {'AMP':>7}  {'L2':>7}  "
            f"{'Linf':>7}  {'p(clean)':>8}  {'steps to success':>16}  {'grad evals':>10}")
    for s in result.sources:
        lines.append(f"\nsource {s}")
        lines.append(head)
        for a in result.attacks:
            r = run.sources[s][a]
            cos = f"{_num(r.cosine_similarity, '.7f')} ({_num(r.cosine_similarity_std, '.1e')})"
            lines.append(f"{titles[a].ljust(width)}  {_pct(r.asr):>6}  {_pct(r.asr_8bit):>6}  {cos:>19}  "
                         f"{_num(r.amp, '.4g'):>7}  {_num(r.l2, '.4g'):>7}  {_num(r.linf, '.4g'):>7}  "
                         f"{_num(r.p_clean, '.3f'):>8}  "
                         f"{_num(r.steps_to_success, '.2f') + (' q' if a in compare.QUERY_ATTACKS else ''):>16}  "
                         f"{_num(r.grad_evals, '.2f'):>10}")
    lines.append("(AMP, L2, Linf in [0, 1] pixel units; p(clean): mean probability left on the clean label, 0-1)")
    lines += [f"- {t}" for t in compare.ranking_finding(result)]
    tw = max(len(t) for t in result.targets)
    sw = max(len(s) for s in result.sources)
    lines.append("\nclean agreement: share of images each target's clean prediction equals the source's")
    for s in result.sources:
        lines.append(f"{s.ljust(sw)}  " + "  ".join(f"{t} {_pct(result.agreement[s][t]).strip()}"
                                                     for t in result.targets))
    tables = [("transfer", "transfer"), ("transfer_8bit", "transfer after rounding to 8 bits")]
    if result.correct is not None:
        n_ok = ", ".join(f"{len(v)} on {s}" for s, v in result.correct.items())
        tables.append(("transfer_correct", f"transfer on the images every model classifies correctly ({n_ok})"))
    for key, what in tables:
        lines.append(f"\n{what}: success rate on each target (rows: source / attack; * white box)")
        lines.append(" " * (width + 2 + sw + 2) + "  ".join(t.rjust(max(tw, 7)) for t in result.targets))
        for s in result.sources:
            for a in result.attacks:
                cells = [(_pct(getattr(run.sources[s][a], key)[t]).strip() + ("*" if t == s else "")).rjust(
                    max(tw, 7)) for t in result.targets]
                lines.append(f"{s.ljust(sw)}  {titles[a].ljust(width)}  " + "  ".join(cells))
    lines += [f"- {titles[a]}: {compare.transfer_finding(result, a)}" for a in result.attacks]
    return "\n".join(lines)


def _radius_tables(result: CompareResult, descending: bool) -> str:
    """Per source: the per-image radius table sorted by the first radius attack, the medians and the finding."""
    from advcore.labs import compare

    if not result.radius:
        return ""
    lines = ["\nrobustness radius: the smallest adversarial perturbation each minimal-norm attack found per image",
             compare.RADIUS_NOTE]
    for s, by in result.radius.items():
        names = list(by)
        rows = compare.radius_rows(result, s, names[0], descending)
        iw = max(len(r["image"]) for r in rows)
        heads = [f"{compare.result_title(a)}, {compare.radius_norm_words(by[a].norm)}" for a in names]
        cells = [[compare.radius_text(r[f"{a}_radius"], by[a].norm, result.dataset) for a in names] for r in rows]
        cw = [max([len(h)] + [len(c[j]) for c in cells]) for j, h in enumerate(heads)]
        lines.append(f"\nsource {s} (sorted by {heads[0]}, {'descending' if descending else 'ascending'})")
        lines.append("image".ljust(iw) + "  " + "  ".join(h.rjust(w) for h, w in zip(heads, cw, strict=True)))
        for r, row in zip(rows, cells, strict=True):
            lines.append(r["image"].ljust(iw) + "  " + "  ".join(c.rjust(w) for c, w in zip(row, cw, strict=True)))
        lines.append("median".ljust(iw) + "  " + "  ".join(
            compare.radius_text(by[a].median, by[a].norm, result.dataset).rjust(w) for a, w in zip(names, cw,
                                                                                                   strict=True)))
        lines.append(f"- {compare.radius_finding(result, s)}")
    return "\n".join(lines)


@fw.command("compare", "every attack on a set of images per source model, with the transferability matrix",
         _compare_args)
def cmd_compare(args: argparse.Namespace) -> int:
    """Run :func:`advcore.labs.compare.compare`; print the tables, write the JSON."""
    from advcore.labs import compare

    sources, targets, dataset = compare.check_models(args.models, args.targets)
    compare.check_options(args.stop_on_success, args.agr_alpha, args.resolution, dataset)
    named = {"all": compare.ALL_ATTACKS, "default": compare.DEFAULT_ATTACKS}
    names = named.get(args.attacks.strip().lower()) or _names(args.attacks)
    attack_names = compare.check_attacks(names)
    radius = compare.check_radius([n for n in _names(args.radius) if n]) if args.radius.strip() else []
    eps = fw.parse_eps_list(args.eps, name="eps", high=1.0 if args.norm == "linf" else MAX_L2)
    eps = compare.check_eps(eps, args.norm, args.steps)
    json_out = None if args.json in (None, "-") else fw.output_path(args.json, flag="--json")
    items, notes, what = compare.resolve_images(args.images, dataset, args.limit)
    if not args.quiet:
        for note in notes:
            fw.say(f"advcore: note: {note}")
    fw.set_threads(args.threads)
    args.batch_size = fw.batch_size(args.batch_size, args.device, compare.DEFAULT_BATCH)
    options = dict(targets=targets, attack_names=attack_names, norm=args.norm, eps=eps, steps=args.steps,
                   seed=args.seed, stop_on_success=args.stop_on_success, agr_alpha=args.agr_alpha,
                   resolution=args.resolution, radius=radius, square_queries=args.square_queries)
    if backend.sharded(args):
        result = backend.run(args, shards.CompareJob(tuple(items), tuple(sources), options, args.batch_size,
                                                     args.device))
    else:
        with fw.ProgressBars(args.quiet, per_stage=False) as progress:
            result = compare.compare(items, sources, device=args.device, batch_size=args.batch_size,
                                     progress=progress, **options)
    result = dataclasses.replace(result, images_source=what, notes=list(notes))
    if json_out is not None:
        fw.write_file(json_out, (fw.json_text(result.to_dict()) + "\n").encode("utf-8"))
    if args.json == "-":
        print(fw.json_text(result.to_dict()))
    else:
        text = _tables(result) + _radius_tables(result, args.radius_sort == "descending")
        if json_out is not None:
            text += f"\n\nwrote {json_out}"
        print(text)
    fw.say(f"advcore: compare: {len(attack_names)} attack(s) x {len(sources)} source(s) x {len(eps)} eps on {what}, "
         f"{result.seconds:.1f} s")
    return fw.EXIT_OK
