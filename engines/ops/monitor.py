"""Watch a served variant: scrape its ``/metrics``, take a deployment baseline, alert on drift.

The baseline is the served model's own first window of at least ``min_requests`` requests, scraped
right after it was deployed — not the offline benchmark, whose conditions (no HTTP, no JSON, a
quiet machine) a server never has. Each later window of at least ``min_requests`` requests is
judged against it: mean or p95 latency past ``latency_ratio`` × the baseline's, or an error rate
past the baseline's by ``error_rate``, is an alert. Windows smaller than that are not judged: a
handful of requests says nothing about a latency distribution.

Standard library only: the app's monitor view polls with this module in a thread worker.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engines.ops.prometheus import Scrape, read_scrape, window


class MonitorError(Exception):
    """The server could not be reached or did not answer like a served qbench model."""


def _auth() -> dict[str, str]:
    """The bearer token of a service started with one (``QBENCH_SERVE_TOKEN``)."""
    token = os.environ.get("QBENCH_SERVE_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def http_get(url: str, timeout: float = 10.0) -> str:
    """GET ``url`` (following the ``/metrics`` → ``/metrics/`` redirect), the body as text."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=_auth()),
                                    timeout=timeout) as response:
            return response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        raise MonitorError(f"{url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitorError(f"cannot reach {url}: {reason}") from None


def http_post_json(url: str, payload: Any, timeout: float = 30.0) -> Any:
    data = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **_auth()},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")[:200]
        raise MonitorError(f"{url} answered HTTP {exc.code}: {body}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MonitorError(f"POST {url} failed: {getattr(exc, 'reason', exc)}") from None


def base_url(url: str) -> str:
    """The service's root from whatever the user gave (root, /metrics, /healthz)."""
    url = url.rstrip("/")
    for suffix in ("/metrics", "/healthz", "/predict"):
        if url.endswith(suffix):
            return url[: -len(suffix)]
    return url


@dataclass
class Thresholds:
    min_requests: int = 50
    latency_ratio: float = 1.5
    error_rate: float = 0.05

    @classmethod
    def from_config(cls, config) -> Thresholds:
        return cls(config.monitor_min_requests, config.monitor_latency_ratio, config.monitor_error_rate)


def judge(current: dict[str, Any], baseline: dict[str, Any], thresholds: Thresholds) -> list[dict[str, Any]]:
    """The alerts a window raises against the baseline (empty: within thresholds)."""
    alerts = []
    for key, label in (("latency_mean_ms", "mean latency"), ("latency_p95_ms", "p95 latency")):
        now, base = current.get(key), baseline.get(key)
        if now is not None and base and now > thresholds.latency_ratio * base:
            alerts.append({"kind": "latency", "metric": key, "value": now, "baseline": base,
                           "ratio": now / base,
                           "message": f"{label} {now:.2f} ms is {now / base:.1f}× the baseline's {base:.2f} ms "
                                      f"(threshold {thresholds.latency_ratio:g}×, {current['requests']} requests)"})
    rate, base_rate = current.get("error_rate") or 0.0, baseline.get("error_rate") or 0.0
    if rate > base_rate + thresholds.error_rate:
        alerts.append({"kind": "errors", "metric": "error_rate", "value": rate, "baseline": base_rate,
                       "message": f"error rate {rate:.1%} against the baseline's {base_rate:.1%} "
                                  f"(threshold +{thresholds.error_rate:.0%}, {current['requests']} requests)"})
    return alerts


@dataclass
class MonitorReport:
    """One poll: ``state`` is collecting (window too small), baseline (just recorded), ok or alert."""

    state: str
    at: float
    window: dict[str, Any]
    baseline: dict[str, Any] | None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    total_requests: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "at": self.at, "window": self.window, "baseline": self.baseline,
                "alerts": self.alerts, "info": self.info, "total_requests": self.total_requests}


class Monitor:
    """Polls one server. ``baseline`` may come from the store (a server watched before); without one
    the first full window becomes it (``on_baseline`` is called to store it)."""

    def __init__(self, url: str, thresholds: Thresholds | None = None, baseline: dict[str, Any] | None = None,
                 fetch: Callable[[str], str] = http_get,
                 on_baseline: Callable[[dict[str, Any]], None] | None = None):
        self.url = base_url(url)
        self.thresholds = thresholds or Thresholds()
        self.baseline = baseline
        self.fetch = fetch
        self.on_baseline = on_baseline
        self._start: Scrape | None = None  # the scrape the open window starts from
        self.last: Scrape | None = None

    def scrape(self) -> Scrape:
        text = self.fetch(self.url + "/metrics")  # a mounted prometheus app redirects to /metrics/: followed
        try:
            scrape = read_scrape(text)
        except ValueError as exc:
            raise MonitorError(f"{self.url}/metrics is not Prometheus text: {exc}") from None
        if scrape.latency_metric is None:
            raise MonitorError(f"{self.url}/metrics has no request-latency histogram")
        return scrape

    def start(self) -> Scrape:
        """The first scrape: what came before it is history, not this watch's window."""
        self._start = self.last = self.scrape()
        return self._start

    def poll(self) -> MonitorReport:
        if self._start is None:
            self.start()
        now = self.scrape()
        self.last = now
        current = window(self._start, now)
        if current["restarted"]:
            self._start = None  # counters went back to zero: the window restarts from zero
        report = MonitorReport("collecting", time.time(), current, self.baseline, info=now.info,
                               total_requests=int(now.total_requests or now.latency_count))
        if current["requests"] < self.thresholds.min_requests:
            return report
        if self.baseline is None:
            self.baseline = {k: current[k] for k in ("requests", "error_rate", "latency_mean_ms", "latency_p95_ms")}
            self.baseline["info"] = now.info
            if self.on_baseline:
                self.on_baseline(self.baseline)
            report.state, report.baseline = "baseline", self.baseline
        else:
            report.alerts = judge(current, self.baseline, self.thresholds)
            report.state = "alert" if report.alerts else "ok"
        self._start = now  # the next window starts here
        return report
