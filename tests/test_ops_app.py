"""The app's monitor view without a server: reachable from the palette, light to import, and a
server that is not there ends as a readable status."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from test_tui_support import async_test

ROOT = Path(__file__).resolve().parents[1]


def test_the_monitor_view_and_the_watch_import_nothing_heavy():
    code = ("from qbench_tui.app import make_app\nfrom qbench_tui.screens.monitor import MonitorScreen\n"
            "import engines.ops.session, engines.store.ops_tables, engines.ops.config, engines.analysis.reoptimize\n"
            "app = make_app(); MonitorScreen(None)\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    loaded = {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}
    heavy = {"torch", "numpy", "onnxruntime", "dvc", "dvc_data", "uvicorn", "fastapi", "prometheus_client", "mlflow"}
    assert not loaded & heavy, sorted(loaded & heavy)


@async_test
async def test_the_palette_opens_the_monitor_and_an_absent_server_is_a_status(store, monkeypatch, tmp_path):
    from textual.widgets import Static

    from qbench_tui.app import make_app
    from qbench_tui.screens.monitor import MonitorScreen
    from qbench_tui.settings import AppSettings

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("QBENCH_HOME", str(tmp_path))
    app = make_app(store=store, settings=AppSettings())
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(1200):  # the palette lists entries once the main screen is built (slow when loaded)
            entries = [c for c in app.palette_commands() if c.title.startswith("Monitor a served model")]
            if entries:
                break
            await pilot.pause(0.05)
        entry = entries[0]
        entry.callback()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, MonitorScreen)
        url = screen.query_one("#monitor-url")
        url.value = "not a url"
        await pilot.press("ctrl+w")
        assert not screen.watching
        url.value = f"http://127.0.0.1:{port}"
        await pilot.press("ctrl+w")
        for _ in range(1200):
            await pilot.pause(0.05)
            if not screen.watching:
                break
        assert not screen.watching
        assert "cannot reach" in str(screen.query_one("#monitor-alerts", Static).render())
        await pilot.press("escape")
        assert not isinstance(app.screen, MonitorScreen)
