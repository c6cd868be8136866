"""Compare attacks: every attack on a set of images at the same budget, and how their images transfer.

Widgets -> ``advcore.labs.compare.compare`` (kept in ui.session.COMPARE_RESULTS) -> table, bar charts,
transfer heat map, ASR-against-eps curves, downloads, the paper's figures quoted next to ours.
"""

from __future__ import annotations

import streamlit as st

from advcore import models
from advcore.attacks import ATTACKS
from advcore.errors import AdvlabError
from advcore.labs import compare
from ui import workers
from ui.frame import (
    app_frame,
    command_line,
    error_boundary,
    md_escape,
    url_choice,
    url_choices,
    url_number,
    url_show_list,
    url_show_number,
    url_value,
)
from ui.session import COMPARE_RESULTS, COMPARE_RUN
from ui.views import compare as cv
from ui.widgets import download_figure

INTRO = (
    "Run the attacks on a set of images at the same budget and see which fools the model most often, "
    "which changes the image least, and whether its images also fool the other models: press Run with the "
    "defaults first, then read the transfer heat map."
)
KEEP = "session"
RESULTS, RUN = COMPARE_RESULTS, COMPARE_RUN  # this session's comparisons and sweeps; the Run buttons' run
NORM_TITLES = {"linf": "L-infinity", "l2": "L2"}
LIMITS = [10, 20, 50, 100, 200]
IMAGE_SOURCES = {"samples": cv.SOURCE_SAMPLES, "uploads": cv.SOURCE_UPLOADS}  # URL name -> radio option


def family_models(dataset: str) -> list[str]:
    return [n for n in models.names() if models.get_spec(n).dataset == dataset]


def controls(sel) -> tuple[cv.CompareRequest, list, str | None]:
    """The widgets; returns the request, the uploaded files and an error message (or None)."""
    try:
        sidebar_dataset = models.get_spec(sel.model).dataset
    except AdvlabError:
        sidebar_dataset = "imagenet"
    families = [d for d in cv.FAMILIES if family_models(d)]
    default_family = families.index(sidebar_dataset) if sidebar_dataset in families else 0
    url_value("models", f"compare_family_{sidebar_dataset}", url_choice(families))
    dataset = st.radio("Models", families, index=default_family, format_func=cv.FAMILIES.get, horizontal=True,
                       key=f"compare_family_{sidebar_dataset}",
                       help="All models of one comparison share a dataset (the same classes). The default follows "
                            "the sidebar's model.")
    names = family_models(dataset)
    default_source = [sel.model] if sel.model in names else names[:1]
    c1, c2 = st.columns(2)
    url_value("sources", f"compare_sources_{dataset}", url_choices(names), url_show_list())
    sources = c1.multiselect("Source models (the attacks see their gradients)", names, default=default_source,
                             key=f"compare_sources_{dataset}", persist_state=KEEP)
    by_role = models.roles(dataset)
    preferred = [by_role[r] for r in ("naive", "fgsm", "pgd") if r in by_role and by_role[r] in names] or names[:3]
    url_value("targets", f"compare_targets_{dataset}", url_choices(names), url_show_list())
    targets = c2.multiselect("Target models (shown the adversarial images)", names,
                             default=names if dataset == "imagenet" else preferred,
                             key=f"compare_targets_{dataset}", persist_state=KEEP,
                             help="The source models are always targets too: that is the white-box diagonal.")
    targets = list(dict.fromkeys([*sources, *targets]))  # sources first, so the diagonal runs down the matrix

    uploads: list = []
    limit = None
    if dataset == "imagenet":
        i1, i2 = st.columns([1, 2])
        url_value("images", "compare_images", url_choice(list(IMAGE_SOURCES), list(IMAGE_SOURCES.values())),
                  lambda v: "uploads" if v == cv.SOURCE_UPLOADS else "samples")
        choice = i1.radio("Images", [cv.SOURCE_SAMPLES, cv.SOURCE_UPLOADS], key="compare_images", horizontal=True,
                          persist_state=KEEP)
        images = "samples"
        if choice == cv.SOURCE_UPLOADS:
            images = "uploads"
            uploads = i2.file_uploader("Upload photos", type=["png", "jpg", "jpeg", "webp", "bmp"],
                                       accept_multiple_files=True, key="compare_uploads",
                                       help=f"Up to {cv.MAX_UPLOADS} images, each up to 20 MB.") or []
        else:
            i2.caption(f"The {len(compare.bundled_images())} bundled photos (public domain or CC0, listed in "
                       "assets/samples/samples.json), centre-cropped to each source model's input.")
    else:
        images = "fashion-mnist"
        url_value("n", "compare_limit", url_choice([str(v) for v in LIMITS], LIMITS))
        limit = st.select_slider("Test images", LIMITS, 20, key="compare_limit", persist_state=KEEP,
                                 help="The first N images of the shipped Fashion-MNIST test subset (balanced over "
                                      "the 10 classes).")
    d1, d2, d3, d4 = st.columns([1.1, 1.6, 1.0, 0.8])
    url_value("norm", "compare_norm", url_choice(list(NORM_TITLES)))
    norm = d1.radio("Norm", list(NORM_TITLES), format_func=NORM_TITLES.get, key="compare_norm", horizontal=True,
                    persist_state=KEEP)
    if norm == "linf" and dataset == "imagenet":
        url_value("eps", "compare_eps_linf", url_number(1, 16, integer=True, unit=" (x/255)"))
        k = d2.slider("eps (x/255)", 1, 16, 4, key="compare_eps_linf", persist_state=KEEP)
        eps = k / 255.0
    elif norm == "linf":
        url_value("eps", "compare_eps_linf_px", url_number(0.01, 0.3, unit=" (pixel units)"), url_show_number)
        eps = round(d2.slider("eps (pixel units)", 0.01, 0.3, 0.1, step=0.01, key="compare_eps_linf_px",
                              persist_state=KEEP), 4)
    else:
        url_value("eps", "compare_eps_l2", url_number(0.1, 10.0, unit=" (pixel L2)"), url_show_number)
        eps = round(d2.slider("eps (pixel L2)", 0.1, 10.0, 1.0, step=0.1, key="compare_eps_l2", persist_state=KEEP), 4)
    url_value("steps", "compare_steps", url_number(1, 50, integer=True))
    steps = d3.slider("steps", 1, 50, 10, key="compare_steps", persist_state=KEEP,
                      help="The same budget for every iterative attack; FGSM takes one step.")
    url_value("seed", "compare_seed", url_number(0, 2**31 - 1, integer=True))
    seed = d4.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="compare_seed", persist_state=KEEP,
                           help="PGD's random start: the same seed gives the same numbers.")
    url_value("attacks", "compare_attacks", url_choices(list(compare.ALL_ATTACKS)), url_show_list())
    chosen = st.multiselect("Attacks", list(compare.ALL_ATTACKS), default=list(compare.DEFAULT_ATTACKS),
                            format_func=lambda n: ATTACKS[n].title,
                            key="compare_attacks", persist_state=KEEP,
                            help="The default is the AGR paper's five; APGD and Square also take the one stop rule.")
    attacks_ = tuple(a for a in compare.ALL_ATTACKS if a in chosen)
    square_queries = compare.DEFAULT_SQUARE_QUERIES
    if any(a in compare.QUERY_ATTACKS for a in attacks_):
        q = compare.SQUARE_QUERIES
        url_value("queries", "compare_square_queries", url_number(int(q.low), int(q.high), integer=True))
        square_queries = int(st.number_input(
            "Square: queries per image", int(q.low), int(q.high), compare.DEFAULT_SQUARE_QUERIES, step=100,
            key="compare_square_queries", persist_state=KEEP,
            help="Square's own budget (its n_queries), not the steps above: it only queries the model's scores, "
                 "takes no gradient, and its steps to success are counted in queries."))
    url_value("radius", "compare_radius", url_choices(list(compare.RADIUS_ATTACKS)), url_show_list())
    radius = st.multiselect("Robustness radius (minimal-norm attacks, optional)", list(compare.RADIUS_ATTACKS),
                            default=[], format_func=lambda n: ATTACKS[n].title, key="compare_radius",
                            persist_state=KEEP,
                            help="Also search each image for its smallest adversarial perturbation, at each attack's "
                                 "own defaults (no budget, its own stop rule; C&W's binary search costs hundreds of "
                                 "gradient steps per image). Shown in its own section, not ranked with the attacks "
                                 "above.")
    o1, o2, o3 = st.columns([1.2, 1.2, 1.0])
    url_value("stop", "compare_stop", url_choice(list(compare.STOP_POLICIES)))
    stop = o1.radio("Stop on success", compare.STOP_POLICIES, format_func=cv.STOP_LABELS.get, horizontal=True,
                    key="compare_stop", persist_state=KEEP,
                    help="One rule for every iterative attack (I-FGSM, PGD, MI-FGSM, AGR, APGD, Square): stop each "
                         "image at its first adversarial iterate, or run every step (APGD still returns its first "
                         "adversarial iterate; Square keeps querying a fooled image for a lower loss). One rule for "
                         "all keeps the comparison fair.")
    url_value("agr_alpha", "compare_agr_alpha", url_choice(list(compare.AGR_ALPHAS)))
    agr_alpha = o2.radio("AGR's base step alpha", compare.AGR_ALPHAS, format_func=cv.AGR_ALPHA_LABELS.get,
                         horizontal=True, key="compare_agr_alpha", persist_state=KEEP,
                         help="eps as the paper's Eq. 11 (the first AGR step is then an FGSM step), or eps/steps, "
                              "the step I-FGSM and MI-FGSM take.")
    resolution = None
    if dataset == "imagenet":
        url_value("size", "compare_resolution", url_choice(["own", *map(str, compare.RESOLUTIONS)],
                                                           [None, *compare.RESOLUTIONS]))
        res = o3.selectbox("Input size", [None, *compare.RESOLUTIONS], format_func=cv.resolution_label,
                           key="compare_resolution", persist_state=KEEP,
                           help="Each model's own input size (a target of another size sees resized images), or "
                                "one common size for every model so that no image is resized between them.")
        resolution = None if res is None else int(res)
    upload_key = tuple(f"{getattr(f, 'file_id', '')}:{f.name}:{f.size}" for f in uploads)
    req = cv.CompareRequest(dataset=dataset, sources=tuple(sources), targets=tuple(targets), attacks=attacks_,
                            norm=norm, eps=(eps,), eps_text=cv.eps_text(eps, norm, dataset), steps=int(steps),
                            seed=int(seed), images=images, limit=limit, upload_key=upload_key, device=sel.device,
                            stop_on_success=stop, agr_alpha=agr_alpha, resolution=resolution,
                            radius=tuple(a for a in compare.RADIUS_ATTACKS if a in radius),
                            square_queries=square_queries)
    error = None
    try:
        req.check()
    except AdvlabError as exc:
        error = str(exc)
    return req, uploads, error


def sweep_requests(req: cv.CompareRequest) -> tuple[cv.CompareRequest, cv.CompareRequest]:
    """The L-inf and L2 sweeps of the same images, sources, attacks, steps and seed (no other targets)."""
    from dataclasses import replace

    small = req.dataset != "imagenet"
    linf = cv.LINF_SWEEP_SMALL if small else cv.LINF_SWEEP_IMAGENET
    l2 = cv.L2_SWEEP_SMALL if small else cv.L2_SWEEP_IMAGENET
    out = []
    for norm, grid in (("linf", linf), ("l2", l2)):
        text = ",".join(cv.eps_text(e, norm, req.dataset) for e in grid)
        out.append(replace(req, targets=req.sources, norm=norm, eps=tuple(grid), eps_text=text, kind=f"sweep-{norm}",
                           radius=()))  # the sweep is ASR against eps: no radius
    return out[0], out[1]


def request_run(*reqs: cv.CompareRequest) -> None:
    """A Run button's callback: queue the request(s), clear an old cancel."""
    RUN.request(tuple(reqs))


def run_all(reqs: tuple[cv.CompareRequest, ...], bar, uploads: list) -> list[compare.CompareResult]:
    """Each request from the cache or from advcore, drawing progress on ``bar``; Cancel stops it."""
    out = []
    for i, req in enumerate(reqs):
        hit = RESULTS.get(req)
        if hit is None:
            label = f"run {i + 1} of {len(reqs)}: " if len(reqs) > 1 else ""
            live = RUN.live(bar, text=lambda p, label=label: cv.progress_text(p, label), marker=lambda p: p.stage)
            # once for all sessions; in a worker process at the lowest priority (ui.workers)
            hit = RESULTS.put(req, RUN.shared(req, lambda r=req, f=live: workers.run(cv.job(r, uploads), f)))
        out.append(hit)
    return out


def run_pending(uploads: list) -> None:
    """Run the queued request(s) with a progress bar and a Cancel button, then rerun to show the result."""
    pending = RUN.take_request()
    if pending is None:
        return
    RUN.cancel_button(key="compare_cancel")
    bar = st.progress(0.0, text="Loading the models and images")
    RUN.execute(lambda: run_all(pending, bar, uploads), cv.cancelled)
    st.rerun()


def last_table() -> tuple[cv.CompareRequest, compare.CompareResult] | None:
    """The latest comparison of this session (shown, marked as such, when the settings changed since)."""
    return RESULTS.last(lambda r: r.kind == "table")


def results_section(req: cv.CompareRequest, result: compare.CompareResult, stale: bool) -> None:
    """Table, bar charts, transfer heat map, words, downloads for one comparison."""
    if stale:
        st.info("These are the results of your last run; the settings above have changed since. Press Run to "
                "compute the new ones.")
    notes = result.notes or []
    if notes:
        st.caption("Skipped: " + md_escape("; ".join(notes)))
    st.subheader("Per-attack results")
    rows = cv.table_rows(result)
    st.table(rows, hide_index=True, border="horizontal")
    st.caption(cv.table_caption(result))
    b1, b2 = st.columns(2)
    b1.plotly_chart(cv.metric_bars(result, "asr", "Attack success rate", "ASR (%)", percent=True),
                    key="compare_bar_asr")
    b2.plotly_chart(cv.metric_bars(result, "cosine_similarity", "Cosine similarity, clean vs adversarial (± sd)",
                                   "cosine", spread="cosine_similarity_std"), key="compare_bar_cos")
    b3, b4 = st.columns(2)
    b3.plotly_chart(cv.metric_bars(result, "amp", "AMP (mean absolute perturbation)", "AMP (pixel units)"),
                    key="compare_bar_amp")
    b4.plotly_chart(cv.metric_bars(result, "p_clean", cv.P_CLEAN_TITLE, cv.P_CLEAN_AXIS), key="compare_bar_p_clean")
    b5, b6 = st.columns(2)
    b5.plotly_chart(cv.metric_bars(result, "l2", "L2 size of the perturbation", "L2 (pixel L2)"),
                    key="compare_bar_l2")
    b6.plotly_chart(cv.metric_bars(result, "linf", "L-inf size of the perturbation (mean)", "L-inf (pixel units)"),
                    key="compare_bar_linf")
    st.markdown(" ".join(compare.ranking_finding(result)))

    st.subheader("Transferability")
    attack = st.selectbox("Attack shown in the heat map", result.attacks, key="compare_heat_attack",
                          index=result.attacks.index("agr") if "agr" in result.attacks else 0,
                          format_func=lambda a: result.attack_titles[a])
    views = cv.transfer_views(result)
    which = st.radio("Transfer measured on", views, format_func=cv.TRANSFER_VIEWS.get, horizontal=True,
                     key="compare_heat_which")
    heat = cv.transfer_heatmap(result, attack, which)
    st.plotly_chart(heat, key="compare_heatmap")
    st.markdown(compare.transfer_finding(result, attack))
    resize = ("every model sees the same " + f"{result.resolution}x{result.resolution} pixels" if result.resolution
              else "images are resized for a target with another input size (" + result.transfer_resize + ")")
    st.caption("Rows: the model the adversarial images were made on; columns: the model they are shown to. The "
               "outlined, starred diagonal is the white-box success rate (the same number as the table). "
               + result.success.capitalize() + "; " + resize + ".")
    st.table(cv.agreement_rows(result), hide_index=True, border="horizontal")
    st.caption(cv.accuracy_caption(result))

    radius_section(result)

    st.subheader("AGR against I-FGSM and MI-FGSM")
    st.markdown("**What this run measured.** " + " ".join(cv.measured_sentences(result)))
    st.markdown(cv.paper_quote(result.norm))

    st.subheader("Downloads and the command line")
    d1, d2, d3, d4 = st.columns(4)
    d1.download_button("Per-attack table (CSV)", cv.csv_bytes(compare.table_rows(result)), file_name="compare.csv",
                       mime="text/csv", on_click="ignore", key="compare_dl_table")
    d2.download_button("Transfer matrices (CSV)", cv.csv_bytes(compare.transfer_rows(result)),
                       file_name="transfer.csv", mime="text/csv", on_click="ignore", key="compare_dl_transfer")
    d3.download_button("Whole run (JSON)", cv.json_bytes(result), file_name="compare.json",
                       mime="application/json", on_click="ignore", key="compare_dl_json")
    download_figure(d4, heat, "transfer.html", key="compare_dl_heatmap", label="Transfer heat map (HTML)")
    command_line(req.cli_command())
    if req.images == "uploads":
        st.caption("Put your uploaded images in a folder named uploads/ next to the command.")


def radius_section(result: compare.CompareResult) -> None:
    """The minimal-norm attacks' per-image robustness radius, sortable, with the medians (views: no recompute)."""
    st.subheader("Robustness radius (minimal-norm attacks)")
    if not result.radius:
        st.caption("Not measured in this run: choose C&W or DeepFool under 'Robustness radius' and press Run to "
                   "see each image's smallest adversarial perturbation.")
        return
    st.caption(compare.RADIUS_NOTE)
    sources = list(result.radius)
    source = sources[0] if len(sources) == 1 else st.selectbox("Radius on", sources, key="compare_radius_source")
    by = list(result.radius[source])
    r1, r2 = st.columns(2)
    sort_by = r1.selectbox("Sort by the radius of", by, key="compare_radius_sort",
                           format_func=lambda a: cv.radius_column(result, source, a))
    order = r2.radio("Order", list(cv.RADIUS_ORDERS), format_func=cv.RADIUS_ORDERS.get, horizontal=True,
                     key="compare_radius_order")
    st.table(cv.radius_table(result, source, sort_by, order == "descending"), hide_index=True,
             border="horizontal")
    st.markdown(compare.radius_finding(result, source))
    st.table(cv.radius_medians(result), hide_index=True, border="horizontal")
    st.caption("Median over every image; an image whose search found nothing counts as larger than every found "
               "radius, so the median reads 'not found' when the middle image(s) had none. L-inf radii "
               "in 8-bit levels (x/255), L2 radii in pixel L2 (pixels in [0, 1]).")
    st.download_button("Radius per image (CSV)", cv.csv_bytes(compare.radius_rows(result, source, sort_by)),
                       file_name="radius.csv", mime="text/csv", on_click="ignore", key="compare_dl_radius")


def sweep_section(req: cv.CompareRequest, error: str | None) -> None:
    """ASR against eps for L-inf and L2 (the paper's Figures 3 and 5), on demand."""
    st.subheader("ASR against eps (the paper's Figures 3 and 5)")
    linf, l2 = sweep_requests(req)
    results = [RESULTS.get(linf), RESULTS.get(l2)]
    cost = (len(linf.eps) + len(l2.eps)) * len(req.sources)
    st.button("Run the eps sweep", key="compare_sweep", icon=":material/show_chart:", disabled=error is not None,
              on_click=request_run, args=(linf, l2),
              help=f"Runs the chosen attacks {cost} times over ({len(linf.eps)} L-inf and {len(l2.eps)} L2 budgets "
                   "per source model): expect several times the time of one comparison.")
    if not any(results):
        st.caption(f"Not run yet for these settings. L-inf budgets "
                   f"{', '.join(cv.eps_text(e, 'linf', req.dataset) for e in linf.eps)}; L2 budgets "
                   f"{', '.join(f'{e:g}' for e in l2.eps)}.")
        return
    source = req.sources[0] if len(req.sources) == 1 else st.selectbox("Sweep of", req.sources,
                                                                       key="compare_sweep_source")
    s1, s2 = st.columns(2)
    for col, res, key in ((s1, results[0], "linf"), (s2, results[1], "l2")):
        if res is not None:
            col.plotly_chart(cv.sweep_figure(res, source), key=f"compare_sweep_{key}")
    st.markdown(" ".join(f"{NORM_TITLES[res.norm]}: {compare.sweep_finding(res, source)}" for res in results
                         if res is not None)
                + " The paper's Figures 3 and 5 show AGR's curve above I-FGSM's and MI-FGSM's for its models.")
    rows = [r for res in results if res is not None for r in compare.sweep_rows(res)]
    st.download_button("ASR against eps (CSV)", cv.csv_bytes(rows), file_name="sweep.csv", mime="text/csv",
                       on_click="ignore", key="compare_dl_sweep")
    command_line("\n".join(r.cli_command() for r in (linf, l2)))


def main() -> None:
    sel = app_frame()
    st.title("Compare attacks")
    st.markdown(INTRO)
    with error_boundary():
        req, uploads, error = controls(sel)
        if error:
            st.error(error)
        RUN.show_notices(cv.interrupted)
        pending = RUN.pending()
        st.button("Run", type="primary", key="compare_run", icon=":material/play_arrow:",
                  disabled=error is not None or pending is not None, on_click=request_run, args=(req,))
        run_pending(uploads)
        hit = RESULTS.get(req)
        saved = compare.saved_result(req.settings()) if hit is None and req.kind == "table" else None
        if hit is not None:
            results_section(req, hit, stale=False)
        elif saved is not None:
            st.info(f"Shipped measurement (assets/compare/{saved[1]}, computed with the command below on "
                    f"{saved[0].device} in {saved[0].seconds:.0f} s): press Run to recompute it here.")
            results_section(req, saved[0], stale=False)
        else:
            last = last_table()
            if last is not None:
                results_section(last[0], last[1], stale=True)
            else:
                st.caption("Nothing computed yet for these settings: press Run. On a 2-core CPU the nine photos "
                           "on EfficientNet-Lite0 take about a minute; Fashion-MNIST models take seconds.")
                command_line(req.cli_command())
        if error is None:
            sweep_section(req, error)


main()
