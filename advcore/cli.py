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


def _arg(fn: Callable[[str], object], name: str) -> Callable[[str], object]:
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
    """The argument parser with every registered subcommand."""
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


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    debug = False
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        return int(args._run(args) or EXIT_OK)
    except _UsageError as exc:
        _say(f"advcore: error: {_one_line(exc)}")
        return EXIT_USAGE
    except AdvlabError as exc:
        _say(f"advcore: error: {_one_line(exc)}")
        return EXIT_USAGE
    except (KeyboardInterrupt, Cancelled):
        _say("advcore: interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except BrokenPipeError:  # stdout closed early, e.g. piped into head
        sys.stdout = open(os.devnull, "w")  # keeps the interpreter's final flush quiet
        return EXIT_INTERNAL
    except Exception as exc:
        if debug:
            raise
        _say(f"advcore: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for details)")
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


def _json_text(obj: object) -> str:
    from advcore.experiment import json_safe

    return json.dumps(json_safe(obj), indent=2)


def load_image(text: str):
    """``--image``: a file path, ``-`` for stdin, or the name of a bundled sample (``cat``)."""
    from advcore import data

    if text == "-":
        return data.open_image(sys.stdin.buffer, name="standard input")
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
        print(_json_text(rows))
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
        print(_json_text(rows))
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

    return _arg(convert, name)


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
    g.add_argument("--eps", required=True, type=_arg(parse_eps, "eps"),
                   help="budget in [0,1] pixel units: 4/255, 0.0157, 1e-2 (L-inf at most 1)")
    g.add_argument("--steps", type=_arg(parse_steps, "steps"),
                   help=f"iterations, 1-{MAX_STEPS} (default: 10; FGSM takes one step)")
    g.add_argument("--alpha", type=_finite("alpha", positive=True),
                   help="step size (default: the attack's own, e.g. 2.5*eps/steps for PGD)")
    g.add_argument("--seed", type=_arg(lambda s: parse_int(s, name="seed", low=0, high=2**63 - 1), "seed"),
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
    g.add_argument("--json", metavar="PATH", help="write the metrics as JSON ('-': to stdout, instead of the summary)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: auto (CUDA if present)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or notes (the final line stays)")


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
            _say(f"advcore: note: {note}")

    from tqdm import tqdm

    models.load(spec.name, args.device)  # cached: loading now keeps it out of the progress bar's rate
    total = steps if "steps" in accepted else 1
    with tqdm(total=total, desc=f"{attack.name} {spec.name}", unit="step", file=sys.stderr, leave=False,
              disable=args.quiet or not sys.stderr.isatty()) as bar:

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
        write_file(json_out, (_json_text(metrics) + "\n").encode("utf-8"))
        files.append(str(json_out))
    if args.json == "-":
        print(_json_text(metrics))
    else:
        print(_summary(metrics, files))
    outcome = "success" if metrics["success"] else "failure"
    outcome_8bit = "success" if metrics["success_8bit"] else "failure"
    _say(f"advcore: {attack.name} on {spec.name}: {outcome} (8-bit PNG: {outcome_8bit}), "
         f"{metrics['clean_name']} -> {metrics['adv_name']}, linf {metrics['linf']:.4g}, {metrics['seconds']:.2f} s")
    return EXIT_OK
