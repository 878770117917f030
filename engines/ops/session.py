"""One watch of a served variant with the store behind it: the baseline kept per URL and result,
the served result read from the service's model info, a re-optimization suggested on an alert.
Shared by ``qbench monitor`` and the app's monitor view (light: no numpy, no torch)."""

from __future__ import annotations

from typing import Any

from engines.ops.monitor import Monitor, MonitorError, MonitorReport, Thresholds

RESULT_LABELS = ("result_id", "source_result_id", "qbench_result_id")  # model-info labels naming it


class MonitorSession:
    def __init__(self, url: str, store, thresholds: Thresholds, result_id: int | None = None,
                 rebaseline: bool = False, fetch=None):
        self.store = store
        self.result_id = result_id
        self.rebaseline = rebaseline
        kwargs = {"fetch": fetch} if fetch else {}
        self.monitor = Monitor(url, thresholds, on_baseline=self._save_baseline, **kwargs)
        self.result: dict[str, Any] | None = None
        self.suggestion: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return self.monitor.url

    def start(self) -> dict[str, Any]:
        """First scrape: which result is served, and its stored baseline (unless re-baselining)."""
        from engines.store.ops_tables import get_result, latest_baseline

        first = self.monitor.start()
        if self.result_id is None:
            raw = next((first.info[k] for k in RESULT_LABELS if first.info.get(k)), None)
            self.result_id = int(raw) if raw and str(raw).isdigit() else None
        if self.result_id is not None:
            self.result = get_result(self.store, self.result_id)
        if not self.rebaseline:
            self.monitor.baseline = latest_baseline(self.store, self.url, self.result_id)
        return {"url": self.url, "result_id": self.result_id, "info": first.info,
                "baseline": self.monitor.baseline, "result": self.result}

    def _save_baseline(self, baseline: dict[str, Any]) -> None:
        from engines.store.ops_tables import save_baseline

        save_baseline(self.store, self.url, self.result_id, baseline)

    def poll(self) -> dict[str, Any]:
        """One scrape judged; on an alert, ``suggestion`` says what to serve or sweep instead."""
        report: MonitorReport = self.monitor.poll()
        out = report.to_dict()
        out["result_id"] = self.result_id
        if report.alerts:
            out["suggestion"] = self.suggest()
        return out

    def suggest(self) -> dict[str, Any] | None:
        from engines.analysis.reoptimize import suggest_reoptimization

        if self.result is None:
            return None
        if self.suggestion is None:  # the store changes rarely while watching: once per session
            self.suggestion = suggest_reoptimization(self.store, self.result)
        return self.suggestion


__all__ = ["MonitorError", "MonitorSession", "Thresholds"]
