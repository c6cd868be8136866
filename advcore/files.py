"""Writing result files safely: checked before any work starts, never half written, never replacing what is not a
file of ours.

* :func:`check_output` runs before the work. It refuses a directory, a missing parent that cannot be created, a
  directory that does not take new files (found by creating and removing a probe file, which is right for root
  too: ``os.access`` tells root that ``/proc`` is writable), and an existing regular file that cannot be replaced.
* :func:`write_bytes` writes a regular file (or a new one) through a temporary file beside it and a rename, so an
  interrupted run leaves the old file or none. A symlink is followed and its target replaced (the link stays). A
  target that exists but is not a regular file (``/dev/null``, a FIFO, a terminal, ``/proc/self/fd/1``) is written
  into directly, never replaced by a file.

Reading a file a person names (a model card, a checkpoint) goes through :func:`read_limited`: a regular file, at
most a given size, with one clear sentence for every refusal.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from advcore.errors import AdvlabError


def _special(path: Path) -> bool:
    """Whether ``path`` exists (after following links) and is not a regular file or a directory."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _target(path: Path) -> Path:
    """Where the bytes go: a symlink's final target, else the path itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def check_output(path: str | Path, *, what: str = "output", suffix: str | None = None) -> Path:
    """``path`` as a :class:`Path` if a file can be written there; a plain :class:`AdvlabError` otherwise."""
    text = str(path)
    path = Path(path).expanduser()
    if path.is_dir():
        raise AdvlabError(f"{what} {text} is a directory; give a file name.")
    if suffix is not None and path.suffix.lower() != suffix:
        raise AdvlabError(f"{what} must name a {suffix} file, got {text}.")
    if _special(path):
        if not os.access(path, os.W_OK):
            raise AdvlabError(f"{what} {text} is not writable.")
        return path
    target = _target(path)
    parent = target.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise AdvlabError(f"{what} {text}: {parent} is not a directory.")
    try:  # the only check that is right for root too
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise AdvlabError(f"{what} {text}: the directory {parent} does not take new files "
                          f"({exc.strerror or exc}).") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise AdvlabError(f"{what} {text} exists and is not writable.")
    return path


def write_bytes(path: str | Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` (see the module docstring), creating missing parent directories."""
    path = Path(path)
    if _special(path):
        try:
            with open(path, "wb") as f:
                f.write(payload)
        except OSError as exc:
            raise AdvlabError(f"Cannot write {path}: {exc.strerror or exc}.") from None
        return
    target = _target(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(payload)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AdvlabError(f"Cannot write {path}: {exc.strerror or exc}.") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def size_text(limit: int) -> str:
    """A byte limit as people read it: whole MB or KB when it is one, else bytes."""
    for shift, unit in ((20, "MB"), (10, "KB")):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit}"
    return f"{limit:,} bytes"


def read_limited(path: str | Path, limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path`` if it holds at most ``limit`` of them.

    ``what`` names the file at the start of a sentence ("The model card x.json"). Refused with an
    :class:`AdvlabError`: a missing path or one that is not a regular file, a file larger than ``limit`` (by its size
    before reading, and by what a read of ``limit + 1`` bytes returns, so a file that grows meanwhile is refused too),
    and a read that fails.
    """
    path = Path(path)
    mid = what[:1].lower() + what[1:]
    too_big = AdvlabError(f"{what} is larger than {size_text(limit)}.")
    try:
        if not path.is_file():
            raise AdvlabError(f"{what} does not exist or is not a file.")
        if path.stat().st_size > limit:
            raise too_big
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise AdvlabError(f"Cannot read {mid}: {exc.strerror or exc}.") from None
    if len(raw) > limit:
        raise too_big
    return raw
