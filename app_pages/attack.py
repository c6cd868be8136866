"""Attack lab: attack one image and see the perturbation, the predictions and the metrics, live.

Widgets -> ``advcore.labs.attack.attack_image`` (kept in ui.session.ATTACK_RESULTS, run by ATTACK_RUN with a
Cancel button) -> views.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import time
from collections.abc import Callable

import streamlit as st
from PIL import Image

from advcore import data, models
from advcore.attacks import ATTACKS
from advcore.device import pick_device
from advcore.errors import AdvlabError
from advcore.labs import attack as attack_lab
from advcore.predictions import resolve_class
from ui import plots
from ui.frame import (
    app_frame,
    command_line,
    md_escape,
    require_image,
    url_bool,
    url_choice,
    url_choices,
    url_number,
    url_pending,
    url_show_bool,
    url_show_number,
    url_value,
)
from ui.session import ATTACK_FRAMES, ATTACK_RESULTS, ATTACK_REVEALED, ATTACK_RUN
from ui.views import attack as attack_view
from ui.widgets import download_json, download_table, param_widgets

INTRO = (
    "Pick a photo and an attack, then move eps to see how small a change flips the model's prediction: "
    "start with FGSM at the default 4/255, then lower eps to 1/255 and check whether the prediction still flips."
)
INTRO_SMALL = (
    "Pick a test image and an attack, then move eps to see how large a change flips the model's prediction: "
    "start with FGSM at the default 0.10 on the standard model, then switch the sidebar's model to an "
    "adversarially trained one and see whether the same image still flips."
)
NORM_TITLES = {"linf": "L-infinity", "l2": "L2"}
AMPLIFICATIONS = ["auto", 1, 2, 5, 10, 20, 50, 100]
DEFAULT_TARGET = 859  # ImageNet "toaster", the classic target of adversarial patches
DEFAULT_TARGETS = {"imagenet": DEFAULT_TARGET, "fashion-mnist": 1}  # Fashion-MNIST: "Trouser"
PIXEL_EPS = (0.0, 0.3, 0.1, 0.01)  # small datasets: L-inf eps in pixel units (min, max, default, step), as in
# the paper's and the model cards' range 0..0.3 (0.3 = 76.5/255)
KEEP = "session"  # attack settings survive a visit to another page
RUN = ATTACK_RUN  # the attack's run: Run attack, Cancel, what a stopped run says
PLAY_DELAY = 0.3  # seconds per step while the step-through plays
OVERLAYS = {"delta": "|delta|, the perturbation", "gradient": "|input gradient|"}  # "Where the perturbation acts"
OPEN_SECTIONS = "_advlab_attack_open"  # the open detail sections (ui.views.attack.in_section_order)
# Presenter view (the sidebar's toggle, ui.frame.PRESENTER_CSS) on this page: the controls, the three images and
# both predictions within a 1280x720 projector screen (tests/browser/test_browser_lecture.py measures it).
PRESENTER_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-left: 1.5rem !important; padding-right: 1.5rem !important;
  padding-top: 0.5rem !important; }
[data-testid="stMainBlockContainer"] [data-testid="stVerticalBlock"] { gap: 0.25rem; }
[data-testid="stMainBlockContainer"] [data-testid="stImage"] img { max-height: 19vh; object-fit: contain; }
[data-testid="stMainBlockContainer"] h1 { font-size: 1.4rem !important; }
</style>"""


def controls(sel, classes: list[str], dataset: str) -> attack_view.AttackRequest:
    """The attack widgets; returns the request."""
    c1, c2, c3 = st.columns([1.3, 1.0, 2.2])
    url_value("attack", "attack_name", url_choice(list(ATTACKS)))
    attack = c1.selectbox("Attack", list(ATTACKS), format_func=lambda n: ATTACKS[n].title, key="attack_name",
                          persist_state=KEEP,
                          help="Gradient attacks on one loop: the AGR paper's five (FGSM to AGR) first.")
    url_value("norm", "attack_norm", url_choice(list(NORM_TITLES)))
    norm = c2.radio("Norm", list(NORM_TITLES), format_func=NORM_TITLES.get, key="attack_norm", horizontal=True,
                    persist_state=KEEP, help="The ball the perturbation must stay in.")
    pixel_units = dataset != "imagenet"  # Fashion-MNIST models: eps up to 0.3, in pixel units like their cards
    if norm == "linf" and pixel_units:
        low, high, default, step = PIXEL_EPS
        url_value("eps", "attack_eps_linf_px", url_number(low, high, unit=" (pixel units)"), url_show_number)
        v = round(c3.slider("eps (pixel units)", low, high, default, step=step, format="%.2f",
                            key="attack_eps_linf_px", persist_state=KEEP,
                            help="Largest change of any pixel, pixels in [0, 1] (0.1 = 25.5/255)."), 4)
        eps, eps_text = v, f"{v:g}"
    elif norm == "linf":
        url_value("eps", "attack_eps_linf", url_number(0, 32, integer=True, unit=" (x/255)"))
        k = c3.slider("eps (x/255)", 0, 32, 4, key="attack_eps_linf", persist_state=KEEP,
                      help="Largest change of any pixel, in 8-bit levels.")
        eps, eps_text = k / 255.0, f"{k}/255"
    else:
        url_value("eps", "attack_eps_l2", url_number(0.0, 20.0, unit=" (pixel L2)"), url_show_number)
        v = round(c3.slider("eps (pixel L2)", 0.0, 20.0, 1.0, step=0.1, key="attack_eps_l2", persist_state=KEEP,
                            help="Euclidean length of the whole perturbation, pixels in [0, 1]."), 4)
        eps, eps_text = v, f"{v:g}"

    spec = ATTACKS[attack]
    d1, d2, d3 = st.columns([1.2, 1.5, 1.8])  # wide enough for "Custom alpha" at 1024 px
    url_value("steps", "attack_steps", url_number(1, 200, integer=True))
    steps = d1.slider("steps", 1, 200, 10, key="attack_steps", disabled=not spec.iterative, persist_state=KEEP,
                      help="FGSM always takes one step." if not spec.iterative else "Gradient steps (the budget).")
    if url_pending("alpha") is not None:
        st.session_state["attack_custom_alpha"] = True  # a link with alpha means a custom step
    custom = d2.toggle("Custom alpha", key="attack_custom_alpha", disabled=not spec.iterative, persist_state=KEEP,
                       help="Off: each attack's own default step (I-FGSM, MI-FGSM eps/steps; PGD 2.5 eps/steps; "
                            "AGR eps).")
    alpha = alpha_text = None
    if custom and spec.iterative:
        if norm == "linf" and pixel_units:
            url_value("alpha", "attack_alpha_linf_px", url_number(0.001, 0.3), url_show_number)
            alpha = d2.number_input("alpha (pixel units)", 0.001, 0.3, 0.01, step=0.005, format="%.3f",
                                    key="attack_alpha_linf_px", persist_state=KEEP)
            alpha_text = repr(alpha)
        elif norm == "linf":
            url_value("alpha", "attack_alpha_linf", url_number(0.01, 32.0, unit=" (x/255)"), url_show_number)
            k = d2.number_input("alpha (x/255)", 0.01, 32.0, 1.0, step=0.1, key="attack_alpha_linf",
                                persist_state=KEEP)
            alpha, alpha_text = k / 255.0, f"{k!r}/255"  # the CLI divides the same two floats
        else:
            url_value("alpha", "attack_alpha_l2", url_number(0.001, 20.0), url_show_number)
            alpha = d2.number_input("alpha (pixel L2)", 0.001, 20.0, 0.1, step=0.01, format="%.3f",
                                    key="attack_alpha_l2", persist_state=KEEP)
            alpha_text = repr(alpha)
    elif spec.iterative:
        d2.caption("alpha: auto")

    extra = param_widgets(d3, spec.params, persist_state=KEEP)  # one widget per declared parameter

    t1, t2 = st.columns([1.3, 3.2])
    if url_pending("target") is not None:
        st.session_state["attack_targeted"] = True  # a link with a target means a targeted attack
    targeted = t1.checkbox("Targeted", False, key="attack_targeted", persist_state=KEEP,
                           help="Push the image towards a class of your choice instead of away from the model's "
                                "clean prediction.")
    target = None
    if targeted:
        default_target = DEFAULT_TARGETS.get(dataset, 0)
        url_value("target", f"attack_target_{dataset}", lambda text: resolve_class(text, classes),
                  lambda i: classes[i] if classes.count(classes[i]) == 1 else str(i))
        target = t2.selectbox("Target class", range(len(classes)), index=min(default_target, len(classes) - 1),
                              format_func=lambda i: f"{i}: {classes[i]}", key=f"attack_target_{dataset}",
                              persist_state=KEEP,
                              help="Type to search by index or name.")
    req = attack_view.AttackRequest(
        model=sel.model, device=sel.device, image_key=sel.image_key, attack=attack, norm=norm, eps=eps,
        eps_text=eps_text, steps=int(steps), alpha=alpha, alpha_text=alpha_text,
        target=None if target is None else int(target), extra=tuple(sorted(extra.items())),
    )
    return req


def compute(req: attack_view.AttackRequest, image, slot, image_name: str | None = None,
            key: str = "attack_cancel") -> attack_lab.ImageAttack | None:
    """Run the attack and keep the result; iterative attacks draw their steps on a progress bar under a Cancel
    button (and a place in the queue) in ``slot``, an ``st.empty()`` that every page run makes at the same place,
    so that the page's elements keep their positions and a run's redraw updates them rather than drawing them anew.
    None when the run was cancelled or refused (the notice left for the next page run says why)."""
    if not req.spec.iterative:
        return ATTACK_RESULTS.put(req, attack_view.run(req, image, image_name=image_name))
    title = f"{req.spec.title} on {req.model}"
    with slot.container():
        RUN.cancel_button(key=key)
        bar = st.progress(0.0, text=f"{title}: starting")
        RUN.update({"label": title, "step": 0, "steps": req.gradient_steps})  # a Cancel before the first step
        # In a worker process at the lowest priority (ui.workers; ADVLAB_RUN_WORKERS=0: in this thread).
        res = RUN.execute(attack_view.job(req, image, image_name), attack_view.cancelled, job=req,
                          on_step=RUN.live_steps(bar, title))
    slot.empty()  # the Cancel button, the bar and any place in line with it
    return None if res is None else ATTACK_RESULTS.put(req, res)


def show(where, image, output_format: str = "auto", **kw) -> None:
    """``where.image(image, ...)`` with the image encoded once for every session (``ui.plots.encoded``): a rerun
    that redraws a cached result encodes no image again."""
    data_, fmt = plots.encoded(image, output_format)
    where.image(data_, output_format=fmt, **kw)


def prediction_line(kind: str, name: str, prob: float) -> str:
    return f"{kind} prediction: {md_escape(name)} ({100.0 * prob:.1f}%)"


def views(req: attack_view.AttackRequest, res: attack_lab.ImageAttack, sel, guess_mode: bool = False) -> bool:
    """Images, predictions, plots, metrics, downloads and the command line of one result; with ``guess_mode``
    ("predict, then reveal") everything that tells the outcome waits for a guess. Whether it was shown."""
    m = res.metrics
    hidden = guess_mode and ATTACK_REVEALED.get(req) is None
    stop_on_success = bool(dict(req.extra).get("stop_on_success", False))
    x = plots.to_numpy_image(res.x)
    delta = plots.to_numpy_image(res.x_adv) - x
    h, w = res.x.shape[-2:]

    small = models.is_small_input((h, w))  # Fashion-MNIST: 28x28, shown enlarged with sharp pixels (PNG, not JPEG)
    i1, i2, i3 = st.columns(3)
    amp_slot = i2.empty()  # the image goes above its amplification slider
    if small:
        show(i1, plots.enlarge(data.to_pil(res.x)), "PNG", caption=f"Clean: the {w}x{h} image the model sees "
             "(enlarged)", width="stretch")
    else:
        show(i1, data.to_pil(res.x), caption=f"Clean: the {w}x{h} centre crop the model sees", width="stretch")
    i1.markdown(prediction_line("Clean", res.clean.name, res.clean.prob))
    label = sel.true_name  # the dataset's label of a test image (None: a photo or an upload)
    if label is not None:
        i1.markdown(f"Dataset label: {md_escape(label)}")
        if label != res.clean.name:
            i1.caption(f"The model already gets this test image wrong before any attack: it predicts "
                       f"{md_escape(res.clean.name)}, the dataset label is {md_escape(label)}. The attack moves the "
                       f"image away from the model's prediction ({md_escape(res.clean.name)}), not from the label.")
    i2.markdown(f"L-inf {255 * m['linf']:.2f}/255, L2 {m['l2']:.3f}")
    view_links(res)  # before "predict, then reveal" may hide the views: a link's view settings wait for them
    amp = i2.select_slider("Amplification", AMPLIFICATIONS, "auto", key="attack_amplification",
                           help="auto: the largest change is shown as black or white.")
    amp_img, factor = plots.amplified_perturbation(delta, None if amp == "auto" else float(amp))
    show(amp_slot, plots.enlarge_array(amp_img) if small else amp_img, "PNG" if small else "auto",
         caption=f"Perturbation x{factor:.3g} around grey (grey = unchanged)", width="stretch")
    show(i3, plots.enlarge(Image.open(io.BytesIO(res.png))) if small else res.png, "PNG" if small else "auto",
         caption="Adversarial: the 8-bit PNG you download" + (" (enlarged)" if small else ""), width="stretch")
    if hidden:
        i3.markdown("Adversarial prediction: hidden until you guess")
        guess_and_reveal(req)
        return False
    if guess_mode:
        right, said = attack_view.guess_feedback(ATTACK_REVEALED.get(req), res)
        (st.success if right else st.error)(md_escape(said))
    i3.markdown(prediction_line("Adversarial", res.adversarial.name, res.adversarial.prob))
    i3.caption(f"After rounding to 8 bits: {md_escape(res.adversarial_8bit.name)} "
               f"({100 * res.adversarial_8bit.prob:.1f}%)")
    if small:
        st.caption(f"On a {w}x{h} image an eps of {req.eps_text} shows as speckle: small images need a larger "
                   "budget than photos to fool a model (the MAT paper measures MNIST up to eps 0.3). Notice that "
                   "you still recognise on the right what the left shows; the middle image is the difference, "
                   "amplified.")
    else:
        st.caption("Notice that the left and right images look the same to you, yet the model reads them differently; "
                   "the middle image is the difference, amplified so that it becomes visible.")
    kind, verdict = attack_view.verdict(res, label)
    {"success": st.success, "warning": st.warning, "info": st.info}[kind](md_escape(verdict))

    watch = m["target_name"] if m["targeted"] else m["clean_name"]
    figs = attack_view.figures(req, res)  # built once per result, for every session
    b1, b2 = st.columns(2)
    b1.vega_lite_chart(figs.top5_clean, key="attack_top5_clean", width="stretch")
    b2.vega_lite_chart(figs.top5_adv, key="attack_top5_adv", width="stretch")
    if m["targeted"]:
        absent = "" if watch in res.clean.names else f" ('{md_escape(watch)}' is not in the clean top-5)"
        topk_note = f"the attack pulls it up to the top{absent}."
    else:
        topk_note = "the attack pushes it down and another class, often a look-alike, takes the top spot."
    role = "the target" if m["targeted"] else "the model's clean prediction"
    st.caption(f"Notice where the probability of {role} '{md_escape(watch)}' (orange) goes: {topk_note}")

    loss, prob = attack_view.history(res.result)
    l1, l2 = st.columns(2)
    loss_fig, prob_fig = figs.loss, figs.prob
    l1.vega_lite_chart(loss_fig, key="attack_loss", width="stretch")
    l2.vega_lite_chart(prob_fig, key="attack_prob", width="stretch")
    st.caption(history_caption(req, bool(m["targeted"]), stop_on_success, len(loss) - 1))
    if step_key(res) is not None:
        with_section("steps", lambda: step_through(res, loss, loss_fig, watch, small))
    with_section("where", lambda: where_it_acts(res, x, delta, small))
    with_section("numbers", lambda: numbers(req, res, sel, delta, loss, prob, watch, figs))

    st.markdown("**The same numbers from the command line**")
    command_line(attack_view.cli_command(req, sel.cli_image))
    cli_image_note(sel)
    return True


def numbers(req: attack_view.AttackRequest, res: attack_lab.ImageAttack, sel, delta, loss: list[float],
            prob: list[float], watch: str, figs) -> None:
    """The perturbation heat map with its colour bar, every metric in a table, and the downloads."""
    m = res.metrics
    h1, h2 = st.columns([1, 1.7])
    heat = figs.heatmap
    show(h1, plots.enlarge_array(heat.image), "PNG", caption=heat.title, width="stretch")
    h1.vega_lite_chart(heat.colour_bar, key="attack_heatmap_scale", width="stretch", height=plots.COLOUR_BAR_PX)
    h1.caption(heatmap_caption(req, delta, heat.top))  # the colour bar's top, computed with the chart
    rows = [{k: md_escape(v) for k, v in row.items()} for row in attack_view.metric_rows(m)]
    h2.table(rows, hide_index=True, border="horizontal")  # static: every row and full text, no scroll bar
    steps_note = f"{m['steps']} step(s)" + (f", alpha {attack_view.alpha_text(m['alpha'], req.norm)}"
                                            if req.spec.iterative else "")
    h2.caption(f"Notice how small L-inf and AMP are next to the confidence drop. {NORM_TITLES[req.norm]} "
               f"ball, eps {req.eps_text}, {steps_note}, on {m['device']}.")
    d1, d2 = h2.columns(2)
    download_table(d1, attack_view.metric_rows(m), "metrics.csv", key="attack_download_csv",
                   label="Download metrics table (CSV)")
    download_table(d2, plots.history_rows(loss, prob, watch), "history.csv", key="attack_download_history",
                   label="Download loss per iteration (CSV)")
    d1, d2 = h2.columns(2)
    d1.download_button("Download adversarial PNG", res.png, file_name="adversarial.png", mime="image/png",
                       on_click="ignore", key="attack_download_png")
    download_json(d2, attack_view.record(m, sel.true_name), "metrics.json", key="attack_download_json",
                  label="Download metrics JSON")


def guess_and_reveal(req: attack_view.AttackRequest) -> None:
    """"Predict, then reveal": a guess first, then the Reveal button shows the outcome."""
    st.info("Predict first: will this attack change the model's answer? Commit to a guess, then reveal.")
    g1, g2 = st.columns([3, 1])
    gkey = f"attack_guess_{abs(hash(req))}"  # a new request asks for a new guess
    guess = g1.radio("Your guess", attack_view.GUESSES, index=None, key=gkey, horizontal=True)
    g2.button("Reveal", type="primary", key="attack_reveal", disabled=guess is None,
              on_click=lambda: ATTACK_REVEALED.put(req, st.session_state.get(gkey)))


def step_key(res: attack_lab.ImageAttack) -> str | None:
    """The scrubber's widget key for this result's kept steps (None: nothing to step through)."""
    t = res.trajectory
    if t is None or len(t.steps) < 3:  # FGSM: one step, nothing to step through
        return None
    return f"attack_step_{len(t.steps)}_{t.steps[-1]}"


LINK_STEP = "_advlab_attack_link_step"  # a link's scrubber step, kept until a result has steps to show


def view_links(res: attack_lab.ImageAttack | None) -> None:
    """Bind the result views' URL settings (amplification, the scrubber's step, the overlay and its opacity) to
    their widgets, also while the views are not drawn ("predict, then reveal" hides them; a long attack waits for
    Run attack, ``res`` None): they stay in the link and apply once the views are shown. A link opens exactly the
    sections it names (``open``) and those its view settings are in."""
    sections = list(attack_view.SECTIONS)
    linked = [attack_view.OPENED_BY[p] for p in attack_view.OPENED_BY if url_pending(p) is not None]
    from_link = url_pending("open") is not None or bool(linked)
    if from_link:
        st.session_state[OPEN_SECTIONS] = None  # the link's sections replace this session's
    url_value("open", OPEN_SECTIONS, lambda text: attack_view.in_section_order(url_choices(sections)(text)),
              lambda names: ",".join(names))
    if from_link:
        opened = attack_view.in_section_order([*(st.session_state[OPEN_SECTIONS] or ()), *linked])
        st.session_state[OPEN_SECTIONS] = opened
        for name in sections:
            st.session_state[section_key(name)] = name in (opened or ())
    url_value("amp", "attack_amplification", url_choice([str(a) for a in AMPLIFICATIONS], values=AMPLIFICATIONS))
    url_value("overlay", "attack_overlay", url_choice(list(OVERLAYS)))
    url_value("opacity", "attack_overlay_opacity", url_number(0.0, 1.0), url_show_number)
    if res is None:
        url_value("step", LINK_STEP, url_number(0, 200, integer=True))
        return
    key = step_key(res)
    if key is not None:
        steps = res.trajectory.steps
        wanted = st.session_state.pop(LINK_STEP, None)
        if wanted in steps:
            st.session_state[key] = wanted
        url_value("step", key, url_choice([str(v) for v in steps], values=steps))


def section_key(name: str) -> str:
    return f"attack_open_{name}"


def with_section(name: str, draw: Callable[[], None]) -> None:
    """The detail section ``name`` as a lazy expander (ui.views.attack.SECTIONS): ``draw`` runs inside it only
    while it is open."""
    key = section_key(name)
    st.session_state.setdefault(key, name in (st.session_state.get(OPEN_SECTIONS) or ()))
    box = st.expander(attack_view.SECTIONS[name], key=key, on_change="rerun")
    kept = set(st.session_state.get(OPEN_SECTIONS) or ())
    (kept.add if box.open else kept.discard)(name)
    st.session_state[OPEN_SECTIONS] = attack_view.in_section_order(kept)
    if box.open:
        with box:
            draw()


def step_through(res: attack_lab.ImageAttack, loss: list[float], loss_fig, watch: str, small: bool) -> None:
    """A scrubber and a Play button over the kept iterates: the iterate, its amplified perturbation and its top-5
    at step t, and t marked on the loss curve."""
    key = step_key(res)
    if key is None:
        return
    t = res.trajectory
    steps = t.steps
    play = st.session_state.pop("_advlab_attack_play", False)
    if play:
        st.session_state[key] = steps[-1]
    c0, c1 = st.columns([1, 6])
    c0.button("Play", icon=":material/play_arrow:", key="attack_play",
              on_click=lambda: st.session_state.__setitem__("_advlab_attack_play", True),
              help="Show every kept step in turn, then stop at the last.")
    step = c1.select_slider("Step", steps, value=steps[-1], key=key,
                            help=f"{len(steps)} iterates kept of {t.total} steps (8-bit images).")
    s1, s2, s3 = st.columns(3)
    slots = (s1.empty(), s2.empty(), s3.empty(), st.empty(), st.empty())

    def draw(i: int, n: int) -> None:
        frame = t.frames[i]
        img = frame[..., 0] if frame.shape[2] == 1 else frame
        delta = (frame.astype("float32") - t.frames[0].astype("float32")) / 255.0
        amp_img, factor = plots.amplified_perturbation(delta if delta.shape[2] > 1 else delta[..., 0], None)
        s = steps[i]
        show(slots[0], plots.enlarge_array(img) if small else img, "PNG", caption=f"Iterate at step {s}",
             width="stretch")
        show(slots[1], plots.enlarge_array(amp_img) if small else amp_img, "PNG",
             caption=f"Perturbation at step {s}, x{factor:.3g} around grey", width="stretch")
        dev = res.metrics["device"]  # a frame's top-5 once per model, device and pixels, for every session:
        seen = (res.model, str(dev), hashlib.blake2b(frame.tobytes(), digest_size=16).hexdigest())
        pred = ATTACK_FRAMES.get_or_put(seen, lambda: attack_lab.frame_prediction(res.model, t, i, dev))
        top5, marked = attack_view.step_figures(seen, s, pred, watch, loss, bool(res.metrics["targeted"]), loss_fig)
        slots[2].vega_lite_chart(top5, key=f"attack_step_top5_{n}", width="stretch")
        slots[3].vega_lite_chart(marked, key=f"attack_step_loss_{n}", width="stretch")
        slots[4].caption(attack_view.step_caption(s, t.total, pred.name, pred.prob, res.clean.name,
                                                  loss[s] if s < len(loss) else None))

    if play:
        for n, i in enumerate(range(len(steps))):
            draw(i, n)
            time.sleep(PLAY_DELAY)
    else:
        draw(steps.index(step), 0)


def where_it_acts(res: attack_lab.ImageAttack, x, delta, small: bool) -> None:
    """|delta|, or the input gradient at the clean image (summed over channels), laid over the photo, with an
    opacity control and the measured concentration."""
    o1, o2 = st.columns([2, 1])
    shown = o2.radio("Overlay", list(OVERLAYS), format_func=OVERLAYS.get, key="attack_overlay",
                     help="|delta|: how much each pixel changed. Input gradient: |dJ/dx| of the attack's loss at the "
                          "clean image, summed over colour channels, where a small change moves the loss most.")
    opacity = o2.slider("Overlay opacity", 0.0, 1.0, 0.8, step=0.05, key="attack_overlay_opacity",
                        help="0: the photo alone; 1: the largest values in full colour.")
    if shown == "gradient":
        grad = res.input_gradient().numpy()
        img, _ = plots.delta_overlay(x, grad, float(opacity))
        caption = "|input gradient| over the image (grey)"
        said = attack_view.gradient_caption(grad, plots.mass_share(grad, 0.10),
                                            res.metrics["target_name"] if res.metrics["targeted"] else res.clean.name,
                                            bool(res.metrics["targeted"]))
    else:
        img, _ = plots.delta_overlay(x, delta, float(opacity))
        caption = "|delta| over the image (grey)"
        said = attack_view.overlay_caption(delta, plots.mass_share(delta, 0.10))
    show(o1, plots.enlarge_array(img) if small else img, "PNG", caption=caption, width="stretch")
    o2.caption(md_escape(said))


def side_by_side(req: attack_view.AttackRequest, res: attack_lab.ImageAttack, partner: str, image, sel,
                 on_cuda: bool) -> None:
    """The same image and attack on a second model, and the difference in one sentence."""
    st.subheader(f"Side by side: {models.get_spec(req.model).title} and {models.get_spec(partner).title}")
    req2 = dataclasses.replace(req, model=partner)
    res2 = ATTACK_RESULTS.get(req2)
    slot = st.empty()  # the partner's run (compute)
    if res2 is None:
        if RUN.should_run(req2, auto=attack_view.runs_automatically(req2, on_cuda)):
            try:
                res2 = compute(req2, image, slot, sel.image_name, key="attack_cancel_partner")
            except AdvlabError as exc:
                st.warning(str(exc))
                return
            if res2 is None:
                st.rerun()
        else:
            st.button(f"Run on {partner} too", key="attack_run_partner", on_click=RUN.request, args=(req2,))
            return
    cols = st.columns(2)
    for col, r in zip(cols, (res, res2), strict=True):
        col.markdown(f"**{md_escape(models.get_spec(r.model).title)}**")
        png = Image.open(io.BytesIO(r.png))
        small = models.is_small_input(r.x.shape[-2:])
        show(col, plots.enlarge(png) if small else png, "PNG", caption=f"Adversarial image made on {r.model}",
             width="stretch")
        col.markdown(prediction_line("Clean", r.clean.name, r.clean.prob) + "  \n"
                     + prediction_line("Adversarial", r.adversarial.name, r.adversarial.prob))
    st.info(md_escape(attack_view.side_by_side_sentence(res, res2, req.eps_text, sel.true_name)))


def teaching_controls(sel, dataset: str) -> tuple[bool, str | None]:
    """The classroom switches: "predict, then reveal" and a second model side by side."""
    e1, e2, e3 = st.columns([1.3, 1.2, 2.0])
    url_value("guess", "attack_guess_mode", url_bool, url_show_bool)
    guess_mode = e1.toggle("Predict, then reveal", key="attack_guess_mode",
                           help="Hide the outcome until a guess is chosen, then reveal it.")
    partners = attack_view.partner_models(sel.model)
    if not partners:
        return guess_mode, None
    if url_pending("versus") is not None:
        st.session_state["attack_versus_on"] = True  # a link with a second model shows it
    on = e2.toggle("Side by side", key="attack_versus_on",
                   help="The same image and attack on a second model of the same dataset.")
    if not on:
        return guess_mode, None
    vkey = f"attack_versus_{sel.model}"
    url_value("versus", vkey, url_choice(partners))
    partner = e3.selectbox("Second model", partners, key=vkey, format_func=lambda n: models.get_spec(n).title,
                           help="By default the adversarially trained (PGD) model beside a naive one, and the naive "
                                "model beside any other.")
    return guess_mode, partner


def cli_image_note(sel) -> None:
    """Where the command line's --image comes from: the upload saved beside it, or the shipped test subset."""
    if sel.is_upload:
        st.caption(f"Save your upload ({md_escape(sel.image_name)}) as {md_escape(sel.cli_image)} next to the command.")
    elif sel.image_png is not None:
        st.caption(f"`--image {sel.cli_image}` is the same test image of the shipped subset, so the command line "
                   "attacks exactly these pixels; the button below saves it as a PNG.")
        st.download_button("Download the test image", sel.image_png, file_name=sel.image_name, mime="image/png",
                           on_click="ignore", key="attack_download_test_image")


def history_caption(req: attack_view.AttackRequest, targeted: bool, stop_on_success: bool, last: int) -> str:
    """What to notice in the loss and probability charts, and what iteration 0 is."""
    if targeted:
        trend = "Notice the loss falling and the target probability rising with each step"
    else:
        trend = ("Notice the loss rising and the probability of the model's clean prediction collapsing "
                 "with each step")
    extra = dict(req.extra)
    if extra.get("random_start"):
        start = "iteration 0 is PGD's random start, a random point of the eps-ball around the clean image"
    else:
        start = "iteration 0 is the clean image"
    if not req.spec.iterative:
        note = " FGSM takes a single step."
    elif req.attack == "agr" and stop_on_success and last < req.steps:
        note = f" AGR stopped after {last} of {req.steps} steps, as soon as the label flipped."
        if last == 1 and extra.get("accumulator") == "sign":
            note += " With sign(g) its first step is exactly an FGSM step of size alpha/phi (= eps by default)."
    else:
        note = ""
    return f"{trend}; {start}.{note}"


def heatmap_caption(req: attack_view.AttackRequest, delta, top: float) -> str:
    """What the heat map's colours mean and what to notice in it."""
    if req.eps == 0:
        return "eps is 0, so nothing may change: the map is black. Move eps to see where an attack spends it."
    if req.norm == "l2":
        return (f"Colours run from black (unchanged) to bright yellow, the largest change of any pixel "
                f"({top:.3g}/255): L2 caps the total length of the change, not single pixels. Notice where "
                "the budget goes: the bright patches are where the model's gradient is largest, often the "
                "eyes, edges and textures it relies on, while flat areas barely move.")
    scale = f"Colours run from black (unchanged) to bright yellow, a change of {top:.3g}/255: the budget eps."
    share = plots.share_at(delta, 255.0 * req.eps) if req.eps > 0 else 0.0
    if share >= 0.995:
        return (f"{scale} Notice that every pixel changes by the full eps: sign steps spend the whole budget "
                "everywhere, which is why L-infinity perturbations look like even noise.")
    extra = dict(req.extra)
    if not req.spec.iterative:
        why = "FGSM moves every pixel by eps, but pixels already black or white cannot go further that way"
    elif extra.get("random_start"):
        why = "the random start put them inside the ball and later steps did not all push them the same way"
    elif extra.get("accumulator") == "gradient":
        why = "raw-gradient AGR steps are small where the gradient is small"
    else:
        why = "their gradient changed sign between steps"
    return (f"{scale} Notice where the budget goes: {100 * share:.0f}% of the pixels change by the full eps; "
            f"the darker ones moved less: {why}.")


def main() -> None:
    sel = app_frame()
    spec = models.get_spec(sel.model)
    presenter = bool(st.session_state.get("sidebar_presenter"))
    if presenter:
        st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
    intro = INTRO if spec.dataset == "imagenet" else INTRO_SMALL
    # In presenter view the room hears the intro from the lecturer: it waits behind the title's help icon, and
    # the screen keeps the controls and the predictions.
    st.title("Attack lab", help=intro if presenter else None)
    if not presenter:
        st.markdown(intro)
    image = require_image(sel)
    req = controls(sel, spec.classes(), spec.dataset)
    guess_mode, partner = teaching_controls(sel, spec.dataset)
    on_cuda = pick_device(sel.device).type == "cuda"
    RUN.show_notices(attack_view.interrupted)

    res = ATTACK_RESULTS.get(req)
    slot = st.empty()  # a run's Cancel, progress and place in line (compute), at the same place in every page run
    if res is None:
        auto = attack_view.runs_automatically(req, on_cuda)
        # A click is remembered with its request, so it survives a rerun that Streamlit inserts; a cancelled
        # small attack waits for the button instead of starting again by itself.
        if RUN.should_run(req, auto=auto):
            res = compute(req, image, slot, sel.image_name)
            if res is None:
                st.rerun()  # the next page run says why, and offers the button
        else:
            st.button("Run attack", type="primary", key="attack_run", on_click=RUN.request, args=(req,))
            view_links(None)
            if not auto:
                _, h, w = spec.input_size
                st.info(f"{req.spec.title} with {req.gradient_steps} steps on a {w}x{h} image takes a while here, "
                        "so it does not rerun on every change: press Run attack.")
            command_line(attack_view.cli_command(req, sel.cli_image))
            cli_image_note(sel)
            return
    if views(req, res, sel, guess_mode) and partner is not None:
        side_by_side(req, res, partner, image, sel, on_cuda)


main()
