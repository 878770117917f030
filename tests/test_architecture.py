"""The shape of the code, read from the source with ``ast`` (no imports run): the app's modules
import each other without cycles, the CLI is imported by nobody but its entry points, engines/
never imports the UI, and no file grows past a size a reader can hold in mind.

Every import statement counts, the lazy ones inside functions included; only imports under
``if TYPE_CHECKING:`` are skipped (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("qbench_tui", "engines")
UI_ROOTS = {"qbench_tui", "textual", "rich"}
CLI = "qbench_tui.cli"  # a module or a package: its own modules may import each other
CLI_IMPORTERS = {"qbench_tui.__main__"}

MAX_LINES = 450
# path -> why it may be longer (for now). Keep qbench_tui/ out of it.
LONG_FILES_ALLOWED: dict[str, str] = {
    "engines/models/files.py": "one loader per model file format (ONNX, TorchScript, ExportedProgram, pickles); "
                               "the engine refactor splits it by format",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportCollector(ast.NodeVisitor):
    """Absolute names of everything a module imports (``from a import b`` gives ``a`` and ``a.b``)."""

    def __init__(self, module: str, is_package: bool, type_checking: bool = False):
        self.package = module if is_package else module.rpartition(".")[0]
        self.type_checking = type_checking  # count the imports under `if TYPE_CHECKING:` too
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test) and not self.type_checking:
            for child in node.orelse:  # the else branch does run
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        self.names.add(module)
        self.names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")


def _imports(module: str, path: Path, type_checking: bool = False) -> set[str]:
    collector = _ImportCollector(module, path.name == "__init__.py", type_checking)
    collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return collector.names


def _graph(package: str, type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (importing a.b.c also runs a and a.b).

    A module's own parent packages are left out: every submodule runs them, and a package's
    ``__init__`` importing its submodules is the usual shape, not a cycle.
    """
    sources = {m: p for m, p in _sources().items() if m == package or m.startswith(package + ".")}
    graph: dict[str, set[str]] = {}
    for module, path in sources.items():
        targets: set[str] = set()
        for name in _imports(module, path, type_checking):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in sources and candidate != module and not module.startswith(candidate + "."):
                    targets.add(candidate)
        graph[module] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, …, a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_apps_modules_import_each_other_without_a_cycle():
    graph = _graph("qbench_tui")
    # The walk sees the package, lazy imports inside functions included.
    assert "qbench_tui.screens.open_model" in graph["qbench_tui.widgets.model_browser"]
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])
    # Stricter than Python needs, and true today: not even the type-only imports go round.
    cycle = _find_cycle(_graph("qbench_tui", type_checking=True))
    assert cycle is None, "import cycle through `if TYPE_CHECKING:` imports: " + " → ".join(cycle or [])


def test_the_checks_themselves(tmp_path: Path):
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None
    source = tmp_path / "mod.py"
    source.write_text("import typing\nif typing.TYPE_CHECKING:\n    import hidden\nelse:\n    import shown\n"
                      "def f():\n    from .sibling import thing\n")
    assert _imports("pkg.mod", source) == {"typing", "shown", "pkg.sibling", "pkg.sibling.thing"}


def _in_cli(module: str) -> bool:
    return module == CLI or module.startswith(CLI + ".")


def test_only_the_entry_points_import_the_cli():
    offenders = sorted(m for m, targets in _graph("qbench_tui").items()
                       if any(_in_cli(t) for t in targets) and not _in_cli(m) and m not in CLI_IMPORTERS)
    assert offenders == [], f"{offenders} import {CLI} (the CLI imports the app, never the reverse)"


def test_engines_import_nothing_from_the_ui():
    offenders = {}
    for module, path in _sources().items():
        if module.split(".")[0] != "engines":
            continue
        bad = sorted(n for n in _imports(module, path) if n.split(".")[0] in UI_ROOTS)
        if bad:
            offenders[module] = bad
    assert offenders == {}


def test_no_source_file_is_too_long_to_read():
    too_long = {}
    for path in _sources().values():
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and rel not in LONG_FILES_ALLOWED:
            too_long[rel] = lines
    assert too_long == {}, f"over {MAX_LINES} lines (split them, or add a reason to LONG_FILES_ALLOWED)"
    assert not [p for p in LONG_FILES_ALLOWED if p.startswith("qbench_tui/")]


def test_the_long_file_allow_list_holds_only_files_that_are_still_long():
    for rel in LONG_FILES_ALLOWED:
        path = ROOT / rel
        assert path.exists() and len(path.read_text(encoding="utf-8").splitlines()) > MAX_LINES, (
            f"{rel} was split or shortened: drop it from LONG_FILES_ALLOWED")


def test_the_main_screen_is_composed_of_panes_not_mixins():
    """MainScreen's only base is Textual's Screen: what a pane does lives in the pane's widget
    (or a controller it owns), not in classes mixed into the screen."""
    tree = ast.parse((ROOT / "qbench_tui/screens/main.py").read_text(encoding="utf-8"))
    main = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MainScreen")
    assert [ast.unparse(b) for b in main.bases] == ["Screen[None]"]


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (each holds one or more cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_engines_gain_no_import_cycle():
    graph = _graph("engines")
    assert "engines.bench.build" in graph["engines.bench.worker"]  # lazy imports count here too
    assert [sorted(c) for c in _cycles(graph)] == [], "import cycle(s) among engines modules"


def test_the_engines_modules_import_each_other_without_a_cycle():
    cycle = _find_cycle(_graph("engines"))
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_cycle_listing_itself():
    assert _cycles({"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"d2"}, "d2": {"d"}}) == [{"a", "b"}, {"d", "d2"}]


def test_runtimes_and_models_know_artifact_formats_without_the_passes():
    """A runtime declares the formats it opens, a model the format it comes in: both take
    ``Format`` from the core module below them, never from the passes package above (not even
    for type hints), so passes ↔ runtimes is no circle."""
    offenders = {}
    for module, path in _sources().items():
        if not module.startswith(("engines.runtimes", "engines.models")):
            continue
        bad = sorted(n for n in _imports(module, path, type_checking=True)
                     if n == "engines.passes" or n.startswith("engines.passes."))
        if bad:
            offenders[module] = bad
    assert offenders == {}
