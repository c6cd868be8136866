"""Training lab: standard, adversarial and multi-strength adversarial training (MAT) compared.

The shipped models' cards -> Figure 4, Table 1, the random walk and the voting weights (nothing is
recomputed on page load); Table 1 recomputed under both protocols on a few test images
(advcore.labs.training.table1, the same function as ``python -m advcore table1``) beside the cards' numbers;
a short training run of a person's own through ``ui.views.training`` (advcore.labs.training.train and
evaluate) joins the charts.
"""

from __future__ import annotations

import streamlit as st

from advcore import datasets
from advcore.errors import AdvlabError
from advcore.labs import training
from ui import plots
from ui.frame import (
    add_session_model,
    app_frame,
    url_choice,
    url_choices,
    url_number,
    url_show_list,
    url_show_number,
    url_value,
)
from ui.session import TRAIN_RUN, TRAIN_RUN_COUNT, TRAIN_RUNS, PageRun, SessionCache, next_number
from ui.views import training as training_view
from ui.views.training import DATASET_TITLES, RECIPE_TITLES, RunRequest
from ui.widgets import download_figure, download_json, download_table

INTRO = (
    "Each line below is one of our shipped Fashion-MNIST models, and shows how its accuracy falls as the attack "
    "gets stronger: first compare the standard model's curve with the adversarially trained ones, then train a "
    "small model of your own at the bottom of the page and watch its curve join the chart."
)
KEEP = "session"  # training settings survive a visit to another page
RUNS, RUN = TRAIN_RUNS, TRAIN_RUN  # this session's runs (number -> card); the Train button's run
TABLE1_RUN = PageRun("_advlab_train_table1")  # the Run / Recompute button's run of Table 1
TABLE1_RESULTS: SessionCache = SessionCache("_advlab_train_table1_results", 4)  # Table1Request -> table


def figure4(cards: list[dict]) -> None:
    """Accuracy against attack strength under FGSM and PGD-10, one line per model."""
    c1, c2 = st.columns(2)
    fgsm = plots.accuracy_vs_strength(training_view.series(cards, "fgsm"), "FGSM")
    c1.plotly_chart(fgsm, key="train_fig4_fgsm")
    download_figure(c1, fgsm, "figure4_fgsm.html", key="train_dl_fig4", label="Download FGSM chart (HTML)")
    pgd = training_view.series(cards, "pgd")
    if pgd:
        c2.plotly_chart(plots.accuracy_vs_strength(pgd, "PGD-10"), key="train_fig4_pgd")
    else:
        c2.info("No card holds a PGD curve yet.")
    shipped = [c for c in cards if c.get("run") is None]
    n = {a: sorted({c["curves"][a]["n"] for c in shipped if a in c.get("curves", {})}) for a in ("fgsm", "pgd")}
    sizes = {a: " or ".join(f"{v:,}" for v in vals) or "no" for a, vals in n.items()}
    note = (" Your runs are dashed; they are measured with FGSM only, on the number of images you chose "
            "(PGD-10 takes ten times longer: use the command line below)." if len(shipped) < len(cards) else "")
    st.caption(f"Notice how fast the standard model's accuracy falls and how the adversarially trained models "
               f"hold it at the strengths they trained at. Untargeted L-inf attacks with the true labels; "
               f"FGSM curves on {sizes['fgsm']} and PGD-10 curves on {sizes['pgd']} images of the shipped "
               f"Fashion-MNIST test subset (official test images, balanced over the 10 classes).{note}")


def table1(cards: list[dict]) -> None:
    """Average accuracy over the strength range per model, with clean accuracy and training cost."""
    rows = training_view.table_rows(cards)
    st.table(rows, hide_index=True, border="horizontal")
    t1, t2 = st.columns(2)
    download_table(t1, rows, "table1.csv", key="train_dl_table1")
    download_json(t2, cards, "model_cards.json", key="train_dl_cards", label="Download the model cards (JSON)")
    eps = sorted({e for c in cards for cur in c.get("curves", {}).values() for e in cur["eps"]})
    span = f"the {len(eps)} strengths from {eps[0]:g} to {eps[-1]:g}" if eps else "the strengths"
    threads = sorted({c["environment"]["threads"] for c in cards if "threads" in c.get("environment", {})})
    where = (f" (the shipped models: {' or '.join(map(str, threads))} torch "
             f"thread{'' if threads == [1] else 's'} on a shared CPU, so the "
             "seconds include contention)" if threads else "")
    st.caption(f"Averages are the mean accuracy over {span} (eps 0 included, as in the paper's range); clean "
               f"accuracy is on every image of the evaluation set; training time is the wall time of training "
               f"recorded in each card{where}.")


def table1_interrupted(left: dict, was_cancelled: bool) -> str:
    """What to say about a Table 1 run that a rerun stopped (``left``: its last progress marker)."""
    where = (f"{left['label']}: {left.get('stage', '')}, step {left.get('step', '?')} of {left.get('total', '?')}"
             if left.get("label") else "the start")
    return f"Table 1 {'cancelled' if was_cancelled else 'interrupted'} at {where}; nothing was kept."


def table1_recompute_section(cards: list[dict], dataset: str, device: str) -> None:
    """Recompute / Run Table 1 under both protocols with progress and Cancel, cached, beside the cards."""
    st.markdown("**Recompute Table 1 here** (both protocols, on a few test images)")
    c1, c2 = st.columns(2)
    images, strengths = training_view.TABLE1_IMAGES, training_view.TABLE1_EPS
    url_value("t1n", "train_t1_n", url_choice([str(v) for v in images], list(images)))
    n = c1.select_slider("Test images", images, 100, key="train_t1_n", format_func=lambda v: f"{v:,}",
                         persist_state=KEEP, help="The first N images of the evaluation set.")
    url_value("t1eps", "train_t1_eps", url_choice(list(strengths)))
    eps = c2.radio("Strengths", list(strengths), format_func=strengths.get, key="train_t1_eps", horizontal=True,
                   persist_state=KEEP)
    req = training_view.Table1Request(dataset, int(n), str(eps), device)
    have = TABLE1_RESULTS.get(req)
    pending = TABLE1_RUN.take_request()
    b1, b2 = st.columns([1, 5])
    b1.button("Recompute" if have else "Run", key="train_t1_run", icon=":material/play_arrow:",
              disabled=pending is not None, on_click=TABLE1_RUN.request, args=(req,))
    TABLE1_RUN.show_notices(table1_interrupted)
    if pending is not None:
        TABLE1_RUN.cancel_button(b2, key="train_t1_cancel")
        bar = st.progress(0.0, text="Loading the models")
        out = TABLE1_RUN.execute(pending.job(), lambda left: table1_interrupted(left or {}, True),
                                 on_step=TABLE1_RUN.live(bar, "Table 1"))
        if out is not None:
            TABLE1_RESULTS.put(pending, out)
        st.rerun()
    if have:
        rows = training_view.table1_rows(cards, have)
        st.dataframe(rows, hide_index=True, width="stretch",
                     column_config={k: st.column_config.NumberColumn(format="%.3f") for k in rows[0] if k != "model"})
        st.caption(training_view.table1_caption(rows, have, cards))
        download_json(st, have, "table1_recomputed.json", key="train_dl_t1",
                      label="Download the recomputed table (JSON)")
    st.code("\n".join(req.commands()), language="bash")


def random_walk_section(cards: list[dict]) -> None:
    """The chosen strengths, the walk's path over the grid and the accuracy matrix A."""
    chosen_cards = training_view.selections(cards)
    if not chosen_cards:
        st.info("No shipped model card records a random-walk selection yet: the mixed and parallel MAT models "
                "choose their strengths this way (scripts/train_zoo.sh trains them).")
        return
    names = [c["name"] for c in chosen_cards]
    if len(names) > 1:
        url_value("walk", "train_walk_card", url_choice(names))
    name = names[0] if len(names) == 1 else st.radio(
        "Random walk of", names, horizontal=True, key="train_walk_card", persist_state=KEEP,
        format_func=lambda n: training_view.short_label(next(c for c in chosen_cards if c["name"] == n)))
    card = next(c for c in chosen_cards if c["name"] == name)
    sel = card["strength_selection"]
    walk, matrix = sel["walk"], sel.get("matrix") or {}
    w1, w2 = st.columns(2)
    w1.plotly_chart(plots.walk_path(walk["path"], walk["grid"], walk["strengths"]), key="train_walk_path")
    A = matrix.get("accuracy") or walk.get("accuracy")
    if A:
        cols = matrix.get("attack_eps") or list(range(len(A[0])))
        w2.plotly_chart(plots.accuracy_matrix_heatmap(A, matrix.get("grid") or walk["grid"], cols, walk["strengths"]),
                        key="train_walk_matrix")
    st.caption(training_view.walk_caption(card))


def voting_section(cards: list[dict], key: str) -> None:
    """Parallel MAT's learned voting weights, one bar chart per card."""
    for card in training_view.voting(cards):
        weights = [float(w) for w in card["voting"]["weights"]]
        v1, v2 = st.columns([1.2, 1])
        v1.plotly_chart(plots.voting_weights(card["strengths"], weights), key=f"{key}_{card['name']}")
        top = max(range(len(weights)), key=weights.__getitem__)
        rounds = card["voting"].get("rounds") or []
        acc = (f" After fitting, the weighted vote gets {training_view.pct(rounds[-1]['vote_accuracy'])} of those "
               "images right." if rounds and "vote_accuracy" in rounds[-1] else "")
        v2.markdown(f"**{training_view.short_label(card)}**" + ("" if card.get("run") is not None
                                                                 else f" ({card['name']})"))
        v2.caption(f"The weights sum to {sum(weights):.3f}; the sub-network trained at eps "
                   f"{card['strengths'][top]:g} has the largest say ({weights[top]:.3f}). They are "
                   f"{card['voting'].get('method', 'learned on held-out images')}.{acc}")


def controls(device: str) -> RunRequest:
    """The training widgets; returns the request they describe."""
    have_fmnist = datasets.fashion_mnist_available()
    options = ["fashion-mnist", "digits"] if have_fmnist else ["digits"]
    c1, c2, c3 = st.columns([1.2, 1.3, 1.5])
    url_value("data", "train_dataset", url_choice(options))
    dataset = c1.radio("Data", options, format_func=DATASET_TITLES.get, key="train_dataset", persist_state=KEEP,
                       horizontal=True, help="Fashion-MNIST: 28x28 clothes, 55,000 training images. Digits: "
                                             "scikit-learn's 8x8 handwritten digits, 1,097 training images.")
    url_value("recipe", "train_recipe", url_choice(list(training.RECIPES)))
    recipe = c2.selectbox("Recipe", training.RECIPES, format_func=RECIPE_TITLES.get, key="train_recipe",
                          persist_state=KEEP, help="Standard, single-strength adversarial training (half clean, "
                                                   "half adversarial) or multi-strength (MAT).")
    url_value("strengths", "train_strengths",
              url_choices([f"{v:g}" for v in training_view.GRID], list(training_view.GRID)),
              url_show_list(url_show_number))
    strengths = c3.multiselect("Strengths (L-inf eps)", training_view.GRID, default=[0.1], key="train_strengths",
                               format_func=lambda v: f"{v:g}", disabled=recipe == "standard", persist_state=KEEP,
                               help="Single strength: exactly one. MAT: several, e.g. 0.05, 0.2, 0.3.")
    d1, d2, d3, d4 = st.columns(4)
    url_value("epochs", "train_epochs", url_number(1, training_view.MAX_EPOCHS, integer=True))
    epochs = d1.slider("Epochs", 1, training_view.MAX_EPOCHS, 1, key="train_epochs", persist_state=KEEP)
    url_value("images", "train_limit", url_choice([str(v) for v in training_view.IMAGE_CHOICES],
                                                  list(training_view.IMAGE_CHOICES)))
    limit = d2.select_slider("Training images", training_view.IMAGE_CHOICES, 2000, key="train_limit",
                             format_func=lambda v: f"{v:,}", persist_state=KEEP,
                             help="The first N training images (digits has 1,097 in all).")
    url_value("eval", "train_eval_n", url_choice([str(v) for v in training_view.EVAL_CHOICES],
                                                 list(training_view.EVAL_CHOICES)))
    eval_n = d3.select_slider("Evaluation images", training_view.EVAL_CHOICES, 500, key="train_eval_n",
                              format_func=lambda v: f"{v:,}", persist_state=KEEP,
                              help="Images of the FGSM curve (digits: at most 500).")
    url_value("seed", "train_seed", url_number(0, 2**31 - 1, integer=True))
    seed = d4.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="train_seed", persist_state=KEEP,
                           help="Initialisation, shuffling and PGD starts: the same seed, the same model.")
    if not have_fmnist:
        st.info("Fashion-MNIST is not installed on this machine, so your runs use scikit-learn's digits (drawn "
                "on a chart of their own). To train on Fashion-MNIST, install it: `apt-get install "
                "dataset-fashion-mnist`.")
    return RunRequest(dataset=dataset, recipe=recipe, strengths=tuple(sorted(strengths)) if recipe != "standard"
                      else (), epochs=int(epochs), limit=int(limit), seed=int(seed), eval_n=int(eval_n),
                      device=device)


def train(req: RunRequest, bar, status, chart) -> dict | None:
    """Train and evaluate ``req`` (in a worker process, ``ui.workers``) with live progress on ``bar``, the latest
    messages in ``status`` and the loss curve in ``chart``; keep its card in this session's runs and its model in
    the session's model list. None when it was cancelled or refused (the notice says why)."""
    log = training_view.TrainingLog()

    def draw(p=None) -> None:
        if p is not None and p.message:
            status.caption(log.recent_messages())
        if log.chart_due(p):
            chart.plotly_chart(plots.loss_curves(log.losses, log.chart_title()))

    out = RUN.execute(training_view.job(req), training_view.cancelled,
                      on_step=RUN.live(bar, text=log.record, marker=log.marker, then=draw))
    if out is None:
        return None
    trained, model = out
    draw()
    card = training_view.run_card(req, trained, next_number(TRAIN_RUN_COUNT), log)
    card["sidebar_model"] = add_session_model(card["name"], model, card)  # this session only
    return RUNS.put(card["run"], card)


def train_section(device: str) -> None:
    """Widgets, Train / Cancel, live progress, and the command line of the same run.

    A run ends with st.rerun, so the page is redrawn with the run on the charts (or with why it stopped).
    A click on Cancel reruns the page, which stops the run at its next progress report.
    """
    req = controls(device)
    error = None
    try:
        req.check()
    except AdvlabError as exc:
        error = str(exc)
        st.error(error)
    pending = RUN.take_request()
    b1, b2 = st.columns([1, 5])
    b1.button("Train", type="primary", key="train_start", icon=":material/play_arrow:",
              disabled=error is not None or pending is not None, on_click=RUN.request, args=(req,))
    RUN.show_notices(training_view.interrupted)
    if pending is not None:
        RUN.cancel_button(b2, key="train_cancel", label="Cancel training")
        bar = st.progress(0.0, text=f"Loading the {DATASET_TITLES.get(pending.dataset, pending.dataset)} images")
        card = train(pending, bar, st.empty(), st.empty())
        if card is not None:
            RUN.notice("success", f"{card['name']} is trained and evaluated: it is on the charts and in the table "
                                  "above (dashed), and described below; the sidebar's model list offers "
                                  f"it (this session only) as {card['sidebar_model']}.")
        st.rerun()
    st.markdown("**The same run from the command line**")
    st.code(req.cli_command(), language="bash")
    st.caption("The page keeps runs short (at most 20,000 images and 3 epochs). The shipped models were trained on "
               "all 55,000 images (scripts/train_zoo.sh); long runs, PGD-10 curves and the random walk "
               "(--strengths auto) belong on the command line, which writes a checkpoint and a model card that "
               f"`python -m advcore eval --model {training_view.OUT_DIR}/NAME.json` reads.")


def runs_section(runs: list[dict], cards_dataset: str | None) -> None:
    """This session's runs: one line each, the last one's loss curve, voting weights, other-dataset curves."""
    if not runs:
        return
    st.subheader("Your runs")
    for card in runs:
        st.markdown(training_view.run_summary(card))
    last = runs[-1]
    l1, l2 = st.columns(2)
    if last.get("losses"):
        l1.plotly_chart(plots.loss_curves(last["losses"], f"Training loss of {last['name']}"),
                        key="train_run_loss")
    other = [r for r in runs if r["dataset"] != cards_dataset]
    if other:
        title = f"Your runs on {DATASET_TITLES.get(other[0]['dataset'], other[0]['dataset'])} (FGSM)"
        l2.plotly_chart(plots.accuracy_vs_strength(training_view.series(other, "fgsm"), title),
                        key="train_run_other")
    voting_section([last], key="train_run_votes")
    st.button("Forget my runs", key="train_forget", on_click=RUNS.clear)


def main() -> None:
    sel = app_frame()
    st.title("Training lab")
    st.markdown(INTRO)
    cards, skipped = training_view.load_cards()
    dataset = cards[0]["dataset"] if cards else None
    cards = [c for c in cards if c["dataset"] == dataset]

    runs = RUNS.values()  # oldest first
    shown = cards + [r for r in runs if r["dataset"] == dataset]
    st.subheader("Accuracy against attack strength (the paper's Figure 4)")
    if not cards:
        st.warning("No shipped model card with accuracy curves was found in assets/models; "
                   "scripts/train_zoo.sh trains and evaluates the models.")
    else:
        figure4(shown)
        st.subheader("Average accuracy over the strength range (the paper's Table 1)")
        table1(shown)
        st.subheader("What our measurements say")
        st.markdown(" ".join(training_view.findings(cards)))
        st.markdown(training_view.paper_comparison())
        st.subheader("The paper's evaluation protocol and label leaking")
        st.markdown(" ".join(training_view.protocol_findings(cards)) or
                    "No card holds a paper-protocol curve yet: `python -m advcore table1 --update-cards`.")
        st.caption("Precomputed by `python -m advcore table1 --protocol paper --update-cards` (all 3,000 images "
                   "of the shipped subset); `--protocol white-box` gives the other protocol.")
        table1_recompute_section(cards, dataset, sel.device)
        st.subheader("How the strengths were chosen: the random walk (Sec. 4.3)")
        random_walk_section(cards)
        st.caption(training_view.reconstructions())
        if training_view.voting(cards):
            st.subheader("Parallel MAT's learned voting weights")
            voting_section(cards, key="train_votes")
    if skipped:
        st.caption("Skipped model cards: " + "; ".join(skipped))

    st.subheader("Train a model yourself")
    train_section(sel.device)
    runs_section(runs, dataset)


main()
