"""``python -m advcore geometry isotropy|symmetry|mantel|lipschitz|all``: the Geometry lab's numbers.

The same computation as the Geometry lab page (:func:`advcore.labs.geometry.probe_image`), so the page's
figures can be reproduced exactly with the command line it shows.
"""

from __future__ import annotations

import argparse

from advcore.cli import framework as fw
from advcore.errors import AdvlabError
from advcore.labs import geometry
from advcore.units import number, parse_eps

CHOICES = (*geometry.PROBES, "all")


def _geometry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("probe", choices=CHOICES,
                   help="isotropy (Eq. 4), symmetry (Eq. 6), mantel (topology, Sec. 2.3), lipschitz (Eq. 9) or all")
    g = p.add_argument_group("what to probe")
    g.add_argument("--model", required=True, help="registered model name (see the 'models' command)")
    g.add_argument("--image", required=True, metavar="PATH",
                   help="image file, '-' for stdin, a bundled sample name ('cat') or fashion-mnist:N")
    g = p.add_argument_group("probe")
    g.add_argument("--T", dest="T", type=fw.int_type("T", 2, geometry.MAX_T),
                   default=100, help="random points per radius (default: 100, as in the paper)")
    g.add_argument("--radii", type=fw.arg_type(geometry.parse_radii, "radii"), default=geometry.DEFAULT_RADII,
                   help="radii in [0,1] pixel units: start:stop:step, a list or one value "
                        f"(default: {geometry.DEFAULT_RADII}, the paper's 1 to 20 pixels)")
    g.add_argument("--norm", choices=geometry.NORMS, default="linf",
                   help="distance of the points from the image: linf (v in [-r, r]^D, default) or l2")
    g.add_argument("--layer", default=None,
                   help="layer phi for mantel and lipschitz: a module path or 'penultimate' (default)")
    _score_arg(g)
    g.add_argument("--mantel-layers", default="auto", metavar="auto|all|none|L1,L2",
                   help="also give Mantel r at these layers: all (every layer), none, or a comma list; auto "
                        "(default): all on 28x28 models, none on ImageNet models (a pass per layer)")
    g.add_argument("--no-random-map", dest="random_map", action="store_false",
                   help="skip the Mantel control: r of a random linear map with the layer's output size")
    g.add_argument("--seed", type=fw.int_type("seed", 0, 2**62), default=0,
                   help="seed of the random points (default: 0); the same seed gives every model the same points, and "
                        "the points at a radius come from (seed, probe, radius) alone, so adding or removing radii "
                        "leaves them unchanged")
    g.add_argument("--permutations", type=fw.arg_type(
        lambda s: fw.parse_int(s, name="permutations", low=0, high=geometry.MAX_PERMUTATIONS), "permutations"),
        default=geometry.DEFAULT_PERMUTATIONS, help="Mantel test permutations (default: 999; 0: no p-value)")
    g.add_argument("--fit-images", type=fw.positive_int("fit images", 3000), default=geometry.DEFAULT_FIT_IMAGES,
                   help="images the Lipschitz min-max normalisers are fitted on (default: 1000; ImageNet models "
                        "use the bundled photos)")
    g = p.add_argument_group("output")
    g.add_argument("--points", action="store_true",
                   help="also put every score, distance matrix and Lipschitz pair in the JSON")
    fw.add_run_options(g, json_help="write the results as JSON ('-': to stdout, instead of the table)",
                    threads_help="CPU threads for torch (default: torch's choice)",
                    quiet_help="no progress bar (the final line stays)")


def _score_arg(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--score", choices=tuple(geometry.SCORES), default=geometry.DEFAULT_SCORE,
                   help="the class score Phi of isotropy and symmetry: "
                        + "; ".join(f"{s.name}: {s.help}" for s in geometry.SCORES.values())
                        + f" (default: {geometry.DEFAULT_SCORE}, the paper's)")


def parse_confidence(text: str) -> float | None:
    """``--min-confidence``: a probability in [0, 1) (0: no filter)."""
    return geometry.check_confidence(parse_eps(text, name="min confidence"))


def mantel_layers(text: str, small: bool) -> list[str] | str:
    """``--mantel-layers`` as :func:`advcore.labs.geometry.probe_image` takes it."""
    t = text.strip()
    if t == "auto":
        return "all" if small else []
    if t == "none":
        return []
    if t == "all":
        return "all"
    names = [n.strip() for n in t.split(",") if n.strip()]
    if not names:
        raise AdvlabError("--mantel-layers needs auto, all, none or a comma-separated list of layers.")
    return names


def _num(v: float | None, fmt: str) -> str:
    return number(v, fmt, "-")


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def summary(d: dict) -> str:
    """The human table of a result dict (:meth:`advcore.labs.geometry.ImageGeometry.to_dict`)."""
    lines = [f"{d['model']} on {d['device']}: class {d['clean_class']} {d['clean_name']} "
             f"(softmax {d['clean_score']:.4f}); T={d['T']}, {d['norm']} radii, seed {d['seed']}, layer {d['layer']}, "
             f"score {d['score']}"]
    head = ["radius", "x255"]
    cols: list[list[str]] = [[f"{r:.4g}" for r in d["radii"]], [f"{r * 255:.3g}" for r in d["radii"]]]
    for kind in ("isotropy", "symmetry"):
        if kind in d:
            part = d[kind]
            head += [f"{kind[:3]} range", f"{kind[:3]} mean", f"{kind[:3]} wrong"]
            cols += [[_num(v, ".3e") for v in part["range"]], [_num(v, ".4f") for v in part["mean_score"]],
                     [str(v) for v in part["misclassified"]]]
    if "mantel" in d:
        head += ["mantel r", "p"]
        cols += [[_num(v, ".4f") for v in d["mantel"]["r"]], [_num(v, ".4f") for v in d["mantel"]["p_value"]]]
        if d["mantel"]["random_map"]:
            head.append("random map r")
            cols.append([_num(v, ".4f") for v in d["mantel"]["random_map"]["r"]])
    if len(head) > 2:
        rows = [head] + [list(row) for row in zip(*cols, strict=True)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    if d.get("mantel", {}).get("layers"):
        lines.append("mantel r by layer (mean over radii): " + ", ".join(
            f"{entry['layer']} {_num(_mean(entry['r']), '.3f')}" for entry in d["mantel"]["layers"]))
    if "lipschitz" in d:
        lip = d["lipschitz"]
        lin = lip["linear_fit"]
        share = _num(lip["share_ratio_below_1"], ".4f")
        lines.append(f"lipschitz: {lip['points']} points, share with ratio < 1: {share}"
                     f", ratio median {_num(lip['ratio_median'], '.4g')} (min {_num(lip['ratio_min'], '.4g')}, max "
                     f"{_num(lip['ratio_max'], '.4g')}); linear fit slope "
                     f"{_num(lin[0] if lin else None, '.4g')}")
        base = lip["global_baseline"]
        if base:
            lines.append(f"global baseline ({base['pairs']} pairs of unrelated clean images, same normalisers): "
                         f"share with ratio < 1: {_num(base['share_ratio_below_1'], '.4f')}, ratio median "
                         f"{_num(base['ratio_median'], '.4g')}")
        n = lip["normalisers"]
        lines.append(f"normalisers fitted on {n['source'] or str(n['samples']) + ' images'}: h [{n['h']['min']:.4g}, "
                     f"{n['h']['max']:.4g}], g [{n['g']['min']:.4g}, {n['g']['max']:.4g}]")
    return "\n".join(lines)


@fw.command("geometry", "local geometry of a model around one image: isotropy, symmetry, Mantel test, local Lipschitz",
         _geometry_args)
def cmd_geometry(args: argparse.Namespace) -> int:
    """Run :func:`advcore.labs.geometry.probe_image` and print or write its numbers."""
    from advcore import models

    spec = models.get_spec(args.model)
    sweep = mantel_layers(args.mantel_layers, spec.small)
    probes = list(geometry.PROBES) if args.probe == "all" else [args.probe]
    geometry.check_params(args.radii, args.T, args.norm, args.permutations)
    if "mantel" in probes and args.T < 3:
        raise AdvlabError("The Mantel test needs --T of at least 3.")
    if args.layer is not None and not ({"mantel", "lipschitz"} & set(probes)):
        fw.say(f"advcore: note: --layer only applies to mantel and lipschitz; ignored for {args.probe}.")
    json_out = None if args.json in (None, "-") else fw.output_path(args.json, flag="--json")
    image = fw.load_image(args.image)
    fw.set_threads(args.threads)
    with fw.ProgressBars(args.quiet, per_stage=False, unit="point") as progress:
        result = geometry.probe_image(args.model, image, probes=probes, radii=args.radii, T=args.T, layer=args.layer,
                                      norm=args.norm, seed=args.seed, permutations=args.permutations,
                                      fit_images=args.fit_images, score=args.score, mantel_layers=sweep,
                                      null=args.random_map, device=args.device, progress=progress)
    d = result.to_dict(points=args.points)
    d["image"] = args.image
    if json_out is not None:
        fw.write_file(json_out, (fw.json_text(d) + "\n").encode("utf-8"))
    if args.json == "-":
        print(fw.json_text(d))
    else:
        text = summary(d)
        print(text + (f"\nwrote {json_out}" if json_out is not None else ""))
    fw.say(f"advcore: geometry {args.probe} on {args.model}: {len(args.radii)} radii x {args.T} points, "
         f"{result.report.seconds:.1f} s")
    return fw.EXIT_OK


def _survey_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to probe")
    g.add_argument("--models", default="fmnist-naive,fmnist-pgd",
                   help="comma-separated Fashion-MNIST models, probed on the same points (default: "
                        "fmnist-naive,fmnist-pgd)")
    g.add_argument("--images", type=fw.int_type("images", 1, geometry.MAX_SURVEY_IMAGES), default=300,
                   help="the first N shipped Fashion-MNIST test images are considered (default: 300, the paper's)")
    g.add_argument("--min-confidence", type=fw.arg_type(parse_confidence, "min confidence"),
                   default=geometry.PAPER_MIN_CONFIDENCE,
                   help="keep the images every model gets right with a softmax probability above this (default: "
                        "0.99, the paper's filter; 0: keep every image and probe each model's predicted class)")
    g = p.add_argument_group("probe")
    g.add_argument("--T", dest="T", type=fw.int_type("T", 2, geometry.MAX_T), default=100,
                   help="random points per radius (default: 100, as in the paper)")
    g.add_argument("--radii", type=fw.arg_type(geometry.parse_radii, "radii"), default=geometry.DEFAULT_RADII,
                   help=f"radii in [0,1] pixel units (default: {geometry.DEFAULT_RADII})")
    g.add_argument("--norm", choices=geometry.NORMS, default="linf", help="linf (default) or l2")
    _score_arg(g)
    g.add_argument("--seed", type=fw.int_type("seed", 0, 2**62), default=0,
                   help="seed; image i's points come from a seed derived from (seed, i), listed as image_seeds in the "
                        "JSON, and at each radius from (that seed, radius) alone (default: 0)")
    g = p.add_argument_group("output")
    fw.add_run_options(g, json_help="write the results as JSON ('-': to stdout, instead of the table)",
                       threads_help="CPU threads for torch (default: torch's choice)",
                       quiet_help="no progress bar (the final line stays)")


def survey_summary(d: dict) -> str:
    """The human table of :meth:`advcore.labs.geometry.Survey.to_dict`."""
    filt = (f"every model right with softmax > {d['min_confidence']:g}" if d["min_confidence"] is not None
            else "no confidence filter")
    lines = [f"isotropy survey, score {d['score']} ({d['unit']}), T={d['T']}, {d['norm']} radii, seed {d['seed']}: "
             f"{len(d['kept'])} of {d['images']} test images kept ({filt}); correct: "
             + ", ".join(f"{m} {c}" for m, c in d["correct"].items())]
    head = ["radius", "x255"] + [f"{m} median range" for m in d["models"]]
    rows = [head] + [[f"{r:.4g}", f"{r * 255:.3g}"] + [_num(d["per_model"][m]["median_range"][i], ".3e")
                                                       for m in d["models"]] for i, r in enumerate(d["radii"])]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("median over every kept image and radius: " + ", ".join(
        f"{m} {_num(d['per_model'][m]['overall_median_range'], '.3e')}" for m in d["models"]))
    lines.append("per image (median over the radii), median over the kept images: " + ", ".join(
        f"{m} {_num(d['per_model'][m]['median_image_range'], '.3e')}" for m in d["models"]))
    for m in d["models"]:
        for o, share in d["per_model"][m]["share_smaller_than"].items():
            lines.append(f"images where {m}'s range is smaller than {o}'s: {_num(share, '.1%')}")
    return "\n".join(lines)


@fw.command("geometry-survey", "isotropy on many Fashion-MNIST test images with the paper's confidence filter, "
            "several models on the same points", _survey_args)
def cmd_geometry_survey(args: argparse.Namespace) -> int:
    """Run :func:`advcore.labs.geometry.survey` and print or write its numbers."""
    from advcore import models

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if not names:
        raise AdvlabError("--models needs at least one model name.")
    for name in names:
        models.get_spec(name)
    geometry.check_params(args.radii, args.T, args.norm, 0)
    json_out = None if args.json in (None, "-") else fw.output_path(args.json, flag="--json")
    fw.set_threads(args.threads)
    with fw.ProgressBars(args.quiet, per_stage=False, unit="point") as progress:
        result = geometry.survey(names, args.images, radii=args.radii, T=args.T, norm=args.norm, seed=args.seed,
                                 score=args.score, min_confidence=args.min_confidence, device=args.device,
                                 progress=progress)
    d = result.to_dict()
    if json_out is not None:
        fw.write_file(json_out, (fw.json_text(d) + "\n").encode("utf-8"))
    if args.json == "-":
        print(fw.json_text(d))
    else:
        print(survey_summary(d) + (f"\nwrote {json_out}" if json_out is not None else ""))
    fw.say(f"advcore: geometry-survey: {len(result.kept)} images x {len(names)} models x {len(args.radii)} radii x "
           f"{args.T} points, {result.seconds:.1f} s")
    return fw.EXIT_OK
