"""Mutation check: break a function whose errors users would never notice, and see whether the
quick test loop (``-m "not slow"``) notices.

In a temporary copy of the repository (tracked and untracked, not ignored, files), each mutation
changes one named function: ``raise`` makes it raise at its first statement; ``replace`` swaps a
piece of its source (a flipped comparison, an inverted ratio). Then the tests that concern it run
against the copy: the files listed for the target plus every test file that names the function.
A mutation is *caught* when a test fails, *survived* when they all pass. Tests that fail before
any mutation (an unmutated run of each target's tests comes first) are left out, and named.

    uv run python bench/mutation_check.py                 # every target
    uv run python bench/mutation_check.py --only pareto   # targets whose name contains "pareto"
    uv run python bench/mutation_check.py --list          # the targets and where they live

Targets list candidate locations, first found wins (a function that moved keeps its target);
a target found nowhere is skipped with a message. Add one by appending to ``TARGETS``.
Slow (each mutation runs its tests in a fresh pytest process: minutes each on a loaded machine),
so it is a bench script, not part of the suite.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    kind: str  # "raise" or "replace"
    old: str = ""
    new: str = ""

    def describe(self) -> str:
        return "raise at first line" if self.kind == "raise" else f"{self.old!r} -> {self.new!r}"


@dataclass
class Target:
    name: str
    where: list[tuple[str, str]]  # (file, function or Class.method): candidates, first found wins
    mutations: list[Mutation]
    tests: list[str] = field(default_factory=list)  # test files always run (missing ones are dropped)


RAISE = Mutation("raise")

TARGETS: list[Target] = [
    Target("compute-plan shares", [("engines/runtimes/coreml/session.py", "plan_shares")],
           [RAISE, Mutation("replace", "cost[device] += estimate.weight", "cost[device] += 1.0")],
           ["tests/test_coreml_plan.py"]),
    Target("placement verdict (Neural Engine share)", [("engines/analysis/placement.py", "verdict")],
           [RAISE, Mutation("replace", "share < MIN_COST_SHARE", "share >= MIN_COST_SHARE")],
           ["tests/test_coreml_plan.py"]),
    Target("fp32 reference", [("engines/analysis/rules.py", "fp32_reference")],
           [RAISE, Mutation("replace", 'f.get("run_id") == r.get("run_id")', 'f.get("run_id") != r.get("run_id")')],
           ["tests/test_analysis_rules.py", "tests/test_insights.py"]),
    Target("fp32 references (many at once)", [("engines/analysis/rules.py", "references")],
           [RAISE, Mutation("replace", 'f.get("run_id") == r.get("run_id")', 'f.get("run_id") != r.get("run_id")')],
           ["tests/test_analysis_rules.py", "tests/test_tui_units.py"]),
    Target("speedup (analysis)", [("engines/analysis/rules.py", "speedup")],
           [RAISE, Mutation("replace", '"ratio": 1.0', '"ratio": 0.5')],
           ["tests/test_analysis_rules.py", "tests/test_insights.py"]),
    Target("speedup (paired rounds)", [("engines/bench/rounds.py", "speedup")],
           [RAISE, Mutation("replace", "base[r] / var[r]", "var[r] / base[r]")],
           ["tests/test_measurement_rounds.py", "tests/test_cli_progress.py"]),
    Target("Pareto frontier (rule)", [("engines/analysis/rules.py", "pareto")],
           [RAISE, Mutation("replace", "if points[i][1] > best:", "if points[i][1] < best:")],
           ["tests/test_analysis_rules.py", "tests/test_history_paging.py"]),
    Target("Pareto frontier (per model)", [("engines/analysis/rules.py", "frontier")],
           [RAISE, Mutation("replace", 'str(r.get("model")) == model and ', "")],
           ["tests/test_analysis_rules.py"]),
    Target("Pareto frontier (store)", [("engines/store/__init__.py", "_frontier")],
           [RAISE], ["tests/test_store.py", "tests/test_history_paging.py"]),
    Target("quality bar", [("engines/analysis/rules.py", "meets_bar")],
           [RAISE, Mutation("replace", "value >= QUALITY_BARS", "value < QUALITY_BARS")],
           ["tests/test_analysis_rules.py", "tests/test_devices_detection.py"]),
    Target("quality verdict of a result", [("engines/analysis/rules.py", "keeps_quality")],
           [RAISE, Mutation("replace", "return bool(found and meets_bar(*found))", "return True")],
           ["tests/test_analysis_rules.py", "tests/test_tui_auto_device.py"]),
    Target("energy per inference", [("engines/devices/energy.py", "energy_figure")],
           [RAISE, Mutation("replace", "net / (calls * batch_size)", "joules / (calls * batch_size)")],
           ["tests/test_devices_energy.py"]),
    Target("result serialization (to SQLite)", [("engines/core/schema.py", "Result.to_row")],
           [RAISE, Mutation("replace", "_finite_or_none(latency.get(key))", '_finite_or_none(latency.get("p50"))')],
           ["tests/test_store.py", "tests/test_history_paging.py"]),
    Target("result serialization (from SQLite)", [("engines/core/schema.py", "Result.from_row")],
           [RAISE, Mutation("replace", 'latency["samples"] = int(latency["samples"])', 'latency["samples"] = 0')],
           ["tests/test_store.py", "tests/test_history_paging.py"]),
    Target("result serialization (JSON)", [("engines/core/schema.py", "public_json")],
           [RAISE, Mutation("replace", "return _finite_or_none(value)", "return value")],
           ["tests/test_store.py", "tests/test_cli_progress.py"]),
    Target("result serialization (CSV)", [("engines/core/schema.py", "results_csv")],
           [RAISE], ["tests/test_store.py", "tests/test_cli_progress.py"]),
]


# --- the copy and the mutations ----------------------------------------------------------------


def make_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def find_function(path: Path, qualname: str) -> ast.FunctionDef | None:
    if not path.is_file():
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"))
    scope: list[ast.stmt] = tree.body
    *owners, name = qualname.split(".")
    for owner in owners:
        cls = next((n for n in scope if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls is None:
            return None
        scope = cls.body
    return next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)


def locate(root: Path, target: Target) -> tuple[str, str, ast.FunctionDef] | None:
    for rel, qualname in target.where:
        fn = find_function(root / rel, qualname)
        if fn is not None:
            return rel, qualname, fn
    return None


def mutate(source: str, fn: ast.FunctionDef, mutation: Mutation) -> str | None:
    """The file's source with ``fn`` broken, or None when the mutation does not apply to it."""
    lines = source.splitlines(keepends=True)
    body = fn.body
    first = body[1] if (len(body) > 1 and isinstance(body[0], ast.Expr)
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)) \
        else body[0]
    if mutation.kind == "raise":
        indent = re.match(r"\s*", lines[first.lineno - 1]).group(0)
        lines.insert(first.lineno - 1, f"{indent}raise RuntimeError('mutation check: {fn.name} broken')\n")
        return "".join(lines)
    start, end = fn.lineno - 1, fn.end_lineno
    text = "".join(lines[start:end])
    if mutation.old not in text:
        return None
    return "".join(lines[:start]) + text.replace(mutation.old, mutation.new, 1) + "".join(lines[end:])


def tests_for(root: Path, target: Target, function: str) -> list[str]:
    """The target's own test files plus every test file that names the function."""
    name = function.split(".")[-1]
    found = [str(p.relative_to(root)) for p in sorted((root / "tests").rglob("test_*.py"))
             if re.search(rf"\b{re.escape(name)}\b", p.read_text(encoding="utf-8"))]
    return sorted({t for t in target.tests if (root / t).is_file()} | set(found))


def run_tests(root: Path, files: list[str], home: Path, timeout: float, deselect: list[str] = (),
              maxfail: int = 3) -> tuple[int, list[str], float]:
    env = {**os.environ, "PYTHONPATH": str(root), "QBENCH_HOME": str(home)}
    t0 = time.monotonic()
    skip = [arg for nodeid in deselect for arg in ("--deselect", nodeid)]
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", f"--maxfail={maxfail}", "-rfE",
                               "-p", "no:cacheprovider", "--no-header", *skip, *files],
                              check=False, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, ["(timed out)"], time.monotonic() - t0
    failed = [line.split(" ")[1] for line in proc.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    return proc.returncode, failed, time.monotonic() - t0


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the targets whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the targets and where they are found")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per test run (default 1200)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of each target's tests")
    args = parser.parse_args()
    targets = [t for t in TARGETS if args.only.lower() in t.name.lower()]
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="qbench-mutation-") as tmp:
        copy, home = Path(tmp) / "repo", Path(tmp) / "home"
        copy.mkdir()
        home.mkdir()  # one QBENCH_HOME for every run: the built-in models train once
        make_copy(copy)
        for target in targets:
            found = locate(copy, target)
            if found is None:
                where = ", ".join(f"{f}::{q}" for f, q in target.where)
                print(f"skip  {target.name}: not on this branch ({where})", flush=True)
                rows.append((target.name, "-", "skipped: not found"))
                continue
            rel, qualname, fn = found
            files = tests_for(copy, target, qualname)
            if args.list:
                print(f"{target.name}: {rel}::{qualname}  tests: {' '.join(files) or '(none)'}")
                continue
            if not files:
                rows.append((target.name, "-", "SURVIVED: no test file concerns it"))
                continue
            broken: list[str] = []  # tests that fail unmutated are left out of the mutated runs
            if not args.no_baseline:
                rc, broken, took = run_tests(copy, files, home, args.timeout, maxfail=1000)
                if rc not in (0, 5):
                    print(f"note  {target.name}: left out, failing unmutated: {', '.join(broken)}", flush=True)
            path = copy / rel
            original = path.read_text(encoding="utf-8")
            for mutation in target.mutations:
                mutated = mutate(original, fn, mutation)
                if mutated is None:
                    rows.append((target.name, mutation.describe(), "skipped: text not in the function"))
                    continue
                path.write_text(mutated, encoding="utf-8")
                try:
                    rc, failed, took = run_tests(copy, files, home, args.timeout, deselect=broken)
                finally:
                    path.write_text(original, encoding="utf-8")
                if rc == 0:
                    verdict = "SURVIVED"
                elif rc == 5:
                    verdict = "SURVIVED: no quick test collected"
                else:
                    verdict = f"caught by {', '.join(failed) or f'exit {rc}'}"
                print(f"{'ok   ' if verdict.startswith('caught') else 'MISS '} {target.name} [{rel}::{qualname}] "
                      f"{mutation.describe()}: {verdict} ({took:.0f} s, {len(files)} test files)", flush=True)
                rows.append((target.name, mutation.describe(), verdict))
    if args.list:
        return 0
    caught = sum(r[2].startswith("caught") for r in rows)
    tried = sum(not r[2].startswith("skipped") for r in rows)
    print(f"\n{caught} of {tried} mutations caught by the quick loop (-m 'not slow')")
    for name, mutation, verdict in rows:
        print(f"  {name:36} {mutation[:60]:60} {verdict}")
    return 0 if caught == tried else 1


if __name__ == "__main__":
    sys.exit(main())
