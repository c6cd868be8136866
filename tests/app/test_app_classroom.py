"""AppTest of the classroom server's sharing across sessions: two sessions uploading the same file share one
result (the upload is keyed by its pixels' SHA-256), and a page's command line names your own uploaded model by
its files, in a form the command line runs."""

from __future__ import annotations

import io
import shlex

import numpy as np
import pytest
import torch
from app_util import APP, TIMEOUT, naive_files
from PIL import Image
from streamlit.testing.v1 import AppTest

from advcore import models
from advcore.cli import framework
from advcore.records import pixel_sha256
from ui import frame, shared

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def upload_session(data: bytes, name: str) -> AppTest:
    """A session on the Attack lab with fmnist-naive (FGSM runs on load) and ``data`` uploaded as ``name``."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.session_state["sidebar_model"] = "fmnist-naive"
    at.switch_page("app_pages/attack.py").run()
    at.radio(key="sidebar_gallery_source").set_value(frame.SOURCE_UPLOAD).run()
    at.file_uploader(key="sidebar_upload_small").set_value((name, data, "image/png")).run()
    assert not at.exception, at.exception
    return at


def clean_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("Clean prediction:"))


def results(at: AppTest) -> list:
    """The Attack lab results of uploads this session holds (the same objects as the shared ones)."""
    return [(k, v) for k, v in at.session_state["_advlab_attack_results"].items() if k.image_key.startswith("upload:")]


def test_the_same_upload_in_two_sessions_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "_RESULTS", shared.SharedResults(8))
    data = png(3)
    one = upload_session(data, "shoe.png")
    two = upload_session(data, "shoe.png")  # another student, the same file: another Streamlit file id
    key = f"upload:{pixel_sha256(Image.open(io.BytesIO(data)))}:shoe.png"
    [(req1, res1)], [(req2, res2)] = results(one), results(two)
    assert req1.image_key == req2.image_key == key and req1 == req2
    assert res2 is res1 and clean_line(two) == clean_line(one)  # the first session's result, not recomputed
    uploads = lambda: [k for k in shared.results()._done if k[1].image_key.startswith("upload:")]  # noqa: E731
    assert len(uploads()) == 1
    other = upload_session(png(4), "shoe.png")  # other pixels under the same name: its own result
    [(req3, res3)] = results(other)
    assert req3.image_key != key and res3 is not res1 and len(uploads()) == 2


def test_the_command_line_names_your_uploaded_model_by_its_files(tmp_path, monkeypatch) -> None:
    weights, card = naive_files()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.file_uploader(key="sidebar_own_file").set_value(("my naive.pt", weights, "application/octet-stream"))
    at.file_uploader(key="sidebar_own_card").set_value(("naive.json", card, "application/json"))
    at.run()
    at.button(key="sidebar_own_load").click().run()
    at.switch_page("app_pages/attack.py").run()
    assert not at.exception, at.exception
    line = at.code[0].value
    assert "mine:" not in line and "--model 'my naive.pt' --model-card naive.json \\\n" in line
    assert any(c.value == "Your own model is the file you uploaded (my naive.pt) and its card: give the paths "
                          "where you keep them." for c in at.caption)
    # the line runs: where the person keeps the two files, the command line loads the same network
    (tmp_path / "my naive.pt").write_bytes(weights)
    (tmp_path / "naive.json").write_bytes(card)
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(line.replace("\\\n", " "))[3:]
    args = framework.build_parser().parse_args(argv)
    loaded = framework.resolve_model_files(args)
    assert args.model == "mine:my-naive" and list(loaded) == ["mine:my-naive"]
    x = torch.rand(2, 1, 28, 28)
    ref = models.load("fmnist-naive", "cpu")
    assert torch.allclose(loaded["mine:my-naive"].model(x), ref(x), atol=1e-6)


def test_cli_for_session_covers_lists_typed_cards_and_training_runs() -> None:
    files = {"mine:a": ("a.pt", "a.json"), "mine:b": ("b.pt", None)}
    line, notes = frame.cli_for_session("python -m advcore compare --models efficientnet-lite0,mine:b \\\n"
                                        "    --targets mine:b --eps 1", files)
    assert line == ("python -m advcore compare --models efficientnet-lite0,b.pt --model-card card.json \\\n"
                    "    --targets b.pt --eps 1")
    assert "save the card fields you typed as card.json" in notes[0]
    line, notes = frame.cli_for_session("python -m advcore compare --models mine:a,mine:b", files)
    assert line == "python -m advcore compare --models a.pt,b.pt" and "takes one --model-card" in notes[0]
    line, notes = frame.cli_for_session("python -m advcore attack --model mine:your-run-1 --eps 1", files)
    assert line == "python -m advcore attack --model YOUR_RUN.json --eps 1" and "Training-lab run" in notes[0]
    assert frame.cli_for_session("python -m advcore attack --model efficientnet-lite0", files) == (
        "python -m advcore attack --model efficientnet-lite0", [])
