"""Home: one "start here" sentence, ready links for a class, and what each lab shows."""

from __future__ import annotations

import streamlit as st

from ui.frame import CLASS_LINKS, app_frame, page_link_url

app_frame()  # the shared sidebar's selection is not needed here
st.title("advlab")
START = CLASS_LINKS[0]
st.markdown("**Start here:** open the Attack lab on the coffee photo, where one FGSM step of 1/255 per pixel, "
            "invisible to you, changes what the network says it sees.")
st.page_link(START.script, label="Start here: the Attack lab, FGSM at 1/255", icon=":material/play_arrow:",
             query_params=START.query)
st.markdown(
    "advlab is a laboratory for adversarial machine learning on images: tiny, deliberately crafted changes "
    "to a photo that a person cannot see but that change what a neural network says it is. "
    "Everything runs on real classifiers: ImageNet models (EfficientNet-Lite0/1/2) and small Fashion-MNIST "
    "networks trained here with and without adversarial examples, on a GPU when there is one and on the CPU "
    "otherwise, and every number on screen can be reproduced with `python -m advcore`."
)
st.markdown(
    "Choose the model, the device and the image in the sidebar; every lab uses the same choice. "
    "Use one of the bundled photos (or, for a Fashion-MNIST model, one of its test images) or upload your own "
    "(PNG, JPEG, WebP or BMP). Every page keeps its settings in its address: the link under the sidebar opens "
    "exactly the same experiment for someone else."
)

st.subheader("For a class")
for link in CLASS_LINKS:
    st.page_link(link.script, label=link.title, icon=":material/link:", query_params=link.query)
    st.caption(f"{link.shows} `{page_link_url(link.query, link.url_path)}`")

st.subheader("Labs")
st.markdown(
    "**Attack lab**: pick an attack (FGSM, I-FGSM, PGD, MI-FGSM or the adaptive gradient refinement attack, AGR), "
    "an L-infinity or L2 budget and optionally a target class, then watch the prediction flip. It shows the clean "
    "image, the amplified perturbation and the adversarial image side by side, the top-5 predictions before and "
    "after, the loss per iteration, a scrubber over the attack's steps, where the perturbation acts on the photo, "
    "the metrics (L2, L-inf, cosine similarity, AMP, SSIM, PSNR), a second model side by side and a \"predict, "
    "then reveal\" mode, with downloads of the adversarial PNG, the metrics and the charts."
)
st.page_link("app_pages/attack.py", label="Open the Attack lab", icon=":material/bolt:")
st.markdown(
    "**Compare attacks**: run all five attacks on a whole set of photos at the same budget and compare them as "
    "the adaptive-gradient paper does: success rate, cosine similarity, AMP, L2 and L-inf per attack, success rate "
    "against eps, and a transferability matrix (adversarial images made on one EfficientNet-Lite, shown to the others)."
)
st.page_link("app_pages/compare.py", label="Open Compare attacks", icon=":material/leaderboard:")
st.markdown(
    "**Training lab**: does training on adversarial examples make a model robust, and at which attack strengths? "
    "It compares Fashion-MNIST models trained normally, with FGSM or PGD examples of one strength, and with "
    "multi-strength adversarial training (mixed and parallel MAT, strengths chosen by a random walk), as accuracy "
    "against attack strength (the MAT paper's Figure 4) and as average accuracy (its Table 1), all read from the "
    "shipped models' cards. You can also train a small model yourself, with live progress, and watch its curve "
    "join the chart."
)
st.page_link("app_pages/training.py", label="Open the Training lab", icon=":material/model_training:")
st.markdown(
    "**Geometry lab**: does a network answer the same to all noise of the same size? Around the chosen image it "
    "scores random points at fixed distances and draws the four probes of Aghdam et al.: isotropy and symmetry "
    "(how much the class score varies among points at one radius, and among shuffles of one noise vector), the "
    "Mantel test (does a layer keep the points' arrangement?) and the local Lipschitz ratio (does the layer pull "
    "them towards the clean image?). A last tab puts a standard and an adversarially trained Fashion-MNIST model "
    "side by side on exactly the same points."
)
st.page_link("app_pages/geometry.py", label="Open the Geometry lab", icon=":material/scatter_plot:")
st.markdown(
    "**Defense lab**: halftoning turns an image into black-and-white dots before the model sees it (Floyd-Steinberg, "
    "Atkinson, Jarvis-Judice-Ninke or Stucki error diffusion, or Bayer ordered dithering). It compares an undefended "
    "model, halftoned input on it, a halftone-trained and a hybrid model under FGSM, I-FGSM and PGD, twice: against "
    "an attacker who ignores the halftone (as the paper did) and one who knows it (BPDA, plus EOT when the halftone "
    "is random), and the per-example worst case over every attacker; the gap is the lesson."
)
st.page_link("app_pages/defense.py", label="Open the Defense lab", icon=":material/shield:")
st.markdown(
    "**Poisoning lab**: do features made robust by adversarial training also resist data poisoning? A linear SVM is "
    "trained on frozen naive, FGSM-trained or PGD-trained features; label flip, poison frogs and adversarial "
    "poisoning attack its training set, and the measured tables appear next to the paper's."
)
st.page_link("app_pages/poisoning.py", label="Open the Poisoning lab", icon=":material/science:")
st.markdown(
    "**Papers**: each of the five papers' headline claims, its own numbers cited by table or figure, next to what "
    "advlab measured on its closest setting, a verdict per claim computed from those numbers, and the command that "
    "reproduces each one (`python -m advcore reproduce PAPER`)."
)
st.page_link("app_pages/papers.py", label="Open the Papers page", icon=":material/menu_book:")
