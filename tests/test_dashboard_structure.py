"""The dashboard's shape: a thin face with no import circles, pages only under ``app_pages/``
(never Streamlit's ``pages/`` folder), and result classes compared as classes, never by name."""

from __future__ import annotations

import ast
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(DASHBOARD.parent).with_suffix("").parts).removesuffix(".__init__"): p for p in DASHBOARD.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The dashboard modules ``path`` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out |= {node.module} & known
            out |= {f"{node.module}.{a.name}" for a in node.names} & known
    return out


def test_no_import_circle_in_the_dashboard():
    """Before the split, ``feedback`` imported ``views`` (inside a function) and ``views`` imported ``feedback``."""
    modules = _modules()
    graph = {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                cycles.append(trail[trail.index(nxt) :] + [nxt])
            elif len(trail) < len(graph):
                visit(nxt, trail + [nxt])

    for start in graph:
        visit(start, [start])
    assert not cycles, cycles[:3]


def test_no_streamlit_pages_folder_and_every_page_is_navigable():
    """A ``pages/`` folder beside ``app.py`` would run its scripts as pages past the sign-in gate."""
    from dashboard import navigation

    assert not (DASHBOARD / "pages").exists()
    scripts = {p.name for p in (DASHBOARD / "app_pages").glob("*_page.py")}
    assert scripts == {e.script for e in navigation.pages()}
    for script in scripts:
        tree = ast.parse((DASHBOARD / "app_pages" / script).read_text())
        first = next(
            n for n in tree.body if not isinstance(n, ast.Import | ast.ImportFrom) and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        )
        assert ast.unparse(first) == "auth.require_signed_in()", f"{script} does not start with the sign-in gate"


def _names_a_class(node: ast.AST) -> bool:
    """``type(x).__name__``, ``x.__class__.__name__`` or ``x.__qualname__`` of a class."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr in ("__name__", "__qualname__")
        and (
            (isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name) and node.value.func.id == "type")
            or (isinstance(node.value, ast.Attribute) and node.value.attr == "__class__")
        )
    )


def test_result_classes_are_never_compared_by_name():
    offenders = []
    for path in DASHBOARD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(_names_a_class(n) for n in [node.left, *node.comparators]):
                offenders.append(f"{path.relative_to(DASHBOARD.parent)}:{node.lineno}")
            if isinstance(node, ast.Subscript) and _names_a_class(node.slice):  # a lookup table keyed by class name
                offenders.append(f"{path.relative_to(DASHBOARD.parent)}:{node.lineno}")
    assert not offenders, offenders


def test_every_result_drawer_is_keyed_by_a_class():
    from dashboard.result_drawers import DRAWERS

    assert DRAWERS and all(isinstance(k, type) and callable(v) for k, v in DRAWERS.items())


def test_result_classes_come_from_audits_results():
    """The dashboard reads results through ``audits.results`` (no torch, no probe module), not through probe packages."""
    offenders = []
    for path in DASHBOARD.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("audits.explain", "audits.robustness", "audits.fairness")):
                offenders += [f"{path.relative_to(DASHBOARD.parent)}: {node.module}.{a.name}" for a in node.names if a.name.endswith("Result")]
    assert not offenders, offenders
