"""Home: what advlab is and what each lab shows."""

from __future__ import annotations

import streamlit as st

from ui.common import app_frame

app_frame()  # the shared sidebar's selection is not needed here
st.title("advlab")
st.markdown(
    "advlab is a laboratory for adversarial machine learning on images: tiny, deliberately crafted changes "
    "to a photo that a person cannot see but that change what a neural network says it is. "
    "Everything runs on real ImageNet classifiers (EfficientNet-Lite0/1/2), on a GPU when there is one and "
    "on the CPU otherwise, and every number on screen can be reproduced with `python -m advcore`."
)
st.markdown(
    "Choose the model, the device and the image in the sidebar; every lab uses the same choice. "
    "Use one of the bundled photos or upload your own (PNG, JPEG, WebP or BMP)."
)

st.subheader("Labs")
st.markdown(
    "**Attack lab**: pick an attack (FGSM, I-FGSM, PGD, MI-FGSM or the adaptive gradient refinement attack, AGR), "
    "an L-infinity or L2 budget and optionally a target class, then watch the prediction flip. It shows the clean "
    "image, the amplified perturbation and the adversarial image side by side, the top-5 predictions before and "
    "after, the loss per iteration, a heat map of the change, and the metrics (L2, L-inf, cosine similarity, AMP, "
    "SSIM, PSNR), with downloads of the adversarial PNG and of the metrics."
)
st.page_link("app_pages/attack.py", label="Open the Attack lab", icon=":material/bolt:")
st.caption(
    "Coming: the Geometry lab (isotropy, Mantel test, local Lipschitz), the Defense lab (halftoning), "
    "the Training lab (multi-strength adversarial training) and the Poisoning lab."
)
