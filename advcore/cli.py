"""The command line: ``python -m advcore COMMAND ...``.

Each subcommand is one function registered in :data:`COMMANDS` together with the
function that declares its arguments (see :func:`command`), so new commands
(eval, geometry, compare, defend, poison, train) slot in without touching
:func:`main`.

Conventions shared by every command:

* Errors meant for a person (:class:`~advcore.errors.AdvlabError`, a bad flag)
  print exactly one line ``advcore: error: <message>`` on stderr and exit 2;
  Ctrl-C exits 130; an unexpected failure prints one line and exits 1
  (``python -m advcore --debug ...`` shows its traceback).
* Results go to stdout (a short human summary, or JSON); progress bars and a
  final one-line summary go to stderr.
* Output files: missing parent directories are created (like ``mkdir -p``), but
  only after the arguments have been checked; a path whose nearest existing
  parent is not a writable directory is refused before any work starts. Each file
  is written to a temporary name beside it and renamed, so an interrupted run
  never leaves half a file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from advcore.attacks import ATTACKS, MAX_STEPS
from advcore.errors import AdvlabError, Cancelled

PROG = "python -m advcore"
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


# --------------------------------------------------------------------------- value parsers


def parse_eps(text: str | float, *, name: str = "eps", allow_zero: bool = True) -> float:
    """A budget from ``"4/255"``, ``"0.0157"`` or ``"1e-2"``; refuses garbage, negatives, nan and inf."""
    s = str(text).strip()
    parts = [p.strip() for p in s.split("/")]
    if any(p.lower().lstrip("+-") in ("nan", "inf", "infinity") for p in parts):
        raise AdvlabError(f"{name} must be a finite number, got {s!r}.")
    if len(parts) > 2 or not all(_NUMBER.fullmatch(p) for p in parts):
        raise AdvlabError(f"{name} must be a number such as 0.0157 or a fraction such as 4/255, got {s!r}.")
    value = float(parts[0])
    if len(parts) == 2:
        denominator = float(parts[1])
        if denominator == 0:
            raise AdvlabError(f"{name} {s!r} divides by zero.")
        value /= denominator
    if not math.isfinite(value):
        raise AdvlabError(f"{name} must be a finite number, got {s!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "positive"
        raise AdvlabError(f"{name} must be {bound}, got {s!r}.")
    return value


def parse_int(text: str, *, name: str, low: int, high: int) -> int:
    """A whole number in ``[low, high]``."""
    s = str(text).strip()
    if not re.fullmatch(r"[+-]?\d+", s):
        raise AdvlabError(f"{name} must be a whole number, got {s!r}.")
    value = int(s)
    if not low <= value <= high:
        raise AdvlabError(f"{name} must be between {low} and {high}, got {value}.")
    return value


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
    """One subcommand: its name, one-line help, argument declarations and body."""

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated ``fn(args) -> exit code`` as subcommand ``name``."""

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        COMMANDS[name] = Command(name, help, configure, fn)
        return fn

    return register


class _UsageError(Exception):
    """A command-line mistake found by argparse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of argparse's usage block
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand (those of :mod:`advcore.commands` included)."""
    from advcore import commands

    commands.load_all()
    parser = _Parser(prog=PROG, description="advlab: adversarial machine learning on images, from the command line.")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


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
    """Check an output path before any work starts; its missing parent directories are created on writing."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise AdvlabError(f"{flag} {text} is a directory; give a file name.")
    if suffix is not None and path.suffix.lower() != suffix:
        raise AdvlabError(f"{flag} must name a {suffix} file, got {text}.")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise AdvlabError(f"{flag} {text}: {parent} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AdvlabError(f"{flag} {text}: the directory {parent} is not writable.")
    return path


def write_file(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temporary file and a rename, creating parent directories."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AdvlabError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_text(obj: object) -> str:
    """``obj`` as indented JSON (tensors, numpy values and non-finite floats made JSON-safe)."""
    from advcore.experiment import json_safe

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


# --------------------------------------------------------------------------- models, samples


def _models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the registry as JSON")


@command("models", "list the registered models", _models_args)
def cmd_models(args: argparse.Namespace) -> int:
    """Print every registered model: name, dataset, input size, title."""
    from advcore import models

    rows = []
    for name in models.names():
        spec = models.get_spec(name)
        rows.append({"name": spec.name, "title": spec.title, "dataset": spec.dataset,
                     "input_size": list(spec.input_size), "num_classes": spec.num_classes})
    if args.json:
        print(json_text(rows))
        return EXIT_OK
    table = [("NAME", "DATASET", "INPUT", "CLASSES", "TITLE")]
    table += [(r["name"], r["dataset"], "x".join(map(str, r["input_size"])), str(r["num_classes"]), r["title"])
              for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return EXIT_OK


@command("samples", "list the bundled sample images (usable as --image NAME)", _models_args)
def cmd_samples(args: argparse.Namespace) -> int:
    """Print the bundled sample photos with their sources and licences."""
    from advcore import data

    rows = [{"name": Path(s.file).stem, "file": s.file, "title": s.title, "source": s.source,
             "licence": s.licence} for s in data.samples()]
    if args.json:
        print(json_text(rows))
        return EXIT_OK
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name'].ljust(width)}  {r['title']} ({r['licence']})")
    return EXIT_OK


# --------------------------------------------------------------------------- attack

# Attack-specific flags: argparse dest -> (flag as typed, attack parameter).
_EXTRA_FLAGS = {
    "mu": ("--mu", "mu"),
    "phi": ("--phi", "phi"),
    "delta": ("--delta", "delta"),
    "accumulator": ("--accumulator", "accumulator"),
    "random_start": ("--[no-]random-start", "random_start"),
    "stop_on_success": ("--[no-]stop-on-success", "stop_on_success"),
    "seed": ("--seed", "seed"),
}


def _finite(name: str, *, positive: bool = False) -> Callable[[str], object]:
    def convert(text: str) -> float:
        return parse_eps(text, name=name, allow_zero=not positive)

    return arg_type(convert, name)


def _default(attack: str, param: str) -> object:
    """The default of an attack's keyword parameter, read from its signature (so --help never drifts)."""
    import inspect

    return inspect.signature(ATTACKS[attack].fn).parameters[param].default


def _attack_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to attack")
    g.add_argument("--model", required=True, help="registered model name (see the 'models' command)")
    g.add_argument("--image", required=True, metavar="PATH",
                   help="PNG/JPEG/WebP/BMP file, '-' for stdin, or (when no such file exists) a bundled sample "
                        "name such as 'cat' (see the 'samples' command)")
    g.add_argument("--target", metavar="CLASS", help="make the attack targeted: class index or name ('tabby')")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default="pgd", metavar="NAME",
                   help=f"one of {', '.join(ATTACKS)} (default: pgd)")
    g.add_argument("--norm", default="linf", choices=("linf", "l2"), help="threat model (default: linf)")
    g.add_argument("--eps", required=True, type=arg_type(parse_eps, "eps"),
                   help="budget in [0,1] pixel units: 4/255, 0.0157, 1e-2 (L-inf at most 1)")
    g.add_argument("--steps", type=arg_type(parse_steps, "steps"),
                   help=f"iterations, 1-{MAX_STEPS} (default: 10; FGSM takes one step)")
    g.add_argument("--alpha", type=_finite("alpha", positive=True),
                   help="step size (default: the attack's own, e.g. 2.5*eps/steps for PGD)")
    g.add_argument("--seed", type=int_type("seed", 0, 2**63 - 1),
                   help="seed of PGD's random start")
    d = _default
    g.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=None,
                   help=f"PGD: start from a random point of the ball (default: {_yes(d('pgd', 'random_start'))})")
    g.add_argument("--mu", type=_finite("mu"), help=f"MI-FGSM momentum decay (default: {d('mifgsm', 'mu')})")
    g.add_argument("--phi", type=_finite("phi", positive=True), help=f"AGR step scale (default: {d('agr', 'phi')})")
    g.add_argument("--delta", type=_finite("delta", positive=True),
                   help=f"AGR stabiliser (default: {d('agr', 'delta')})")
    g.add_argument("--accumulator", choices=("gradient", "sign"),
                   help=f"AGR accumulator of Eq. 10 (default: {d('agr', 'accumulator')})")
    g.add_argument("--stop-on-success", action=argparse.BooleanOptionalAction, default=None,
                   help=f"stop once the label flips (default: {_yes(d('agr', 'stop_on_success'))} for AGR, "
                        f"{_yes(d('pgd', 'stop_on_success'))} for the others)")
    g = p.add_argument_group("output")
    g.add_argument("--out", metavar="PNG", help="write the adversarial image (exactly the 8-bit PNG measured)")
    add_run_options(g, json_help="write the metrics as JSON ('-': to stdout, instead of the summary)",
                    threads_help=None, quiet_help="no progress bar or notes (the final line stays)")


def _yes(flag: object) -> str:
    return "yes" if flag else "no"


def _fmt_eps(eps: float, norm: str) -> str:
    return f"{eps:.4g} ({eps * 255:.3g}/255)" if norm == "linf" else f"{eps:.4g}"


def _summary(m: dict, files: list[str]) -> str:
    """The human summary of an attack's metrics dict."""
    alpha = f", alpha {m['alpha']:.4g}" if m.get("alpha") is not None else ""
    norm = "L-inf" if m["norm"] == "linf" else "L2"
    title = m["attack"]
    try:
        from advcore.attacks import get_attack

        title = get_attack(m["attack"]).title
    except AdvlabError:
        pass
    lines = [
        f"{m['model']} on {m['device']}: {title}, {norm} eps {_fmt_eps(m['eps'], m['norm'])}, "
        f"{m['steps']} step(s){alpha}",
        f"clean        {m['clean_label']} {m['clean_name']} ({m['clean_confidence']:.1%})",
    ]
    if m.get("targeted"):
        lines.append(f"target       {m['target']} {m['target_name']}")
    lines.append(f"adversarial  {m['adv_label']} {m['adv_name']} ({m['adv_confidence']:.1%})")
    verdict = "yes" if m["success"] else "no"
    png = "yes" if m["success_8bit"] else "no"
    lines.append(f"success      {verdict} (8-bit PNG: {png}, label {m['adv_8bit_label']})")
    psnr = "inf" if not math.isfinite(m["psnr"]) else f"{m['psnr']:.1f}"
    lines.append(f"perturbation linf {_fmt_eps(m['linf'], 'linf')}, l2 {m['l2']:.4g}, cosine "
                 f"{m['cosine_similarity']:.4f}, AMP {m['amp']:.4g}, SSIM {m['ssim']:.4f}, PSNR {psnr} dB")
    lines.append(f"time         {m['seconds']:.2f} s, {m['grad_evals']} gradient evaluation(s)")
    if files:
        lines.append(f"wrote        {', '.join(files)}")
    return "\n".join(lines)


@command("attack", "attack one image and write the adversarial PNG and its metrics", _attack_args)
def cmd_attack(args: argparse.Namespace) -> int:
    """Run one attack with :func:`advcore.experiment.attack_image`; write the PNG and JSON."""
    from advcore import attacks, experiment, models

    spec = models.get_spec(args.model)
    attack = attacks.get_attack(args.attack)
    accepted = attacks.accepted_params(attack.name)
    notes = []
    if args.steps is not None and "steps" not in accepted:
        notes.append(f"--steps does not apply to {attack.name}; ignored.")
    if args.alpha is not None and "alpha" not in accepted:
        notes.append(f"--alpha does not apply to {attack.name}; ignored.")
    extra = {}
    for dest, (flag, param) in _EXTRA_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if param in accepted:
            extra[param] = value
        else:
            notes.append(f"{flag} does not apply to {attack.name}; ignored.")
    steps = 10 if args.steps is None else args.steps
    # Fail fast on the budget and the target, before loading the image or the model.
    attacks.check_budget(eps=args.eps, alpha=args.eps if args.alpha is None else args.alpha, steps=steps,
                         norm=args.norm)
    target = None if args.target is None else experiment.resolve_class(args.target, spec.classes())
    out = None if args.out is None else output_path(args.out, flag="--out", suffix=".png")
    json_out = None if args.json in (None, "-") else output_path(args.json, flag="--json")
    if out is not None and json_out is not None and out.resolve() == json_out.resolve():
        raise AdvlabError("--out and --json name the same file.")
    image = load_image(args.image)
    if not args.quiet:
        for note in notes:
            say(f"advcore: note: {note}")

    models.load(spec.name, args.device)  # cached: loading now keeps it out of the progress bar's rate
    total = steps if "steps" in accepted else 1
    with stderr_bar(f"{attack.name} {spec.name}", args.quiet, total=total) as bar:

        def progress(info: attacks.StepInfo) -> None:
            bar.total = info.steps
            bar.update(info.step - bar.n)
            loss = float(info.loss.float().nanmean()) if info.loss.numel() else float("nan")
            if math.isfinite(loss):
                bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)

        result = experiment.attack_image(spec.name, image, attack.name, eps=args.eps, norm=args.norm, steps=steps,
                                         alpha=args.alpha, target=target, device=args.device, callback=progress,
                                         **extra)
    metrics = dict(result.metrics)
    metrics["image"] = args.image
    metrics["out"] = None if out is None else str(out)
    files = []
    if out is not None:
        write_file(out, result.png)
        files.append(str(out))
    if json_out is not None:
        write_file(json_out, (json_text(metrics) + "\n").encode("utf-8"))
        files.append(str(json_out))
    if args.json == "-":
        print(json_text(metrics))
    else:
        print(_summary(metrics, files))
    outcome = "success" if metrics["success"] else "failure"
    outcome_8bit = "success" if metrics["success_8bit"] else "failure"
    say(f"advcore: {attack.name} on {spec.name}: {outcome} (8-bit PNG: {outcome_8bit}), "
         f"{metrics['clean_name']} -> {metrics['adv_name']}, linf {metrics['linf']:.4g}, {metrics['seconds']:.2f} s")
    return EXIT_OK


# --------------------------------------------------------------------------- eps lists, train, eval

MAX_EPS_VALUES = 1001


def parse_eps_list(text: str, *, name: str = "eps", allow_zero: bool = True, high: float = 1.0) -> list[float]:
    """Budgets from a range ``"0:0.3:0.03"`` (start:stop:step, stop included), a list ``"0,0.05,0.1"`` or one value.

    Each number may be a fraction (``8/255``). A range is robust to float rounding: ``0:0.3:0.03``
    gives exactly the eleven values 0, 0.03, ..., 0.3. Values above ``high`` are refused.
    """
    s = str(text).strip()
    if not s:
        raise AdvlabError(f"{name} needs at least one value, e.g. 0:0.3:0.03 or 0,0.05,0.1.")
    if ":" in s:
        parts = s.split(":")
        if len(parts) != 3:
            raise AdvlabError(f"A {name} range is start:stop:step, such as 0:0.3:0.03, got {s!r}.")
        start = parse_eps(parts[0], name=f"{name} range start", allow_zero=allow_zero)
        stop = parse_eps(parts[1], name=f"{name} range stop", allow_zero=allow_zero)
        step = parse_eps(parts[2], name=f"{name} range step", allow_zero=False)
        if stop < start:
            raise AdvlabError(f"The {name} range {s!r} ends before it starts.")
        count = math.floor((stop - start) / step + 1e-9) + 1
        if count > MAX_EPS_VALUES:
            raise AdvlabError(f"The {name} range {s!r} has {count} values; at most {MAX_EPS_VALUES} are allowed.")
        values = [round(start + i * step, 12) for i in range(count)]
    else:
        values = [parse_eps(p, name=name, allow_zero=allow_zero) for p in s.split(",")]
        if len(values) > MAX_EPS_VALUES:
            raise AdvlabError(f"At most {MAX_EPS_VALUES} {name} values are allowed, got {len(values)}.")
    for v in values:
        if v > high:
            raise AdvlabError(f"{name} {v:g} exceeds {high:g} (the pixel range is [0, 1]).")
    if len(set(values)) != len(values):
        raise AdvlabError(f"{name} lists a value twice: {s!r}.")
    return values


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


def _train_args(p: argparse.ArgumentParser) -> None:
    from advcore import training

    g = p.add_argument_group("what to train")
    g.add_argument("--recipe", required=True, metavar="NAME",
                   help=f"one of {', '.join(training.RECIPES)}")
    g.add_argument("--strengths", type=arg_type(parse_strengths, "strengths"), metavar="EPS",
                   help="L-inf strengths in (0,1]: one for fgsm/pgd (default 0.1), a list for MAT (default "
                        "0.05,0.1,0.15), or 'auto' (MAT: the paper's random walk over --grid)")
    g.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "digits"),
                   help="default: fashion-mnist (needs the Debian package dataset-fashion-mnist)")
    g.add_argument("--epochs", type=positive_int("epochs", 1000), default=1, help="default: 1")
    g.add_argument("--seed", type=int_type("seed", 0, SEED_MAX),
                   default=0, help="seed of initialisation, shuffling and PGD starts (default: 0)")
    g.add_argument("--limit", type=positive_int("limit", 10**7), metavar="N",
                   help="train on the first N training images only (quick runs)")
    g.add_argument("--reduced", action="store_true",
                   help="reduced size: split each batch into clean + one part per strength instead of adding "
                        "a full adversarial copy per strength")
    g.add_argument("--examples", choices=training.EXAMPLE_ATTACKS,
                   help="attack crafting MAT's training examples (default: fgsm, as in the paper)")
    g.add_argument("--example-labels", choices=training.EXAMPLE_LABELS, default="true",
                   help="craft training examples away from the true labels (default) or from the model's "
                        "predictions ('predicted': Kurakin et al.'s cure for label leaking)")
    g.add_argument("--input", choices=training.INPUT_TRANSFORMS, dest="input_transform",
                   help="standard recipe: train on halftone images, or on intensity + halftone images (hybrid)")
    g.add_argument("--halftone", default="floyd-steinberg", metavar="METHOD",
                   help="halftone of --input (advcore.defenses; default: floyd-steinberg)")
    g.add_argument("--batch-size", type=positive_int("batch size", 65536), default=128, help="default: 128")
    g.add_argument("--lr", type=_finite("learning rate", positive=True), default=1e-3, help="Adam (default: 0.001)")
    g.add_argument("--pgd-steps", type=positive_int("PGD steps", 100), default=7,
                   help="PGD training steps (default: 7, step 2.5*eps/steps)")
    g.add_argument("--vote-images", type=positive_int("vote images", 10**6), default=2000,
                   help="parallel MAT: validation images that fit the voting weights (default: 2000)")
    g = p.add_argument_group("random walk (--strengths auto)")
    g.add_argument("--grid", type=arg_type(lambda s: parse_eps_list(s, name="grid", allow_zero=False), "grid"),
                   default="0.05:0.3:0.05", help="allowed strengths (default: 0.05:0.3:0.05)")
    g.add_argument("--penalty", type=_finite("penalty"), default=0.005,
                   help="accuracy given up per extra strength, a in G = H - a*S (default: 0.005)")
    g.add_argument("--walks", type=positive_int("walks", 100000), default=200, help="number of walks t (default: 200)")
    g.add_argument("--walk-length", type=positive_int("walk length", 1000),
                   help="steps per walk l (default: grid size)")
    g.add_argument("--matrix-images", type=positive_int("matrix images", 10**7), default=10000,
                   help="training images of each single-strength model of the accuracy matrix (default: 10000)")
    g.add_argument("--matrix-from", metavar="CARD",
                   help="reuse the accuracy matrix recorded in a model card instead of training it again")
    g = p.add_argument_group("evaluation and output")
    g.add_argument("--eval-eps", type=arg_type(parse_eps_list, "eval eps"), default="0:0.3:0.03",
                   help="strengths of the card's accuracy curves (default: 0:0.3:0.03)")
    g.add_argument("--eval-n", type=int_type("eval n", 0, 10**6),
                   help="images of the FGSM curve (default: the whole evaluation set; 0: none)")
    g.add_argument("--pgd-n", type=int_type("pgd n", 0, 10**6),
                   default=1000, help="images of the PGD-10 curve (default: 1000; 0: none)")
    g.add_argument("--out-dir", required=True, metavar="DIR", help="where NAME.pt and NAME.json are written")
    g.add_argument("--name", help="model name (default: DATASET-RECIPE, e.g. fmnist-fgsm)")
    add_run_options(g, quiet_help="no progress bars or epoch lines (the final line stays)")


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ProgressBars:
    """tqdm progress bars on stderr, one per stage, plus the stage messages (epoch summaries)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.stage = None

    def __call__(self, p) -> None:
        if self.quiet:
            return None
        if p.stage != self.stage or self.bar is None:
            self.close()
            self.stage = p.stage
            self.bar = stderr_bar(p.stage, False, total=p.total)
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


def set_threads(threads: int | None) -> None:
    """``--threads``: torch's CPU thread count, when given."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@command("train", "train a model (standard, adversarial, MAT) and write its checkpoint and model card", _train_args)
def cmd_train(args: argparse.Namespace) -> int:
    """Train with :func:`advcore.training.train`, evaluate, write ``NAME.pt`` and ``NAME.json``."""
    import time

    from advcore import datasets, training, zoo

    recipe = args.recipe
    if recipe not in training.RECIPES:
        raise AdvlabError(f"Unknown recipe {recipe!r}; choose one of {', '.join(training.RECIPES)}.")
    strengths = args.strengths
    if strengths is None:
        strengths = [] if recipe == "standard" else [0.1] if recipe in ("fgsm", "pgd") else [0.05, 0.1, 0.15]
    if strengths == "auto" and not recipe.startswith("mat-"):
        raise AdvlabError("--strengths auto (the random walk) applies to the mat-mixed and mat-parallel recipes.")
    if args.matrix_from and strengths != "auto":
        raise AdvlabError("--matrix-from only applies with --strengths auto.")
    prefix = {"fashion-mnist": "fmnist", "digits": "digits"}[args.dataset]
    name = args.name or f"{prefix}-{args.input_transform or ('naive' if recipe == 'standard' else recipe)}"
    if not _NAME.fullmatch(name):
        raise AdvlabError(f"--name must be letters, digits, '.', '_' or '-' (at most 64), got {name!r}.")
    cfg = training.TrainConfig(recipe=recipe, strengths=() if strengths == "auto" else tuple(strengths),
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               reduced=args.reduced, example_attack=args.examples, example_labels=args.example_labels,
                               pgd_steps=args.pgd_steps,
                               dataset=args.dataset, limit=args.limit, vote_images=args.vote_images,
                               input_transform=args.input_transform, halftone=args.halftone)
    if strengths == "auto":
        training.check_config(training.TrainConfig(**{**cfg.__dict__, "strengths": (0.1,)}))
    else:
        training.check_config(cfg)
    out_dir = output_path(str(Path(args.out_dir) / f"{name}.json"), flag="--out-dir").parent
    matrix = None
    if args.matrix_from:
        prior = zoo.read_card(args.matrix_from) if Path(args.matrix_from).is_file() else None
        matrix = (prior or {}).get("strength_selection", {}).get("matrix")
        if matrix is None:
            raise AdvlabError(f"{args.matrix_from} holds no random-walk accuracy matrix.")
    set_threads(args.threads)
    task = datasets.load_task(args.dataset, limit=args.limit)
    bars = ProgressBars(args.quiet)
    t0 = time.perf_counter()
    try:
        selection = None
        if strengths == "auto":
            selection = training.select_strengths(
                task, grid=args.grid, images=args.matrix_images, penalty=args.penalty, walks=args.walks,
                walk_length=args.walk_length, seed=args.seed, attack=cfg.attack, matrix=matrix, device=args.device,
                progress=bars)
            cfg.strengths = tuple(selection["chosen"])
            walk = selection["walk"]
            if not args.quiet:
                say(f"advcore: random walk chose {', '.join(f'{s:g}' for s in cfg.strengths)} (estimated average "
                     f"accuracy {walk['H']:.3f}, path {' -> '.join(f'{s:g}' for s in walk['path'])})")
        result = training.train(cfg, task, device=args.device, progress=bars, selection=selection)
        report = training.evaluate(result.model, datasets.to_float(task.x_eval), task.y_eval, eps=args.eval_eps,
                                   fgsm_images=args.eval_n, pgd_images=args.pgd_n, seed=args.seed, progress=bars)
    finally:
        bars.close()
    result.card.update(report)
    result.card["evaluation"] = task.description["evaluation"]
    command_line = "python -m advcore " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    weights, card_path = training.save(result, out_dir, name, extra={"command": command_line,
                                                                    "wall_seconds": round(time.perf_counter() - t0, 1)})
    card = json.loads(card_path.read_text(encoding="utf-8"))
    s = training.summary(card)
    lines = [f"{name}: {card['title']}",
             f"clean accuracy   {s['clean_accuracy']:.4f} on {card['evaluation_images']} evaluation images"]
    for attack in ("fgsm", "pgd"):
        if f"{attack}_average" in s:
            at = s.get(f"{attack}_at_0.1")
            at_text = f"at eps 0.1 {at:.4f}, " if at is not None else ""
            lines.append(f"{attack.upper():<16} {at_text}average over the range {s[f'{attack}_average']:.4f}")
    lines.append(f"training         {card['training_seconds']:.1f} s")
    lines.append(f"wrote            {weights}, {card_path}")
    print("\n".join(lines))
    say(f"advcore: trained {name} ({recipe}) in {card['training_seconds']:.0f} s, clean accuracy "
         f"{s['clean_accuracy']:.4f}")
    return EXIT_OK


def _eval_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to evaluate")
    g.add_argument("--model", required=True,
                   help="registered model name (e.g. fmnist-fgsm) or the card JSON written by 'train'")
    g.add_argument("--data", default="subset", choices=("subset", "test"),
                   help="Fashion-MNIST: the shipped 3,000-image test subset (default) or the installed test set")
    g.add_argument("--n", type=positive_int("n", 10**6), default=2000,
                   help="number of evaluation images (default: 2000, class-balanced)")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default="fgsm", metavar="NAME", help=f"one of {', '.join(ATTACKS)} (default: fgsm)")
    g.add_argument("--eps", type=arg_type(parse_eps_list, "eps"), default="0:0.3:0.03",
                   help="L-inf strengths: start:stop:step (stop included), a list 0,0.05,0.1, or one value "
                        "(default: 0:0.3:0.03)")
    g.add_argument("--steps", type=arg_type(parse_steps, "steps"), help="iterations (default: 10; FGSM takes one)")
    g.add_argument("--seed", type=int_type("seed", 0, SEED_MAX),
                   default=0, help="seed of PGD's random start (default: 0)")
    g.add_argument("--batch-size", type=positive_int("batch size", 100000), default=500, help="default: 500")
    g = p.add_argument_group("output")
    add_run_options(g, json_help="write the results as JSON ('-': to stdout, instead of the table)",
                    quiet_help="no progress bar (the final line stays)")


@command("eval", "accuracy of a model under an attack at a range of strengths", _eval_args)
def cmd_eval(args: argparse.Namespace) -> int:
    """Accuracy per eps with :func:`advcore.training.accuracy_curve` (attacks from :mod:`advcore.attacks`)."""
    from advcore import attacks, datasets, models, training, zoo
    from advcore.device import describe, pick_device

    card_file = args.model.endswith(".json") and Path(args.model).is_file()
    spec = zoo.spec_from_card(zoo.read_card(args.model), Path(args.model).parent) if card_file \
        else models.get_spec(args.model)
    name = spec.name
    attack = attacks.get_attack(args.attack)
    if args.steps is not None and "steps" not in attacks.accepted_params(attack.name) and not args.quiet:
        say(f"advcore: note: --steps does not apply to {attack.name}; ignored.")
    json_out = None if args.json in (None, "-") else output_path(args.json, flag="--json")
    x, y, what = datasets.eval_set(spec.dataset, args.n, source=args.data)
    device = pick_device(args.device)
    set_threads(args.threads)
    model = zoo.load_from_card(args.model, device)[1] if card_file else models.load(name, device)
    bars = ProgressBars(args.quiet)
    try:
        curve = training.accuracy_curve(model, x, y, attack=attack.name, eps=args.eps, steps=args.steps,
                                        seed=args.seed, batch_size=args.batch_size, progress=bars)
    finally:
        bars.close()
    result = {"model": name, "title": spec.title, "dataset": spec.dataset, "data": what, "device": describe(device),
              **curve}
    clean = [a for e, a in zip(curve["eps"], curve["accuracy"], strict=True) if e == 0]
    result["clean_accuracy"] = clean[0] if clean else None
    if json_out is not None:
        write_file(json_out, (json_text(result) + "\n").encode("utf-8"))
    if args.json == "-":
        print(json_text(result))
    else:
        steps = f", {curve['steps']} steps" if curve["steps"] > 1 else ""
        lines = [f"{name}: {attack.title} (L-inf{steps}) on {curve['n']} images of the {what}",
                 "eps        accuracy"]
        lines += [f"{e:<10.4g} {a:.4f}" for e, a in zip(curve["eps"], curve["accuracy"], strict=True)]
        lines.append(f"average    {curve['average_accuracy']:.4f}")
        if json_out is not None:
            lines.append(f"wrote      {json_out}")
        print("\n".join(lines))
    say(f"advcore: eval {attack.name} on {name}: {len(curve['eps'])} strength(s), {curve['n']} images, "
         f"{curve['seconds']:.1f} s")
    return EXIT_OK
