"""The CI workflows cannot run here: this checks that what they name exists in the project (jobs,
runners, extras, pytest markers, scripts, and a smoke sweep the real CLI parser accepts with models,
methods, runtimes and devices qbench knows), and that the smoke check catches each untrue figure."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="pyyaml is not installed")

ROOT = Path(__file__).parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_lines(flow: dict) -> list[str]:
    """Every shell command of every step, continuation lines joined."""
    lines = []
    for job in flow["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                lines += [ln.strip() for ln in step["run"].replace("\\\n", " ").splitlines() if ln.strip()]
    return lines


def test_macos_workflow_runs_on_both_apple_silicon_runners_with_its_extras_and_marker():
    flow = workflow("macos.yml")
    job = flow["jobs"]["apple-silicon"]
    assert job["strategy"]["matrix"]["os"] == ["macos-14", "macos-15"]
    assert job["runs-on"] == "${{ matrix.os }}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    markers = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    lines = run_lines(flow)
    synced = [re.findall(r"--extra (\S+)", ln) for ln in lines if ln.startswith("uv sync")]
    assert synced and {"mlx", "coreml"} <= set(synced[0]) <= extras
    for ln in lines:
        for marker in re.findall(r"pytest -m (\S+)", ln):
            assert marker.strip("'\"") in markers
    assert any(ln.startswith("uv run pytest -m macos") for ln in lines)
    marked = [p for p in (ROOT / "tests").glob("test_*.py") if "pytest.mark.macos" in p.read_text()]
    assert len(marked) >= 3  # the marker selects real tests
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "apple-smoke.json"


def test_the_smoke_sweep_is_a_command_qbench_accepts_over_names_it_knows():
    from engines.methods.recipe import parse_recipe
    from engines.models import resolve_model
    from engines.runtimes import all_runtimes
    from qbench_tui.cli import build_parser

    line = next(ln for ln in run_lines(workflow("macos.yml")) if ln.startswith("uv run qbench run"))
    argv = shlex.split(line.split("||")[0])[2:]  # after `uv run`
    args = build_parser().parse_args(argv[1:])
    assert args.json_out == "apple-smoke.json"
    resolve_model(args.model)
    methods = list(args.methods)
    assert methods == ["fp32", "fp16", "weight-int8"]
    for spec in methods:
        parse_recipe(spec, {})
    runtimes = all_runtimes()
    assert set(args.runtimes) == {"torch", "mlx", "coreml"} <= set(runtimes)
    known_devices = {d for spec in runtimes.values() for d in spec.devices}
    assert set(args.devices) == {"cpu", "mps", "gpu", "ane"} <= known_devices


def test_scripts_the_workflows_name_exist_and_are_executable():
    for name in ("macos.yml", "linux.yml"):
        for ln in run_lines(workflow(name)):
            for script in re.findall(r"(\.ci/\S+)", ln):
                path = ROOT / script
                assert path.exists(), script
                assert path.stat().st_mode & 0o111 or ln.startswith("uv run python"), script
    assert run_lines(workflow("linux.yml")) == [".ci/run"]
    assert workflow("linux.yml")["jobs"]["tests"]["runs-on"] == "ubuntu-latest"


def check_module():
    spec = importlib.util.spec_from_file_location("check_apple_smoke", ROOT / ".ci" / "check_apple_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def smoke_result(runtime: str, device: str, **extra) -> dict:
    base = {"model": "digits-mlp", "method": "fp32", "label": "fp32", "runtime": runtime, "device": device,
            "batch_size": 1, "status": "ok",
            "metrics": {"device_memory_mb": 3.5} if (runtime, device) == ("torch", "mps") or runtime == "mlx" else {},
            "energy": {"joules_per_inference": 0.0012, "watts": 4.2, "source": "zeus-apple-silicon (CPU+GPU+ANE+DRAM)"}}
    if (runtime, device) == ("coreml", "ane"):
        base["metrics"] = {"compute_plan": {"op_share": {"ane": 0.9, "cpu": 0.1},
                                            "cost_share": {"ane": 0.97, "cpu": 0.03}}}
    return {**base, **extra}


def test_smoke_check_passes_a_truthful_sweep_and_names_each_untrue_figure():
    check = check_module()
    good = [smoke_result("torch", "mps"), smoke_result("mlx", "gpu"), smoke_result("mlx", "cpu"),
            smoke_result("coreml", "ane"), smoke_result("torch", "ane", status="unsupported", error="no ANE in torch",
                                                        metrics={}, energy={})]
    assert check.problems({"results": good}) == []
    bad = [smoke_result("torch", "mps", metrics={"device_memory_mb": 0.0}),
           smoke_result("mlx", "gpu", energy={"joules_per_inference": None, "reason": "no counter"}),
           smoke_result("coreml", "ane", metrics={"compute_plan": {}}),
           smoke_result("coreml", "cpu", status="failed", error="boom")]
    found = check.problems({"results": bad})
    assert any("torch · mps" in p and "not positive" in p for p in found)
    assert any("mlx · gpu" in p and "energy is not a number (no counter)" in p for p in found)
    assert any("coreml · ane" in p and "Neural Engine share" in p for p in found)
    assert any("failed: boom" in p for p in found)
    assert "no ok result of mlx on cpu" in found


def test_smoke_check_script_runs_on_a_file(tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "smoke.json"
    path.write_text(json.dumps({"results": [smoke_result("coreml", "ane", status="unsupported", error="not macOS")]}))
    proc = subprocess.run([sys.executable, str(ROOT / ".ci" / "check_apple_smoke.py"), str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "did not run on the Mac (unsupported: not macOS)" in proc.stdout
