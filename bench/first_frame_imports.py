"""What the app's first frame costs in imports, module by module, against a hello-world Textual app.

Run:  uv run python bench/first_frame_imports.py [--runs 5] [--top 25]

Each run is a fresh interpreter with ``-X importtime`` importing what ``qbench`` imports before its
first frame (``qbench_tui.cli`` and ``qbench_tui.app``, and what composing the panes and the start-up
thread import: the method catalog with its plugins, the model zoo, the store) and, alternating with it, what the
hello-world baseline imports (``textual.app`` with Header, Footer, Static: the app of
../shared/tools/hello_textual.py). Prints, as medians over the runs: the total of each; the
difference split by package (textual, rich, qbench_tui, engines, the rest); and the modules the
baseline does not import, by their own time, heaviest first — where the first frame's extra
import time goes. Times are wall-clock and scale with the machine's load: read the ratios and
report ``uptime`` with them.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

# What is imported before the first frame: the modules the app imports, and what composing the
# panes and the start-up thread import (the method catalog's plugins, the model zoo, the store).
# The app defers the entry-point scan of installed packages' metadata (importlib.metadata) until
# after the first frame (QBenchApp's constructor calls defer_entry_points): so does this.
QBENCH = ("import qbench_tui.cli; from engines.core import discovery; discovery.defer_entry_points(); "
          "from qbench_tui.app import make_app; from engines import catalog; "
          "catalog.METHODS; catalog.RUNTIMES; import engines.models, engines.store")
HELLO = "from textual.app import App; from textual.widgets import Footer, Header, Static"
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")


def importtime(code: str) -> dict[str, int]:
    """Module -> its own import time (µs) in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    return {m.group(4): int(m.group(1)) for m in map(LINE.match, proc.stderr.splitlines()) if m}


def group(module: str) -> str:
    top = module.split(".")[0]
    return top if top in ("textual", "rich", "qbench_tui", "engines") else "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    importtime(QBENCH), importtime(HELLO)  # warm the page cache and the bytecode
    qbench_runs, hello_runs = [], []
    for _ in range(args.runs):
        qbench_runs.append(importtime(QBENCH))
        hello_runs.append(importtime(HELLO))

    def med(runs: list[dict[str, int]], module: str) -> float:
        return statistics.median(r.get(module, 0) for r in runs) / 1000

    q_total = statistics.median(sum(r.values()) for r in qbench_runs) / 1000
    h_total = statistics.median(sum(r.values()) for r in hello_runs) / 1000
    print(f"load: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs; medians of {args.runs} runs")
    print(f"hello-world Textual imports {h_total:7.1f} ms")
    print(f"qbench first-frame imports  {q_total:7.1f} ms   ratio {q_total / h_total:.2f}")
    extra = {m for r in qbench_runs for m in r} - {m for r in hello_runs for m in r}
    by_group: dict[str, float] = {}
    for module in extra:
        by_group[group(module)] = by_group.get(group(module), 0.0) + med(qbench_runs, module)
    print("\nmodules the baseline does not import, by package (own time, ms):")
    for name, ms in sorted(by_group.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<11} {ms:7.1f}")
    print(f"\nheaviest {args.top} of them (own time, ms):")
    for module in sorted(extra, key=lambda m: -med(qbench_runs, m))[: args.top]:
        print(f"  {med(qbench_runs, module):7.1f}  {module}")


if __name__ == "__main__":
    main()
