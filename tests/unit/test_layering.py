"""The layers import one way: app_pages -> ui -> advcore, never back, and advcore has no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: str) -> dict[str, set[str]]:
    """Every import statement (module level or inside a function) between modules of ``package``."""
    files = {module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from advcore.models import zoo" imports the submodule zoo; other names come from the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_advcore_has_no_import_cycle():
    assert cycles(import_graph("advcore")) == []


def test_no_upward_imports():
    """advcore imports neither ui nor app_pages nor Streamlit; ui never imports app_pages or the CLI."""
    for package, forbidden in (("advcore", ("ui", "app_pages", "streamlit")),
                               ("ui", ("app_pages", "advcore.cli")),
                               ("app_pages", ("advcore.cli",))):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                for name in names:
                    assert not any(name == f or name.startswith(f + ".") for f in forbidden), \
                        f"{path.relative_to(ROOT)} imports {name}"


def pure_views() -> list[str]:
    """The modules of ui/views/ that must not load Streamlit."""
    return [f"ui.views.{p.stem}" for p in sorted((ROOT / "ui" / "views").glob("*.py"))
            if p.name not in VIEWS_NOT_YET_PURE]


@pytest.fixture(scope="module")
def streamlit_loaded() -> dict[str, bool]:
    """Whether Streamlit is in sys.modules in a fresh interpreter after importing advcore (and building the CLI's
    parser), then after also importing the pure views: one subprocess for both questions, each answered in turn."""
    code = (
        "import sys, advcore.models, advcore.data, advcore.attacks, advcore.metrics, advcore.labs.attack, "
        "advcore.datasets, advcore.labs.training, advcore.models.zoo, advcore.cli, advcore.cli.framework; "
        "advcore.cli.framework.build_parser(); print('streamlit' in sys.modules); "
        f"import {', '.join(pure_views())}; print('streamlit' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    advcore, views = out.stdout.split()
    return {"advcore": advcore == "True", "views": views == "True"}


def test_advcore_imports_no_streamlit(streamlit_loaded):
    assert streamlit_loaded["advcore"] is False


# ui/views/ is pure: requests, sentences, figures, table rows, command lines. The session cache, the runs and
# the live progress are ui.session's and the pages'. A view being converted to that goes on this list until it is.
VIEWS_NOT_YET_PURE: set[str] = set()
STREAMLIT_MODULES = ("streamlit", "ui.session", "ui.frame", "ui.widgets")  # Streamlit, or modules that import it


def test_views_import_no_streamlit(streamlit_loaded):
    views = sorted((ROOT / "ui" / "views").glob("*.py"))
    assert {p.name for p in views} >= VIEWS_NOT_YET_PURE | {"attack.py", "compare.py", "defense.py", "geometry.py"}
    for path in views:
        if path.name in VIEWS_NOT_YET_PURE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.ImportFrom) and node.module == "ui":  # from ui import session
                names = [f"ui.{a.name}" for a in node.names]
            for name in names:
                assert not any(name == f or name.startswith(f + ".") for f in STREAMLIT_MODULES), \
                    f"{path.relative_to(ROOT)} imports {name}: ui/views/ is pure (no Streamlit)"
    # advcore alone loads no Streamlit (test_advcore_imports_no_streamlit), so the views are what would load it.
    assert streamlit_loaded["views"] is False, f"importing {pure_views()} loads Streamlit"
