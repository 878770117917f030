"""A new runtime is one new module: it shows up in `qbench methods`, the app's configurator and a
sweep, and passes the conformance suite, with no other file edited.

The module below is written to a temporary folder and named in ``$QBENCH_PLUGINS``; everything
runs in subprocesses so the registries of this test process stay as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import qbench, qbench_json

NUMPY_REFERENCE_RUNTIME = '''
"""A plain numpy reference runtime: ONNX graphs evaluated by onnx.reference (fp32 only)."""

from engines.passes import Format
from engines.runtimes import RuntimeSpec

SPEC = RuntimeSpec(
    name="numpy-ref", title="numpy reference (onnx.reference)", formats=(Format.ONNX,), devices=("cpu",),
    package="onnx", session=__name__, accepts=lambda method: method.is_reference, order=90,
)


def open_session(artifact, model, device, threads, config=None):
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    from engines.runtimes.base import Session

    class ReferenceSession(Session):
        def __init__(self):
            self.evaluator = ReferenceEvaluator(str(artifact.path))

        def run(self, inputs):
            feed = {name: np.asarray(inputs[name]) for name in model.input_names}
            return np.asarray(self.evaluator.run(None, feed)[0], dtype=np.float32)

        def bind(self, inputs):
            return lambda: self.run(inputs)

    return ReferenceSession()


def runtime_info():
    import onnx

    return {"onnx": onnx.__version__, "evaluator": "onnx.reference"}
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "numpy_ref_runtime.py").write_text(textwrap.dedent(NUMPY_REFERENCE_RUNTIME))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return {"QBENCH_PLUGINS": "numpy_ref_runtime", "PYTHONPATH": path}


def test_a_runtime_module_is_listed_with_support_derived_from_its_spec(plugin_env):
    runtimes = {r["name"]: r for r in json.loads(qbench("runtimes", "--json", env=plugin_env).stdout)}
    assert runtimes["numpy-ref"]["formats"] == ["onnx"] and runtimes["numpy-ref"]["installed"]
    methods = {m["name"]: m for m in json.loads(qbench("methods", "--json", env=plugin_env).stdout)}
    assert methods["fp32"]["support"]["numpy-ref"]["cpu"] == "ok"
    assert methods["fp32"]["passes"]["numpy-ref"] == ["export-onnx"]
    assert "fp32 only" in methods["int4"]["support"]["numpy-ref"]["cpu"]


@pytest.mark.slow
def test_a_runtime_module_runs_in_a_sweep(plugin_env, tmp_path):
    db = str(tmp_path / "q.db")
    proc, payload = qbench_json("run", "--db", db, "--model", "digits-mlp", "--methods", "fp32,int4",
                                "--runtimes", "numpy-ref", "--min-time", "0.05", "--min-reps", "5", env=plugin_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_label = {r["label"]: r for r in payload["results"]}
    assert by_label["fp32"]["status"] == "ok" and by_label["fp32"]["agreement"]["top1"] >= 0.99
    assert by_label["fp32"]["runtime_info"]["evaluator"] == "onnx.reference"
    assert by_label["int4"]["status"] == "unsupported" and "fp32 only" in by_label["int4"]["error"]


@pytest.mark.slow
def test_a_runtime_module_passes_the_conformance_suite(plugin_env):
    conformance = Path(__file__).parent / "conformance"
    env = {**os.environ, **plugin_env, "PYTHONPATH": os.pathsep.join([str(conformance), plugin_env["PYTHONPATH"]])}
    code = "from contract import check_runtime; print(sorted(check_runtime('numpy-ref')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "['fp32']"


def test_a_runtime_module_appears_in_the_configurator(plugin_env):
    code = textwrap.dedent('''
        import asyncio
        from qbench_tui.app import make_app
        from qbench_tui.system import FixedSystem
        from textual.widgets import SelectionList

        async def main():
            app = make_app(system=FixedSystem(), store=None)
            async with app.run_test(size=(140, 44)) as pilot:
                await pilot.pause()
                runtimes = app.screen.query_one("#runtimes", SelectionList)
                print(",".join(str(runtimes.get_option_at_index(i).value) for i in range(runtimes.option_count)))

        asyncio.run(main())
    ''')
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **plugin_env}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "numpy-ref" in out.stdout.strip().splitlines()[-1].split(",")
