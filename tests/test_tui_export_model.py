"""The app's "export selected variant as a model" action: a real CLI child exports a real result,
the dialog shows its progress and the validation; the app process never imports torch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_export import stored_result
from test_tui_support import async_test, fixed_system, test_settings, wait_for, wait_ready
from textual.widgets import DataTable, Input, RadioSet, Static

from engines.store import Store
from qbench_tui.app import make_app
from qbench_tui.screens.export_model import ExportModelScreen, export_command

WIDE = (160, 48)


def test_the_child_command_is_this_checkouts_cli(tmp_path):
    command = export_command(7, "tflite", tmp_path / "out", tmp_path / "q.db")
    assert command[:3] == [sys.executable, "-m", "qbench_tui"]
    assert command[3:] == ["--db", str(tmp_path / "q.db"), "export", "7", "--format", "tflite", "--out",
                           str(tmp_path / "out"), "--json"]


def test_the_dialog_and_the_cli_parser_import_nothing_heavy():
    import subprocess

    code = ("import sys, engines.export, qbench_tui.screens.export_model, qbench_tui.cli.export as e, argparse; "
            "e.add_parsers(argparse.ArgumentParser().add_subparsers()); "
            "print(sorted(m for m in ('torch', 'numpy', 'onnx', 'onnxruntime', 'litert_torch', 'mlx', 'coremltools') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@async_test
async def test_export_model_from_the_results_table(tmp_path: Path):
    db = tmp_path / "qbench.db"
    stored_result(db, "digits-cnn", "dynamic-int8", runtime="onnxruntime")
    store = Store(db)
    app = make_app(store=store, settings=test_settings(), system=fixed_system())
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_ready(pilot)
            await wait_for(pilot, lambda: app.query_one("#results-table", DataTable).row_count == 1, what="the result")
            app.main.results_pane.export_model(app.main.db_path)
            await wait_for(pilot, lambda: isinstance(app.screen, ExportModelScreen), what="the dialog")
            screen = app.screen
            await wait_for(pilot, lambda: bool(screen.query("#export-out")), what="the dialog's widgets")
            assert screen.fmt == "onnx" and screen.query_one("#export-format", RadioSet)
            screen.query_one("#export-out", Input).value = str(tmp_path / "out")
            await pilot.click("#export-run")
            status = screen.query_one("#export-status", Static)
            await wait_for(pilot, lambda: "validated" in str(status.render()) or "failed" in str(status.render()),
                           timeout=300, what="the export to finish")
            assert "agrees with the source variant" in str(status.render()), str(status.render())
            assert (tmp_path / "out" / "model.onnx").is_file() and (tmp_path / "out" / "deploy" / "README.md").is_file()
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ExportModelScreen), what="the dialog to close")
    finally:
        store.close()
