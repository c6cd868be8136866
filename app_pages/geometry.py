"""Geometry lab: is a classifier isotropic, symmetric, topology-preserving and locally contracting around
an image? (Aghdam, Heravi and Puig, VISAPP 2017: isotropy Eq. 4, symmetry Eq. 6, Mantel test Sec. 2.3,
local Lipschitz Eq. 9.)

Widgets -> ``ui.views.geometry`` -> advcore.labs.geometry (kept in ui.session.GEOMETRY_RESULTS, keyed by every
parameter) -> the paper's Figures 1, 3, 4 and 6 and a naive-versus-robust comparison on the same random points.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from advcore import features, models
from advcore.errors import AdvlabError
from advcore.labs import geometry
from advcore.records import image_record
from ui.frame import (
    app_frame,
    command_line,
    error_boundary,
    md_escape,
    require_image,
    url_bool,
    url_choice,
    url_number,
    url_show_bool,
    url_value,
)
from ui.session import GEOMETRY_RESULTS, GEOMETRY_RUN
from ui.views import geometry as gv
from ui.widgets import download_figure, download_json, download_table

INTRO = (
    "This page puts random noise of a fixed size around the selected image and measures how differently the "
    "model answers to noise that is equally large: start with the isotropy chart, where every point a model "
    "ought to keep at zero is instead a spread of scores, then compare a naive and an adversarially trained "
    "model on the last tab."
)
KEEP = "session"
RESULTS, RUN = GEOMETRY_RESULTS, GEOMETRY_RUN  # keyed by (request, model); runs on load, Cancel remembered
NORM_TITLES = {"linf": "L-inf (every pixel moves by at most r)", "l2": "L2 (Euclidean distance r)"}
PERMUTATIONS = [0, 99, 199, 499, 999]


def parse_radii_text(text: str) -> str:
    """A link's radii, kept as typed once :func:`advcore.labs.geometry.parse_radii` accepts them."""
    geometry.parse_radii(text)
    return text.strip()


def controls(sel, model) -> gv.GeometryRequest:
    """The parameter widgets; a bad value stops the page with a clear message."""
    big = models.get_spec(sel.model).input_size[1] >= 64
    size = "large" if big else "small"
    dflt = gv.defaults(sel.model)
    c1, c2, c3 = st.columns([1, 2, 1.4])
    url_value("T", f"geo_T_{size}", url_choice([str(t) for t in gv.T_CHOICES], gv.T_CHOICES))
    T = c1.select_slider("Points per radius (T)", gv.T_CHOICES, dflt["T"], key=f"geo_T_{size}", persist_state=KEEP,
                         help="The paper uses T = 100. Each point costs one forward pass (twice: isotropy and "
                              "symmetry); ImageNet models start lower to answer quickly on a CPU.")
    url_value("radii", f"geo_radii_{size}", parse_radii_text)
    radii_text = c2.text_input("Radii (x/255 fractions, a list or start:stop:step)", dflt["radii"],
                               key=f"geo_radii_{size}", persist_state=KEEP,
                               help="In [0,1] pixel units: 1/255 is one grey level. The paper's grid is 1 to 20 "
                                    "pixels: 1/255:20/255:1/255. At most 50 radii.")
    url_value("norm", "geo_norm", url_choice(list(geometry.NORMS)))
    norm = c3.radio("Distance", geometry.NORMS, format_func=lambda n: NORM_TITLES[n].split(" (")[0],
                    key="geo_norm", persist_state=KEEP, horizontal=True,
                    help="L-inf: v has every element in [-r, r] (the paper's v in [-eps, eps]^D). "
                         "L2: the points lie on the Euclidean sphere of radius r.")
    d1, d2, d3, d4 = st.columns([2, 1, 1, 1.2])
    layers = features.layer_names(model)
    url_value("layer", f"geo_layer_{sel.model}", url_choice(layers))
    layer = d1.selectbox("Layer phi (Mantel test and Lipschitz)", layers, key=f"geo_layer_{sel.model}",
                         help="penultimate = the input of the last fully connected layer, the representation the "
                              "classifier reads (the paper's choice).")
    url_value("seed", "geo_seed", url_number(0, 2**31 - 1, integer=True))
    seed = d2.number_input("Seed", 0, 2**31 - 1, 0, step=1, key="geo_seed", persist_state=KEEP,
                           help="The same seed gives every model with this input size exactly the same points; "
                                "the points at a radius come from (seed, probe, radius) alone, so adding or "
                                "removing radii leaves the others' points as they were.")
    url_value("perms", "geo_permutations", url_choice([str(p) for p in PERMUTATIONS], PERMUTATIONS))
    perms = d3.select_slider("Mantel permutations", PERMUTATIONS, gv.PAGE_PERMUTATIONS,
                             key="geo_permutations", persist_state=KEEP,
                             help="Permutations of the two-sided Mantel p-value (0: r only).")
    url_value("score", "geo_score", url_choice(list(geometry.SCORES)))
    score = d4.selectbox("Score Phi", list(geometry.SCORES), key="geo_score", persist_state=KEEP,
                         format_func=lambda n: geometry.SCORES[n].title,
                         help="; ".join(f"{s.title}: {s.help}" for s in geometry.SCORES.values()))
    try:
        radii = geometry.parse_radii(radii_text)
        gv.check_radii_for(norm, radii)
        geometry.check_params(radii, int(T), norm, int(perms))
    except AdvlabError as exc:
        st.error(f"Radii: {exc}")
        st.stop()
    return gv.GeometryRequest(model=sel.model, image_key=sel.image_key, T=int(T), radii=tuple(radii),
                              radii_text=radii_text.strip(), norm=norm, layer=layer, seed=int(seed),
                              permutations=int(perms), device=sel.device, score=score)


def run(req: gv.GeometryRequest, image, model: str | None = None, label: str = "Probing",
        cli_image: str | None = None) -> geometry.ImageGeometry | None:
    """The cached result, the shipped one (an ImageNet default, with a Run button to recompute it), or a
    computation started on load with a progress bar and a Cancel button; None when cancelled or refused (a
    cancelled computation waits for its Run button instead of restarting)."""
    name = model or req.model
    job = (req, name)
    res = RESULTS.get(job)
    if res is not None:
        return res
    saved = gv.saved_probe(req, cli_image) if cli_image and model is None else None
    if not RUN.should_run(job, auto=saved is None):
        if saved is not None:
            st.info(f"Shipped result (assets/geometry/{saved[1]}, computed with the command line at the bottom of "
                    f"the page plus --points, in {saved[0].report.seconds:.1f} s on {saved[0].device}): an ImageNet "
                    f"model takes longer than a page should make you wait. Press Run to recompute it here.")
            run_button(job, name)
            return saved[0]
        st.warning(gv.cancelled_sentence(name))
        run_button(job, name)
        return None
    cancel = RUN.cancel_button(key=f"geo_cancel_{name}")
    bar = st.progress(0.0, text=f"{label} {name}")
    live = RUN.live(bar, text=lambda p: gv.progress_text(f"{label} {name}", p))
    # in a worker process at the lowest priority (ui.workers)
    res = RUN.execute(gv.probe_job(req, image, model=name), lambda left: gv.cancelled_sentence(name), job=job,
                      on_step=live)
    bar.empty()
    cancel.empty()
    if res is None:
        RUN.show_notices(gv.interrupted)  # cancelled, or refused with advcore's reason
        if RUN.blocked(job):
            run_button(job, name)
        return None
    return RESULTS.put(job, res)


def run_button(job: tuple[gv.GeometryRequest, str], name: str) -> None:
    st.button("Run", key=f"geo_rerun_{name}", icon=":material/play_arrow:", on_click=RUN.request, args=(job,))


def isotropy_tab(res: geometry.ImageGeometry) -> None:
    fig = gv.range_figure(res.report.isotropy, "Isotropy: range of the score against the radius (Figure 1)")
    st.plotly_chart(fig, key="geo_fig1")
    download_figure(st, fig, "geometry_isotropy.html", key="geo_dl_fig1", label="Download isotropy chart (HTML)")
    st.caption(gv.isotropy_sentence(res) + " Colour: the mean score of the points; squares: at least one point "
                                           "at that radius was classified as another class.")


def symmetry_tab(res: geometry.ImageGeometry) -> None:
    probe = res.report.symmetry
    st.plotly_chart(gv.range_figure(probe, "Symmetry: range over permutations of one perturbation (Figure 3)"),
                    key="geo_fig3")
    st.caption(f"Each radius uses one random perturbation and {res.report.T} random reorderings of its values "
               f"(Eq. 6): every point has the same norm and the same values, only their places differ. A symmetric "
               f"model would give a range of 0. Here the range goes from {probe.range[0]:.2e} to "
               f"{probe.range[-1]:.2e}: notice that shuffling the same noise already changes the score.")


def topology_tab(res: geometry.ImageGeometry) -> None:
    topo = res.report.topology
    st.plotly_chart(gv.mantel_figure(topo), key="geo_fig4")
    ps = [t.p_value for t in topo.tests if t.p_value is not None]
    pnote = (f" {sum(p < 0.05 for p in ps)} of {len(ps)} radii have a p-value below 0.05 "
             f"({topo.tests[0].permutations} permutations, two-sided)." if ps else "")
    st.caption(f"Mantel r is the Pearson correlation of the {res.report.T}x{res.report.T} distance matrices of the "
               f"same points in the input and at layer {md_escape(topo.layer)}; r = 1 would mean the layer only "
               f"scales distances (topology kept). " + md_escape(gv.mantel_sentence(topo))
               + " The paper reports -0.1 < r < 0.1 for its ImageNet and GTSRB networks, without this control."
               + pnote)
    if topo.layer_r:
        st.plotly_chart(gv.layers_figure(topo), key="geo_layers")
    else:
        st.caption("Mantel r at every layer is computed on 28x28 models only (one forward pass per layer); from the "
                   "command line: --mantel-layers all.")
    labels = [f"{r * 255:.3g}/255" for r in topo.radii]
    pick = st.select_slider("Radius of the heat maps", labels, labels[len(labels) // 2], key="geo_heat_radius")
    i = labels.index(pick)
    h1, h2 = st.columns(2)
    h1.plotly_chart(gv.distance_heatmap(topo.d_input[i].numpy(), f"Input space, r = {pick}"), key="geo_heat_in")
    h2.plotly_chart(gv.distance_heatmap(topo.d_layer[i].numpy(), f"Layer {topo.layer}, r = {pick}"),
                    key="geo_heat_out")
    st.caption(f"Mantel r at this radius: {topo.tests[i].r:.4f}"
               + (f", p = {topo.tests[i].p_value:.4f}." if topo.tests[i].p_value is not None else ".")
               + " If the layer kept the points' arrangement, the two heat maps would show the same pattern.")


def lipschitz_tab(res: geometry.ImageGeometry) -> None:
    lip = res.report.lipschitz
    st.plotly_chart(gv.lipschitz_figure(lip), key="geo_fig6")
    n = lip.normalisers
    lin = f"slope {lip.linear[0]:.4g}" if lip.linear else "no fit (too few distinct distances)"
    st.caption(f"One dot per point: its distance from the clean image in the input (x) and at layer "
               f"{md_escape(n.layer)} (y), both min-max normalised (h: [{n.h.lo:.3g}, {n.h.hi:.3g}], g: "
               f"[{n.g.lo:.3g}, {n.g.hi:.3g}], fitted on {n.source}). {lip.share_below_1:.1%} of the points lie "
               f"below the dotted ratio-1 line: the layer pulls them towards the clean image (linear fit {lin}). "
               f"The paper finds its networks locally contracting in most cases. Both distances grow with the "
               f"number of values they sum over: {res.report.input_dim:,} in the input against "
               f"{res.report.layer_dim:,} at this layer, and each normaliser divides by its own range. "
               + gv.baseline_sentence(lip))


def compare_tab(req: gv.GeometryRequest, image, res: geometry.ImageGeometry) -> None:
    partners = gv.robust_partners(req.model)
    if partners is None:
        st.info("This model's dataset has no adversarially trained model beside a standard one in the model zoo "
                "(for ImageNet there are only the standard EfficientNet-Lite0/1/2), so there is no "
                "naive-against-robust pair: pick a Fashion-MNIST model in the sidebar to compare.")
        return
    naive, robust = partners
    c1, c2 = st.columns([1, 2])
    url_value("robust", "geo_robust", url_choice(list(robust)))
    other = c1.selectbox("Robust model", robust, key="geo_robust", persist_state=KEEP,
                         format_func=lambda n: f"{n}: {models.get_spec(n).title}")
    url_value("compare", "geo_compare", url_bool, url_show_bool)
    go_on = c2.toggle(f"Run {naive} and {other} on the same points", key="geo_compare", value=False,
                      help="Both models probe the same image with the same seed, T, radii and layer.")
    if go_on:
        compare_one_image(req, image, res, naive, other)
    else:
        st.caption("Switch it on to compute both models (about twice this page's own time).")
    survey_section(req, naive, other)


def compare_one_image(req: gv.GeometryRequest, image, res: geometry.ImageGeometry, naive: str, other: str) -> None:
    results = []
    for name in (naive, other):
        r = res if name == req.model else run(req, image, model=name, label="Comparing")
        if r is None:
            return
        results.append(r)
    a, b = results
    f1, f2 = st.columns(2)
    f1.plotly_chart(gv.compare_range_figure(results, "isotropy", "Isotropy range, both models"), key="geo_cmp_iso")
    f2.plotly_chart(gv.compare_range_figure(results, "symmetry", "Symmetry range, both models"), key="geo_cmp_sym")
    f3, f4 = st.columns(2)
    f3.plotly_chart(gv.compare_mantel_figure(results), key="geo_cmp_mantel")
    rows = [{"model": r.model, "clean class": r.class_name, "clean score": f"{r.report.clean_score:.4f}",
             "ratio < 1": f"{r.report.lipschitz.share_below_1:.1%}",
             "median ratio": f"{float(r.report.lipschitz.ratio.nanmedian()):.3g}"} for r in results]
    f4.table(rows, hide_index=True, border="horizontal")
    download_table(f4, rows, "geometry_compare.csv", key="geo_dl_compare_csv")
    st.markdown(gv.compare_sentence(a, b))
    st.caption("Measured here on one image; the paper compares standard networks only. Rerun with other test "
               "images in the sidebar to see how much of the difference holds.")


def survey_section(req: gv.GeometryRequest, naive: str, robust: str) -> None:
    """Isotropy on many test images with the paper's confidence filter (Sec. 2.1), beside the same images without
    it: one unfiltered survey, filtered on the page (the threshold and N never recompute within a computed run)."""
    st.subheader("Many images: the paper's protocol")
    st.caption(f"The paper probed images its networks classify correctly with more than 99% confidence. This survey "
               f"runs isotropy (Eq. 4) with this page's T, radii, distance, score and seed on the first N test images, "
               f"each image with its own seed, the same points for {naive} and {robust}.")
    c1, c2 = st.columns(2)
    url_value("survey_n", "geo_survey_images", url_number(1, gv.SURVEY_MAX_IMAGES, integer=True))
    n = c1.number_input("First N test images", 1, gv.SURVEY_MAX_IMAGES, gv.SURVEY_IMAGES, step=50,
                        key="geo_survey_images", persist_state=KEEP,
                        help="The first N images of the shipped Fashion-MNIST test subset (the paper: 300).")
    url_value("survey_conf", "geo_survey_conf", url_number(0.0, 0.9999))
    thr = c2.number_input("Confidence filter (softmax probability)", 0.0, 0.9999, geometry.PAPER_MIN_CONFIDENCE,
                          step=0.01, format="%.4f", key="geo_survey_conf", persist_state=KEEP,
                          help="Keep the images both models get right with a softmax probability above this "
                               "(the paper: 0.99); 0 keeps every image. Changing it never recomputes.")
    sreq = gv.SurveyRequest(models=(naive, robust), images=int(n), T=req.T, radii=req.radii,
                            radii_text=req.radii_text, norm=req.norm, seed=req.seed, score=req.score,
                            device=req.device)
    job = (sreq, "survey")
    threshold = geometry.check_confidence(float(thr))
    base, where = RESULTS.get(job), None
    if base is None:  # a survey of more images with the same settings holds this one (Survey.head)
        more = RESULTS.last(lambda k: k[1] == "survey" and k[0].images >= sreq.images
                            and replace(k[0], images=sreq.images) == sreq)
        base = more[1].head(sreq.images) if more is not None else None
    if base is None:
        saved = gv.saved_survey(sreq)
        if saved is not None:
            base, where = saved[0], saved[1]
    if RUN.should_run(job):
        cancel = RUN.cancel_button(key="geo_survey_cancel")
        bar = st.progress(0.0, text="Surveying")
        live = RUN.live(bar, text=lambda p: gv.progress_text("Surveying", p))
        fresh = RUN.execute(gv.survey_job(sreq), lambda left: "The survey was cancelled.", job=job, on_step=live)
        bar.empty()
        cancel.empty()
        if fresh is None:
            RUN.show_notices(gv.interrupted)
        else:
            base, where = RESULTS.put(job, fresh), None
    elif RUN.blocked(job):
        st.warning("The survey was cancelled. Change a setting, or press Run to start it again.")
    st.button("Run the survey" if base is None else "Run the survey again here", key="geo_survey_run",
              icon=":material/play_arrow:", on_click=RUN.request, args=(job,))
    if base is None:
        st.caption(f"Not computed yet for these settings: {n} images x 2 models x {len(req.radii)} radii x {req.T} "
                   f"points, one forward pass each (minutes on a 2-core CPU for the paper's 300 images). Run it, or "
                   f"use the command line below.")
        st.code(sreq.cli_command(threshold), language="bash")
        return
    if where is not None:
        st.info(f"Shipped measurement (assets/geometry/{where}, the first {n} of its images, computed with the "
                f"--min-confidence 0 command below in {base.seconds:.0f} s on a CPU): press Run to recompute it here.")
    score = geometry.SCORES[req.score]
    filt = base.filtered(threshold) if threshold is not None else base
    readings = ([gv.survey_reading(filt, naive, robust, f"filtered (softmax > {threshold:g})")]
                if threshold is not None else []) + [gv.survey_reading(base, naive, robust, "unfiltered")]
    fig = gv.survey_figure(filt, base, "Median isotropy range over the kept images")
    st.plotly_chart(fig, key="geo_survey_fig")
    rows = gv.survey_rows(readings, naive, robust, score.unit)
    st.table(rows, hide_index=True, border="horizontal")
    st.markdown(gv.survey_sentence(readings[0] if threshold is not None else None, readings[-1], naive, robust,
                                   threshold, score.title))
    st.caption("Each image's range is the median over the radii of range(r); the table gives the median of those "
               "over the kept images and the share of images where the robust model's is the smaller. Without the "
               "filter each model is probed at its own predicted class; with it, at the true class.")
    d1, d2, d3 = st.columns(3)
    download_table(d1, rows, "geometry_survey.csv", key="geo_survey_csv")
    download_json(d2, {"filtered": filt.to_dict(), "unfiltered": base.to_dict()}, "geometry_survey.json",
                  key="geo_survey_json", label="Download the survey (JSON)")
    download_figure(d3, fig, "geometry_survey.html", key="geo_survey_html", label="Download survey chart (HTML)")
    st.code("\n".join([sreq.cli_command(threshold)] if threshold is None else
                       [sreq.cli_command(threshold), sreq.cli_command(None)]), language="bash")


def main() -> None:
    sel = app_frame()
    st.title("Geometry lab")
    st.markdown(INTRO)
    with error_boundary():
        image = require_image(sel)
        model = models.load(sel.model, sel.device)
        req = controls(sel, model)
        res = run(req, image, cli_image=None if sel.is_upload else sel.cli_image)
        if res is None:
            return
        rep = res.report
        st.markdown(f"**{md_escape(res.title)}** reads the clean image as **{md_escape(res.class_name)}** (score "
                    f"{rep.clean_score:.4f}). {rep.T} points at each of {len(rep.radii)} radii, "
                    f"{rep.norm.replace('linf', 'L-inf').replace('l2', 'L2')} distance, seed {rep.seed}: "
                    f"{rep.seconds:.1f} s on {res.device}."
                    + (" The paper only probed images its networks classified with more than 99% confidence; a less "
                       "confident image, like this one, sits nearer a decision boundary." if rep.clean_score < 0.99
                       else ""))
        tabs = st.tabs(["Isotropy", "Symmetry", "Topology (Mantel)", "Local Lipschitz", "Naive vs robust"])
        with tabs[0]:
            isotropy_tab(res)
        with tabs[1]:
            symmetry_tab(res)
        with tabs[2]:
            topology_tab(res)
        with tabs[3]:
            lipschitz_tab(res)
        with tabs[4]:
            compare_tab(req, image, res)
        st.markdown("**The same numbers from the command line**")
        command_line(req.cli_command(sel.cli_image))
        download_json(st, {**image_record(sel.image_name, image), **res.to_dict()}, "geometry.json",
                      key="geo_download", label="Download the results (JSON)")
        st.caption("The paper (Aghdam et al., VISAPP 2017) used T = 100 points at radii of 1 to 20 pixels on 300 "
                   "images per network with more than 99% confidence; this page probes the one image you chose.")


main()
