"""Defense lab: an input defense (halftoning, JPEG, bit depth, median smoothing, random resize-and-pad), tested by an
attacker who ignores it and one who knows it, with a gradient-masking check beside the table.

Widgets -> ``advcore.labs.defense`` (image_panels, evaluate_defense, clean_effect; kept in ui.session's
DEFENSE_PANELS and DEFENSE_TABLES, the table run with DEFENSE_RUN) -> views.
"""

from __future__ import annotations

import streamlit as st

from advcore import data, models
from advcore.errors import AdvlabError
from advcore.labs import defense as lab
from ui import plots
from ui.frame import (
    app_frame,
    command_line,
    error_boundary,
    md_escape,
    require_image,
    url_bool,
    url_choice,
    url_choices,
    url_number,
    url_show_bool,
    url_show_list,
    url_show_number,
    url_value,
)
from ui.session import DEFENSE_PANELS, DEFENSE_RUN, DEFENSE_TABLES
from ui.views import defense as dv
from ui.widgets import download_figure, download_json, download_table, param_widgets

INTRO = (
    "An input defense changes an image before the model sees it (halftoning turns it into black and white dots; "
    "JPEG, bit-depth reduction and median smoothing remove detail; random resize-and-pad moves it); this page "
    "shows whether that stops adversarial examples: start with PGD at eps 0.1, look at the four images, then "
    "switch on \"Attacker knows the defense\" and see whether the defense still helps."
)
INTRO_IMAGENET = (
    "Halftoning turns an image into black and white dots before the model sees it; with an ImageNet model it "
    "is applied at inference only: first look at what it does to the clean predictions of the bundled photos "
    "at the bottom, then attack the sidebar's photo."
)
KEEP = "session"
PANELS, TABLES, RUN = DEFENSE_PANELS, DEFENSE_TABLES, DEFENSE_RUN  # this session's views and tables; Measure's run
PIXEL_EPS = (0.0, 0.3, 0.1, 0.01)


def controls(sel, small: bool, rows: dict[str, str]) -> tuple[str, tuple, str, float, str, bool, str]:
    c1, c2, c3 = st.columns([1.6, 1.0, 2.0])
    choices = dv.defense_choices()
    url_value("halftone", "defense_method", url_choice(choices))
    method = c1.selectbox("Defense", choices, format_func=dv.DEFENSE_TITLES.get,
                          key="defense_method", persist_state=KEEP,
                          help="Halftones: error diffusion spreads each pixel's rounding error to its neighbours; "
                               "ordered dithering compares each pixel with a tiled threshold matrix. JPEG (Guo et "
                               "al. 2018), bit depth and median (feature squeezing, Xu et al. 2018), random "
                               "resize-and-pad (Xie et al. 2018).")
    declared = dv.widget_params(method)
    values = param_widgets(c1, declared, persist_state=KEEP) if declared else {}
    params = tuple((k, v) for k, v in values.items() if v is not None)
    if not dv.is_halftone(method):
        rows = {}
    url_value("attack", "defense_attack" if small else "defense_attack_imagenet", url_choice(list(dv.ATTACK_TITLES)))
    attack = c2.selectbox("Attack", list(dv.ATTACK_TITLES), index=2 if small else 0,
                          format_func=dv.ATTACK_TITLES.get, persist_state=KEEP,
                          key="defense_attack" if small else "defense_attack_imagenet",
                          help="L-inf, untargeted; I-FGSM and PGD: 10 steps.")
    if small:
        low, high, default, step = PIXEL_EPS
        url_value("eps", "defense_eps_px", url_number(low, high, unit=" (pixel units)"), url_show_number)
        eps = round(c3.slider("eps (pixel units)", low, high, default, step=step, format="%.2f",
                              key="defense_eps_px", persist_state=KEEP,
                              help="Largest change of any pixel, pixels in [0, 1]."), 4)
        eps_text = f"{eps:g}"
    else:
        url_value("eps", "defense_eps_255", url_number(0, 32, integer=True, unit=" (x/255)"))
        k = c3.slider("eps (x/255)", 0, 32, 4, key="defense_eps_255", persist_state=KEEP,
                      help="Largest change of any pixel, in 8-bit levels.")
        eps, eps_text = k / 255.0, f"{k}/255"
    d1, d2 = st.columns([1.6, 3.0])
    row_options = ["halftone-input"] + list(rows)
    url_value("row", "defense_row", url_choice(row_options))
    word = lab.defense_title(lab.make_defense(method, params=dict(params)))
    row = d1.selectbox("Defended model", row_options, key="defense_row", persist_state=KEEP,
                       format_func=lambda r: lab.ROW_TITLES[r] if r != "halftone-input" or dv.is_halftone(method)
                       else f"naive model behind {word}",
                       help="Which model classifies behind the defense: the undefended model itself, or (halftones "
                            "only) one trained on halftones or on intensity and halftone images (hybrid).")
    url_value("adaptive", "defense_adaptive", url_bool, url_show_bool)
    adaptive = d2.toggle(f"Attacker knows the defense ({dv.adaptive_words(method, dict(params))})",
                         key="defense_adaptive", persist_state=KEEP,
                         help="Off: the adversarial image is made on the undefended model, as in the paper. On: it "
                              "is made through the defense: with its exact gradient where the defense is "
                              f"differentiable ({dv.differentiable_titles()}), else with the identity "
                              "as its gradient (BPDA); for a randomised defense the gradient is averaged over 8 "
                              "draws (EOT).")
    if row not in row_options:
        row = "halftone-input"
    return method, params, attack, eps, eps_text, adaptive, row


def image_section(sel, image, base: str, method: str, params: tuple, attack: str, eps: float, eps_text: str,
                  adaptive: bool, row: str) -> None:
    spec = models.get_spec(base)
    classes = spec.classes()
    true_label = classes.index(sel.true_name) if sel.true_name in classes else None
    req = dv.PanelRequest(model=base, device=sel.device, image_key=sel.image_key, true_label=true_label,
                          method=method, row=row, attack=attack, eps=eps, eps_text=eps_text, adaptive=adaptive,
                          params=params)
    panels = PANELS.get(req)
    if panels is None:
        x = data.prepare(image, spec.input_size)
        if attack == "fgsm" or dv.is_small(base):
            panels = PANELS.put(req, dv.run_panels(req, x))
        else:
            title = dv.ATTACK_TITLES[attack]
            bar = st.progress(0.0, text=f"{title}: starting")
            panels = PANELS.put(req, dv.run_panels(req, x, RUN.live_steps(bar, title)))
            RUN.finish()
            bar.empty()
    cols = st.columns(4)
    small = dv.is_small(base)
    titles = dv.panel_titles(method)
    for col, name in zip(cols, lab.Panels.PANELS, strict=True):
        im = data.to_pil(panels.images[name])
        col.image(plots.enlarge(im) if small else im, width="stretch", output_format="PNG",
                  caption=titles[name])
        col.markdown(dv.panel_caption(name, panels, base, md_escape))
    if not small:
        with st.expander("Zoom in: the central 64x64 pixels of each view, enlarged"):
            for col, name in zip(st.columns(4), lab.Panels.PANELS, strict=True):
                x = panels.images[name]
                h, w = x.shape[-2:]
                crop = x[..., (h - 64) // 2:(h + 64) // 2, (w - 64) // 2:(w + 64) // 2]
                col.image(plots.enlarge(data.to_pil(crop), 256), width="stretch", output_format="PNG",
                          caption=titles[name])
    st.caption(dv.panels_sentence(panels, req) + (" Labels: the true class of the test image." if true_label is
               not None else " Right/wrong is measured against the undefended model's clean prediction."))


def latest_table(model: str, method: str, params: tuple = ()) -> lab.DefenseTable | None:
    """This session's last measurement of (model, defense and its parameters), else the shipped one."""
    mine = TABLES.last(lambda r: r.model == model and r.method == method and r.params == params)
    return mine[1] if mine else lab.saved_table(model, method, dict(params))


def table_section(sel, base: str, method: str, params: tuple, small: bool, notices: list[tuple[str, str]]) -> None:
    """The Measure button (its run, with Cancel) and the table, curves and words of the latest measurement;
    ``notices``: what the last runs left to say, drawn under the button."""
    why = dv.eval_images_available(base)
    if why:
        st.warning(why)
        return
    result = latest_table(base, method, params)
    suffix = "" if small else "_imagenet"  # the choices differ: keep each dataset's own
    e1, e2, e3 = st.columns([2.2, 2.2, 1.2])
    url_value("table_attacks", "defense_table_attacks" + suffix, url_choices(list(dv.ATTACK_TITLES)), url_show_list())
    attacks = e1.multiselect("Attacks", list(dv.ATTACK_TITLES), default=list(dv.ATTACK_TITLES) if small else ["fgsm"],
                             format_func=dv.ATTACK_TITLES.get, key="defense_table_attacks" + suffix,
                             persist_state=KEEP)
    eps_choices = dv.TABLE_EPS if small else (0.0, 2 / 255, 4 / 255, 8 / 255)
    eps_names = [f"{v:g}" if small else f"{round(v * 255)}" for v in eps_choices]  # x/255 for ImageNet
    url_value("table_eps", "defense_table_eps" + suffix, url_choices(eps_names, list(eps_choices)),
              url_show_list(lambda v: f"{v:g}" if small else f"{round(v * 255)}"))
    eps = e2.multiselect("eps", list(eps_choices), default=list(eps_choices), key="defense_table_eps" + suffix,
                         format_func=lambda v: f"{v:g}" if small else f"{round(v * 255)}/255", persist_state=KEEP)
    n_choices = dv.N_CHOICES if small else (3, 9)
    url_value("n", "defense_table_n" + suffix, url_choice([str(v) for v in n_choices], list(n_choices)))
    n = e3.selectbox("Images", n_choices, index=1, key="defense_table_n" + suffix, persist_state=KEEP,
                     help="Fashion-MNIST: the first N images of the shipped test subset (balanced over the "
                          "classes). ImageNet: the bundled photos.")
    s1, s2, s3 = st.columns([1.5, 1.5, 3.2])
    url_value("steps", "defense_table_steps" + suffix, url_number(1, 200, integer=True))
    steps = s1.number_input("Attack steps (I-FGSM, PGD)", 1, 200, 10, key="defense_table_steps" + suffix,
                            persist_state=KEEP, help="Steps of I-FGSM and PGD for every attacker of the table.")
    url_value("strong_steps", "defense_table_strong" + suffix, url_number(0, 1000, integer=True))
    strong_steps = s2.number_input("Strong adaptive PGD steps", 0, 1000, lab.STRONG_STEPS if small else 10,
                                   key="defense_table_strong" + suffix, persist_state=KEEP,
                                   help="The strong adaptive attacker, counted in the worst case (0: not run).")
    url_value("restarts", "defense_table_restarts" + suffix, url_number(1, lab.MAX_RESTARTS, integer=True))
    restarts = s3.number_input("Strong attacker's random starts", 1, lab.MAX_RESTARTS, lab.RESTARTS,
                               key="defense_table_restarts" + suffix, persist_state=KEEP,
                               help="An image counts as correct only if it survives every start.")
    req = dv.TableRequest(model=base, device=sel.device, method=method, attacks=tuple(attacks),
                          eps=tuple(sorted(eps)), n=int(n), steps=int(steps), strong_steps=int(strong_steps),
                          restarts=int(restarts), params=params)
    error = None
    try:
        req.check()
    except AdvlabError as exc:
        error = str(exc)
        st.error(error)
    pending = RUN.take_request()
    b1, b2 = st.columns([1, 5])
    b1.button("Measure", type="primary", key="defense_measure", icon=":material/play_arrow:",
              disabled=error is not None or pending is not None, on_click=RUN.request, args=(req,))
    for kind, message in notices:
        getattr(st, kind)(message)
    if pending is not None:
        RUN.cancel_button(b2, key="defense_cancel")
        bar = st.progress(0.0, text="Loading the models and images")
        live = RUN.live(bar, text=dv.progress_text, marker=dv.progress_marker)
        # in a worker process at the lowest priority (ui.workers)
        out = RUN.execute(dv.job(pending), dv.cancelled, key=pending, on_step=live)
        if out is not None:
            TABLES.put(pending, out)
        st.rerun()
    if result is None:
        st.info("Nothing measured yet for this model and defense: press Measure (every attacker is measured; "
                + ("about half a minute for 100 Fashion-MNIST images on a 2-core CPU" if small else
                   "FGSM on the 9 photos with the strong attacker at 10 steps took 73 s on the 2-core "
                   "CPU (one thread); 0 strong steps leaves seconds")
                + "), or run the command line below.")
    else:
        source = ("measured on this server" if any(v is result for v in TABLES.values())
                  else f"shipped measurement, assets/defense/{lab.saved_path(base, method).name}"
                       + (f", made by `{result.command}`" if result.command else ""))
        st.markdown("**What the measurements say.** " + md_escape(lab.lesson(result)))
        ks = result.topk
        if len(ks) > 1:
            url_value("top5", "defense_top5", url_bool, url_show_bool)
        k = ks[-1] if len(ks) > 1 and st.toggle("Top-5", value=not small, key="defense_top5") else "top1"
        lines = dv.table_rows(result, k)
        flags = dv.flags_caption(result)
        if result.flags:
            st.warning(md_escape(flags))
        t1, t2 = st.columns([3.2, 1.3])
        t1.dataframe(lines, hide_index=True, height=dv.table_height(len(lines)))
        verdict, *signs = dv.masking_lines(result)
        box = t2.warning if result.masking["flagged"] else t2.success
        box("**Gradient masking?** " + md_escape(verdict))
        for line in signs:
            t2.caption(md_escape(line))
        st.caption(dv.table_caption(result) + f" Source: {source}." + ("" if result.flags else " " + flags))
        curves = dv.curves(result, k)
        st.plotly_chart(curves, key="defense_curves", width="stretch")
        g1, g2, g3 = st.columns(3)
        download_table(g1, lines, "defense.csv", key="defense_dl_csv")
        download_json(g2, result.to_dict(), "defense.json", key="defense_dl_json")
        download_figure(g3, curves, "defense_curves.html", key="defense_dl_curves")
        st.caption("Each colour is one row of the table (one legend for every panel). Where a dashed line lies "
                   "below the solid one of its colour, the defense's robustness came from the attacker not "
                   "looking; the last panel is what is left against every attacker.")
        if small and dv.is_halftone(method):
            st.markdown(dv.paper_sentence())
    st.markdown("**The same measurement from the command line**")
    command_line(req.cli_command())


def clean_effect_section(base: str, method: str, params: tuple, device: str) -> None:
    rows = clean_effect(base, method, params, device)
    word = dv.view_word(method)
    st.dataframe([{"photo": r["title"], "clean top-1": f"{r['clean']} ({100 * r['clean_prob']:.1f}%)",
                   f"{word} top-1": f"{r['halftone']} ({100 * r['halftone_prob']:.1f}%)",
                   f"clean class after {word}": f"{100 * r['halftone_prob_of_clean_top1']:.1f}%",
                   "same top-1": "yes" if r["same_top1"] else "no"} for r in rows], hide_index=True)
    st.caption(dv.clean_effect_sentence(rows, method))


@st.cache_data(show_spinner="Passing the bundled photos through the defense", max_entries=16)
def clean_effect(base: str, method: str, params: tuple, device: str) -> list[dict]:
    return lab.clean_effect(base, method, device=device, params=dict(params))


def main() -> None:
    sel = app_frame()
    with error_boundary():
        st.title("Defense lab")
        small = dv.is_small(sel.model)
        st.markdown(INTRO if small else INTRO_IMAGENET)
        base, note = dv.base_model(sel.model)
        if note:
            st.info(note)
        image = require_image(sel)
        # taken before the image's attack, whose progress replaces the marker a stopped measurement left
        notices = RUN.take_notices(dv.interrupted)
        rows = dv.halftone_rows(base)
        method, params, attack, eps, eps_text, adaptive, row = controls(sel, small, rows)
        st.subheader("One image: clean, defended, adversarial, the adversarial behind the defense")
        image_section(sel, image, base, method, params, attack, eps, eps_text, adaptive, row)
        st.subheader("Accuracy under attack: each attacker, the worst case over all of them, and a gradient-masking "
                     "check")
        table_section(sel, base, method, params, small, notices)
        if not small:
            st.subheader("The defense at inference only: the bundled photos' clean answers (top-1 and top-5)")
            clean_effect_section(base, method, params, sel.device)


main()
