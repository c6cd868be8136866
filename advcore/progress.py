"""One progress type for every long computation, and the one helper that reports it.

A lab function takes ``progress: ProgressFn | None``; it calls :func:`report` as it goes. The
callback sees a :class:`Progress` (``step`` of ``total`` in ``stage``, optional numbers in
``info`` such as the loss, and a ``message`` that closes an epoch or a stage) and returns True to
cancel: :func:`report` then raises :class:`~advcore.errors.Cancelled`, which the caller (a page, the
command line) turns into a plain "cancelled" notice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from advcore.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    """Where a computation is: ``step`` of ``total`` units of work in ``stage``."""

    stage: str
    step: int
    total: int
    info: dict = field(default_factory=dict)
    message: str | None = None

    @property
    def fraction(self) -> float:
        """The share done, in [0, 1] (1 when there is nothing to do)."""
        return 1.0 if self.total <= 0 else min(max(self.step / self.total, 0.0), 1.0)


ProgressFn = Callable[[Progress], "bool | None"]


def report(progress: ProgressFn | None, stage: str, step: int, total: int, info: dict | None = None, *,
           message: str | None = None, what: str = "run") -> None:
    """Tell ``progress`` where the work is; raise :class:`Cancelled` (``"{what} cancelled"``) if it returns True."""
    if progress is not None and progress(Progress(stage, int(step), int(total), dict(info or {}), message)):
        raise Cancelled(f"{what} cancelled at {stage}")
