"""``qbench pull`` and the app's pull action, without a network: offline it says so in one line
and lists the cache; a model already in a (pre-populated, real layout) HF cache is found there,
listed by ``qbench models`` with its family, and measured by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready

from engines.models import ModelSpec
from qbench_tui.app import make_app
from qbench_tui.screens.pull_model import PullModelScreen
from tests.helpers import by_key, qbench, qbench_json
from tests.test_vision_models import LEAN, save_tiny_vit

pytestmark = [pytest.mark.real_model]
REV = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf-home")
    repo = home / "hub" / "models--acme--tiny-vit"
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True)
    save_tiny_vit(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    return home


def _env(hf_home) -> dict[str, str]:
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_home / "hub")}


def test_pull_offline_says_so_and_lists_the_cache(hf_home):
    proc = qbench("pull", "acme/not-here", env=_env(hf_home), timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qbench: offline:"), proc.stderr
    assert "acme/tiny-vit" in lines[0] and "acme/not-here" in lines[0]


def test_pull_bad_name_is_a_usage_error(hf_home):
    proc = qbench("pull", "not-a-repo", env=_env(hf_home), timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "ORG/NAME" in proc.stderr


def test_pull_finds_a_cached_model_and_models_lists_it(hf_home):
    proc = qbench("pull", "acme/tiny-vit", "--json", env=_env(hf_home), timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["cached"] is True and result["path"].endswith(REV)
    assert (result["task"], result["family"]) == ("classification", "vision-transformer")
    proc = qbench("models", "--json", env=_env(hf_home), timeout=120)
    listed = {m["name"]: m for m in json.loads(proc.stdout)}
    assert listed["acme/tiny-vit"]["source"] == "hf-cache" and listed["acme/tiny-vit"]["family"] == "vision-transformer"
    assert listed["efficientnet-lite0"]["family"] == "cnn"


def test_pull_child_emits_json_events(hf_home):
    out = subprocess.run([sys.executable, "-m", "engines.models.pull", "acme/tiny-vit"], capture_output=True,
                         text=True, timeout=120, env={**os.environ, **_env(hf_home)})
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0 and events[-1]["event"] == "done" and events[-1]["repo_id"] == "acme/tiny-vit"


@pytest.mark.slow
def test_cached_vit_runs_by_name(hf_home, tmp_path):
    proc, payload = qbench_json("run", "--model", "acme/tiny-vit", "--methods", "fp32,dynamic-int8",
                                "--runtimes", "onnxruntime", "--images", "8", "--db", str(tmp_path / "q.db"), *LEAN,
                                env=_env(hf_home))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all(r["status"] == "ok" for r in by_key(payload["results"]).values())


@async_test
async def test_app_pull_action_offline_then_cached(store, hf_home, monkeypatch):
    for key, value in _env(hf_home).items():
        monkeypatch.setenv(key, value)
    system = fixed_system()
    app = make_app(store=store, settings=test_settings(), system=system)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot)
        await pilot.press("p")
        assert isinstance(app.screen, PullModelScreen)
        await pilot.press(*"acme/not-here", "enter")
        await wait_for(pilot, lambda: "offline" in str(app.screen.query_one("#pull-status").render()),
                       what="the offline line", timeout=120)
        assert "acme/tiny-vit" in str(app.screen.query_one("#pull-status").render())
        # the pulled model appears in the cache listing: the app resolves it by name and selects it
        system.models.append(ModelSpec("acme/tiny-vit", "classification", "hf-cache", "ViT", "x:y",
                                       family="vision-transformer"))
        app.screen.query_one("#pull-repo").value = "acme/tiny-vit"
        app.screen.query_one("#pull-repo").focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, PullModelScreen), what="the pull", timeout=120)
        await wait_for(pilot, lambda: app.main.browser.selected and app.main.browser.selected.name == "acme/tiny-vit",
                       what="the pulled model selected")
