"""Poisoning lab: label flip, poison frogs and adversarial poisoning against naive and robust frozen features.

Widgets -> ``ui.views.poisoning.Request`` -> ``advcore.labs.poisoning.run`` (kept per session, keyed by every
parameter) -> the paper's Tables 1-3 next to the paper's own numbers, and one poison frog trial in full.
"""

from __future__ import annotations

import streamlit as st

from advcore.errors import AdvlabError
from advcore.labs import poisoning
from ui.frame import (
    app_frame,
    error_boundary,
    url_choice,
    url_choices,
    url_number,
    url_show_list,
    url_show_number,
    url_value,
)
from ui.session import POISON_EXAMPLES, POISON_RESULTS, POISON_RUN
from ui.views import poisoning as pv
from ui.widgets import download_figure, download_json, download_table

INTRO = (
    "Poison the training set of a linear SVM that reads frozen features of a naive, an FGSM-trained or a "
    "PGD-trained network, and compare how much each attack hurts: press Run under Table 2 first and look at how "
    "close the poison frogs get to their targets in feature space."
)
KEEP = "session"
RESULTS, EXAMPLES, RUN = POISON_RESULTS, POISON_EXAMPLES, POISON_RUN  # kept per session, keyed by every parameter


def controls(device: str) -> dict:
    """The shared settings; returns them as keyword arguments of :class:`ui.views.poisoning.Request`."""
    c1, c2, c3 = st.columns([1.6, 1.2, 1.2])
    url_value("features", "poison_kinds", url_choices(list(pv.PAGE_KINDS)), url_show_list())
    kinds = c1.multiselect("Features", pv.PAGE_KINDS, default=list(pv.DEFAULT_KINDS), key="poison_kinds",
                           format_func=pv.CHIP_NAMES.get, persist_state=KEEP,
                           help="Frozen extractors: the shipped Fashion-MNIST networks, trained naively, with FGSM or "
                                "with PGD examples (eps 0.1), on digits; ImageNet features (EfficientNet-Lite0's "
                                "penultimate layer on Fashion-MNIST Sandal against Sneaker drawn as photos, two "
                                "ImageNet categories, the paper's sanity check; minutes on a CPU); split naive / "
                                "split PGD: small CNNs trained on Fashion-MNIST classes 0-4 "
                                "only, on Sandal against Sneaker (classes they never saw).")
    url_value("eps", "poison_eps", url_number(0, 64, integer=True, unit=" (x/255)"))
    eps_255 = c2.slider("eps (x/255, L-inf)", 0, 64, 7, key="poison_eps", persist_state=KEEP,
                        help="How far each poison may move from its image, per pixel; the paper uses 7/255 on MNIST.")
    url_value("method", "poison_method", url_choice(list(poisoning.METHODS)))
    method = c3.radio("Crafting", poisoning.METHODS, index=1, format_func=str.upper, horizontal=True,
                      key="poison_method",
                      persist_state=KEEP, help="One FGSM step, or PGD steps of 2.5 eps / steps (paper Sec. 2.2).")
    d1, d2, d3, d4 = st.columns(4)
    url_value("steps", "poison_steps", url_number(1, 50, integer=True))
    steps = d1.slider("PGD steps (AP)", 1, 50, poisoning.DEFAULT_STEPS, key="poison_steps", persist_state=KEEP,
                      disabled=method == "fgsm", help="Adversarial poisoning: PGD steps of 2.5 eps / steps.")
    e1, e2, e3, e4 = st.columns(4)
    url_value("pf_steps", "poison_pf_steps", url_number(1, poisoning.MAX_STEPS, integer=True))
    pf_steps = e1.slider("Poison frog steps", 1, poisoning.MAX_STEPS, poisoning.PF_STEPS, key="poison_pf_steps",
                         persist_state=KEEP, disabled=method == "fgsm",
                         help="Signed steps with a decaying step size (eps/4 (1 - t/T)), keeping the closest iterate.")
    url_value("poisons", "poison_k", url_number(1, poisoning.MAX_POISONS, integer=True))
    poisons = e2.number_input("Poisons per target", 1, poisoning.MAX_POISONS, 1, step=1, key="poison_k",
                              persist_state=KEEP, help="The author's code replaces a batch of 64 bases.")
    url_value("bases", "poison_bases", url_choice(list(poisoning.BASE_CHOICES)))
    base_choice = e3.radio("Bases", poisoning.BASE_CHOICES, key="poison_bases", horizontal=True, persist_state=KEEP,
                           help="random, or the other class's training images nearest the target in feature space "
                                "(best-base search)")
    url_value("C", "poison_C", url_number(1e-4, 1e4), url_show_number)
    C = e4.number_input("SVM C (raw features)", 1e-4, 1e4, poisoning.DEFAULT_C, format="%.4g", key="poison_C",
                        persist_state=KEEP, help="LinearSVC's C on the raw features, as the paper trains it "
                                                 "(LinearSVC's default 1).")
    url_value("trials", "poison_trials", url_number(1, pv.MAX_PAGE_TRIALS, integer=True))
    trials = d2.number_input("Poison frog trials", 1, pv.MAX_PAGE_TRIALS, 20, step=1, key="poison_trials",
                             persist_state=KEEP, help="The paper runs 100; each trial retrains the SVM.")
    url_value("share", "poison_share", url_number(0.0, 0.5, unit=" (share of labels)"), url_show_number)
    share = d3.slider("Random labels (LF)", 0.0, 0.5, 0.02, step=0.01, key="poison_share", persist_state=KEEP,
                      format="%.2f", help="Share of training labels replaced by random ones; the paper uses 2%.")
    url_value("seed", "poison_seed", url_number(0, 2**31 - 1, integer=True))
    seed = d4.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="poison_seed", persist_state=KEEP)
    if not kinds:
        raise AdvlabError("Choose at least one kind of features.")
    return {"kinds": tuple(k for k in pv.PAGE_KINDS if k in kinds), "eps_255": int(eps_255), "method": method,
            "steps": int(steps), "trials": int(trials), "share": round(float(share), 4), "seed": int(seed),
            "device": device, "pf_steps": int(pf_steps), "poisons": int(poisons), "base_choice": base_choice,
            "C": float(poisoning.check_c(float(C)))}


def requests(s: dict) -> dict[str, pv.Request]:
    common = {"kinds": s["kinds"], "seed": s["seed"], "device": s["device"], "C": s["C"]}
    craft = {"eps_255": s["eps_255"], "method": s["method"], "steps": s["steps"] if s["method"] == "pgd" else 1}
    pf_craft = {**craft, "steps": s["pf_steps"] if s["method"] == "pgd" else 1, "schedule": "decay"}
    return {"ap": pv.Request("ap", **common, **craft),
            "pf": pv.Request("pf", **common, **pf_craft, trials=s["trials"], poisons=s["poisons"],
                             base_choice=s["base_choice"]),
            "lf": pv.Request("lf", **common, eps_255=0, share=s["share"])}


def live(bar, title: str):
    """advcore's progress drawn on ``bar``; True (cancel) once Cancel was pressed."""
    return RUN.live(bar, text=pv.progress_text, marker=lambda p: pv.marker(title, p))


def run_pending(pending: pv.Request) -> None:
    """Run a requested table with a progress bar and a Cancel button, keep it, rerun the page."""
    title = f"Table {pv.TABLES[pending.attack]} ({poisoning.ATTACK_TITLES[pending.attack]})"
    RUN.cancel_button(key="poison_cancel")
    bar = st.progress(0.0, text=f"{title}: loading the features")
    # in a worker process at the lowest priority (ui.workers)
    result = RUN.execute(pv.job(pending), lambda left: pv.cancelled(title, left), key=pending,
                         on_step=live(bar, title))
    if result is not None:
        RESULTS.put(pending, result)
    st.rerun()


def table(req: pv.Request, busy: bool, label: str, auto: bool = False) -> poisoning.PoisoningTable | None:
    """A table's measurements (or its Run button), the verdict, the caption and its command line."""
    result = RESULTS.get(req)
    if result is None and auto and not busy:  # seconds: computed on load, without a Cancel button
        bar = st.progress(0.0, text="computing")
        result = req.run(live(bar, label))
        RUN.finish()
        bar.empty()
        RESULTS.put(req, result)
    shown = result
    if result is None:
        st.button(f"Run {label}", key=f"poison_run_{req.attack}", type="primary", icon=":material/play_arrow:",
                  disabled=busy, on_click=RUN.request, args=(req,))
        prev = RESULTS.last(lambda r: r.attack == req.attack)
        if prev is not None:  # a changed widget keeps the finished table on screen, labelled as the previous one
            st.info(pv.previous_note(req, prev[0]))
            shown = prev[1]
    if shown is not None:
        result = shown
        rows = pv.rows(result)
        st.table(rows, hide_index=True, border="horizontal")
        g1, g2 = st.columns(2)
        download_table(g1, rows, f"poisoning_{req.attack}.csv", key=f"poison_dl_csv_{req.attack}")
        download_json(g2, result.to_dict(), f"poisoning_{req.attack}.json", key=f"poison_dl_json_{req.attack}")
        st.markdown(f"**What our measurements say:** {result.verdict}")
        st.caption(pv.caption(result) + f" Computed in {result.seconds:.1f} s.")
    st.code(req.cli_command(), language="bash")
    return result


def frog_section(result: poisoning.PoisoningTable) -> None:
    """Base, poison, perturbation and target of one trial, and the feature space before and after."""
    kinds = [r.kind for r in result.rows]
    c1, c2 = st.columns([1, 2])
    kind = c1.radio("Features of the trial", kinds, format_func=poisoning.KIND_TITLES.get, key="poison_ex_kind",
                    horizontal=True)
    row = result.row(kind)
    trials = row.trial_results
    classes = load_classes(row)
    index = c2.selectbox("Trial", range(len(trials)), key=f"poison_ex_trial_{kind}_{len(trials)}",
                         format_func=lambda i: f"#{i + 1}: target a '{classes[trials[i].target_label]}', "
                                               f"{'success' if trials[i].success else 'failure'}")
    ex = EXAMPLES.get_or_put(pv.example_key(result, kind, int(index)), lambda: pv.example(result, kind, int(index)))
    trial = trials[int(index)]
    pert, factor = pv.perturbation(ex)
    i1, i2, i3, i4 = st.columns(4)
    i1.image(pv.image(ex.base), caption=f"base: a training '{classes[trial.base_label]}'", width=160)
    i2.image(pv.image(ex.poison), caption=f"poison (still labelled '{classes[trial.base_label]}')", width=160)
    i3.image(pert, caption=f"perturbation x{factor:.0f} (grey = 0)", width=160)
    i4.image(pv.image(ex.target), caption=f"target: a test '{classes[trial.target_label]}'", width=160)
    proj = ex.projection
    fig = pv.projection_figure(proj)
    st.plotly_chart(fig, key="poison_pca")
    download_figure(st, fig, "poison_frog_features.html", key="poison_dl_pca",
                    label="Download feature-space chart (HTML)")
    before = pv.side(proj["clean"]["value_at_target"], proj["classes"])
    after = pv.side(proj["poisoned"]["value_at_target"], proj["classes"])
    moved = "crosses" if before != after else "does not cross"
    st.caption(f"The target {moved} the boundary: the clean SVM calls it '{before}', the SVM retrained with the "
               f"poison calls it '{after}'. The poison's feature distance to the target fell from "
               f"{ex.history[0]:.3f} (the base's) to {ex.history[-1]:.3f}; the target's nearest training image of "
               f"its own class is {ex.neighbour_distance:.3f} away"
               + (f" ({ex.poisons} poisons put in; the closest is shown)" if ex.poisons > 1 else "") + ". The plane "
               "is spanned by the two principal directions of the clean training features and passes through the "
               "target, so the target's side of each line is exactly its side of that SVM's boundary; the other "
               "points are projections and only roughly on their true side.")


def load_classes(row: poisoning.PoisoningRow) -> list[str]:
    return poisoning.load_task(row.task, 28 if row.kind != "imagenet" else 224).classes


def main() -> None:
    sel = app_frame()
    st.title("Poisoning lab")
    st.markdown(INTRO)
    with error_boundary():
        settings = controls(sel.device)
        reqs = requests(settings)
        RUN.show_notices(pv.interrupted)
        pending = RUN.take_request()
        if pending is not None:
            run_pending(pending)
        busy = pending is not None

        st.subheader("Table 3: label flip (LF)")
        table(reqs["lf"], busy, "Table 3 (label flip)", auto=True)
        st.subheader("Table 2: poison frogs (PF)")
        st.caption("Digits 0 against 1, as in the paper: each trial perturbs training images of one class so that "
                   "their features collide with a test image of the other class, then retrains the SVM. On digits "
                   "the paper found poison frogs ineffective even at 25/255; the split setting (split naive / split "
                   "PGD) is where Table 2's naive-against-PGD effect can be measured.")
        pf = table(reqs["pf"], busy, "Table 2 (poison frogs)")
        st.subheader("Table 1: adversarial poisoning (AP)")
        n_ap = len(poisoning.load_task("digits").y_train)
        st.caption("Every training image moves within eps so that the SVM rotates towards a proxy that gets "
                   f"everything wrong. This moves {n_ap:,} images through each network: tens of seconds on a CPU.")
        table(reqs["ap"], busy, "Table 1 (adversarial poisoning)")
        if pf is not None:
            st.subheader("One poison frog trial")
            frog_section(pf)
        imagenet_section()


def imagenet_section() -> None:
    """The shipped ImageNet poison frog run: its table, verdict, caption and command line."""
    st.subheader("Poison frogs on ImageNet features (the paper's check, Sec. 4.1)")
    shipped = pv.shipped_imagenet()
    if shipped is None:
        st.info("No saved ImageNet run (bench/results/poisoning.json); run `python bench/poisoning.py --settings "
                "--imagenet-only` or add ImageNet under Features and press Run under Table 2.")
        return
    r = shipped.row("imagenet")
    task = poisoning.load_task(r.task, poisoning.IMAGENET_SIZE)
    cols = st.columns(6)
    for col, (label, i) in zip(cols, pv.task_samples(task), strict=True):
        col.image(pv.image(task.x_train[i].permute(1, 2, 0).numpy()), caption=f"training '{task.classes[label]}'",
                  width=120)
    st.table(pv.rows(shipped), hide_index=True, border="horizontal")
    st.markdown(f"**What our measurements say:** {shipped.verdict}")
    st.caption(pv.caption(shipped) + f" Precomputed by `bench/poisoning.py --settings` in {shipped.seconds:.0f} s on "
               f"the shared 2-core CPU ({shipped.seconds / max(r.trials, 1):.0f} s a trial), so it is shown rather "
               "than run on load; add ImageNet under Features and press Run under Table 2 to compute it live (with "
               "progress and Cancel).")
    st.code(pv.shipped_command(shipped), language="bash")

main()
