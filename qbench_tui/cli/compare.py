"""``qbench compare A B``: two stored results side by side, as the app's compare dialog shows them
(``engines.analysis.compare``: the same rows, ratios and intervals), every figure with its unit.

The top level stays light (argparse only); the store is opened when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qbench_tui.cli.common import EXIT_OK, UsageError, open_store


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "compare", help="two stored results side by side: each figure, B/A and its interval over the rounds",
        description="Compare result B against result A (their ids: the id column of `qbench results` or the app). "
                    "Each figure has its unit; B/A is B's value over A's, with the range of that ratio over the "
                    "timing rounds for the latency. When A and B come from different runs, every variant the two "
                    "runs share is matched too.")
    p.add_argument("a", type=int, metavar="A", help="result id of A (the reference)")
    p.add_argument("b", type=int, metavar="B", help="result id of B")
    p.add_argument("--json", action="store_true", help="the comparison as JSON")
    p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args) -> int:
    from engines.analysis.compare import compare, comparison, faster, match_runs
    from engines.analysis.figures import FRACTION, figure
    from engines.core.schema import display_label
    from engines.store.ops_tables import get_result

    store = open_store(getattr(args, "db", None))
    a, b = get_result(store, args.a), get_result(store, args.b)
    for rid, r in ((args.a, a), (args.b, b)):
        if r is None:
            raise UsageError(f"no result {rid} in {store.path}; the id column of `qbench results` lists them")
    assert a is not None and b is not None
    runs: tuple[list, list] = ([], [])
    if a.get("run_id") != b.get("run_id"):
        runs = (store.results(run_id=a["run_id"]), store.results(run_id=b["run_id"]))
    if args.json:
        sys.stdout.write(json.dumps(comparison(a, b, *runs), indent=2, default=str) + "\n")
        return EXIT_OK

    from rich.table import Table

    from qbench_tui.cli.output import make_console

    def name(r: dict) -> str:
        host = f" @ {r['host']}" if a.get("host") != b.get("host") else ""
        return (f"{r['model']} · {display_label(r)} · {r['runtime']} · {r['device']} · bs {r['batch_size']}{host}"
                f" (id {r['id']}, run {r['run_id']})")

    console = make_console()
    console.print(f"[b]A[/] {name(a)}\n[b]B[/] {name(b)}", highlight=False)
    table = Table(header_style="bold")
    for col, justify in (("metric", "left"), ("A", "right"), ("B", "right"), ("B/A", "right"), ("", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in compare(a, b):
        if row.a is None and row.b is None:
            continue
        va, vb, ratio = row.text()
        style = {"better": "green", "worse": "red"}.get(row.verdict, "")
        table.add_row(row.label, va, vb, f"[{style}]{ratio}[/]" if style else ratio, row.verdict)
    console.print(table)
    if (fast := faster(a, b)) is not None:
        console.print(f"[b]{fast[0]} is ×{fast[1]:.2f} faster at the median[/]")
    if runs[0] and runs[1]:
        side = Table(title="Runs side by side", header_style="bold")
        for col in ("variant", "A p50", "B p50", "B/A", "A acc", "B acc"):
            side.add_column(col, justify="left" if col == "variant" else "right")
        for ra, rb in match_runs(*runs):
            ref = ra or rb
            assert ref is not None
            la = (ra.get("latency_ms") or {}).get("p50") if ra else None
            lb = (rb.get("latency_ms") or {}).get("p50") if rb else None
            side.add_row(f"{ref['model']} · {display_label(ref)} · {ref['runtime']} · {ref['device']} · "
                         f"bs {ref['batch_size']}", figure(la, "ms"), figure(lb, "ms"),
                         figure(lb / la, "×") if la and lb else "–",
                         figure(ra.get("accuracy") if ra else None, FRACTION),
                         figure(rb.get("accuracy") if rb else None, FRACTION))
        console.print(side)
    return EXIT_OK
