"""The command-line framework: ``python -m advcore COMMAND ...``.

Each subcommand lives in its own module of :mod:`advcore.cli` and registers itself
with :func:`command` (a name, one-line help, the function declaring its arguments and
its body); :func:`build_parser` imports every module of the package, so a new command
is one new file.

Conventions shared by every command:

* Errors meant for a person (:class:`~advcore.errors.AdvlabError`, a bad flag)
  print exactly one line ``advcore: error: <message>`` on stderr and exit 2;
  Ctrl-C exits 130; an unexpected failure prints one line and exits 1
  (``python -m advcore --debug ...`` shows its traceback).
* Results go to stdout (a short human summary, or JSON); progress bars and a
  final one-line summary go to stderr.
* Output files (:mod:`advcore.files`): checked before any work starts (a directory
  that takes no new files is refused, for root too); missing parent directories are
  created (like ``mkdir -p``); each file is written to a temporary name beside it and
  renamed, so an interrupted run never leaves half a file; ``/dev/null``, a FIFO or
  a terminal is written into, never replaced by a file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from advcore.attacks import MAX_STEPS
from advcore.errors import AdvlabError, Cancelled
from advcore.files import check_output, write_bytes
from advcore.units import MAX_EPS_VALUES, parse_eps, parse_eps_list, parse_int  # noqa: F401  (argparse types)

PROG = "python -m advcore"
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# --------------------------------------------------------------------------- value parsers


def parse_steps(text: str) -> int:
    """Number of attack iterations, 1 to :data:`MAX_STEPS`."""
    return parse_int(text, name="steps", low=1, high=MAX_STEPS)


def arg_type(fn: Callable[[str], object], name: str) -> Callable[[str], object]:
    """Adapt a parser raising AdvlabError to argparse (which then reports ``argument --x: message``)."""

    def convert(text: str) -> object:
        try:
            return fn(text)
        except AdvlabError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


# --------------------------------------------------------------------------- command registry


@dataclass(frozen=True)
class Command:
    """One subcommand: its name (a verb), one-line help, argument declarations, body, and other names (the lab's)."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    aliases: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None], *,
            aliases: tuple[str, ...] = ()):
    """Register the decorated ``fn(args) -> exit code`` as subcommand ``name`` (also reachable as ``aliases``)."""

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name, help, configure, fn, tuple(aliases))
        return fn

    return register


class _UsageError(Exception):
    """A command-line mistake found by argparse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage block
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command module of :mod:`advcore.cli` registered."""
    for module in sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])):
        if module != "framework" and not module.startswith("_"):
            importlib.import_module(f"advcore.cli.{module}")
    parser = _Parser(prog=PROG, description="advlab: adversarial machine learning on images, from the command line.")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, aliases=list(cmd.aliases), help=cmd.help, description=cmd.help)
        cmd.configure(p)
        flags = [p._option_string_actions[f] for f in ("--model", "--models") if f in p._option_string_actions]
        for action in flags:
            action.help = f"{action.help or 'model name'}; or your own model's file (.pt/.pth/.ts, see --model-card)"
        if flags:
            p.add_argument("--model-card", metavar="PATH",
                           help="the card (JSON) of a model given as a file to --model: architecture, input size, "
                                "mean/std, classes (default: NAME.json or model.json beside the file)")
        p.set_defaults(_run=cmd.run)
    return parser


# --------------------------------------------------------------------------- your own model (--model PATH)

#: The arguments that name models: a file path there is your own model (:mod:`advcore.models.custom`).
MODEL_ARGS = ("model", "models", "targets", "halftone_model", "hybrid_model", "reference_model")
_MODEL_FILE_SUFFIXES = (".pt", ".pth", ".ts", ".jit", ".zip", ".bin", ".json", ".yaml", ".yml")


def _is_model_path(text: str) -> bool:
    return Path(text).suffix.lower() in _MODEL_FILE_SUFFIXES or (os.sep in text and Path(text).exists())


def resolve_model_files(args: argparse.Namespace) -> dict:
    """Load every model given as a file (``--model my.pt --model-card my.json``, or a card JSON written by
    ``train``) and put its session name (``mine:NAME``) in its place; returns the session models, for
    :func:`advcore.models.session_scope`. Nothing is imported when every model is a registered name."""
    def pieces(value: object) -> list[str]:
        items = value if isinstance(value, list) else str(value).split(",") if value is not None else []
        return [str(v).strip() for v in items]

    paths = [p for a in MODEL_ARGS for p in pieces(getattr(args, a, None)) if p and _is_model_path(p)]
    card = getattr(args, "model_card", None)
    if card is not None and len(set(paths)) != 1:
        raise AdvlabError("--model-card needs exactly one model given as a file (--model PATH); "
                          f"{len(set(paths))} were given.")
    if not paths:
        return {}
    from advcore.models import custom

    loaded: dict = {}
    by_path: dict[str, str] = {}
    for path in dict.fromkeys(paths):
        weights, this_card = path, card
        if Path(path).suffix.lower() in custom.CARD_SUFFIXES:  # a card naming its checkpoint (train's output)
            this_card, weights = path, custom.weights_beside(path)
        sm = custom.load_custom(weights, this_card, taken=loaded)
        loaded[sm.spec.name] = sm
        by_path[path] = sm.spec.name
    for a in MODEL_ARGS:
        value = getattr(args, a, None)
        if value is None:
            continue
        if isinstance(value, list):
            setattr(args, a, [by_path.get(v.strip(), v) for v in value])
        else:
            setattr(args, a, ",".join(by_path.get(v.strip(), v) for v in str(value).split(",")))
    return loaded


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or "unknown error"


def say(message: str) -> None:
    """One message for a person, on stderr."""
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        mine = resolve_model_files(args)
        if not mine:
            return int(args._run(args) or EXIT_OK)
        from advcore.models import session_scope

        with session_scope(mine):
            return int(args._run(args) or EXIT_OK)
    except _UsageError as exc:
        say(f"advcore: error: {_one_line(exc)}")
        return EXIT_USAGE
    except AdvlabError as exc:
        say(f"advcore: error: {_one_line(exc)}")
        return EXIT_USAGE
    except (KeyboardInterrupt, Cancelled):
        say("advcore: interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except BrokenPipeError:  # stdout closed early, e.g. piped into head
        sys.stdout = open(os.devnull, "w")  # keeps the interpreter's final flush quiet
        return EXIT_INTERNAL
    except Exception as exc:
        if debug:
            raise
        say(f"advcore: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for details)")
        return EXIT_INTERNAL


# --------------------------------------------------------------------------- files


def output_path(text: str, *, flag: str, suffix: str | None = None) -> Path:
    """Check an output path before any work starts (:func:`advcore.files.check_output`)."""
    return check_output(text, what=flag, suffix=suffix)


def write_file(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path``: atomically for a file, directly into ``/dev/null`` or a FIFO."""
    write_bytes(path, payload)


def json_text(obj: object) -> str:
    """``obj`` as indented JSON (tensors, numpy values and non-finite floats made JSON-safe)."""
    from advcore.records import json_safe

    return json.dumps(json_safe(obj), indent=2)


def load_image(text: str):
    """``--image``: a file path, ``-`` for stdin, a bundled sample (``cat``) or ``fashion-mnist:N``.

    ``fashion-mnist:N`` is image N of the shipped Fashion-MNIST test subset (the Attack lab's gallery).
    """
    from advcore import data

    if text == "-":
        return data.open_image(sys.stdin.buffer, name="standard input")
    if text.startswith("fashion-mnist:"):
        from PIL import Image

        from advcore import datasets

        index = text.split(":", 1)[1]
        x, _ = datasets.load_subset()
        if not index.isdigit() or int(index) >= len(x):
            raise AdvlabError(f"{text}: the shipped Fashion-MNIST subset has images 0 to {len(x) - 1}.")
        return Image.fromarray(x[int(index), 0].numpy(), mode="L").convert("RGB")
    path = Path(text).expanduser()
    if not path.exists():
        try:
            path = data.sample_path(text)
        except AdvlabError:
            known = ", ".join(Path(s.file).stem for s in data.samples())
            raise AdvlabError(f"{text} does not exist and is not a bundled sample ({known}).") from None
    return data.open_image(path, name=text)


def parse_strengths(text: str) -> list[float] | str:
    """``--strengths``: ``auto`` (the random walk chooses) or L-inf strengths in (0, 1]."""
    if str(text).strip().lower() == "auto":
        return "auto"
    return parse_eps_list(text, name="strength", allow_zero=False)


def int_type(name: str, low: int, high: int) -> Callable[[str], object]:
    """An argparse type for a whole number in ``[low, high]``."""
    return arg_type(lambda s: parse_int(s, name=name, low=low, high=high), name)


def positive_int(name: str, high: int) -> Callable[[str], object]:
    """An argparse type for a whole number in ``[1, high]``."""
    return int_type(name, 1, high)


SEED_MAX = 2**31 - 1
DEVICES = ("auto", "cpu", "cuda")
THREADS_HELP = "CPU threads for torch (default: torch's choice; 1 is faster on a busy shared CPU)"


def add_run_options(g: argparse._ArgumentGroup, *, quiet_help: str, json_help: str | None = None,
                    device_default: str = "auto", threads_help: str | None = THREADS_HELP) -> None:
    """The output options computing commands share: ``--json PATH`` (when ``json_help`` is given),
    ``--device``, ``--threads`` (unless ``threads_help`` is None) and ``-q``."""
    if json_help is not None:
        g.add_argument("--json", metavar="PATH", help=json_help)
    device_help = "default: auto (CUDA if present)" if device_default == "auto" else f"default: {device_default}"
    g.add_argument("--device", default=device_default, choices=DEVICES, help=device_help)
    if threads_help is not None:
        g.add_argument("--threads", type=positive_int("threads", 256), help=threads_help)
    g.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def stderr_bar(desc: str, quiet: bool, *, total: int = 1, unit: str = "step"):
    """A tqdm progress bar on stderr, off with ``-q`` or when stderr is not a terminal; a context manager."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=quiet or not sys.stderr.isatty())


class ProgressBars:
    """The :class:`advcore.progress.Progress` callback of every command: tqdm bars on stderr and the stage messages.

    ``per_stage``: a new bar for each stage (training's epochs, poisoning's tables); otherwise one bar whose
    label follows the stage (a comparison's or a geometry probe's steps count over all stages).
    """

    def __init__(self, quiet: bool, *, per_stage: bool = True, unit: str = "step"):
        self.quiet, self.per_stage, self.unit = quiet, per_stage, unit
        self.bar = None
        self.stage = None

    def __call__(self, p) -> None:
        if self.quiet:
            return None
        if self.bar is None or (self.per_stage and p.stage != self.stage):
            self.close()
            self.bar = stderr_bar(p.stage[:60], False, total=p.total, unit=self.unit)
        elif p.stage != self.stage:
            self.bar.set_description_str(p.stage[:60], refresh=False)
        self.stage = p.stage
        self.bar.total = p.total
        self.bar.update(p.step - self.bar.n)
        if "loss" in p.info:
            self.bar.set_postfix_str(f"loss {p.info['loss']:.3f}", refresh=False)
        if p.message:
            self.bar.clear()
            say(f"advcore: {p.message}")
        return None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batch_size(given: int | None, device: str, cpu_default: int) -> int:
    """``--batch-size``: the one given, else :func:`advcore.device.batch_size_for` the device (``cpu_default``
    on the CPU, larger on a GPU)."""
    from advcore.device import batch_size_for, pick_device

    return given if given is not None else batch_size_for(pick_device(device), cpu_default)


def batch_help(cpu_default: int) -> str:
    """The help of ``--batch-size`` when its default depends on the device."""
    return f"images per batch (default: {cpu_default} on the CPU, more on a GPU: advcore.device.batch_size_for)"


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU thread count, when given."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)




def finite_type(name: str, *, positive: bool = False, high: float | None = None) -> Callable[[str], object]:
    """An argparse type for a finite number (a fraction such as 4/255 allowed), at least 0 or positive, and at
    most ``high`` when given."""

    def convert(text: str) -> float:
        value = parse_eps(text, name=name, allow_zero=not positive)
        if high is not None and value > high:
            raise AdvlabError(f"{name} must be at most {high:g}, got {text.strip()!r}.")
        return value

    return arg_type(convert, name)
