"""Papers: each paper's headline claims next to advlab's measurement on its closest setting, with a verdict.

Every claim is declared once in :data:`CLAIMS` (paper, where in the paper, the paper's values, the measurement
it reads, the verdict rule); the CLI (``python -m advcore reproduce``), the Papers page and the README section
"What the measurements say" are generated from these declarations and the saved results in
``bench/results/papers/<paper>.json``. Measurements go through the labs' public functions only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from advcore import attacks, datasets, models
from advcore.errors import AdvlabError
from advcore.labs import defense, training
from advcore.paths import ROOT
from advcore.progress import ProgressFn, report

SCHEMA = "advlab.papers/1"
RESULTS_DIR = ROOT / "bench" / "results" / "papers"
VERDICTS = ("reproduced", "reproduced in trend", "not reproduced", "not testable here", "not measured")
RULES = {
    "ordering": "reproduced in trend when every pair the paper orders (a > b) is ordered the same way by advlab's "
                "numbers; not reproduced otherwise. Never 'reproduced': advlab's setting differs from the paper's "
                "(dataset, model), so only the ordering is comparable.",
    "bounds": "reproduced in trend when every measured reading lies on the paper's side of the bound stated "
              "(and every pair ordered a > b holds); not reproduced otherwise. The paper reports figures, not these "
              "numbers, on ImageNet/GTSRB ConvNets; the bound is the paper's statement read as a number.",
    "beats_baseline": "reproduced in trend when the defended row's accuracy exceeds the undefended row's under "
                      "every attack listed; not reproduced otherwise. The paper's value (ImageNet top-5) is not "
                      "comparable with a 10-class top-1 accuracy.",
    "none": "no measurement: the verdict is given with its reason.",
}

Measurement = dict  # what a paper's measure function returns: {"values": {...}, "setting": str, ...}


@dataclass(frozen=True)
class Claim:
    """One headline claim: ``values`` reads the compared numbers from the paper's measurement."""

    id: str
    paper: str
    where: str  # table/figure/section of the paper
    statement: str
    paper_values: dict[str, float]
    rule: str  # a key of RULES
    pairs: tuple[tuple[str, str], ...] = ()  # "ordering": (a, b) means the paper says a > b
    keys: dict[str, str] = field(default_factory=dict)  # paper key -> key of the measurement's values
    bounds: tuple[tuple[str, str, float], ...] = ()  # "bounds": (measured key, "<" or ">", value)
    controls: tuple[str, ...] = ()  # "bounds": measured keys shown beside the verdict (a control), not judged
    reason: str = ""  # for rule "none"
    verdict_if_none: str = "not testable here"


@dataclass(frozen=True)
class Paper:
    """A paper of /work/shared/papers and the one measurement its claims read."""

    key: str
    title: str
    file: str
    measure: Callable[[bool, ProgressFn | None], Measurement] | None
    quick: str = ""  # the quick settings, stated
    full: str = ""


# --------------------------------------------------------------------------- measurements

MAT_MODELS = {"Original": "fmnist-naive", "Single-strength": "fmnist-fgsm", "Mixed MAT": "fmnist-mat-mixed",
              "Parallel MAT": "fmnist-mat-parallel"}


def measure_mat(quick: bool, progress: ProgressFn | None = None) -> Measurement:
    """MAT Table 1's protocol on Fashion-MNIST: FGSM examples crafted once on the fixed original model
    (fmnist-naive, true labels), every model's accuracy on them, averaged over eps 0..0.3 (pixel units)."""
    n = 300 if quick else 3000
    eps = (0.0, 0.1, 0.2, 0.3) if quick else training.DEFAULT_EVAL_EPS
    x, y = datasets.load_subset(n)
    xf = datasets.to_float(x)
    nets = {k: models.load(name, device="cpu") for k, name in MAT_MODELS.items()}
    acc: dict[str, list[float]] = {k: [] for k in nets}
    for i, e in enumerate(eps):
        xa = xf if e == 0 else attacks.run("fgsm", nets["Original"], xf, y, eps=float(e), norm="linf").x_adv
        with torch.no_grad():
            for k, net in nets.items():
                acc[k].append(int((net(xa).argmax(1) == y).sum()) / n)
        report(progress, "MAT: FGSM crafted on fmnist-naive", i + 1, len(eps), {"eps": e})
    values = {k: round(100 * sum(a) / len(a), 2) for k, a in acc.items()}
    leak = [k for k, a in acc.items() if max(a[1:], default=0.0) > a[0]]
    note = (f"{', '.join(leak)}: accuracy under FGSM exceeds clean accuracy at some eps (a sign of label leaking, "
            "which inflates these averages)") if leak else "no model's FGSM accuracy exceeds its clean accuracy"
    return {"values": values, "note": note, "unit": "% average accuracy over the eps listed",
            "curves": {k: [round(v, 4) for v in a] for k, a in acc.items()}, "eps": [float(e) for e in eps],
            "models": MAT_MODELS,
            "setting": f"Fashion-MNIST (shipped test subset, first {n} images), FGSM L-inf crafted on fmnist-naive "
                       f"with true labels, eps {', '.join(f'{e:g}' for e in eps)} (pixel units; 0.3 = 76.5/255); "
                       "paper: MNIST, its own models"}


def measure_halftone(quick: bool, progress: ProgressFn | None = None) -> Measurement:
    """The abstract's setting on Fashion-MNIST: examples crafted on the undefended model (the attacker ignores
    the defense), top-1 accuracy of the undefended row and of the hybrid-trained row, via the Defense lab."""
    n = 200 if quick else 1000
    eps = 0.1
    table = defense.evaluate_defense("fmnist-naive", "floyd-steinberg", attack_names=defense.EVAL_ATTACKS,
                                     eps=(0.0, eps), n=n, steps=10, adaptive=False, progress=progress)
    names = {"fgsm": "FGSM", "ifgsm": "I-FGSM", "pgd": "PGD"}
    values: dict[str, float] = {}
    for a, title in names.items():
        for row in ("none", "hybrid"):
            values[f"{title} {row}"] = round(100 * table.values(row, a, "ignores")[-1], 2)
    return {"values": values, "unit": "% top-1 accuracy",
            "setting": f"Fashion-MNIST (first {n} images of the shipped subset), fmnist-naive vs the hybrid model, "
                       f"Floyd-Steinberg halftone, L-inf eps {eps:g} (25.5/255), 10 steps, examples crafted on the "
                       "undefended model; paper: ImageNet, top-5"}


AGR_ATTACKS = ("ifgsm", "mifgsm", "agr")
AGR_EPS = 10 / 255  # Table 1/3's L-inf budget of 10 (8-bit pixel units)


def measure_agr(quick: bool, progress: ProgressFn | None = None) -> Measurement:
    """AGR Tables 1 and 3's L-inf setting on Fashion-MNIST through the Compare lab: I-FGSM, MI-FGSM and AGR on
    fmnist-naive, eps 10/255, 10 steps, every attack under the same stop policy (stop at the first adversarial
    iterate), untargeted against the model's own clean prediction; white-box ASR and AMP (mean |v|)."""
    from advcore.labs import compare

    n = 50 if quick else 300
    res = compare.compare(compare.dataset_images("fashion-mnist", n), ["fmnist-naive"], attack_names=AGR_ATTACKS,
                          norm="linf", eps=AGR_EPS, steps=10, seed=0, device="cpu", progress=progress,
                          stop_on_success="all", agr_alpha="eps")
    stats = res.runs[0].sources["fmnist-naive"]
    values: dict[str, float] = {}
    for a in AGR_ATTACKS:
        values[f"ASR {a}"] = round(100 * stats[a].asr, 2)
        values[f"AMP {a}"] = round(float(stats[a].amp), 5) if stats[a].amp is not None else float("nan")
    return {"values": values,
            "unit": "ASR: % of images; AMP: mean |v| per pixel in [0, 1] units, averaged over every image",
            "note": compare.PAPER_AMP_NOTE,
            "setting": f"Fashion-MNIST (first {n} images of the shipped subset), fmnist-naive, L-inf eps 10/255, "
                       f"10 steps, {compare.STOP_TEXT['all']}, AGR alpha = eps (Eq. 11), untargeted; paper: "
                       "ImageNet, Inception-v3"}


POISON_KINDS = ("naive", "fgsm", "pgd")


def measure_poisoning(quick: bool, progress: ProgressFn | None = None) -> Measurement:
    """The paper's Tables 1 (adversarial poisoning, AP) and 2 (poison frog, PF) on digits with naive, FGSM- and
    PGD-trained Fashion-MNIST feature extractors and a linear SVM, eps 7/255, through the Poisoning lab."""
    from advcore.labs import poisoning

    trials = 5 if quick else 20
    ap = poisoning.run("ap", list(POISON_KINDS), eps=poisoning.DEFAULT_EPS, progress=progress)
    pf = poisoning.run("pf", list(POISON_KINDS), eps=poisoning.DEFAULT_EPS, trials=trials, progress=progress)
    values: dict[str, float] = {}
    for r in ap.rows:
        values[f"AP {r.kind}"] = round(float(r.poisoned_accuracy), 4)
        values[f"AP clean {r.kind}"] = round(float(r.clean_accuracy), 4)
    for r in pf.rows:
        values[f"PF {r.kind}"] = round(float(r.success_rate), 4)
    return {"values": values, "unit": "AP: accuracy under poisoning (fraction); PF: share of successful trials",
            "note": f"AP: {ap.verdict} PF: {pf.verdict}",
            "setting": f"digits (scikit-learn) on Fashion-MNIST-trained feature extractors (naive, FGSM, PGD), linear "
                       f"SVM C = {poisoning.DEFAULT_C:g}, eps 7/255; AP PGD {ap.steps} steps on every training image; "
                       f"PF {pf.steps} steps, {trials} trials; paper: VGG13 features, MNIST (AP) and CIFAR-10 (PF)"}


GEOMETRY_IMAGES = 10


def measure_geometry(quick: bool, progress: ProgressFn | None = None) -> Measurement:
    """Sec. 2.1 (isotropy, Eq. 4), 2.3 (Mantel, Fig. 4) and 2.4 (local Lipschitz, Eq. 9) on fmnist-naive through
    the Geometry lab, with its controls: Mantel r of a random linear map, and the global baseline ratio between
    pairs of test images."""
    import math

    from advcore.labs import geometry

    n_img = 3 if quick else GEOMETRY_IMAGES
    T = 30 if quick else 100
    radii = [1 / 255, 10 / 255]
    name = "fmnist-naive"
    model = models.load(name, device="cpu")
    norms = geometry.normalisers_for(name, None, "cpu")
    x = datasets.to_float(datasets.load_subset(n_img)[0])
    rng1, rng10, mantel_r, null_r, share = [], [], [], [], []
    for i in range(n_img):
        rep = geometry.analyse(model, x[i:i + 1], radii=radii, T=T, probes=["isotropy", "mantel", "lipschitz"],
                               seed=geometry.image_seed(0, i), permutations=0, normalisers=norms)
        rng1.append(float(rep.isotropy.range[0]))
        rng10.append(float(rep.isotropy.range[1]))
        mantel_r.append(float(sum(t.r for t in rep.topology.tests) / len(rep.topology.tests)))
        null_r.append(float(sum(rep.topology.null_r) / len(rep.topology.null_r)))
        share.append(rep.lipschitz.share_below_1)
        report(progress, "Geometry: fmnist-naive", i + 1, n_img, {"image": i})
    med = lambda v: float(torch.tensor(v, dtype=torch.float64).median())  # noqa: E731
    base = norms.baseline.to_dict()
    values = {"isotropy range r=1/255": med(rng1), "isotropy range r=10/255": med(rng10),
              "abs Mantel r penultimate": abs(sum(mantel_r) / n_img), "Mantel r random map": sum(null_r) / n_img,
              "local share L<1": sum(share) / n_img,
              "global baseline share L<1": base["share_ratio_below_1"] if base["share_ratio_below_1"] is not None
              else math.nan}
    null, glob = values["Mantel r random map"], values["global baseline share L<1"]
    note = (f"a random linear map of the same output size gives Mantel r {null:.3g}, so a linear map "
            f"{'keeps' if abs(null) >= 0.1 else 'also loses'} the topology by this measure; the global baseline "
            f"(pairs of test images) has {100 * glob:.0f}% of its ratios below 1, so Sec. 2.4's contrast (global "
            f"above 1, local below) {'is not' if glob > 0.5 else 'is'} seen on this model")
    return {"values": {k: round(v, 6) for k, v in values.items()}, "note": note,
            "unit": "isotropy: softmax score range; Mantel: Pearson r; Lipschitz: share of points",
            "global_baseline": base,
            "setting": f"Fashion-MNIST test images 0-{n_img - 1} (no confidence filter), fmnist-naive, Eq. 4 points "
                       f"T = {T} at r = 1/255 and 10/255 (L-inf), softmax score, seed 0, penultimate layer, min-max "
                       "normalisers fitted on 1,000 test images; paper: ImageNet/GTSRB ConvNets"}


PAPERS: dict[str, Paper] = {p.key: p for p in (
    Paper("mat", "Multi-strength adversarial training (MAT)", "multi-strength-adversarial-training.txt", measure_mat,
          quick="300 images, eps 0, 0.1, 0.2, 0.3", full="3,000 images, eps 0, 0.03, ..., 0.3"),
    Paper("halftone", "Halftoning defense (density-based representation)", "halftoning-defense-abstract.txt",
          measure_halftone, quick="200 images", full="1,000 images"),
    Paper("agr", "Adaptive gradient refinement attack (AGR)", "adaptive-gradient-refinement-attack.txt", measure_agr,
          quick="50 images", full="300 images"),
    Paper("poisoning", "Poisoning and robust features", "poisoning-robust-features.txt", measure_poisoning,
          quick="PF 5 trials", full="PF 20 trials"),
    Paper("geometry", "Local properties: isotropy, Mantel test, Lipschitz",
          "local-properties-isotropy-mantel-lipschitz.txt", measure_geometry,
          quick="3 images, T = 30", full="10 images, T = 100"),
)}


def _agr_values(kind: str) -> dict[str, float]:
    from advcore.labs.compare import PAPER
    return {k: float(v) for k, v in PAPER["linf"][kind].items()}


def _poison_values() -> dict[str, float]:
    from advcore.labs.poisoning import PAPER_TABLE2
    return {f"PF {k}": float(v) for k, v in PAPER_TABLE2.items()}


def _poison_ap_values() -> dict[str, float]:
    from advcore.labs.poisoning import PAPER_TABLE1
    return {f"AP {k}": float(v["MNIST"]) for k, v in PAPER_TABLE1.items()}


CLAIMS: tuple[Claim, ...] = (
    Claim("mat-parallel-vs-original", "mat", "Table 1 (MNIST)",
          "Parallel MAT keeps a higher average FGSM accuracy than the original model",
          {k: training.PAPER_MNIST[k] for k in ("Parallel MAT", "Original")}, "ordering",
          pairs=(("Parallel MAT", "Original"),)),
    Claim("mat-mixed-vs-original", "mat", "Table 1 (MNIST)",
          "Mixed MAT keeps a higher average FGSM accuracy than the original model",
          {k: training.PAPER_MNIST[k] for k in ("Mixed MAT", "Original")}, "ordering",
          pairs=(("Mixed MAT", "Original"),)),
    Claim("mat-parallel-vs-single", "mat", "Table 1 (MNIST)",
          "Parallel MAT beats single-strength adversarial training",
          {k: training.PAPER_MNIST[k] for k in ("Parallel MAT", "Single-strength")}, "ordering",
          pairs=(("Parallel MAT", "Single-strength"),)),
    Claim("halftone-hybrid", "halftone", "Abstract",
          "The hybrid model keeps its accuracy under FGSM, I-FGSM and PGD (top-5 80.97 / 78.77 / 81.56 %)",
          {k: float(v) for k, v in defense.PAPER_TOP5.items()}, "beats_baseline",
          keys={"FGSM": "FGSM", "I-FGSM": "I-FGSM", "PGD": "PGD"}),
    Claim("agr-white-box", "agr", "Table 1 (L-inf, Inc-v3)",
          "AGR's white-box ASR exceeds I-FGSM's and MI-FGSM's",
          {f"ASR {k}": v for k, v in _agr_values("white_box").items()}, "ordering",
          pairs=(("ASR agr", "ASR ifgsm"), ("ASR agr", "ASR mifgsm"))),
    Claim("agr-amp", "agr", "Table 3 (L-inf = 10, Inc-v3)",
          "AGR's perturbation is the smallest (lowest AMP); only the ordering is comparable (units unstated)",
          {f"AMP {k}": v for k, v in _agr_values("amp").items()}, "ordering",
          pairs=(("AMP ifgsm", "AMP agr"), ("AMP mifgsm", "AMP agr"))),
    Claim("poison-table1", "poisoning", "Table 1 (MNIST, eps 7/255)",
          "Robust features lose less accuracy under adversarial poisoning (PGD > FGSM > naive)",
          _poison_ap_values(), "ordering", pairs=(("AP pgd", "AP naive"), ("AP fgsm", "AP naive"))),
    Claim("poison-table2", "poisoning", "Table 2 (CIFAR, eps 7/255)",
          "Poison-frog success falls from naive to FGSM- to PGD-trained features", _poison_values(), "ordering",
          pairs=(("PF naive", "PF fgsm"), ("PF fgsm", "PF pgd"))),
    Claim("geometry-isotropy", "geometry", "Sec. 2.1, Fig. 1",
          "ConvNets are not locally isotropic: the score range is > 0 and grows from 1 to 10 pixels",
          {}, "bounds", pairs=(("isotropy range r=10/255", "isotropy range r=1/255"),),
          bounds=(("isotropy range r=1/255", ">", 0.0),)),
    Claim("geometry-mantel", "geometry", "Sec. 2.3, Fig. 4",
          "The Mantel score between input and output distance matrices is very low (-0.1 < rho < 0.1)",
          {"abs rho bound": 0.1}, "bounds", bounds=(("abs Mantel r penultimate", "<", 0.1),),
          controls=("Mantel r random map",)),
    Claim("geometry-lipschitz", "geometry", "Sec. 2.4, Fig. 6",
          "The local Lipschitz ratio is below 1 in most cases (> half the points)",
          {"share bound": 0.5}, "bounds", bounds=(("local share L<1", ">", 0.5),),
          controls=("global baseline share L<1",)),
    Claim("geometry-global-lipschitz", "geometry", "Sec. 2.4",
          "The global Lipschitz constant (Szegedy et al.'s layer-wise bound) exceeds 1", {}, "none",
          reason="advlab does not compute Szegedy et al.'s layer-wise bound; its global "
                 "control is the ratio between pairs of test images, shown beside the local Lipschitz claim"),
)


# --------------------------------------------------------------------------- verdicts


def _num(v: float) -> str:
    """Two decimals for percentages, four significant digits for small readings (AMP, shares)."""
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.4g}"


def verdict(claim: Claim, measured: dict[str, float] | None) -> tuple[str, str]:
    """The verdict of ``claim`` from advlab's ``measured`` values (None: not measured) and the one-line why,
    computed by the claim's rule (:data:`RULES`)."""
    if claim.rule == "none":
        return claim.verdict_if_none, claim.reason
    if not measured:
        return "not measured", "no saved result: run `python -m advcore reproduce " + claim.paper + "`"
    if claim.rule == "ordering":
        held = [(a, b) for a, b in claim.pairs if measured[a] > measured[b]]
        why = "; ".join(f"{a} {_num(measured[a])} {'>' if (a, b) in held else '<='} {b} {_num(measured[b])}"
                        for a, b in claim.pairs)
        return ("reproduced in trend" if len(held) == len(claim.pairs) else "not reproduced"), why
    if claim.rule == "bounds":
        parts, ok = [], True
        for a, b in claim.pairs:
            ok &= measured[a] > measured[b]
            parts.append(f"{a} {measured[a]:.3g} {'>' if measured[a] > measured[b] else '<='} {b} {measured[b]:.3g}")
        for k, op, bound in claim.bounds:
            held = measured[k] < bound if op == "<" else measured[k] > bound
            ok &= held
            parts.append(f"{k} {measured[k]:.3g} {op if held else ('>=' if op == '<' else '<=')} {bound:g}")
        parts += [f"control: {k} {measured[k]:.3g}" for k in claim.controls]
        return ("reproduced in trend" if ok else "not reproduced"), "; ".join(parts)
    if claim.rule == "beats_baseline":
        parts, ok = [], True
        for k in claim.keys.values():
            hyb, base = measured[f"{k} hybrid"], measured[f"{k} none"]
            ok &= hyb > base
            parts.append(f"{k}: hybrid {hyb:.2f} vs undefended {base:.2f}")
        return ("reproduced in trend" if ok else "not reproduced"), "; ".join(parts)
    raise AdvlabError(f"unknown verdict rule {claim.rule!r}")


def claims_of(paper: str) -> list[Claim]:
    """The claims declared for ``paper`` (a key of :data:`PAPERS`)."""
    return [c for c in CLAIMS if c.paper == paper]


def check_paper(name: str) -> str:
    """``name`` if it is a paper key, else an AdvlabError listing the keys."""
    if name not in PAPERS:
        raise AdvlabError(f"unknown paper {name!r}; choose from {', '.join(PAPERS)}")
    return name


def command(paper: str, quick: bool) -> str:
    """The exact command that produces ``paper``'s numbers."""
    return f"python -m advcore reproduce {paper}" + (" --quick" if quick else "")


def reproduce(paper: str, *, quick: bool = False, progress: ProgressFn | None = None) -> dict:
    """Measure ``paper``'s setting (quick or full) and give every claim its verdict: the JSON record."""
    p = PAPERS[check_paper(paper)]
    t0 = time.perf_counter()
    m = p.measure(quick, progress) if p.measure else None
    return record(paper, m, quick=quick, seconds=round(time.perf_counter() - t0, 1))


def record(paper: str, m: Measurement | None, *, quick: bool, seconds: float = 0.0) -> dict:
    """The JSON record of ``paper`` from its measurement ``m``: claims with paper values, measured values,
    verdicts and the command."""
    p = PAPERS[paper]
    rows = []
    for c in claims_of(paper):
        mv = None
        if m is not None and c.rule != "none":
            if c.rule == "ordering":
                keys = list(c.paper_values)
            elif c.rule == "bounds":
                keys = list(dict.fromkeys([k for pair in c.pairs for k in pair] + [k for k, _, _ in c.bounds]
                                          + list(c.controls)))
            else:
                keys = [f"{k} {r}" for k in c.keys.values() for r in ("none", "hybrid")]
            mv = {k: m["values"][k] for k in keys}
        v, why = verdict(c, mv)
        rows.append({"id": c.id, "where": c.where, "statement": c.statement, "paper_values": c.paper_values,
                     "measured": mv, "unit": (m or {}).get("unit"), "verdict": v, "why": why, "rule": RULES[c.rule]})
    return {"schema": SCHEMA, "paper": paper, "title": p.title, "file": p.file, "quick": quick,
            "settings": (p.quick if quick else p.full) or None, "setting": (m or {}).get("setting"),
            "command": command(paper, quick) if p.measure else None, "seconds": seconds,
            "measurement": m, "claims": rows}


def saved_path(paper: str, directory: str | Path = RESULTS_DIR) -> Path:
    """Where the full run of ``paper`` is saved."""
    return Path(directory) / f"{paper}.json"


def save(rec: dict, directory: str | Path = RESULTS_DIR) -> Path:
    """Write a record to ``bench/results/papers/<paper>.json``."""
    path = saved_path(rec["paper"], directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    return path


def load_saved(directory: str | Path = RESULTS_DIR) -> dict[str, dict]:
    """The saved record of every paper (a paper without a saved run gets its unmeasured record)."""
    out = {}
    for key in PAPERS:
        path = saved_path(key, directory)
        out[key] = json.loads(path.read_text()) if path.is_file() else record(key, None, quick=False)
    return out


README_START = "<!-- papers:start (generated by `python -m advcore reproduce --readme`) -->"
README_END = "<!-- papers:end -->"


def readme_section(records: dict[str, dict], sources: dict | None = None) -> str:
    """The README's "What the measurements say" body, generated from the saved records: the claims table, each
    paper's setting, then the findings bullets (:mod:`advcore.labs.findings`) read from ``sources`` (the result
    files; default: load them)."""
    from advcore.labs import findings

    lines = [README_START, "", "| Paper | Claim (where) | Paper | advlab | Verdict | Command |",
             "|---|---|---|---|---|---|"]
    for key in PAPERS:
        rec = records[key]
        for c in rec["claims"]:
            pv = ", ".join(f"{k} {v:g}" for k, v in c["paper_values"].items()) or "-"
            mv = ", ".join(f"{k} {v:g}" for k, v in c["measured"].items()) if c["measured"] else "-"
            cmd = f"`{rec['command']}`" if rec["command"] and c["measured"] else "-"
            lines.append(f"| {rec['title']} | {c['statement']} ({c['where']}) | {pv} | {mv} | "
                         f"**{c['verdict']}**: {c['why']} | {cmd} |")
    lines.append("")
    for key in PAPERS:
        if records[key].get("setting"):
            note = (records[key].get("measurement") or {}).get("note")
            tail = f". Note: {note.rstrip('.')}." if note else ""
            lines.append(f"- {records[key]['title']}: {records[key]['setting']}{tail}")
    lines.append("")
    lines += findings.bullets(findings.load_sources() if sources is None else sources, records)
    lines += ["", README_END]
    return "\n".join(lines)


def replace_readme(text: str, section: str) -> str:
    """``text`` (README.md) with its generated section replaced by ``section``."""
    i, j = text.find(README_START), text.find(README_END)
    if i < 0 or j < 0:
        raise AdvlabError("README.md has no generated papers section markers")
    return text[:i] + section + text[j + len(README_END):]


__all__: Sequence[str] = ("CLAIMS", "PAPERS", "VERDICTS", "verdict", "reproduce", "record", "save", "load_saved",
                          "readme_section", "replace_readme", "check_paper", "command")
