"""The order in which pytest-xdist hands modules to its workers: the longest first.

``--dist loadscope`` gives each worker whole modules (a module's fixtures, a real sweep or a
server, are built once) and, by default, in the order of their test counts. A module of a few
tests that each run a real sweep then starts last while the other worker sits idle: with two
workers, the run lasts as long as its last module. Here the next module a worker gets is the one
that took longest: the durations of its tests in the last runs on this checkout (kept in pytest's
cache by the controller); where some of its tests were not measured (a quick loop leaves out the
slow ones; a clean clone, as in CI, has none), at least :data:`KNOWN_SECONDS`, else a fraction of a
second a test.
"""

from __future__ import annotations

from typing import Any

CACHE_KEY = "qbench/test_seconds"

# A module's seconds (setup, call and teardown of its tests, with its module fixtures) on two quiet
# cores, from CI's slowest tests and a loaded run's per-module sums scaled to them: the order of a
# clean clone's run (CI). Only the long ones; the rest go by their test counts. Rough figures are
# enough: only the order matters, and a run here replaces them with what it measured.
KNOWN_SECONDS = {
    "tests/test_export.py": 250,
    "tests/test_coreml_passes.py": 220,
    "tests/test_real_minilm.py": 170,
    "tests/test_cli_sweep.py": 150,
    "tests/conformance/test_contract.py": 140,
    "tests/test_insights.py": 115,
    "tests/test_techniques_mixed.py": 100,
    "tests/test_vision_models.py": 100,
    "tests/test_mlx_mixed.py": 90,
    "tests/test_kv_cache.py": 80,
    "tests/test_tui_pilot.py": 65,
    "tests/test_real_tiny_lm.py": 60,
    "tests/test_auto_search.py": 60,
    "tests/test_techniques_fusion.py": 50,
    "tests/test_real_hf.py": 50,
    "tests/test_mlx_transformers.py": 50,
    "tests/test_llamacpp.py": 50,
    "tests/test_tui_snapshots.py": 47,
    "tests/test_python_api.py": 40,
    "tests/test_tui_e2e_tmux.py": 40,
    "tests/test_history_paging.py": 26,
    "tests/test_method_spec.py": 25,
}
UNKNOWN_TEST_SECONDS = 0.3

_durations: dict[str, float] = {}


def record_durations(report: Any) -> None:
    """Each test's seconds, setup + call + teardown (the controller sees every worker's reports)."""
    _durations[report.nodeid] = _durations.get(report.nodeid, 0.0) + report.duration


def save_durations(config: Any) -> None:
    """Into pytest's cache, over the figures of the tests that ran again (a partial run keeps the rest)."""
    cache = getattr(config, "cache", None)
    if cache is None or not _durations:
        return
    kept = cache.get(CACHE_KEY, {})
    cache.set(
        CACHE_KEY, {**(kept if isinstance(kept, dict) else {}), **{k: round(v, 2) for k, v in _durations.items()}}
    )


def longest_first_scheduler(config: Any, log: Any) -> Any:
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    cache = getattr(config, "cache", None)
    seconds = cache.get(CACHE_KEY, {}) if cache is not None else {}
    seconds = seconds if isinstance(seconds, dict) else {}

    class LongestFirst(LoadScopeScheduling):
        def _weight(self, scope: str) -> float:
            tests = self.workqueue[scope]
            known = [seconds[t] for t in tests if t in seconds]
            if len(known) == len(tests):  # every test measured here
                return sum(known)
            # some not measured (a quick loop's run leaves out the slow ones): at least the known figure
            guess = sum(known) + UNKNOWN_TEST_SECONDS * (len(tests) - len(known))
            return max(guess, KNOWN_SECONDS.get(scope, 0.0))

        def _assign_work_unit(self, node: Any) -> None:
            heaviest = max(self.workqueue, key=self._weight)
            self.workqueue.move_to_end(heaviest, last=False)
            super()._assign_work_unit(node)

    return LongestFirst(config, log)
