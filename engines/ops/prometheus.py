"""Read a service's Prometheus text exposition, and the difference of two scrapes.

Standard library only, so the app can poll a server itself. What is read is found by shape, not by
exact name, so any service following Prometheus conventions works: the request-latency histogram
(a histogram whose name holds ``latency`` or ``duration``, in seconds), the request counter (a
counter whose name holds ``request`` with a status/code label) and ``*_info`` metrics (labels only).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
STATUS_LABELS = ("status", "status_code", "code")


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Exposition:
    """Every sample of one scrape, and each family's declared type."""

    samples: list[Sample] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)

    def family(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.name == name]


def _unescape(text: str) -> str:
    return text.replace("\\\\", "\x00").replace('\\"', '"').replace("\\n", "\n").replace("\x00", "\\")


def parse_exposition(text: str) -> Exposition:
    """Parse the Prometheus text format (version 0.0.4; OpenMetrics' ``# EOF`` is accepted).
    A malformed line raises ValueError naming it."""
    out = Exposition()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                out.types[parts[2]] = parts[3].strip()
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"line {number} is not a Prometheus sample: {raw[:80]!r}")
        name, label_text, value = match.groups()
        labels: dict[str, str] = {}
        if label_text:
            body = label_text[1:-1]
            pos = 0
            while pos < len(body):
                lm = _LABEL.match(body, pos)
                if not lm:
                    raise ValueError(f"line {number} has malformed labels: {label_text[:80]!r}")
                labels[lm.group(1)] = _unescape(lm.group(2))
                pos = lm.end()
        try:
            number_value = float(value)
        except ValueError:
            raise ValueError(f"line {number} has a non-numeric value {value!r}") from None
        out.samples.append(Sample(name, labels, number_value))
    return out


@dataclass
class Scrape:
    """What the monitor needs from one scrape, summed over label sets."""

    requests: dict[str, float]  # status -> count
    latency_buckets: list[tuple[float, float]]  # (upper bound in s, cumulative count), sorted
    latency_sum_s: float
    latency_count: float
    info: dict[str, str]  # labels of the *_info metrics
    latency_metric: str | None = None
    requests_metric: str | None = None

    @property
    def total_requests(self) -> float:
        return sum(self.requests.values())


def _family_type(exp: Exposition, name: str) -> str:
    return exp.types.get(name) or exp.types.get(name.removesuffix("_total"), "")


def read_scrape(text: str) -> Scrape:
    """The latency histogram, the requests by status and the model info of one exposition."""
    exp = parse_exposition(text)
    hist = next((n for n, t in exp.types.items() if t == "histogram" and ("latency" in n or "duration" in n)), None)
    buckets: dict[float, float] = {}
    total_s = count = 0.0
    if hist:
        for s in exp.family(hist + "_bucket"):
            le = s.labels.get("le", "+Inf")
            bound = math.inf if le in ("+Inf", "Inf") else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + s.value
        total_s = sum(s.value for s in exp.family(hist + "_sum"))
        count = sum(s.value for s in exp.family(hist + "_count"))
    requests: dict[str, float] = {}
    counter = None
    for s in exp.samples:
        status = next((s.labels[k] for k in STATUS_LABELS if k in s.labels), None)
        if status is None or "request" not in s.name or not s.name.endswith("_total"):
            continue
        if _family_type(exp, s.name) not in ("counter", ""):
            continue
        counter = counter or s.name
        if s.name == counter:
            requests[status] = requests.get(status, 0.0) + s.value
    info: dict[str, str] = {}
    for s in exp.samples:
        if s.name.endswith("_info") and s.name.split("_")[0] not in ("python", "process"):
            info.update(s.labels)
    return Scrape(requests, sorted(buckets.items()), total_s, count, info, hist, counter)


def is_error(status: str) -> bool:
    """HTTP 5xx, and any non-numeric status other than ok/success (a service's own words)."""
    status = status.strip().lower()
    if status.isdigit():
        return status.startswith("5")
    return status not in ("ok", "success", "2xx", "200")


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` on cumulative buckets: linear within the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the largest finite bucket: its bound is what is known
            width = cumulative - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 1.0)
        lower_bound, lower_count = bound, cumulative
    return lower_bound


def window(before: Scrape | None, after: Scrape) -> dict[str, Any]:
    """Requests, error rate, mean and p95 latency (ms) between two scrapes. A counter that went
    down means the server restarted: the window is then everything since the restart."""
    restarted = before is not None and after.latency_count < before.latency_count
    base = None if restarted else before
    requests = {k: v - (base.requests.get(k, 0.0) if base else 0.0) for k, v in after.requests.items()}
    total = sum(requests.values())
    errors = sum(v for k, v in requests.items() if is_error(k))
    count = after.latency_count - (base.latency_count if base else 0.0)
    total_s = after.latency_sum_s - (base.latency_sum_s if base else 0.0)
    old = dict(base.latency_buckets) if base else {}
    buckets = [(bound, c - old.get(bound, 0.0)) for bound, c in after.latency_buckets]
    p95 = histogram_quantile(0.95, buckets)
    return {
        "requests": int(round(total if total else count)),
        "errors": int(round(errors)),
        "error_rate": (errors / total) if total else 0.0,
        "latency_count": int(round(count)),
        "latency_mean_ms": (total_s / count * 1000.0) if count else None,
        "latency_p95_ms": p95 * 1000.0 if p95 is not None else None,
        "by_status": {k: int(round(v)) for k, v in requests.items() if v},
        "restarted": restarted,
    }
