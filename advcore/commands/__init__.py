"""Subcommands of the later labs, one module each (``geometry.py``, ``compare.py``, ...).

Each module registers its commands with :func:`advcore.cli.command` when imported;
:func:`advcore.cli.build_parser` imports every module of this package, so a lab adds
its command line without editing ``cli.py``.
"""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> list[str]:
    """Import every command module of this package (in name order); return their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names
