"""The command line, ``python -m advcore COMMAND``: :mod:`advcore.cli.framework` and one module per command."""

from __future__ import annotations

from advcore.cli.framework import main

__all__ = ["main"]
