"""Dependencies point one way: the UI process never imports an engine library, and engines/
never imports the UI. Checked in fresh subprocesses (import-linter cannot see lazy imports),
plus a scan of every import statement in engines/, function-level ones included."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchao", "onnxruntime", "onnx", "transformers", "tokenizers", "safetensors", "sklearn",
         "mlx", "coremltools", "mlflow", "dask", "distributed")
UI = ("textual", "rich", "qbench_tui", "textual_plotext", "plotext")


def _modules_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("module", ["qbench_tui.app", "qbench_tui.cli", "qbench_tui.__main__"])
def test_importing_the_ui_leaves_engine_libraries_out(module):
    code = f"import {module}" if module != "qbench_tui.__main__" else "import qbench_tui.cli"
    loaded = _roots(_modules_after(code))
    assert not loaded & set(HEAVY), f"{module} imported {sorted(loaded & set(HEAVY))}"


def test_building_the_app_and_its_panes_stays_light():
    """Constructing the app (what happens before the first paint) imports neither torch nor numpy."""
    code = ("from qbench_tui.app import make_app\n"
            "from qbench_tui.screens import help, confirm, result_detail, compare, open_model, export, sort\n"
            "app = make_app()")
    loaded = _roots(_modules_after(code))
    assert not loaded & {*HEAVY, "numpy"}, sorted(loaded & {*HEAVY, "numpy"})


def test_light_engine_modules_do_not_import_the_ui():
    code = ("import engines.catalog, engines.methods.configs, engines.devices, engines.models, engines.paths, "
            "engines.store, engines.bench.runner, engines.bench.measure, engines.core.environment")
    loaded = _roots(_modules_after(code))
    assert not loaded & set(UI), sorted(loaded & set(UI))
    assert not loaded & {"torch", "onnxruntime", "transformers"}  # the runner's parent side stays light too


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):  # walks function bodies too: lazy imports count
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_engine_source_file_imports_the_ui():
    offenders = {}
    for path in sorted((ROOT / "engines").rglob("*.py")):
        bad = _imports(path) & set(UI)
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_no_ui_source_file_imports_an_engine_library():
    """Not even lazily: the UI reaches engines only through the runner's child processes."""
    offenders = {}
    for path in sorted((ROOT / "qbench_tui").rglob("*.py")):
        bad = _imports(path) & set(HEAVY)
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert offenders == {}


def test_tracking_leaves_mlflow_to_its_child_processes():
    """The CLI's parser (every command module), the app's tracking screens and the light tracking
    modules load no MLflow: it is imported by the sender and registry processes only."""
    code = ("from qbench_tui.cli import build_parser\nbuild_parser()\n"
            "import qbench_tui.cli.tracking, qbench_tui.screens.tracking, qbench_tui.widgets.results_tracking\n"
            "import qbench_tui.controllers.tracking, engines.tracking, engines.tracking.fields, engines.store.outbox")
    loaded = _roots(_modules_after(code))
    assert not loaded & {*HEAVY, "sqlalchemy", "alembic"}, sorted(loaded & {*HEAVY, "sqlalchemy", "alembic"})


def test_writing_to_the_store_loads_no_pandas_and_pandas_still_imports_after():
    """A process that writes results (every `qbench run`) opens sqlite-utils without pandas (a
    second of imports per process that sqlite-utils needs only for pandas' timestamps); a later
    ``import pandas`` (the Python API's ``to_pandas``) still works."""
    code = ("import tempfile, os\nfrom engines.store import Store\n"
            "s = Store(os.path.join(tempfile.mkdtemp(), 'q.db'))\ns.create_run('r1', 'digits-mlp', {}, {}, 'cli')\n"
            "import sys\nassert 'pandas' not in sys.modules, 'pandas loaded by a write'\n"
            "import pandas\nassert pandas.DataFrame({'a': [1]}).shape == (1, 1)")
    loaded = _roots(_modules_after(code))
    assert "sqlite_utils" in loaded and "pandas" in loaded
