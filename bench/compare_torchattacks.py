"""advcore's attacks against torchattacks 3.5.1: same model, same inputs, same parameters.

Model: efficientnet-lite0 from ``advcore.models.load`` (eval mode, normalisation
inside, so both libraries feed it pixels in [0, 1]; torchattacks' own
normalisation stays off). Inputs: every bundled sample photo prepared to 224x224,
one batch; labels: the model's clean predictions. For each attack the two
adversarial batches are compared elementwise and by the labels the model gives them.

Timing: median of ``--repeats`` runs after one warm-up run of each library, on the
first ``--timing-batch`` images (default: the cat alone on CPU, which keeps the run near
two minutes on 2 cores, where a 10-step attack on all 9 images takes about 5 s; the
whole batch on CUDA). The comparison itself always uses the whole batch. Run::

    .venv/bin/python -m bench.compare_torchattacks [--device cuda] [--attacks fgsm,pgd]

Writes ``bench/results/torchattacks.json`` (``torchattacks-cuda.json`` on a GPU);
a run restricted with ``--attacks`` replaces only those attacks' entries.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torchattacks  # 3.5.1 imports without torchvision, so no workaround is needed
from torch import nn

from advcore import attacks, data, models
from advcore.device import pick_device
from bench.common import environment

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = "efficientnet-lite0"
EPS, ALPHA, STEPS = 4 / 255, 1 / 255, 10
EPS_L2, ALPHA_L2 = 1.0, 0.2
NOISE = 1e-6  # a pixel "differs" when the two batches disagree by more than this


@dataclass(frozen=True)
class Case:
    """One attack as both libraries spell it."""

    name: str
    title: str
    params: dict
    ours: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
    theirs: Callable[[nn.Module], torchattacks.attack.Attack]


CASES = [
    Case("fgsm", "FGSM", {"eps": EPS},
         lambda m, x, y: attacks.fgsm(m, x, y, eps=EPS).x_adv,
         lambda m: torchattacks.FGSM(m, eps=EPS)),
    Case("bim", "BIM / I-FGSM", {"eps": EPS, "alpha": ALPHA, "steps": STEPS},
         lambda m, x, y: attacks.ifgsm(m, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, norm="linf").x_adv,
         lambda m: torchattacks.BIM(m, eps=EPS, alpha=ALPHA, steps=STEPS)),
    Case("pgd", "PGD L-inf, no random start", {"eps": EPS, "alpha": ALPHA, "steps": STEPS},
         lambda m, x, y: attacks.pgd(m, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False).x_adv,
         lambda m: torchattacks.PGD(m, eps=EPS, alpha=ALPHA, steps=STEPS, random_start=False)),
    Case("pgdl2", "PGD L2, no random start", {"eps": EPS_L2, "alpha": ALPHA_L2, "steps": STEPS},
         lambda m, x, y: attacks.pgd(m, x, y, eps=EPS_L2, alpha=ALPHA_L2, steps=STEPS, norm="l2",
                                     random_start=False).x_adv,
         lambda m: torchattacks.PGDL2(m, eps=EPS_L2, alpha=ALPHA_L2, steps=STEPS, random_start=False)),
    Case("mifgsm", "MI-FGSM", {"eps": EPS, "alpha": ALPHA, "steps": STEPS, "mu": 1.0},
         lambda m, x, y: attacks.mifgsm(m, x, y, eps=EPS, alpha=ALPHA, steps=STEPS, mu=1.0).x_adv,
         lambda m: torchattacks.MIFGSM(m, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0)),
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[torch.Tensor, float]:
    """``fn()`` and its wall-clock seconds (CUDA work included)."""
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)



def compare(case: Case, model: nn.Module, x: torch.Tensor, y: torch.Tensor, xt: torch.Tensor,
            yt: torch.Tensor, repeats: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Both libraries on the whole batch (comparison) and on the timing batch (median time)."""
    atk = case.theirs(model)
    ours, ours_full_s = timed(lambda: case.ours(model, x, y), device)
    theirs, theirs_full_s = timed(lambda: atk(x, y), device)
    diff = (ours - theirs).abs()
    with torch.no_grad():
        l_ours, l_theirs = model(ours), model(theirs)
    p_ours, p_theirs = l_ours.argmax(1), l_theirs.argmax(1)
    d_ours, d_theirs = (ours - x).flatten(1), (theirs - x).flatten(1)

    # Timing: warm-up, then alternate the two libraries so load changes hit both alike.
    case.ours(model, xt, yt)
    atk(xt, yt)
    t_ours, t_theirs, t_pred = [], [], []
    for _ in range(repeats):
        t_ours.append(timed(lambda: case.ours(model, xt, yt), device)[1])
        adv, s = timed(lambda: atk(xt, yt), device)
        t_theirs.append(s)
        t_pred.append(timed(lambda adv=adv: predict(model, adv), device)[1])
    ours_s, theirs_s = statistics.median(t_ours), statistics.median(t_theirs)
    pred_s = statistics.median(t_pred)
    row = {
        "attack": case.name,
        "title": case.title,
        "params": case.params,
        "max_abs_diff": float(diff.max()),
        "max_abs_diff_in_255ths": float(diff.max() * 255),
        "frac_pixels_differ": float((diff > NOISE).float().mean()),
        "images_differ": int((diff.flatten(1) > NOISE).any(dim=1).sum()),
        "labels_agree": bool((p_ours == p_theirs).all()),
        "labels_agree_count": int((p_ours == p_theirs).sum()),
        "n_images": int(x.shape[0]),
        "success_advcore": int((p_ours != y).sum()),
        "success_torchattacks": int((p_theirs != y).sum()),
        # the attacks' objective, cross-entropy to the clean label at x_adv (mean over the batch)
        "loss_advcore": float(F.cross_entropy(l_ours, y)),
        "loss_torchattacks": float(F.cross_entropy(l_theirs, y)),
        "linf_max_advcore": float(d_ours.abs().amax()),
        "linf_max_torchattacks": float(d_theirs.abs().amax()),
        "l2_max_advcore": float(d_ours.norm(dim=1).amax()),
        "l2_max_torchattacks": float(d_theirs.norm(dim=1).amax()),
        "seconds_advcore": ours_s,
        "seconds_torchattacks": theirs_s,
        # advcore also returns logits at x_adv (one more forward); a caller of torchattacks needs
        # that forward too to know the labels, so this is the like-for-like ratio.
        "seconds_torchattacks_plus_predict": theirs_s + pred_s,
        "ratio": ours_s / theirs_s,
        "ratio_like_for_like": ours_s / (theirs_s + pred_s),
        "timing_batch": int(xt.shape[0]),
        "repeats": repeats,
        "seconds_full_batch_advcore": ours_full_s,
        "seconds_full_batch_torchattacks": theirs_full_s,
    }
    return ours, theirs, row


def replica_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, accumulate: str, reduction: str) -> torch.Tensor:
    """PGD L-inf without random start written out, with each library's arithmetic as a switch.

    ``accumulate="delta", reduction="sum"`` is advcore's loop: it keeps the perturbation
    and evaluates ``x + delta``, ascending the summed per-sample loss.
    ``accumulate="adv", reduction="mean"`` is torchattacks' PGD: it keeps the image,
    ``adv = adv + alpha * sign(g)``, then clamps ``adv - x`` and ``x + delta``, with the
    batch-mean loss. Both are the same mathematics; they round differently.
    """
    delta, adv = torch.zeros_like(x), x.clone()
    for _ in range(STEPS):
        xi = (x + delta if accumulate == "delta" else adv).detach().requires_grad_(True)
        loss = F.cross_entropy(model(xi), y, reduction=reduction)
        (g,) = torch.autograd.grad(loss, xi)
        if accumulate == "delta":
            new = (delta + ALPHA * g.sign()).clamp(-EPS, EPS)
            delta = (x + new).clamp(0, 1) - x
        else:
            adv = xi.detach() + ALPHA * g.sign()
            adv = torch.clamp(x + torch.clamp(adv - x, min=-EPS, max=EPS), min=0, max=1)
    return (x + delta if accumulate == "delta" else adv).detach()


def pgd_replicas(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ours: torch.Tensor, ta: torch.Tensor,
                 gap: Callable) -> dict:
    """Both libraries' PGD against the replicas, then one convention switched at a time."""
    reps = {(acc, red): replica_pgd(model, x, y, accumulate=acc, reduction=red)
            for acc in ("delta", "adv") for red in ("sum", "mean")}
    res = {
        "advcore_vs_replica_delta_sum": gap(ours, reps["delta", "sum"]),
        "torchattacks_vs_replica_adv_mean": gap(ta, reps["adv", "mean"]),
        "torchattacks_vs_replica_adv_sum (loss reduction only)": gap(ta, reps["adv", "sum"]),
        "torchattacks_vs_replica_delta_mean (accumulation only)": gap(ta, reps["delta", "mean"]),
        "advcore_vs_torchattacks": gap(ours, ta),
    }
    for k, v in res.items():
        print(f"  PGD {k}: max|diff| {v['max_abs_diff']:.2e}, {v['frac_pixels_differ']:.2%} px", flush=True)
    return res


def diagnose(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             outputs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Why the iterative attacks differ: replicas of both loops, and torchattacks' own sensitivity.

    1. PGD L-inf replicas (see :func:`replica_pgd`) must reproduce each library bit for bit;
       then switching one convention at a time shows what each rounding choice costs.
    2. The noise floor of every attack: torchattacks on ``x`` against torchattacks on ``x``
       moved by one float32 ulp (``nextafter`` towards 1). If that differs as much as
       advcore does, the difference between the libraries is float noise amplified by the
       attack, not a difference of method.
    """
    def gap(a: torch.Tensor, b: torch.Tensor) -> dict:
        d = (a - b).abs()
        return {"max_abs_diff": float(d.max()), "frac_pixels_differ": float((d > NOISE).float().mean()),
                "labels_agree_count": int((predict(model, a) == predict(model, b)).sum())}

    out: dict = {}
    if "pgd" in outputs:
        out["pgd_replicas"] = pgd_replicas(model, x, y, *outputs["pgd"], gap)
    nudged = torch.nextafter(x, torch.ones_like(x))  # every pixel below 1 up by one ulp
    floor = {}
    for case in CASES:
        if case.name in outputs:
            floor[case.name] = gap(outputs[case.name][1], case.theirs(model)(nudged, y))
            print(f"  {case.name} noise floor (torchattacks, input moved 1 ulp): max|diff| "
                  f"{floor[case.name]['max_abs_diff']:.2e}, {floor[case.name]['frac_pixels_differ']:.2%} px",
                  flush=True)
    out["noise_floor_torchattacks_1ulp"] = floor
    out["input_change_max"] = float((nudged - x).abs().max())
    return out


def print_table(rows: list[dict]) -> None:
    head = (f"{'attack':8} {'max|diff|':>10} {'(x255)':>7} {'px>1e-6':>8} {'labels':>7} {'succ ours/ta':>12} "
            f"{'ours s':>8} {'ta s':>8} {'ratio':>6} {'ratio*':>6}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['attack']:8} {r['max_abs_diff']:10.2e} {r['max_abs_diff_in_255ths']:7.3f} "
              f"{r['frac_pixels_differ']:8.2%} {r['labels_agree_count']:>3}/{r['n_images']:<3} "
              f"{r['success_advcore']:>5}/{r['success_torchattacks']:<6} "
              f"{r['seconds_advcore']:8.3f} {r['seconds_torchattacks']:8.3f} {r['ratio']:6.2f} "
              f"{r['ratio_like_for_like']:6.2f}")
    print("ratio = advcore / torchattacks time; ratio* counts the forward pass torchattacks' caller "
          "needs for the labels (advcore returns them).")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--attacks", default=",".join(c.name for c in CASES),
                    help="comma-separated subset of " + ", ".join(c.name for c in CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timing-batch", type=int, default=None,
                    help="images used for timing (default: 1 on CPU, all on CUDA)")
    ap.add_argument("--diagnose", action="store_true",
                    help="also explain the differences (replicas of both loops, 1-ulp noise floor; several minutes)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    wanted = [s.strip() for s in args.attacks.split(",") if s.strip()]
    unknown = set(wanted) - {c.name for c in CASES}
    if unknown:
        ap.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    device = pick_device(args.device)
    torch.manual_seed(0)
    env = environment(device, torchattacks=torchattacks.__version__)
    model = models.load(MODEL, device)
    spec = models.get_spec(MODEL)
    samples = data.samples()
    x = torch.cat([data.prepare(data.open_image(s.path), spec.input_size) for s in samples]).to(device)
    y = predict(model, x)
    nt = args.timing_batch or (x.shape[0] if device.type == "cuda" else 1)
    xt, yt = x[:nt].clone(), y[:nt].clone()
    print(f"{MODEL} on {env['device']}, {x.shape[0]} images {tuple(x.shape[1:])}, "
          f"timing on {nt} image(s), load average {env['loadavg_1min_at_start']}", flush=True)

    rows, outputs = [], {}
    for case in CASES:
        if case.name in wanted:
            ours, theirs, r = compare(case, model, x, y, xt, yt, args.repeats, device)
            r["measured"] = {"date": env["date"], "loadavg_1min": round(os.getloadavg()[0], 2)}
            rows.append(r)
            outputs[case.name] = (ours, theirs)
            print(f"  {case.name}: max|diff| {r['max_abs_diff']:.2e}, {r['seconds_advcore']:.3f} s vs "
                  f"{r['seconds_torchattacks']:.3f} s", flush=True)
    diagnosis = None
    if args.diagnose:
        print("diagnosis:", flush=True)
        diagnosis = diagnose(model, x, y, outputs)
    env["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    print()
    print_table(rows)

    out = args.out or RESULTS / ("torchattacks.json" if device.type == "cpu" else f"torchattacks-{device.type}.json")
    previous = {}
    if out.exists() and set(wanted) != {c.name for c in CASES}:
        previous = {r["attack"]: r for r in json.loads(out.read_text())["attacks"]}
    merged = {**previous, **{r["attack"]: r for r in rows}}
    doc = {
        "model": MODEL,
        "images": [s.file for s in samples],
        "labels": "the model's clean predictions",
        "environment": env,
        "attacks": [merged[c.name] for c in CASES if c.name in merged],
    }
    old_diag = json.loads(out.read_text()).get("diagnosis", {}) if out.exists() else {}
    if diagnosis is not None:  # a partial diagnosis updates the stored one
        floor = {**old_diag.get("noise_floor_torchattacks_1ulp", {}), **diagnosis["noise_floor_torchattacks_1ulp"]}
        old_diag = {**old_diag, **diagnosis, "noise_floor_torchattacks_1ulp": floor}
    if old_diag:
        doc["diagnosis"] = old_diag
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


# ------------------------------------------------------------------ the minimal-norm, APGD and Square attacks

NEW_MODEL, NEW_N = "fmnist-naive", 8


def new_cases() -> list[tuple[str, dict, Callable, Callable]]:
    """C&W, DeepFool, APGD-CE/DLR, APGD-T and Square as both libraries spell them (same parameters)."""
    ta = torchattacks
    return [
        ("cw", {"c": 1.0, "kappa": 0.0, "steps": 50, "lr": 0.01, "binary_steps": 1},
         lambda m, x, y, t: attacks.run("cw", m, x, y, steps=50, c=1.0, binary_steps=1).x_adv,
         lambda m, x, y, t: ta.CW(m, c=1, kappa=0, steps=50, lr=0.01)(x, y)),
        ("deepfool", {"steps": 50, "overshoot": 0.02, "candidates": 10},
         lambda m, x, y, t: attacks.run("deepfool", m, x, y, steps=50).x_adv,
         lambda m, x, y, t: ta.DeepFool(m, steps=50, overshoot=0.02)(x, y)),
        ("apgd-ce", {"eps": 0.05, "steps": 50, "loss": "ce", "seed": 0},
         lambda m, x, y, t: attacks.run("apgd", m, x, y, eps=0.05, steps=50, loss="ce", seed=0).x_adv,
         lambda m, x, y, t: ta.APGD(m, eps=0.05, steps=50, loss="ce", seed=0)(x, y)),
        ("apgd-dlr", {"eps": 0.05, "steps": 50, "loss": "dlr", "seed": 0},
         lambda m, x, y, t: attacks.run("apgd", m, x, y, eps=0.05, steps=50, loss="dlr", seed=0).x_adv,
         lambda m, x, y, t: ta.APGD(m, eps=0.05, steps=50, loss="dlr", seed=0)(x, y)),
        ("apgd-t-dlr", {"eps": 0.05, "steps": 50, "target": "second class", "seed": 0},
         lambda m, x, y, t: attacks.run("apgd", m, x, y, eps=0.05, steps=50, loss="dlr", target=t, seed=0).x_adv,
         lambda m, x, y, t: _apgdt(m)(x, y)),
        ("square", {"eps": 0.05, "n_queries": 500, "p_init": 0.05, "seed": 0},
         lambda m, x, y, t: attacks.run("square", m, x, y, eps=0.05, n_queries=500, seed=0).x_adv,
         lambda m, x, y, t: ta.Square(m, eps=0.05, n_queries=500, p_init=0.05, seed=0)(x, y)),
        ("square-l2", {"eps": 2.0, "norm": "l2", "n_queries": 500, "p_init": 0.1, "seed": 0},
         lambda m, x, y, t: attacks.run("square", m, x, y, eps=2.0, norm="l2", n_queries=500, p_init=0.1,
                                        seed=0).x_adv,
         lambda m, x, y, t: ta.Square(m, norm="L2", eps=2.0, n_queries=500, p_init=0.1, seed=0)(x, y)),
    ]


def _apgdt(m: nn.Module) -> torchattacks.attack.Attack:
    atk = torchattacks.APGDT(m, eps=0.05, steps=50, n_classes=10, seed=0)
    atk.n_target_classes = 1  # the second most likely class, as the target given to advcore
    return atk


def new_attacks(repeats: int, only: set[str] | None = None) -> list[dict]:
    """Success, norms and median time of both libraries on the same fmnist-naive batch (``only``: those cases)."""
    from advcore import datasets

    model = models.load(NEW_MODEL, "cpu")
    x, y, _ = datasets.eval_set("fashion-mnist", 32)
    x = datasets.to_float(x)
    keep = predict(model, x) == y
    x, y = x[keep][:NEW_N], y[keep][:NEW_N]
    with torch.no_grad():
        second = model(x).sort(1)[1][:, -2]
    rows = []
    for name, params, ours_fn, theirs_fn in new_cases():
        if only and name not in only:
            continue
        ours_fn(model, x, y, second), theirs_fn(model, x, y, second)  # warm-up
        t_o, t_t = [], []
        for _ in range(repeats):
            a, s = timed(lambda f=ours_fn: f(model, x, y, second), torch.device("cpu"))
            t_o.append(s)
            b, s = timed(lambda f=theirs_fn: f(model, x, y, second), torch.device("cpu"))
            t_t.append(s)
        hit = (lambda z: predict(model, z) == second) if name == "apgd-t-dlr" else (lambda z: predict(model, z) != y)
        so, st = hit(a), hit(b)
        both = so & st
        da, db = (a - x).flatten(1), (b - x).flatten(1)
        row = {"attack": name, "params": params, "n_images": int(x.shape[0]),
               "success_advcore": int(so.sum()), "success_torchattacks": int(st.sum()),
               "l2_median_both_fooled_advcore": float(da.norm(dim=1)[both].median()) if both.any() else None,
               "l2_median_both_fooled_torchattacks": float(db.norm(dim=1)[both].median()) if both.any() else None,
               "linf_max_advcore": float(da.abs().amax()), "linf_max_torchattacks": float(db.abs().amax()),
               "seconds_advcore": statistics.median(t_o), "seconds_torchattacks": statistics.median(t_t),
               "l2_max_advcore": float(da.norm(dim=1).amax()), "l2_max_torchattacks": float(db.norm(dim=1).amax()),
               "loadavg_1min": round(os.getloadavg()[0], 2)}
        if name.startswith("square"):  # advcore records its queries; torchattacks does not return them
            q = torch.tensor(attacks.run("square", model, x, y, **params).params["queries"], dtype=torch.float64)
            row["queries_median_advcore"] = float(q.median())
            row["queries_median_fooled_advcore"] = float(q[so].median()) if so.any() else None
        row["ratio"] = row["seconds_advcore"] / row["seconds_torchattacks"]
        rows.append(row)
        print(f"  {name}: success {row['success_advcore']}/{row['success_torchattacks']}, "
              f"{row['seconds_advcore']:.3f} s vs {row['seconds_torchattacks']:.3f} s (x{row['ratio']:.2f})",
              flush=True)
    return rows


def main_new(argv: list[str]) -> int:
    """``--new [NAME,...]``: the C&W / DeepFool / APGD / Square comparison on fmnist-naive, stored beside the
    others (with names: only those cases, replacing their entries)."""
    repeats = 3
    only = {n.strip() for n in argv[0].split(",")} if argv else None
    known = {c[0] for c in new_cases()}
    if only and not only <= known:
        print(f"unknown cases: {', '.join(sorted(only - known))}; choose from {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    rows = new_attacks(repeats, only)
    out = RESULTS / "torchattacks.json"
    doc = json.loads(out.read_text()) if out.exists() else {}
    env = environment(torch.device("cpu"), torchattacks=torchattacks.__version__)
    old = {r["attack"]: r for r in doc.get("new_attacks", {}).get("attacks", [])} if only else {}
    merged = {**old, **{r["attack"]: r for r in rows}}
    rows = [merged[n] for n in (c[0] for c in new_cases()) if n in merged]
    doc["new_attacks"] = {"model": NEW_MODEL, "images": f"first {NEW_N} correctly classified of the Fashion-MNIST "
                          "eval subset", "repeats": repeats, "environment": env, "attacks": rows}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main_new(sys.argv[2:]) if sys.argv[1:2] == ["--new"] else main())
