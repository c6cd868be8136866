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
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import streamlit as st
from PIL import Image
from streamlit.navigation.page import StreamlitPage

from advcore import data, datasets, models
from advcore.device import cuda_available, describe, pick_device
from advcore.errors import AdvlabError
from advcore.models import custom
from advcore.records import pixel_sha256
from ui import plots, workers

log = logging.getLogger("advlab.ui")
if not logging.getLogger("advlab").handlers:  # errors go to the server log, never to the page
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("advlab").addHandler(_handler)

DEFAULT_SAMPLE = "coffee.jpg"  # Lite0: espresso at 95.4% (cat.jpg: tiger cat at 39.1%; README "Teaching")
DEFAULT_GALLERY = 3  # Fashion-MNIST test image #3, an ankle boot: fmnist-naive 99.0%, fmnist-pgd 98.6%, both right
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
_SESSION_MODELS_KEY = "_advlab_session_models"  # name -> advcore.models.SessionModel, this session's own models
_SESSION_NAMES_KEY = "_advlab_session_model_names"  # every name this session has used (never reused: caches)
_SESSION_FILES_KEY = "_advlab_session_model_files"  # name -> (model file name, card file name or None): uploads
_MODEL_ERROR_KEY = "_advlab_model_error"
MODEL_UPLOAD_TYPES = ["pt", "pth", "ts", "jit", "zip", "bin"]
CARD_UPLOAD_TYPES = ["json", "yaml", "yml"]
CARD_FROM_FILE, CARD_FROM_FIELDS = "Card file", "Card fields"
CUSTOM_DATASETS = {"fashion-mnist": "Fashion-MNIST (10 classes, 1x28x28)", "digits": "digits (10 classes, 1x8x8)",
                   "imagenet": "ImageNet (1000 classes, RGB)", "custom": "my own classes"}
TORCHSCRIPT = "none (TorchScript file)"
_URL_KEY = "_advlab_url"  # the URL state of this page run (see "URL state" below)
DEFAULT_HOST = "http://localhost:8501"  # the link's origin when the browser's is unknown (a test)
PRESENTER_CSS = """<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] p {
  color: inherit !important; opacity: 1 !important; font-size: 1.0rem !important; }
[data-testid="stMainBlockContainer"] { padding-top: 1.2rem; max-width: 100%; }
h1 { font-size: 2.0rem !important; padding-top: 0 !important; }
</style>"""
_IMAGE_CACHE_KEY = "_advlab_image_cache"
_UPLOAD_KEY = "_advlab_upload_key"  # (this upload, its content key)


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


@dataclass(frozen=True)
class ClassLink:
    """A ready link for a class: a lab, its URL settings and what it shows (README "Teaching with advlab")."""

    title: str
    url_path: str
    params: tuple[tuple[str, str], ...]
    shows: str

    @property
    def query(self) -> dict[str, str]:
        return dict(self.params)

    @property
    def script(self) -> str:
        return next(lab.script for lab in LABS if lab.url_path == self.url_path)


CLASS_LINKS = (
    ClassLink("One step, 1/255", "attack",
              (("model", "efficientnet-lite0"), ("image", "coffee"), ("attack", "fgsm"), ("eps", "1")),
              "Lite0 reads the coffee photo as espresso (95.4%); one FGSM step of 1/255 per pixel turns it into "
              "something else."),
    ClassLink("Step through a targeted PGD", "attack",
              (("model", "efficientnet-lite0"), ("image", "coffee"), ("attack", "pgd"), ("eps", "4"),
               ("target", "toaster"), ("guess", "1"), ("open", "steps")),
              "Students guess first; after Reveal, PGD at 4/255 has made the espresso a toaster, and the scrubber "
              "shows the steps on the way."),
    ClassLink("Naive and robust side by side", "attack",
              (("model", "fmnist-naive"), ("image", "3"), ("attack", "fgsm"), ("eps", "0.1"),
               ("versus", "fmnist-pgd")),
              "The same FGSM step of 0.1 on the same ankle boot fools the naive Fashion-MNIST model but not the "
              "PGD-trained one."),
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
    image_key: str  # identifies the image content: "sample:cat.jpg" or "upload:<pixel SHA-256>:<name>"
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
    """Draw the shared sidebar and return the selection; its end holds the page's link (:func:`url_publish`)."""
    sel = _sidebar()
    sb = st.sidebar
    url_value("presenter", "sidebar_presenter", url_bool, url_show_bool)
    if sb.toggle("Presenter view", key="sidebar_presenter",
                 help="For a projector: larger type, captions at full contrast, less padding."):
        st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
    st.session_state[_URL_KEY]["link_slot"] = sb.empty()
    return sel


def session_models() -> dict:
    """This session's own models (uploads, Training-lab runs): name -> :class:`advcore.models.SessionModel`."""
    return st.session_state.setdefault(_SESSION_MODELS_KEY, {})


def _taken() -> set[str]:
    return st.session_state.setdefault(_SESSION_NAMES_KEY, set()) | set(session_models())


MAX_SESSION_MODELS = 8  # own models one session holds (each is in memory); the oldest Training-lab run makes room


def _keep(sm, *, trained: bool = False) -> str:
    """Put a session model in this session's list; returns its name. A full list refuses an upload and drops
    its oldest Training-lab run for a new run."""
    mine = session_models()
    if len(mine) >= MAX_SESSION_MODELS:
        runs = [n for n, m in mine.items() if m.spec.card.get("format") == custom.TRAINED_FORMAT]
        if not trained or not runs:
            raise AdvlabError(f"This session already holds {MAX_SESSION_MODELS} of your models; forget one in the "
                              "sidebar's \"Your own model\" box first.")
        _forget_session_model(runs[0])
    mine[sm.spec.name] = sm
    st.session_state.setdefault(_SESSION_NAMES_KEY, set()).add(sm.spec.name)
    return sm.spec.name


def add_session_model(name: str, model, card: dict) -> str:
    """Offer a model trained in this session (the Training lab's run: the [0, 1]-pixel model and its card) in
    this session's sidebar model list, as ``mine:NAME``; returns that name. Other sessions never see it."""
    return _keep(custom.from_trained(name, model, card, taken=_taken()), trained=True)


def load_session_model(model_bytes: bytes, model_file: str, card: dict | bytes, card_file: str = "card.json") -> str:
    """Load an uploaded model (TorchScript or a state_dict, ``weights_only``) with its card (the card file's
    bytes, or the fields as a dict) into this session's model list; returns its name (AdvlabError if bad)."""
    card_name = card_file if isinstance(card, (bytes, str)) else None
    if isinstance(card, (bytes, str)):
        kind = "yaml" if Path(card_file).suffix.lower() in (".yaml", ".yml") else "json"
        card = custom.parse_card(card, kind=kind, default_name=Path(model_file).stem,
                                 where=f"The model card {card_file}")
    sm = custom.load_custom(model_bytes, card, weights_name=model_file, taken=_taken())
    name = _keep(sm)
    st.session_state.setdefault(_SESSION_FILES_KEY, {})[name] = (model_file, card_name)
    return name


# The command-line flags that name models (advcore.cli.framework.MODEL_ARGS), and a session model's name in them.
_MODEL_FLAG = re.compile(r"(--(?:models?|targets|[a-z]+-model))(\s+)(\S+)")
_CARD_HERE = "\0card\0"
CARD_TYPED = "card.json"  # the card of a model loaded with typed fields: the person saves those fields as this


def cli_for_session(command: str, files: dict[str, tuple[str, str | None]]) -> tuple[str, list[str]]:
    """``command`` (a page's ``python -m advcore ...`` line) runnable outside this session: each of this
    session's own models (``mine:NAME``, which the command line cannot name) becomes the file it was uploaded
    from (``files``: name -> (model file, card file or None for typed fields)), with ``--model-card CARD``
    when there is exactly one such file (the command line takes one); a Training-lab run becomes
    ``YOUR_RUN.json``, the card ``python -m advcore train`` writes. Returns the line and one note per kind of
    replacement (empty when the line names no session model)."""
    prefix = custom.SESSION_PREFIX
    uploads: dict[str, tuple[str, str | None]] = {}
    trained: list[str] = []
    swapped: list[str] = []

    def swap(m: re.Match) -> str:
        words = []
        for name in m.group(3).split(","):
            if not name.startswith(prefix):
                words.append(name)
            elif name in files:
                uploads[name] = files[name]
                words.append(shlex.quote(files[name][0]))
            else:
                trained.append(name)
                words.append("YOUR_RUN.json")
        here = _CARD_HERE if uploads and _CARD_HERE not in swapped else ""  # where --model-card would go
        swapped.append(here)
        return f"{m.group(1)}{m.group(2)}{','.join(words)}{here}"

    out = _MODEL_FLAG.sub(swap, command)
    notes = []
    if uploads:
        shown = ", ".join(f"{md_escape(f)}" for f, _ in uploads.values())
        if len(uploads) == 1 and not trained:
            model_file, card_file = next(iter(uploads.values()))
            out = out.replace(_CARD_HERE, f" --model-card {shlex.quote(card_file or CARD_TYPED)}", 1)
            typed = "" if card_file else f" (save the card fields you typed as {CARD_TYPED})"
            notes.append(f"Your own model is the file you uploaded ({shown}) and its card{typed}: give the paths "
                         "where you keep them.")
        else:
            notes.append(f"Your own models are the files you uploaded ({shown}): give the paths where you keep "
                         "them, each with its card beside it as the same name with .json (the command line takes "
                         "one --model-card).")
    if trained:
        notes.append("A Training-lab run lives in this session only: YOUR_RUN.json is the card that "
                     "`python -m advcore train` writes for the same run (the Training lab shows its line).")
    return out.replace(_CARD_HERE, ""), notes


def command_line(command: str) -> None:
    """Draw a page's ``python -m advcore ...`` line (:func:`cli_for_session`: your own models as their files)
    and a note when it names one."""
    text, notes = cli_for_session(command, st.session_state.get(_SESSION_FILES_KEY, {}))
    st.code(text, language="bash")
    for note in notes:
        st.caption(note)


def _numbers(text: str, what: str) -> list[float]:
    try:
        return [float(t) for t in str(text).replace(";", ",").split(",") if t.strip()]
    except ValueError:
        raise AdvlabError(f"{what} must be numbers separated by commas, got {text!r}.") from None


def card_from_fields(architecture: str, dataset: str, channels: int, height: int, width: int, mean: str, std: str,
                     classes: str, name: str) -> dict:
    """The card the sidebar's card widgets describe (checked later by advcore.models.custom)."""
    card: dict = {"input_size": [int(channels), int(height), int(width)], "mean": _numbers(mean, "Mean"),
                  "std": _numbers(std, "Std"), "name": name.strip() or "model"}
    if architecture != TORCHSCRIPT:
        card["architecture"] = architecture
    if dataset != "custom":
        card["dataset"] = dataset
    else:
        card["classes"] = [c.strip() for c in classes.replace("\n", ",").split(",") if c.strip()]
    return card


def _load_from_sidebar() -> None:
    """The Load button's callback: the uploaded model file and card (file or fields) -> this session's list."""
    s = st.session_state
    s[_MODEL_ERROR_KEY] = None
    try:
        up = s.get("sidebar_own_file")
        if up is None:
            raise AdvlabError("Choose a model file first (TorchScript, or a state_dict saved with torch.save).")
        if s.get("sidebar_own_card_source", CARD_FROM_FILE) == CARD_FROM_FILE:
            card_up = s.get("sidebar_own_card")
            if card_up is None:
                raise AdvlabError("Choose the model card file (JSON), or give the card's fields instead.")
            card, card_file = card_up.getvalue(), card_up.name
        else:
            card = card_from_fields(s.get("sidebar_own_arch", TORCHSCRIPT), s.get("sidebar_own_dataset", "custom"),
                                    s.get("sidebar_own_c", 1), s.get("sidebar_own_h", 28), s.get("sidebar_own_w", 28),
                                    s.get("sidebar_own_mean", ""), s.get("sidebar_own_std", ""),
                                    s.get("sidebar_own_classes", ""), Path(up.name).stem)
            card_file = "the card fields"
        name = load_session_model(up.getvalue(), up.name, card, card_file)
        s["sidebar_model"] = name
    except AdvlabError as exc:
        s[_MODEL_ERROR_KEY] = str(exc)


def _forget_session_model(name: str) -> None:
    session_models().pop(name, None)
    if st.session_state.get("sidebar_model") == name:
        st.session_state.pop("sidebar_model", None)


def _own_model_sidebar() -> None:
    """The sidebar's "Your own model" box: a model file and its card (a file, or fields as widgets)."""
    mine = session_models()
    with st.sidebar.expander("Your own model", expanded=bool(st.session_state.get(_MODEL_ERROR_KEY))):
        st.file_uploader("Model file", type=MODEL_UPLOAD_TYPES, key="sidebar_own_file",
                         help="TorchScript (torch.jit.save), or a state_dict (torch.save(model.state_dict())) of "
                              f"{', '.join(custom.ARCHITECTURES)}. Loaded with weights_only=True: a pickle holding "
                              "code is refused.")
        source = st.radio("Model card", [CARD_FROM_FILE, CARD_FROM_FIELDS], key="sidebar_own_card_source",
                          horizontal=True)
        if source == CARD_FROM_FILE:
            st.file_uploader("Card (JSON)", type=CARD_UPLOAD_TYPES, key="sidebar_own_card",
                             help="input_size [C, H, W], mean and std (one per channel), classes or a dataset "
                                  "(fashion-mnist, digits, imagenet), architecture for a state_dict (README "
                                  "\"Your own model\").")
        else:
            st.selectbox("Architecture", [TORCHSCRIPT, *custom.ARCHITECTURES[:1], *custom.ARCHITECTURES[2:]],
                         key="sidebar_own_arch")
            dataset = st.selectbox("Classes", list(CUSTOM_DATASETS), format_func=CUSTOM_DATASETS.get,
                                   key="sidebar_own_dataset")
            c1, c2, c3 = st.columns(3)
            c1.number_input("C", 1, 3, 1, key="sidebar_own_c")
            c2.number_input("H", custom.MIN_SIDE, custom.MAX_SIDE, 28, key="sidebar_own_h")
            c3.number_input("W", custom.MIN_SIDE, custom.MAX_SIDE, 28, key="sidebar_own_w")
            st.text_input("Mean (per channel)", "0.5", key="sidebar_own_mean")
            st.text_input("Std (per channel)", "0.5", key="sidebar_own_std")
            if dataset == "custom":
                st.text_area("Class names (comma- or line-separated)", key="sidebar_own_classes")
        st.button("Load model", key="sidebar_own_load", on_click=_load_from_sidebar)
        error = st.session_state.get(_MODEL_ERROR_KEY)
        if error:
            st.error(error)
        for name, sm in mine.items():
            st.caption(f"{md_escape(name)}: {sm.spec.card.get('format', '')}, {sm.spec.dataset}, "
                       f"{'x'.join(map(str, sm.spec.input_size))} input, {sm.spec.num_classes} classes")
            st.button(f"Forget {name}", key=f"sidebar_own_forget_{name}", icon=":material/delete:",
                      on_click=_forget_session_model, args=(name,))
        st.caption("Your models are in the model list of this session only (tab); they are gone when it ends.")


def _sidebar() -> Selection:
    sb = st.sidebar
    sb.header("Setup")
    models.use_session(session_models())  # this run's model names include this session's own
    model_names = models.names()
    url_value("model", "sidebar_model", url_choice(model_names))
    if st.session_state.get("sidebar_model") not in (None, *model_names):
        st.session_state.pop("sidebar_model")  # a forgotten model
    model_titles = {n: _model_title(n) for n in model_names}  # resolved now, while this session's models are in scope
    model = sb.selectbox("Model", model_names, format_func=lambda n: model_titles.get(n, n), key="sidebar_model",
                         help="Registered classifiers with real pretrained weights, then this session's own models "
                              "(\"Your own model\" below, and the Training lab's runs).")
    _own_model_sidebar()

    url_value("device", "sidebar_force_cpu", url_choice(["auto", "cpu"], values=[False, True]),
              lambda v: "cpu" if v else "auto")
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
    stems = [Path(f).stem for f in files]
    url_value("image", "sidebar_sample", url_choice(stems, values=files), lambda f: Path(f).stem)
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
    _url_state()["upload"] = up.name  # a link cannot carry the file: it says so
    file_key = f"upload:{getattr(up, 'file_id', '')}:{up.name}:{up.size}"  # this upload (Streamlit's file id)
    image, error = _load_image(file_key, up.getvalue, up.name)
    known = st.session_state.get(_UPLOAD_KEY)
    if known is None or known[0] != file_key:  # hash the pixels once per upload, not on every rerun
        known = st.session_state[_UPLOAD_KEY] = (
            file_key, upload_key(image, up.name) if image is not None else f"{file_key}:unreadable")
    image_key = known[1]
    sel = Selection(model=model, device=device, image_key=image_key, image_name=up.name,
                    cli_image=f"upload{_suffix(up.name)}", is_upload=True, image=image, image_error=error)
    _caption_image(sel)
    return sel


def upload_key(image: Image.Image, name: str) -> str:
    """The image key of an upload: ``upload:<SHA-256 of the decoded pixels>:<file name>``
    (:func:`advcore.records.pixel_sha256`), so two sessions uploading the same file share its results. The
    name is part of it because a result's record names its image: the same pixels under another file name are
    computed again rather than shown with someone else's file name."""
    return f"upload:{pixel_sha256(image)}:{name}"


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
    url_value("image", f"sidebar_gallery_{dataset}", url_choice([str(i) for i in range(len(labels))],
                                                                   values=list(range(len(labels)))))
    index = sb.selectbox("Test image", range(len(labels)), index=min(DEFAULT_GALLERY, len(labels) - 1),
                         key=f"sidebar_gallery_{dataset}",
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

    Errors escaping the page go through :func:`error_boundary`. The URL state is read before the sidebar
    (:func:`url_begin`) and written after the page, whatever ended it (:func:`url_publish`).
    """
    url_begin(page.url_path)
    with error_boundary(), models.session_scope(session_models()):
        workers.prepare()  # the worker pool starts with the server's first page run
        try:
            st.session_state[_SELECTION_KEY] = sidebar()
            _url_state()["note_slot"] = st.empty()  # above the page's title: what a link could not restore
            page.run()
        finally:
            st.session_state.pop(_SELECTION_KEY, None)
            url_publish()


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


# --------------------------------------------------------------------------- URL state
#
# Every setting of a page lives in ``st.query_params`` so that a link restores exactly that run. Before a widget
# is drawn, the page (or ui.widgets, for declared parameters) calls :func:`url_value` with the URL name, the
# widget key and a parser that checks the text against the widget's own options or range: a link's value is put
# into the widget's session state once, when the URL is new to this session (a fresh tab, a pasted link, a
# page link with query parameters); a bad or stale value keeps the default and is named in a note on the page.
# After the page, :func:`url_publish` writes every registered widget's value back into the URL, in the units of
# the widget (eps=4 on an x/255 slider means 4/255), and shows the full link under the sidebar.


class UrlError(ValueError):
    """A URL value that a widget cannot take (the message says what it accepts)."""


def _url_state() -> dict:
    return st.session_state.setdefault(_URL_KEY, {"written": None, "pending": {}, "fields": {}, "notes": []})


def url_begin(url_path: str) -> None:
    """Start a page run: the URL's parameters become pending when they are not the ones this session wrote."""
    state = _url_state()
    now = {k: st.query_params.get(k) for k in st.query_params.keys()}
    state["pending"] = dict(now) if now and now != state["written"] else {}
    state.update(fields={}, notes=[], path=url_path, upload=None, note_slot=None, link_slot=None)


def url_value(name: str, key: str, parse: Callable[[str], object], show: Callable[[object], str] = str) -> None:
    """Bind the URL parameter ``name`` to the widget ``key``; call just before drawing the widget.

    ``parse`` turns the URL text into a value the widget accepts (raising ValueError/KeyError with what it
    accepts); ``show`` turns the widget's value back into URL text.
    """
    state = _url_state()
    state["fields"][name] = (key, show)
    raw = state["pending"].pop(name, None)
    if raw is None:
        return
    try:
        st.session_state[key] = parse(raw)
    except (ValueError, KeyError, TypeError, AdvlabError) as exc:
        state["notes"].append(f"{name}={raw}: {_reason(exc)}")


def url_set(name: str, value: object, show: Callable[[object], str] = str) -> None:
    """Put a value that has no widget of its own (a derived setting) into the published URL."""
    _url_state()["fields"][name] = (None, lambda _v: show(value))


def url_pending(name: str) -> str | None:
    """The link's raw value for ``name`` when it is still to be applied (for a page that parses it itself)."""
    return _url_state()["pending"].get(name)


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.rstrip(".")


def url_choice(options: Sequence[str], values: Sequence[object] | None = None,
               aliases: dict[str, object] | None = None) -> Callable[[str], object]:
    """A parser for a choice widget: the URL text (case-insensitive) names an option; ``values`` are what the
    widget holds for each (default: the options themselves)."""
    vals = list(options) if values is None else list(values)
    table = {str(o).lower(): v for o, v in zip(options, vals, strict=True)}
    table.update({k.lower(): v for k, v in (aliases or {}).items()})

    def parse(text: str) -> object:
        hit = table.get(text.strip().lower())
        if hit is None:
            shown = ", ".join(str(o) for o in list(options)[:8]) + (", ..." if len(options) > 8 else "")
            raise UrlError(f"not one of {shown}")
        return hit

    return parse


def url_choices(options: Sequence[str], values: Sequence[object] | None = None) -> Callable[[str], list]:
    """A parser for a multiselect: comma-separated option names (each as :func:`url_choice`); empty = none."""
    one = url_choice(options, values)

    def parse(text: str) -> list:
        return [one(t) for t in text.split(",") if t.strip()]

    return parse


def url_show_list(show: Callable[[object], str] = str) -> Callable[[object], str]:
    """A multiselect's values as comma-separated URL text."""
    return lambda vs: ",".join(show(v) for v in vs)


def url_number(low: float | None, high: float | None, *, integer: bool = False,
               unit: str = "") -> Callable[[str], float | int]:
    """A parser for a number widget: finite, within [low, high] (the widget's own range), an int if ``integer``."""

    def parse(text: str) -> float | int:
        try:
            v = float(text)
        except ValueError:
            raise UrlError("not a number") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise UrlError("not a finite number")
        if integer:
            if v != int(v):
                raise UrlError("not a whole number")
            v = int(v)
        if (low is not None and v < low) or (high is not None and v > high):
            raise UrlError(f"outside {low:g} to {high:g}{unit}" if low is not None and high is not None
                           else "out of range")
        return v

    return parse


def url_bool(text: str) -> bool:
    """A parser for a toggle or checkbox: 1/0, true/false, yes/no, on/off."""
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise UrlError("not 1 or 0")


def url_show_bool(v: object) -> str:
    return "1" if v else "0"


def url_show_number(v: object) -> str:
    """A number as short URL text: 4 rather than 4.0, 0.1 rather than 0.1000000001."""
    if isinstance(v, bool):
        return url_show_bool(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def url_params() -> dict[str, str]:
    """The parameters this page run registered, as URL text (what :func:`url_publish` writes)."""
    out = {}
    for name, (key, show) in _url_state()["fields"].items():
        if key is None:
            out[name] = show(None)
        elif key in st.session_state and st.session_state[key] is not None:
            out[name] = show(st.session_state[key])
    return out


def page_link_url(params: dict[str, str], url_path: str | None = None) -> str:
    """The full link of a page with ``params`` (the browser's origin; ``DEFAULT_HOST`` when it is unknown)."""
    origin = DEFAULT_HOST
    try:
        here = st.context.url
    except Exception:  # noqa: BLE001 - no browser context (a bare run)
        here = None
    if here:
        parts = urlsplit(str(here))
        if parts.scheme and parts.netloc:
            origin = f"{parts.scheme}://{parts.netloc}"
    path = _url_state().get("path") if url_path is None else url_path
    query = urlencode(params)
    return f"{origin}/{path or ''}" + (f"?{query}" if query else "")


def url_publish() -> None:
    """End a page run: write the registered settings into the URL, show the link and the notes."""
    state = _url_state()
    params = url_params()
    unknown = sorted(k for k in state["pending"] if k not in state["fields"])
    for name in unknown:
        state["notes"].append(f"{name}={state['pending'][name]}: not a setting of this page")
    state["pending"] = {}
    try:
        if {k: st.query_params.get(k) for k in st.query_params.keys()} != params:
            st.query_params.from_dict(params)
    except Exception:  # noqa: BLE001 - the URL is a convenience; never break a page over it
        log.exception("advlab: could not write the URL state")
    state["written"] = params
    slot = state.get("link_slot")
    if slot is not None:
        with slot.container():
            st.caption("Link to exactly these settings (copy it with the icon at its right):")
            st.code(page_link_url(params), language=None, wrap_lines=True)
            if state.get("upload"):
                st.caption(f"An uploaded image ({md_escape(state['upload'])}) cannot travel in a link: whoever "
                           "opens it gets the default image.")
    if state["notes"] and state.get("note_slot") is not None:
        state["note_slot"].warning("This link had settings that could not be used, so their defaults are shown: "
                                   + "; ".join(md_escape(n) for n in state["notes"]) + ".")
