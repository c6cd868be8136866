"""Run the command line in-process for the tests."""

from __future__ import annotations

import contextlib
import io

from advcore.cli import framework


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``advcore.cli.main(argv)`` in-process; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = framework.main(argv)
        except SystemExit as exc:  # main returns its code, but a regression to sys.exit must still be caught
            code = exc.code
    return code, out.getvalue(), err.getvalue()
