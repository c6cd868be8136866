"""The README's findings bullets ("What the measurements say"), generated from saved result files.

Each finding is declared once in :data:`FINDINGS`: the result files it reads (relative to the repository root), the
command that writes them, and a template that turns the files into one Markdown bullet. Every number in a bullet is
read from a file, and every comparative word ("larger", "does not show", "the opposite of") is chosen by comparing
those numbers, so a changed result changes the sentence. ``python -m advcore reproduce --readme`` writes them into
README.md (through :func:`advcore.labs.papers.readme_section`); a test checks README.md against them.
Only ``json`` is imported: reading the results needs no model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advcore.paths import ROOT

Sources = Mapping[str, Any]  # file key -> parsed JSON (None when the file is missing)


@dataclass(frozen=True)
class Finding:
    """One README bullet: ``files`` (key -> path under the repository root) read by ``render``."""

    key: str
    title: str
    files: dict[str, str]
    command: str  # what writes the files
    papers: tuple[str, ...]  # the Papers records (bench/results/papers/<key>.json) it reads
    render: Callable[[Sources, Mapping[str, dict]], str]


# --------------------------------------------------------------------------- wording chosen from the numbers


def _p(v: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * v:.1f}%"


def _e255(v: float) -> str:
    """An L-inf budget in [0, 1] pixel units as x/255."""
    return f"{v * 255:.3g}/255"


def _cmp(a: float, b: float, more: str, less: str, same: str = "equal to") -> str:
    """``more`` when a > b, ``less`` when a < b, ``same`` otherwise."""
    return more if a > b else less if a < b else same


def _frac(k: int, n: int) -> str:
    return f"{k}/{n}"


def _rank(values: Mapping[str, float], key: str) -> str:
    """Where ``values[key]`` stands: 'the largest', 'the smallest' or 'between the others'."""
    v = values[key]
    others = [x for k, x in values.items() if k != key]
    if all(v > o for o in others):
        return "the largest"
    if all(v < o for o in others):
        return "the smallest"
    return "neither the largest nor the smallest"


# --------------------------------------------------------------------------- the bullets

ATTACK_TITLES = {"fgsm": "FGSM", "ifgsm": "I-FGSM", "pgd": "PGD", "mifgsm": "MI-FGSM", "agr": "AGR"}


def agr_finding(src: Sources, records: Mapping[str, dict]) -> str:
    """AGR against I-FGSM and MI-FGSM on the bundled photos, from compare.json's stop-policy study."""
    pol = src["compare"]["policies"]
    blocks = {(b["stop_on_success"], b["agr_alpha"]): b for b in pol["imagenet"]}
    fair = blocks[("all", "eps")]
    eps = max(r["eps"] for r in fair["table"])

    def rows(block: dict) -> dict[str, dict]:
        return {r["attack"]: r for r in block["table"] if r["eps"] == eps}

    row, n = rows(fair), fair["n_images"]
    names = [a for a in ("ifgsm", "mifgsm", "agr") if a in row]
    source = row["agr"]["source"]
    fooled = {a: round(row[a]["asr"] * n) for a in names}
    if all(k == n for k in fooled.values()):
        asr = f"every attack fools {n}/{n}"
    else:
        asr = "fooled: " + ", ".join(f"{ATTACK_TITLES[a]} {_frac(fooled[a], n)}" for a in names)
    amp = {a: row[a]["amp"] for a in names}
    rank = _rank(amp, "agr")
    paper = next(c for c in records["agr"]["claims"] if c["id"] == "agr-amp")["paper_values"]
    paper_rank = _rank({k.split()[-1]: v for k, v in paper.items()}, "agr")
    relation = ("the same ordering as" if rank == paper_rank else
                "the opposite of" if {rank, paper_rank} == {"the largest", "the smallest"} else "not the ordering of")
    steps = row["agr"]["steps_to_success"]
    why = (f"AGR stops after its first step (mean steps to success {steps:.3g}), which with alpha = eps (Eq. 11) is an "
           "FGSM step, so " if steps == 1 else f"AGR needs {steps:.3g} steps on average, and ")
    g = {a: row[a]["grad_evals"] for a in names}
    grads = (f"AGR needs {g['agr']:.3g} gradient evaluations per image against {g['ifgsm']:.3g} for I-FGSM "
             f"({_cmp(g['agr'], g['ifgsm'], 'more', 'fewer', 'as many')})")
    full = blocks.get(("none", "eps"))
    n_steps = f"{rows(full)['ifgsm']['grad_evals']:.0f} steps, " if full else ""  # running every step: 1 gradient each
    out = (f"- **AGR against I-FGSM and MI-FGSM** ({source}, {n} bundled photos, L-inf {_e255(eps)}, "
           f"{n_steps}`bench/compare.py --policies`, `bench/results/compare.json`): with every "
           f"iterative attack stopping at its first adversarial iterate, {asr}. {why}its perturbation is {rank} of the "
           f"three (AMP {amp['agr']:.3g}, against {amp['ifgsm']:.3g} for I-FGSM and {amp['mifgsm']:.3g} for "
           f"MI-FGSM), {relation} the paper's Table 3 (AGR {paper['AMP agr']:g}, I-FGSM {paper['AMP ifgsm']:g}, "
           f"MI-FGSM {paper['AMP mifgsm']:g}; only its ordering is comparable). {grads}.")
    small = blocks.get(("all", "eps/steps"))
    if small:
        r2 = rows(small)
        out += (f" With AGR's base step eps/steps instead, its AMP is {r2['agr']['amp']:.3g}, "
                f"{_cmp(r2['agr']['amp'], r2['ifgsm']['amp'], 'above', 'below')} I-FGSM's {r2['ifgsm']['amp']:.3g}.")
    if full:
        r3 = rows(full)
        amp3 = {a: r3[a]["amp"] for a in names}
        out += (f" Running every step (no stop on success, {r3['agr']['grad_evals']:.3g} gradient evaluations each), "
                f"AGR's AMP {amp3['agr']:.3g} is {_rank(amp3, 'agr')} (I-FGSM {amp3['ifgsm']:.3g}, MI-FGSM "
                f"{amp3['mifgsm']:.3g}).")
    return out


def _image_range(key: str) -> tuple[int, int] | None:
    """The first and last test image of an unfiltered geometry reading's key (``images_0_9_no_filter``)."""
    m = re.fullmatch(r"images_(\d+)_(\d+)_no_filter", key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _images(key: str) -> str:
    span = _image_range(key)
    return f"test images {span[0]}-{span[1]} with no filter" if span else key


def geometry_finding(src: Sources, records: Mapping[str, dict]) -> str:
    """Isotropy, Mantel r and local Lipschitz of fmnist-naive and fmnist-pgd with their controls (geometry.json)."""
    rd = src["geometry"]["results"]["readings"]
    sm = rd["scores"]["softmax"]
    unf_key = next(k for k in sm if k.endswith("_no_filter"))
    filt_key = next(k for k in sm if k.startswith("paper_filter_"))
    unf, filt, mar = sm[unf_key], sm[filt_key], rd["scores"]["margin"][filt_key]
    shown = filt_key.rsplit("_", 1)[1]
    lo, hi = rd["radii"].split(":")[:2]
    a, b = "fmnist-naive", "fmnist-pgd"
    order = {k: d[a] > d[b] for k, d in (("unf", unf), ("filt", filt), ("margin", mar))}
    ratio = filt[b] / filt[a]
    ratio_txt = (f"pgd about {ratio:.0f}x naive" if ratio >= 1.5 else f"naive about {1 / ratio:.0f}x pgd"
                 if ratio <= 1 / 1.5 else "within 1.5x of each other")
    flip = "the opposite of" if order["filt"] != order["unf"] else "the same ordering as"
    again = "again" if order["margin"] == order["unf"] else "this time"
    larger = "naive" if order["margin"] else "pgd"
    agree = len(set(order.values())) == 1
    na, pg = rd[a], rd[b]
    cli = f"python -m advcore geometry-survey --T {rd['T']} --radii {rd['radii']} --seed {rd['seed']}"
    n_unf = _image_range(unf_key)[1] + 1
    pen = {m: rd[m]["mantel_r_mean_by_layer"]["penultimate"] for m in (a, b)}
    first = next(iter(k for k in na["mantel_r_mean_by_layer"] if k != "penultimate"))
    conv = {m: rd[m]["mantel_r_mean_by_layer"][first] for m in (a, b)}
    null = na["random_map_r_mean"]
    within = "within" if all(abs(v) < 0.1 for v in pen.values()) else "outside"
    keeps = _cmp(max(pen.values()), null, "more", "less", "as much")
    gb = {m: rd[m]["global_baseline"] for m in (a, b)}
    local = {m: rd[m]["local_share_below_1_mean"] for m in (a, b)}
    gshare = min(g["share_ratio_below_1"] for g in gb.values())
    local_txt = ("are all below 1" if min(local.values()) == 1 else
                 f"are below 1 for {_p(local[a])} (naive) and {_p(local[b])} (pgd) of the points")
    if gshare > 0.5:
        most = "all" if gshare == 1 else "at least " + _p(gshare)
        lip = (f"but so are {most} of the ratios over {gb[a]['pairs']} pairs of unrelated clean test images with the "
               f"same normalisers (median {gb[a]['ratio_median']:.2f} and {gb[b]['ratio_median']:.2f}): ratios below 1 "
               "come from the min-max normalisers, not from local smoothness")
    else:
        lip = (f"while only {_p(gshare)} of the ratios over {gb[a]['pairs']} pairs of unrelated clean test images "
               "are below 1: the paper's contrast (global above 1, local below) is seen")
    return (f"- **Geometry** (`bench/geometry.py`, results in `bench/results/geometry.json`: T={rd['T']}, "
            f"radii {lo} to {hi}, seed {rd['seed']}). On Fashion-MNIST {_images(unf_key)}, the median isotropy range "
            f"of the softmax score is {unf[a]:.4f} for fmnist-naive and {unf[b]:.4f} for fmnist-pgd (naive "
            f"{_cmp(unf[a], unf[b], 'the larger', 'the smaller', 'the same')}), the median over every image and radius "
            f"of `{cli} --images {n_unf} --min-confidence 0`. With the paper's filter (images both models get right "
            f"with > 99% confidence, {filt['kept']} of the first {shown}: `{cli} --images {shown}`) the softmax ranges "
            f"become {filt[a]:.2g} and {filt[b]:.2g}, {ratio_txt}, {flip} the unfiltered reading; the softmax "
            f"saturates on such images, and the non-saturating logit margin (the same with `--score margin`) "
            f"gives {mar[a]:.2f} and {mar[b]:.2f}, {larger} the larger {again}. "
            + ("The three readings order the models the same way, but logit scales differ between the models, so "
               "even that does not settle which model is more isotropic. " if agree else
               "Logit scales differ between the models, so none of these settles which model is more isotropic. ")
            + f"Mantel r (the first {len(na['images'])} kept images, the mean over them of `python -m advcore geometry "
            f"all --model M --image fashion-mnist:I --seed S --T {rd['T']} --radii {rd['radii']} --permutations 0` "
            f"with S the image's seed in the survey JSON's `image_seeds`): {pen[a]:.3f} (naive) and {pen[b]:.3f} (pgd) "
            f"at "
            f"the penultimate layer, {within} the paper's |r| < 0.1, but {conv[a]:.2f} and {conv[b]:.2f} at the first "
            f"conv layer and {null:.2f} for a random linear map of the same output size: random points on the 784-d "
            f"sphere are nearly equidistant, so r must be read against that null, and the penultimate layer keeps "
            f"{keeps} of the arrangement than a random map does. Local Lipschitz ratios (the same commands; the median "
            f"over the images of each image's median: "
            f"{na['local_ratio_median_of_medians']:.3f} naive, {pg['local_ratio_median_of_medians']:.3f} pgd) "
            f"{local_txt}, {lip}.")


def halftone_finding(src: Sources, records: Mapping[str, dict]) -> str:
    """Robust accuracy of the halftone rows under PGD at eps 0.1 from the shipped Defense lab tables."""
    fs, rb = src["floyd-steinberg"], src["bayer-random"]
    e = 0.1
    i, j = fs["eps"].index(e), rb["eps"].index(e)
    steps, strong = fs["attack_params"]["steps"], fs["attack_params"]["strong_steps"]

    def ign(d: dict, row: str, k: int) -> float:
        return d["accuracy"][row]["pgd"]["ignores"]["top1"][k]

    def rob(d: dict, row: str, k: int) -> float:
        return d["robust"][row]["top1"][k]

    def pair(d: dict, row: str, k: int) -> str:
        a, w = ign(d, row, k), rob(d, row, k)
        but = "but" if w < a else "and"
        return f"{_p(a)} against the attacker who ignores the halftone {but} {_p(w)} in the worst case"

    flagged = len({(f["row"], f["eps"], f["attack"], f["attacker"]) for f in fs["flags"]})
    ht_b = rb["accuracy"]["halftone-trained"]["pgd"]
    no_eot, eot = ht_b["bpda"]["top1"][j], ht_b["knows"]["top1"][j]
    return (f"- **Halftoning** (Fashion-MNIST, PGD-{steps} at eps {e:g} ({_e255(e)}), the shipped tables: "
            f"Floyd-Steinberg on {fs['n']} images, random Bayer on {rb['n']}, made by the `defend` commands recorded "
            f"in `assets/defense/*.json`). Robust accuracy is the per-example worst case over every attacker: "
            f"ignoring the defense (the paper's protocol), white-box on the bare network, BPDA-PGD-{steps} (with and "
            f"without EOT for random Bayer), BPDA-PGD-{strong} and all three attacks. Floyd-Steinberg: no defense "
            f"{_p(rob(fs, 'none', i))}; the halftone-trained model {pair(fs, 'halftone-trained', i)}, the hybrid "
            f"{pair(fs, 'hybrid', i)}; the adversarially trained fmnist-pgd (no halftone, the reference row) "
            f"{_p(rob(fs, 'adversarial', i))}. In {flagged} of its cells an attacker who knows the defense did worse "
            f"than one who does not (flagged on the page). Random Bayer: EOT's effect alone (BPDA-PGD-{steps}, one "
            f"draw per step against the mean of {rb['eot']}) takes the halftone-trained model "
            f"{_cmp(no_eot, eot, 'down', 'up', 'neither up nor down')} from {_p(no_eot)} to {_p(eot)}; its worst case "
            f"is {_p(rob(rb, 'halftone-trained', j))}, the hybrid's {_p(rob(rb, 'hybrid', j))}. On ImageNet there is "
            "no halftone-trained model, so the Defense lab's ImageNet section is a distribution-shift demo (Lite0's "
            "clean top-1 and top-5 answers after halftoning the photos); its figures are measured on that page and "
            "not saved to a result file, so none is quoted here.")


def poisoning_finding(src: Sources, records: Mapping[str, dict]) -> str:
    """The poisoning tables: AP and clean accuracy from the Papers record, label flip, poison frogs in every
    setting from poisoning.json, the split extractors' training times from their model cards."""
    rec = records["poisoning"]
    m = (rec.get("measurement") or {}).get("values") or {}
    kinds = ("naive", "fgsm", "pgd")
    paper = next(c for c in rec["claims"] if c["id"] == "poison-table1")["paper_values"]
    st = src["poisoning"]["pf_settings"]
    dig = {r["kind"]: r for r in st["digits"]["rows"]}
    scale = sum(r["feature_scale"] for r in dig.values()) / len(dig)
    cs = [r["C_scaled"] for r in dig.values()]
    c = st["digits"]["C"]
    lf = {r["kind"]: r for r in src["poisoning-lf"]["rows"]}
    gaps = [100 * lf[k]["gap"] for k in kinds if k in lf]
    helped = all(m[f"AP {k}"] > m["AP naive"] for k in ("fgsm", "pgd"))
    d0 = dig["naive"]
    alpha_div = d0["eps"] / d0["alpha"]
    pf = ", ".join(f"{dig[k]['successes']}/{dig[k]['trials']}" for k in kinds)
    nearer = d0["closer_than_neighbour"]
    sp = {r["kind"]: r for r in st["split"]["rows"]}
    sn = {r["kind"]: r for r in st["split-nearest-8"]["rows"]}
    cards = {k: src[f"card-{k}"] for k in ("split-naive", "split-pgd")}
    shows = all(s["split-naive"]["success_rate"] > s["split-pgd"]["success_rate"] for s in (sp, sn))
    closer = {k: (sn[k]["closer_than_neighbour"], sn[k]["trials"]) for k in sn}
    all_fail = all(r["successes"] == 0 for r in sn.values())
    im = st["imagenet"]["rows"][0]
    im_ok = im["successes"] > 0
    out = (f"- **Poisoning** (eps {st['digits']['eps_255']:g}/255, LinearSVC "
           f"with the paper's C {c:g} on the raw features, which is C ~ {min(cs):.0f}-{max(cs):.0f} on the features "
           f"divided by their mean norm of {scale:.0f}; clean digits accuracy "
           + ", ".join(f"{_p(m[f'AP clean {k}'])} {k}" for k in kinds)
           + "): adversarial poisoning takes the SVM on naive features to "
           f"{_p(m['AP naive'])}, on FGSM-trained features to {_p(m['AP fgsm'])} and on PGD-trained ones to "
           f"{_p(m['AP pgd'])} (the paper: {paper['AP naive']:.0%}, {paper['AP fgsm']:.0%}, {paper['AP pgd']:.0%}; "
           f"robust features {'lose less here too' if helped else 'do not lose less here'}); a "
           f"{lf['naive']['share']:.0%} label flip changes accuracy by {min(gaps):+.1f} to {max(gaps):+.1f} pp "
           f"(`bench/results/poisoning-lf.json`). Poison frogs are crafted with {d0['steps']} signed steps of a "
           + (f"decaying size (eps/{alpha_div:g} (1 - t/{d0['steps']}), keeping the closest iterate)"
              if d0["schedule"] == "decay" else f"constant size eps/{alpha_div:g}")
           + f"; on digits {pf} succeed for naive, FGSM and PGD features"
           + (", faithful to the paper (PF ineffective on MNIST even at 25/255)" if d0["success_rate"] <= 0.5 else
              ", unlike the paper (PF ineffective on MNIST even at 25/255)")
           + f": the poisons close the feature distance from {d0['mean_distance_before']:.2f} to "
           f"{d0['mean_distance_after']:.2f} (naive), "
           + ("never" if nearer == 0 else f"in {nearer}/{d0['trials']} trials")
           + f" nearer than the target's nearest same-class training digit ({d0['mean_neighbour_distance']:.2f}). "
           f"The split setting (`split-naive`, `split-pgd`: small CNNs trained on Fashion-MNIST classes 0-4 only, "
           f"{cards['split-naive']['training_seconds']:.0f} s naive / {cards['split-pgd']['training_seconds']:.0f} s "
           f"PGD to train (their model cards), `bench/poisoning_split.py`; task Sandal against Sneaker) "
           f"{'shows' if shows else 'does not show'} Table 2's effect here: "
           f"{sp['split-naive']['successes']}/{sp['split-naive']['trials']} (naive) and "
           f"{sp['split-pgd']['successes']}/{sp['split-pgd']['trials']} (PGD) with random bases, and "
           f"{sn['split-naive']['successes']}/{sn['split-naive']['trials']} and "
           f"{sn['split-pgd']['successes']}/{sn['split-pgd']['trials']} with {sn['split-naive']['poisons']} poisons on "
           f"the nearest bases, "
           + ("although" if all_fail else "and")
           + f" those poisons end nearer the target than its nearest same-class training image in "
           f"{_frac(*closer['split-naive'])} (naive) and {_frac(*closer['split-pgd'])} (PGD) trials"
           + (f": with C {c:g} on raw features, a few colliding points are absorbed as slack rather than moving the "
              f"boundary past the target (mean margin {sn['split-naive']['mean_margin_before']:.2f} -> "
              f"{sn['split-naive']['mean_margin_after']:.2f}). " if all_fail else ". ")
           + f"ImageNet (the paper's check, Sec. 4.1): Lite0 features of Fashion-MNIST Sandal against Sneaker "
           f"(ImageNet's 'sandal' and 'running shoe') drawn as photos, {im['train_images']} training and "
           f"{im['test_images']} test images, a departure from Shafahi et al.'s dog-against-fish photos on "
           "InceptionV3 since no labelled ImageNet photos install offline (clean accuracy "
           f"{_p(im['clean_accuracy'])}; feature scale {im['feature_scale']:.1f}, so C {im['C_scaled']:.0f} on "
           f"scaled features): {im['successes']}/{im['trials']} poison frogs succeed with "
           + ("one poison" if im["poisons"] == 1 else f"{im['poisons']} poisons")
           + f" per target from {im['base_choice']} bases ({st['imagenet']['seconds']:.0f} s on the shared 2-core "
           "CPU; the paper's "
           f"reimplementation on ImageNet features: {st['imagenet']['paper']['imagenet']:.0%}), the poison's distance "
           "falling from "
           f"{im['mean_distance_before']:.2f} to {im['mean_distance_after']:.2f}, "
           f"{_cmp(im['mean_neighbour_distance'], im['mean_distance_after'], 'nearer', 'farther', 'as near')} than the "
           f"target's nearest same-class training image ({im['mean_neighbour_distance']:.2f}; "
           f"{_frac(im['closer_than_neighbour'], im['trials'])} poisons nearer)"
           + (": the converging crafting makes poison frogs work on these features" if im_ok else "")
           + ". Measured with `python -m advcore poison ap|lf --features naive,fgsm,pgd` and "
           "`bench/poisoning.py --settings` (`bench/results/poisoning.json`).")
    return out


def training_finding(src: Sources, records: Mapping[str, dict]) -> str:
    """MAT's Table 1 under the paper's protocol with R+FGSM and the label-leaking evidence
    (training-table1-paper.json), and the small retraining check (training-retrain-small.json)."""
    t = src["table1-paper"]
    rows = sorted(t["models"].items(), key=lambda kv: -kv[1]["average_accuracy"])
    m = t["models"]
    mix, par = m["fmnist-mat-mixed"], m["fmnist-mat-parallel"]
    single = {k: m[k] for k in ("fmnist-fgsm", "fmnist-pgd")}
    mat_over = all(v["average_accuracy"] > s["average_accuracy"] for v in (mix, par) for s in single.values())
    mat_under_r = all(v["rfgsm_average"] < s["rfgsm_average"] for v in (mix, par) for s in single.values())
    leaks = [(k, v["label_leaking"]) for k, v in m.items() if (v.get("label_leaking") or {}).get("broken")]
    def leak(k: str, x: dict) -> str:
        where = "above" if x["above_clean"] else f"{x['clean'] - x['fgsm']:.3f} below"
        return (f"{k} white-box FGSM {x['fgsm']:.3f} at eps {x['eps']:g} ({where} its clean {x['clean']:.3f}), "
                f"R+FGSM {x['rfgsm']:.3f} there")

    leak_txt = "; ".join(leak(k, x) for k, x in leaks)
    r = src["retrain-small"]["curves"]["fgsm"]
    acc = r["accuracy"]
    rises = any(b > a for a, b in zip(acc, acc[1:], strict=False))
    cmd = src["retrain-small"]["command"]
    size = {k: re.search(rf"--{k} (\d+)", cmd) for k in ("epochs", "limit")}
    words = {"epochs": "epoch(s)", "limit": "training images"}
    size_txt = "".join(f"{int(m.group(1)):,} {words[k]}, " for k, m in size.items() if m)
    return (f"- **Training (MAT's Table 1)** (`python -m advcore table1 --protocol paper`, "
            f"`bench/results/training-table1-paper.json`, {t['n']:,} images, FGSM sets crafted once on "
            f"{t['source']}, eps {t['eps'][0]:g}-{t['eps'][-1]:g}): "
            + ", ".join(f"{k} {v['average_accuracy']:.3f}" for k, v in rows)
            + f"; parallel MAT {'beat' if par['average_accuracy'] > mix['average_accuracy'] else 'did not beat'} "
            f"mixed, and both MAT models {'beat' if mat_over else 'did not both beat'} single-strength FGSM and PGD "
            "training. "
            + (f"Label leaking lifts the MAT numbers: {leak_txt} (a random first step breaks it). " if leaks else "")
            + "With R+FGSM (white-box, random step eps/2) the averages are "
            + ", ".join(f"{k} {v['rfgsm_average']:.3f}" for k, v in
                        sorted(m.items(), key=lambda kv: -kv[1]["rfgsm_average"]))
            + (": both MAT models fall below single-strength training. " if mat_under_r else ". ")
            + "Whether retraining with `--example-labels predicted` removes the rise was not re-measured: a mixed "
            f"MAT run small enough for a few CPU minutes ({size_txt}{r['n']:,} evaluation images, "
            f"`bench/results/training-retrain-small.json`) shows "
            + ("a rise" if rises else "no rise to remove")
            + f" (white-box FGSM {acc[0]:.3f} at eps {r['eps'][0]:g} to {acc[-1]:.3f} at {r['eps'][-1]:g}).")


FINDINGS: tuple[Finding, ...] = (
    Finding("agr", "AGR against I-FGSM and MI-FGSM", {"compare": "bench/results/compare.json"},
            "python bench/compare.py --policies", ("agr",), agr_finding),
    Finding("geometry", "Geometry", {"geometry": "bench/results/geometry.json"}, "python bench/geometry.py", (),
            geometry_finding),
    Finding("halftone", "Halftoning", {"floyd-steinberg": "assets/defense/fmnist-naive-floyd-steinberg.json",
                                       "bayer-random": "assets/defense/fmnist-naive-bayer-random.json"},
            "the `defend` commands recorded in assets/defense/*.json", (), halftone_finding),
    Finding("poisoning", "Poisoning", {"poisoning": "bench/results/poisoning.json",
                                       "poisoning-lf": "bench/results/poisoning-lf.json",
                                       "card-split-naive": "assets/models/poisoning/fmnist04-naive.json",
                                       "card-split-pgd": "assets/models/poisoning/fmnist04-pgd.json"},
            "python bench/poisoning.py --settings; python -m advcore poison lf --json bench/results/poisoning-lf.json",
            ("poisoning",), poisoning_finding),
    Finding("training", "Training (MAT's Table 1)", {"table1-paper": "bench/results/training-table1-paper.json",
                                                     "retrain-small": "bench/results/training-retrain-small.json"},
            "python -m advcore table1 --protocol paper --json bench/results/training-table1-paper.json", (),
            training_finding),
)


def load_sources(root: str | Path = ROOT) -> dict[str, Any]:
    """Every file the findings read, parsed (None where a file is missing)."""
    out: dict[str, Any] = {}
    for f in FINDINGS:
        for key, rel in f.files.items():
            path = Path(root) / rel
            out[key] = json.loads(path.read_text()) if path.is_file() else None
    return out


def bullets(sources: Sources, records: Mapping[str, dict]) -> list[str]:
    """One Markdown bullet per finding; a finding whose files are missing says which command writes them."""
    out = []
    for f in FINDINGS:
        missing = [rel for key, rel in f.files.items() if sources.get(key) is None]
        missing += [f"bench/results/papers/{k}.json" for k in f.papers if not (records.get(k) or {}).get("measurement")]
        if missing:
            out.append(f"- **{f.title}**: not measured ({', '.join(missing)} missing; run `{f.command}`).")
        else:
            out.append(f.render(sources, records))
    return out


__all__ = ("FINDINGS", "Finding", "bullets", "load_sources")
