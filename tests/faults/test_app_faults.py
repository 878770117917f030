"""The app under store faults: a read-only store is still browsed (its results shown, no error);
a store failure during a sweep (a full disk) shows its one line and the app stays up."""

from __future__ import annotations

import os

from engines.store import StoreError
from qbench_tui.app import make_app
from qbench_tui.controllers.sweep import describe_error
from tests.faults.test_store_faults import read_only_home  # noqa: F401 - the fixture
from tests.test_tui_support import async_test, fixed_system, test_settings, wait_ready


@async_test
async def test_the_app_browses_a_read_only_store(read_only_home):  # noqa: F811
    db = read_only_home / "qbench.db"
    app = make_app(db=db, settings=test_settings(), system=fixed_system())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_ready(pilot, timeout=60)
        assert app.main.store is not None and app.main.store.read_only
        assert not app.main.store_error
        assert len(app.main.store.results("r1")) == 3
        assert app.is_running
    assert os.path.exists(db)


def test_a_store_failure_during_a_sweep_is_shown_as_its_own_line():
    line = ("no space left on the disk holding /x/qbench.db (0.0 MB free): free some space (or choose another "
            "file with --db); the store itself is intact. Finished results are kept: resume with qbench run "
            "--resume run-1")
    assert describe_error(StoreError(line)) == line
