"""A gradient-masking check on a Defense lab result: four warning signs, each with its rule and its evidence.

Athalye, Carlini and Wagner 2018 ("Obfuscated Gradients Give a False Sense of Security", Sec. 3.1) and Carlini
et al. 2019 ("On Evaluating Adversarial Robustness", Sec. 5 and the checklist of its appendix) list signs that a
defense's robustness comes from a broken attack rather than from the model. Four of them can be read off the
Defense lab's table (:class:`~advcore.labs.defense.DefenseTable` or its JSON, ``defend --json``), on the rows
behind the defense (the undefended row and the adversarially trained reference are not the defense under test):

* ``iterative``: an iterative attack (I-FGSM, PGD) leaves a higher accuracy than the single-step FGSM at the same
  eps against the same attacker (Athalye et al. Sec. 3.1, "iterative attacks perform worse than single-step").
  Flagged beyond a tolerance of ``max(tolerance, 1 / n)`` (2 points, or one image when there are fewer than 50).
* ``no-fall``: accuracy does not fall towards zero as eps grows (Carlini et al. Sec. 5.5: an unbounded attack
  should reach 0%). Needs two positive eps; flagged when the worst case over every attacker at the largest eps
  measured still leaves more than ``floor`` (10%), or when it rises from one eps to a larger one beyond the
  tolerance. (A model can be genuinely robust at a small largest eps: measure larger eps to tell.)
* ``transfer``: examples made on the undefended model (``ignores``) leave a lower accuracy than the white-box
  attack through the row's defense (``knows``/``bpda``), beyond the tolerance (Athalye et al. Sec. 3.1,
  "black-box attacks are better than white-box").
* ``adaptive-gap``: on a row behind the defense, the adaptive attacker (BPDA, + EOT) and the best non-adaptive one
  (``ignores``, ``bare``) differ by more than ``gap`` (10 points) in either direction. Lower: the non-adaptive
  protocol overstated robustness; higher: the adaptive attack is failing (its gradient estimate is poor).

Pure: it reads numbers and returns numbers and sentences; nothing is measured here.
"""

from __future__ import annotations

from typing import Any

from advcore.units import eps_fraction_text

TOLERANCE = 0.02  # iterative vs single-step, transfer vs white-box, a rise with eps: 2 points (or one image)
FLOOR = 0.10  # the worst case at the largest eps: more than 10% left
GAP = 0.10  # adaptive vs non-adaptive: more than 10 points apart
CHECKS = ("iterative", "no-fall", "transfer", "adaptive-gap")
TITLES = {
    "iterative": "iterative attacks worse than single-step",
    "no-fall": "accuracy not falling towards zero as eps grows",
    "transfer": "transfer from the undefended model beats the white-box attack",
    "adaptive-gap": "adaptive and non-adaptive attackers far apart",
}
NAMES = {"fgsm": "FGSM", "ifgsm": "I-FGSM", "pgd": "PGD"}
ADAPTIVE = ("bpda", "knows")
NON_ADAPTIVE = ("ignores", "bare")


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _as_dict(result: Any) -> dict:
    return result.to_dict() if hasattr(result, "to_dict") else result


def check_masking(result: Any, *, tolerance: float = TOLERANCE, floor: float = FLOOR, gap: float = GAP) -> dict:
    """The four checks on ``result`` (a DefenseTable or its JSON dict), top-1.

    Returns ``{"rules": ..., "checks": [{"key", "title", "rule", "status", "evidence", "text"}], "flagged",
    "verdict"}``: ``status`` is ``flag``, ``pass`` or ``not checked``; ``evidence`` lists every offending cell
    with its numbers; ``verdict`` is the whole in plain words.
    """
    r = _as_dict(result)
    eps = [float(e) for e in r["eps"]]
    positive = [i for i, e in enumerate(eps) if e > 0]
    acc = r["accuracy"]
    titles = {row["key"]: row.get("title", row["key"]) for row in r["rows"]}
    rows = {row["key"]: row for row in r["rows"] if row.get("halftone")}  # behind the defense
    cols = list(r["columns"])
    tol = max(float(tolerance), 1.0 / max(int(r.get("n", 1)), 1))
    tol_words = f"{100 * tol:.1f} points"

    def top1(row: str, attack: str, col: str) -> list[float]:
        return acc[row][attack][col]["top1"]

    checks = []

    # (a) iterative worse than single-step
    iterative = [a for a in r["attacks"] if a in ("ifgsm", "pgd")]
    rule = (f"I-FGSM or PGD accuracy above FGSM's at the same eps and attacker by more than {tol_words}")
    if "fgsm" not in r["attacks"] or not iterative or not positive:
        checks.append(_check("iterative", rule, None, [], "needs FGSM and an iterative attack at a positive eps"))
    else:
        ev = [{"row": k, "eps": eps[i], "attacker": c, "attack": a, "accuracy": top1(k, a, c)[i],
               "fgsm_accuracy": top1(k, "fgsm", c)[i]}
              for k in rows for c in cols for a in iterative for i in positive
              if top1(k, a, c)[i] > top1(k, "fgsm", c)[i] + tol + 1e-9]
        text = ""
        if ev:
            w = max(ev, key=lambda e: e["accuracy"] - e["fgsm_accuracy"])
            text = (f"{_count(ev)}: the largest, {titles[w['row']]} at eps {eps_fraction_text(w['eps'])} "
                    f"({w['attacker']}): {NAMES.get(w['attack'], w['attack'])} {_pct(w['accuracy'])} against FGSM "
                    f"{_pct(w['fgsm_accuracy'])}.")
        checks.append(_check("iterative", rule, ev, ev, text))

    # (b) not falling towards zero
    rule = (f"with at least two positive eps: the worst case over every attacker at the largest eps above "
            f"{100 * floor:.0f}%, or rising from one eps to a larger one by more than {tol_words}")
    if len(positive) < 2:
        checks.append(_check("no-fall", rule, None, [], "needs at least two positive eps"))
    else:
        def worst(k: str) -> list[float]:
            if r.get("robust") and k in r["robust"]:
                return r["robust"][k]["top1"]
            return [min(top1(k, a, c)[i] for a in r["attacks"] for c in cols) for i in range(len(eps))]

        last = positive[-1] if eps[positive[-1]] == max(eps) else max(positive, key=lambda i: eps[i])
        ev = []
        for k in rows:
            w = worst(k)
            if w[last] > floor + 1e-9:
                ev.append({"row": k, "eps": eps[last], "accuracy": w[last], "kind": "above floor"})
            order = sorted(positive, key=lambda i: eps[i])
            for i, j in zip(order, order[1:], strict=False):
                if w[j] > w[i] + tol + 1e-9:
                    ev.append({"row": k, "eps": eps[j], "accuracy": w[j], "kind": "rises",
                               "smaller_eps": eps[i], "smaller_eps_accuracy": w[i]})
        text = ""
        if ev:
            parts = []
            for e in ev[:3]:
                if e["kind"] == "above floor":
                    parts.append(f"{titles[e['row']]} keeps {_pct(e['accuracy'])} at eps {eps_fraction_text(e['eps'])}")
                else:
                    parts.append(f"{titles[e['row']]} rises from {_pct(e['smaller_eps_accuracy'])} at eps "
                                 f"{eps_fraction_text(e['smaller_eps'])} to {_pct(e['accuracy'])} at eps "
                                 f"{eps_fraction_text(e['eps'])}")
            text = (f"{_count(ev)}: " + "; ".join(parts) + (f"; and {len(ev) - 3} more" if len(ev) > 3 else "")
                    + ". An unbounded attack should reach 0%: measure larger eps to tell a real bound from masking.")
        checks.append(_check("no-fall", rule, ev, ev, text))

    # (c) transfer beats white-box
    rule = (f"examples made on the undefended model leave a lower accuracy than the white-box attack through the "
            f"defense (BPDA) by more than {tol_words}")
    white_cols = {k: [c for c in ADAPTIVE if c in cols] for k in rows}
    if "ignores" not in cols or not any(white_cols.values()) or not positive:
        checks.append(_check("transfer", rule, None, [], "needs the adaptive attackers (BPDA) and a positive eps"))
    else:
        ev = []
        for k in rows:
            for a in r["attacks"]:
                for i in positive:
                    best = min(top1(k, a, c)[i] for c in white_cols[k])
                    if top1(k, a, "ignores")[i] < best - tol - 1e-9:
                        ev.append({"row": k, "eps": eps[i], "attack": a, "transfer_accuracy": top1(k, a, "ignores")[i],
                                   "white_box_accuracy": best})
        text = ""
        if ev:
            w = max(ev, key=lambda e: e["white_box_accuracy"] - e["transfer_accuracy"])
            text = (f"{_count(ev)}: the largest, {titles[w['row']]} under {NAMES.get(w['attack'], w['attack'])} at eps "
                    f"{eps_fraction_text(w['eps'])}: transfer {_pct(w['transfer_accuracy'])} against white-box "
                    f"{_pct(w['white_box_accuracy'])}.")
        checks.append(_check("transfer", rule, ev, ev, text))

    # (d) adaptive vs non-adaptive far apart
    rule = (f"on a row behind the defense, the adaptive attacker (BPDA, + EOT) and the best non-adaptive one differ "
            f"by more than {100 * gap:.0f} points, either way")
    defended = list(rows)
    ad_cols = [c for c in ADAPTIVE if c in cols]
    non_cols = [c for c in NON_ADAPTIVE if c in cols]
    if not ad_cols or not defended or not positive:
        checks.append(_check("adaptive-gap", rule, None, [], "needs the adaptive attackers (BPDA) and a positive eps"))
    else:
        ev = []
        for k in defended:
            for a in r["attacks"]:
                for i in positive:
                    ad = min(top1(k, a, c)[i] for c in ad_cols)
                    non = min(top1(k, a, c)[i] for c in non_cols)
                    if abs(ad - non) > gap + 1e-9:
                        ev.append({"row": k, "eps": eps[i], "attack": a, "adaptive_accuracy": ad,
                                   "non_adaptive_accuracy": non, "direction": "lower" if ad < non else "higher"})
        text = ""
        if ev:
            w = max(ev, key=lambda e: abs(e["adaptive_accuracy"] - e["non_adaptive_accuracy"]))
            lower = sum(e["direction"] == "lower" for e in ev)
            text = (f"{_count(ev)} ({lower} with the adaptive attacker lower: the non-adaptive protocol overstates "
                    f"robustness; {len(ev) - lower} higher: the adaptive attack is failing); the largest, "
                    f"{titles[w['row']]} under {NAMES.get(w['attack'], w['attack'])} at eps "
                    f"{eps_fraction_text(w['eps'])}: adaptive {_pct(w['adaptive_accuracy'])} against non-adaptive "
                    f"{_pct(w['non_adaptive_accuracy'])}.")
        checks.append(_check("adaptive-gap", rule, ev, ev, text))

    flagged = [c["key"] for c in checks if c["status"] == "flag"]
    passed = [c["key"] for c in checks if c["status"] == "pass"]
    skipped = [c["key"] for c in checks if c["status"] == "not checked"]
    if flagged:
        verdict = (f"Gradient-masking check: {len(flagged)} of {len(CHECKS)} warning signs raised ("
                   + "; ".join(TITLES[k] for k in flagged) + "). These numbers may overstate robustness; "
                   "the per-example worst case is the figure to quote, and stronger attacks may lower it further.")
    elif passed:
        verdict = (f"Gradient-masking check: none of the {len(passed)} signs checked was raised ("
                   + "; ".join(TITLES[k] for k in passed) + "). That does not prove robustness, only that these "
                   "signs of a failing attack are absent.")
    else:
        verdict = "Gradient-masking check: nothing could be checked on this table."
    if skipped:
        verdict += " Not checked: " + "; ".join(f"{TITLES[k]} ({next(c['text'] for c in checks if c['key'] == k)})"
                                                for k in skipped) + "."
    rules = {"tolerance": tol, "floor": float(floor), "gap": float(gap)}
    return {"rules": rules, "checks": checks, "flagged": flagged, "verdict": verdict}


def _count(ev: list) -> str:
    return f"{len(ev)} cell{'s' if len(ev) != 1 else ''}"


def _check(key: str, rule: str, ev: list | None, evidence: list, text: str) -> dict:
    status = "not checked" if ev is None else ("flag" if ev else "pass")
    return {"key": key, "title": TITLES[key], "rule": rule, "status": status, "evidence": evidence,
            "text": text if status != "pass" else "not raised"}
