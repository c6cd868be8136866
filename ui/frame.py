"""The shared sidebar (model, device, image), the error boundary and text helpers used by every page.

``app.py`` calls :func:`run_with_sidebar`: the sidebar is drawn once per script run, before the
selected page, and handed to the page, which picks it up with :func:`app_frame` (its first call) and
asks for the decoded image with :func:`require_image`. Nothing here does maths: models, devices and
images come from advcore.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st
from PIL import Image
from streamlit.navigation.page import StreamlitPage

from advcore import data, datasets, models
from advcore.device import cuda_available, describe, pick_device
from advcore.errors import AdvlabError
from ui import plots

log = logging.getLogger("advlab.ui")
if not logging.getLogger("advlab").handlers:  # errors go to the server log, never to the page
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("advlab").addHandler(_handler)

DEFAULT_SAMPLE = "cat.jpg"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]
SOURCE_SAMPLE = "Bundled sample"
SOURCE_UPLOAD = "Upload"
SOURCE_GALLERY = "Test image"
GALLERY_SIZE = 50  # the first images of the shipped test subset (class-interleaved: 5 of each class)
GALLERY_DATASETS = {"fashion-mnist": "Fashion-MNIST"}  # model datasets whose test images the sidebar offers
GENERIC_ERROR = (
    "Something went wrong on our side while building this page. The details were written to the server log; "
    "try other settings or reload the page."
)

_SELECTION_KEY = "_advlab_selection"
_IMAGE_CACHE_KEY = "_advlab_image_cache"


@dataclass(frozen=True)
class Lab:
    """One page of the app: its script (relative to app.py), title, Material icon and URL path."""

    script: str
    title: str
    icon: str
    url_path: str | None = None


LABS = (
    Lab("app_pages/home.py", "Home", ":material/home:"),
    Lab("app_pages/attack.py", "Attack lab", ":material/bolt:", "attack"),
    Lab("app_pages/compare.py", "Compare attacks", ":material/leaderboard:", "compare"),
    Lab("app_pages/training.py", "Training lab", ":material/model_training:", "training"),
    Lab("app_pages/geometry.py", "Geometry lab", ":material/scatter_plot:", "geometry"),
    Lab("app_pages/defense.py", "Defense lab", ":material/shield:", "defense"),
    Lab("app_pages/poisoning.py", "Poisoning lab", ":material/science:", "poisoning"),
    Lab("app_pages/papers.py", "Papers", ":material/menu_book:", "papers"),
)
def app_pages() -> list[StreamlitPage]:
    """The labs, in navigation order (paths relative to app.py); Home is the default page."""
    return [
        st.Page(lab.script, title=lab.title, icon=lab.icon, url_path=lab.url_path, default=lab.url_path is None)
        for lab in LABS
    ]


@dataclass(frozen=True)
class Selection:
    """What the shared sidebar chose: model, device, and the image (decoded, or why it could not be)."""

    model: str
    device: str  # "auto" or "cpu"
    image_key: str  # identifies the image content: "sample:cat.jpg" or "upload:<file id>"
    image_name: str  # the file name a person sees
    cli_image: str  # the --image argument of the equivalent command line
    is_upload: bool
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    image_error: str | None = None
    true_name: str | None = None  # the label of a dataset test image (None: a photo or an upload)
    image_png: bytes | None = field(default=None, compare=False, repr=False)  # a test image as the PNG to save


def _model_title(name: str) -> str:
    try:
        return models.get_spec(name).title
    except AdvlabError:
        return name


def _load_image(key: str, source: Callable[[], object], name: str) -> tuple[Image.Image | None, str | None]:
    """Decode an image once per session and content; keep the error message for unreadable files."""
    cache = st.session_state.setdefault(_IMAGE_CACHE_KEY, {})
    if key not in cache:
        try:
            cache.clear()  # one image per session is enough; uploads can be large
            cache[key] = (data.open_image(source(), name=name), None)
        except AdvlabError as exc:
            cache[key] = (None, str(exc))
    return cache[key]


def sidebar() -> Selection:
    """Draw the shared sidebar and return the selection."""
    sb = st.sidebar
    sb.header("Setup")
    model_names = models.names()
    model = sb.selectbox("Model", model_names, format_func=_model_title, key="sidebar_model",
                         help="Registered classifiers with real pretrained weights.")

    force_cpu = sb.toggle("Force CPU", key="sidebar_force_cpu",
                          help="Run on the CPU even when a CUDA GPU is available.")
    device = "cpu" if force_cpu else "auto"
    note = "" if cuda_available() else " (no CUDA GPU found)"
    sb.caption(f"Device: {describe(pick_device(device))}{note}")

    dataset = _dataset(model)
    if dataset in GALLERY_DATASETS:
        return _gallery_sidebar(model, device, dataset)

    source = sb.radio("Image", [SOURCE_SAMPLE, SOURCE_UPLOAD], key="sidebar_image_source", horizontal=True)
    if source == SOURCE_UPLOAD:
        sel = _upload(model, device, "sidebar_upload",
                      "PNG, JPEG, WebP or BMP, up to 20 MB; it is centre-cropped to the model input.",
                      "No file yet: the sample below is used until you upload one.")
        if sel is not None:
            return sel

    all_samples = data.samples()
    files = [s.file for s in all_samples]
    titles = {s.file: s for s in all_samples}
    default = files.index(DEFAULT_SAMPLE) if DEFAULT_SAMPLE in files else 0
    file = sb.selectbox("Sample image", files, index=default, key="sidebar_sample",
                        format_func=lambda f: titles[f].title)
    sample = titles[file]
    image, error = _load_image(f"sample:{file}", lambda: sample.path, file)
    sel = Selection(model=model, device=device, image_key=f"sample:{file}", image_name=file,
                    cli_image=f"assets/samples/{file}", is_upload=False, image=image, image_error=error)
    _caption_image(sel, licence=f"{sample.licence}; {sample.source}")
    return sel


def _dataset(model: str) -> str:
    try:
        return models.get_spec(model).dataset
    except AdvlabError:
        return ""


def _upload(model: str, device: str, key: str, help: str, waiting: str) -> Selection | None:
    """The sidebar's file uploader; the selection of the uploaded file, or None (with ``waiting``) before one."""
    up = st.sidebar.file_uploader("Upload an image", type=UPLOAD_TYPES, key=key, help=help)
    if up is None:
        st.sidebar.caption(waiting)
        return None
    image_key = f"upload:{getattr(up, 'file_id', '')}:{up.name}:{up.size}"
    image, error = _load_image(image_key, up.getvalue, up.name)
    sel = Selection(model=model, device=device, image_key=image_key, image_name=up.name,
                    cli_image=f"upload{_suffix(up.name)}", is_upload=True, image=image, image_error=error)
    _caption_image(sel)
    return sel


def gallery_image(dataset: str, index: int) -> tuple[Image.Image, int]:
    """Test image ``index`` of a dataset's shipped subset as an 8-bit greyscale PIL image, and its label."""
    x, y = datasets.load_subset(GALLERY_SIZE)
    return Image.fromarray(x[index, 0].numpy(), mode="L"), int(y[index])


def _gallery_sidebar(model: str, device: str, dataset: str) -> Selection:
    """For models of a small dataset: a test image of its shipped subset (true label known), or an upload."""
    sb = st.sidebar
    title = GALLERY_DATASETS[dataset]
    source = sb.radio("Image", [SOURCE_GALLERY, SOURCE_UPLOAD], key="sidebar_gallery_source", horizontal=True)
    if source == SOURCE_UPLOAD:
        sel = _upload(model, device, "sidebar_upload_small",
                      "PNG, JPEG, WebP or BMP, up to 20 MB; it is converted to greyscale, resized and "
                      "centre-cropped to the model input (28x28 for Fashion-MNIST).",
                      "No file yet: the test image below is used until you upload one.")
        if sel is not None:
            return sel
    classes = models.class_names(model)
    try:
        _, labels = datasets.load_subset(GALLERY_SIZE)
    except AdvlabError as exc:
        return Selection(model=model, device=device, image_key=f"{dataset}:none", image_name=f"{title} test image",
                         cli_image="", is_upload=False, image_error=str(exc))
    index = sb.selectbox("Test image", range(len(labels)), key=f"sidebar_gallery_{dataset}",
                         format_func=lambda i: f"#{i}: {classes[int(labels[i])]}",
                         help=f"The first {len(labels)} images of the shipped {title} test subset, with their "
                              "true classes.")
    image, label = gallery_image(dataset, int(index))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    name = f"{dataset}-{index}.png"
    sb.image(plots.enlarge(image, 112), width=112, output_format="PNG")
    sb.caption(f"Test image #{index} of the shipped {title} test subset ({image.width}x{image.height} px, "
               f"official test images, MIT licence); dataset label: {md_escape(classes[label])}.")
    return Selection(model=model, device=device, image_key=f"{dataset}:{index}", image_name=name,
                     cli_image=f"{dataset}:{index}",
                     is_upload=False, image=image, true_name=classes[label], image_png=buf.getvalue())


def _suffix(name: str) -> str:
    """The upload's own extension (".jpg"), so the saved file keeps its format; ".png" when unknown."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix.lstrip(".") in UPLOAD_TYPES else ".png"


def _caption_image(sel: Selection, licence: str | None = None) -> None:
    if sel.image is not None:
        w, h = sel.image.size
        text = f"{md_escape(sel.image_name)}: {w}x{h} px"
        st.sidebar.caption(f"{text}. {licence}" if licence else text)
    else:
        st.sidebar.caption(f"{md_escape(sel.image_name)} cannot be used (see the message on the page).")


def run_with_sidebar(page: StreamlitPage) -> None:
    """Draw the sidebar, then run ``page``, which picks the selection up with :func:`app_frame`.

    Errors escaping the page go through :func:`error_boundary`.
    """
    with error_boundary():
        st.session_state[_SELECTION_KEY] = sidebar()
        try:
            page.run()
        finally:
            st.session_state.pop(_SELECTION_KEY, None)


def app_frame() -> Selection:
    """Call first on every page: the sidebar selection of this run, handed over by app.py.

    The hand-over is consumed here, at the top of the page, so a later run can never see a stale one
    (cleanup after ``st.stop`` is not guaranteed). When it is missing (a page run without app.py, as
    a test might), the page draws the sidebar itself.
    """
    sel = st.session_state.pop(_SELECTION_KEY, None)
    return sel if sel is not None else sidebar()


def require_image(sel: Selection) -> Image.Image:
    """The selected image, or an error box and the end of this page run."""
    if sel.image is None:
        st.error(sel.image_error or "No image is selected.")
        st.stop()
    return sel.image


@contextlib.contextmanager
def error_boundary() -> Iterator[None]:
    """Show AdvlabError messages as they are; log anything else and show a short generic message.

    Streamlit's own control flow (st.stop, st.rerun) derives from BaseException and passes through.
    """
    try:
        yield
    except AdvlabError as exc:
        st.error(str(exc))
    except Exception:
        log.exception("advlab: unexpected error while running a page")
        st.error(GENERIC_ERROR)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")


def md_escape(text: str) -> str:
    """Escape Markdown control characters in a class or file name."""
    return _MD_SPECIAL.sub(r"\\\1", text)
