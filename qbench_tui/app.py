"""The qbench terminal app: wiring only.

The app registers the themes, holds the settings and the machine probe, and shows one
:class:`~qbench_tui.screens.main.MainScreen`, which owns the panes; the sweep's lifecycle is
:class:`~qbench_tui.controllers.sweep.SweepController`. Every blocking call runs in a thread
worker that ends by posting a message named as a past event (``messages.py``). The UI process
never imports torch or another engine library, and nothing here imports the CLI (the CLI imports
this module).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App

from engines.core import discovery

from qbench_tui.commands import PaletteCommand, QBenchCommands
from qbench_tui.controllers.ops import OpsController
from qbench_tui.screens.main import MainScreen
from qbench_tui.settings import AppSettings
from qbench_tui.system import LocalSystem, SystemProbe
from qbench_tui.themes import DEFAULT_THEME, ThemeFile, load_themes


class QBenchApp(App[int]):
    """The app. Build it with :func:`make_app` (tests pass their own store, settings, system)."""

    TITLE = "qbench"
    # Every stylesheet loads with the app: one loaded on a screen's first push repaints late.
    CSS_PATH: ClassVar[list[str]] = ["screens/main.tcss", "screens/screens.tcss"]
    COMMANDS = App.COMMANDS | {QBenchCommands}

    def __init__(self, store: Any | None = None, db_path: Path | None = None,
                 settings: AppSettings | None = None, system: SystemProbe | None = None,
                 theme_dirs: list[Path] | None = None):
        self.settings = settings or AppSettings()
        self.system: SystemProbe = system or LocalSystem()
        self.theme_files: list[ThemeFile] = []
        self._theme_dirs = theme_dirs
        # Installed packages' plugins are looked for after the first frame (widgets/setup_plugins.py).
        discovery.defer_entry_points()
        super().__init__()
        self.main = MainScreen(self.settings, self.system, store=store, db_path=db_path)
        self.ops = OpsController(self)  # version / serve the selected result (child processes)
        # Themes are registered and chosen before the first compose: switching later restyles
        # every widget (seconds on a loaded machine).
        self._theme_problems = self._register_themes()

    def get_default_screen(self) -> MainScreen:
        return self.main

    hung_up = False  # set by run_app's SIGHUP handler: the terminal is gone

    def on_mount(self) -> None:
        if self.hung_up:  # the terminal hung up before the app was running: leave at once
            self.exit(130)
            return
        for problem in self._theme_problems:
            self.notify(problem, title="theme skipped", severity="warning")
        self.theme_changed_signal.subscribe(self, self._theme_changed)

    # --- themes --------------------------------------------------------------------------------

    def _register_themes(self) -> list[str]:
        self.theme_files, problems = load_themes(self._theme_dirs)
        for theme_file in self.theme_files:
            self.register_theme(theme_file.theme)
        wanted = self.settings.theme if self.settings.theme in self.available_themes else DEFAULT_THEME
        if wanted in self.available_themes:
            self._choose_first_theme(wanted)
        return problems

    def _choose_first_theme(self, name: str) -> None:
        """Choose the theme before the app runs, without Textual's theme watcher: setting ``theme``
        queues a re-parse of every stylesheet (the first parse, with the default theme's
        variables, is then thrown away: 0.03-0.04 s at load 9) and a restyle. Here the
        stylesheet gets the theme's variables before its first parse, and the watcher's other
        effects (the theme's classes, the ANSI colour filter) are applied as it applies them.
        Later switches (the palette) set ``theme`` as usual."""
        was_dark = self.current_theme.dark
        self.set_reactive(App.theme, name)
        theme = self.current_theme
        self.update_classes({**{c: False for c in self.classes if c.startswith("-theme-")},
                             f"-theme-{theme.name}": True, "-dark-mode": theme.dark, "-light-mode": not theme.dark},
                            update=False)
        self.stylesheet.set_variables(self.get_css_variables())
        if theme.dark != was_dark:
            self._refresh_truecolor_filter(self.ansi_theme)

    def _theme_changed(self, theme: Any) -> None:
        self.settings.theme = theme.name
        self.settings.save()

    def set_theme(self, name: str) -> None:
        self.theme = name
        self.notify(f"theme: {name}", timeout=2)

    # --- palette and quitting ------------------------------------------------------------------

    def palette_commands(self) -> list[PaletteCommand]:
        """The palette's entries (``commands.QBenchCommands`` lists them): the main screen's, with
        one per theme among them."""
        themes = [PaletteCommand(f"Theme: {tf.title}", f"Switch to the {tf.title} theme (remembered)",
                                 lambda name=tf.theme.name: self.set_theme(name), True)
                  for tf in self.theme_files]
        monitor = PaletteCommand("Monitor a served model…", "Watch a `qbench serve` URL: latency and errors "
                                 "against its baseline, the canary, what to re-optimize", self.action_monitor, True)
        return self.main.palette_commands([*themes, monitor, *self.ops.palette_commands()])

    def action_monitor(self, url: str | None = None) -> None:
        from qbench_tui.screens.monitor import MonitorScreen

        self.push_screen(MonitorScreen(self.main.db_path, url))

    async def action_quit(self) -> None:
        """ctrl+q: like q on the main screen (asks first while a sweep runs)."""
        self.main.action_quit()

    def shutdown_sweep(self, timeout: float = 30.0) -> None:
        """Cancel a running sweep and wait for its worker (which kills the child process)."""
        self.main.sweep.shutdown(timeout)

    def on_unmount(self) -> None:
        self.main.sweep.cancel()  # a worker still running stops its child process at once
        self.ops.shutdown()  # services started from the app end with it


def make_app(store: Any | None = None, settings: AppSettings | None = None, db: Path | None = None,
             system: SystemProbe | None = None, theme_dirs: list[Path] | None = None) -> QBenchApp:
    """Build the app. The CLI passes ``db`` (opened in a worker after the first paint);
    tests pass an open ``store``, their own ``settings`` and, for snapshots, a fixed ``system``."""
    return QBenchApp(store=store, db_path=db, settings=settings, system=system, theme_dirs=theme_dirs)


# After a hang-up the process is gone within this, whatever it was doing: the app's own exit and
# the sweep's recording of its end get this long together (a run still 'running' when the process
# has gone reads as interrupted, its results kept, on the store's next open).
HANG_UP_GRACE_S = 1.2


def run_app(db: Path | None = None) -> int:
    """Entry point of ``qbench`` / ``qbench tui``; returns the exit code."""
    try:
        from engines.paths import settings_path

        settings = AppSettings.load(settings_path())
    except (OSError, ValueError):
        settings = AppSettings()
    app = make_app(settings=settings, db=db)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: hang_up(app))
    try:
        code = app.run()
    except Exception:  # noqa: BLE001 - below: after a hang-up, a failure to draw is not the user's news
        if not app.hung_up:
            raise
    finally:
        app.shutdown_sweep()
    if app.hung_up:
        # The terminal is gone: whatever the app's exit said (a write to the dead terminal can end
        # Textual with its error code 1, or raise, mid-start-up), the run was interrupted.
        return 130
    return code if isinstance(code, int) else 0


def hang_up(app: QBenchApp) -> None:
    """The terminal hung up (SSH dropped, window closed): leave, at any moment, start-up included.

    Runs as the SIGHUP handler, on the main thread, where the app's event loop runs (if it runs
    yet). The app is asked to exit through its loop; before it runs, ``on_mount`` sees the flag.
    A watchdog thread stops the sweep (its worker kills the benchmark process; finished results
    are already stored) and ends the process if the app has not left after HANG_UP_GRACE_S: with
    no terminal, writing the screen can fail or block anywhere in the driver.
    """
    if app.hung_up:
        return
    app.hung_up = True
    threading.Thread(target=_leave_after_hang_up, args=(app,), name="hang-up", daemon=True).start()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # not running yet: on_mount exits
    loop.call_soon_threadsafe(app.exit, 130)


def _leave_after_hang_up(app: QBenchApp) -> None:
    # Only the event and the wait: the state machine itself is the UI thread's to change.
    deadline = time.monotonic() + HANG_UP_GRACE_S
    sweep = app.main.sweep
    sweep.cancel_event.set()
    sweep.wait(max(0.0, deadline - time.monotonic()))
    threading.Event().wait(max(0.0, deadline - time.monotonic()))
    os._exit(130)  # still here: the app's exit is stuck on the dead terminal (daemon: a clean exit never gets here)
