"""The headless command line: ``qbench run | results | runs | models | methods | runtimes | devices``.

Shares the engine and the store with the terminal app; with no sub-command it opens the app.
Exit codes: 0 every variant ok or unsupported, 1 any failed, 2 bad arguments, 130 interrupted.
The CLI may import the app; the app never imports the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from qbench_tui.cli.common import EXIT_USAGE, UsageError, csv_list, int_list, since_time

# Commands that live in a module of their own. Each module has ``add_parsers(sub)``, which adds its
# sub-parsers and sets ``handler=`` on each; the module's top level stays light (argparse only), so
# parsing never loads an engine. One line per module here keeps this file out of every change's way.
COMMAND_MODULES: tuple[str, ...] = (
    "qbench_tui.cli.fleet",
    "qbench_tui.cli.hub",
    "qbench_tui.cli.auto",
    "qbench_tui.cli.insights",
    "qbench_tui.cli.export",
    "qbench_tui.cli.ops",
    "qbench_tui.cli.tracking",
    "qbench_tui.cli.compare",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qbench",
        description="Quantize models, benchmark every variant, browse and compare the results. "
        "With no command, opens the terminal app.",
    )
    parser.add_argument("--db", type=Path, help="SQLite store (default: $QBENCH_HOME/qbench.db)")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print qbench's version (with Python's and the platform's) and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a sweep (each variant in its own process)")
    run.add_argument("--model", help="built-in model name, or a path to a model file/directory")
    run.add_argument("--methods", type=csv_list,
                     help="comma-separated recipes: a method (see `qbench methods`), 'auto' (the recipes that suit "
                          "each chosen device: its instruction set, GPU or Neural Engine), or a method with settings "
                          "after ':' (int4:group_size=128:symmetric=false); the same method may appear with "
                          "several settings")
    run.add_argument("--runtimes", type=csv_list, default=("onnxruntime",), help="default: onnxruntime")
    run.add_argument("--devices", type=csv_list, default=("cpu",),
                     help="default: cpu; 'auto': every present device, and the best one is reported")
    run.add_argument("--objective", choices=("latency", "throughput", "memory"), default="latency",
                     help="what 'best device' means (default latency)")
    run.add_argument("--batch-sizes", type=int_list, default=(1,), help="default: 1")
    run.add_argument("--budget", type=float, metavar="MINUTES",
                     help="with --methods auto: minutes the search may take (screening, then the finalists)")
    run.add_argument("--finalists", type=int, default=3, metavar="N",
                     help="with --methods auto: candidates measured fully after screening (default 3)")
    run.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME.FIELD=VALUE",
                     help="a default setting of a method (static-int8.calibration_method=entropy) or a runtime "
                          "(torch.compile=true, onnxruntime.nbits_compute=fp32); repeatable")
    run.add_argument("--threads", type=int, help="intra-op threads (default: physical cores)")
    run.add_argument("--timeout", type=float, default=900.0, help="seconds per variant (default 900)")
    run.add_argument("--memory-limit-mb", type=float,
                     help="kill a variant whose own memory (the child's RSS above the harness's baseline of "
                          "interpreter and preloaded libraries; reported as memory.variant_peak_mb) exceeds "
                          "this (default 80%% of RAM)")
    run.add_argument("--min-time", type=float, default=1.0,
                     help="minimum measuring seconds per batch size (default 1.0)")
    run.add_argument("--min-reps", type=int, default=30, help="minimum timed repetitions per batch size (default 30)")
    run.add_argument("--repeat", type=int, default=3, metavar="K",
                     help="time each variant in K rounds interleaved across the sweep's variants (shuffled), "
                          "each variant kept loaded between them; reports the median of the rounds' medians and "
                          "their spread, flags 'unstable' ones. The timing budget (--min-time, --min-reps) is "
                          "shared by the rounds. Default 3: the fewest that give a median robust to one "
                          "disturbed round")
    run.add_argument("--json", dest="json_out", metavar="FILE|-", help="write the results as JSON ('-': stdout)")
    run.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: fit it; piped output is always whole)")
    run.add_argument("--resume", metavar="RUN_ID", help="finish an interrupted run: only what is missing")
    run.add_argument("--seq-len", type=int, metavar="N",
                     help="tokens per input row for text models (default 128)")
    run.add_argument("--prompt-len", type=int, metavar="N",
                     help="causal LMs: prompt tokens before generating (time to first token)")
    run.add_argument("--gen-len", type=int, metavar="N",
                     help="causal LMs: tokens generated, with and without a KV cache (decode tokens/s)")
    run.add_argument("--images", type=int, metavar="N",
                     help="image classifiers: held-out photo views (default 46, at most 92)")
    run.add_argument("--allow-pickle", action="store_true",
                     help="load pickled checkpoints (.pt/.pth/.bin/.ckpt): loading a pickle runs code "
                          "stored in the file, so only for files you trust")
    run.add_argument("--cluster", metavar="tcp://HOST:PORT",
                     help="measure on a fleet: the Dask scheduler of `qbench scheduler` (see docs/fleet.md)")
    run.add_argument("--hosts", metavar="NAME,…|all", help="with --cluster: which workers (default all)")
    run.add_argument("--fetch-artifacts", action="store_true",
                     help="with --cluster: copy each host's quantized artifacts here (default: they stay there)")
    run.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    run.add_argument("--mlflow-uri", metavar="URI", help="log the run to this MLflow tracking URI ('off': not at "
                     "all); default $MLFLOW_TRACKING_URI, the app's setting, else sqlite:///$QBENCH_HOME/mlflow.db")

    results = sub.add_parser("results", help="show stored results (SQLite filters them: fast on a long history)")
    results.add_argument("--run", help="one run (default: all runs)")
    results.add_argument("--latest", action="store_true", help="only the most recent run")
    results.add_argument("--model", help="only this model")
    results.add_argument("--method", help="only this method (every setting of it), e.g. int4")
    results.add_argument("--label", help="only this recipe, by its label, e.g. int4(g128)")
    results.add_argument("--runtime", help="only this runtime")
    results.add_argument("--device", help="only this device")
    results.add_argument("--host", help="only results measured on this host (a fleet worker's name)")
    results.add_argument("--status", choices=("ok", "failed", "unsupported", "interrupted"), help="only results with this status")
    results.add_argument("--since", type=since_time, metavar="WHEN",
                         help="only results finished since WHEN: a date/time (2026-11-01, 2026-11-01T09:00) "
                              "or an age (30m, 12h, 7d, 4w)")
    results.add_argument("--limit", type=int, metavar="N",
                         help="only the N most recent, shown oldest first (a table: 500 unless given; 0: all)")
    results.add_argument("--format", choices=("table", "json", "csv"), default="table")
    results.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: fit it; piped output is always whole)")
    results.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    runs = sub.add_parser("runs", help="list runs, newest first")
    runs.add_argument("--model", help="only this model's runs")
    runs.add_argument("--status", choices=("running", "finished", "interrupted", "failed"),
                      help="only runs with this status")
    runs.add_argument("--since", type=since_time, metavar="WHEN",
                      help="only runs started since WHEN: a date/time or an age (30m, 12h, 7d, 4w)")
    runs.add_argument("--limit", type=int, metavar="N", help="only the N most recent (a table: 500 unless given; 0: all)")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")

    for name, text in (("models", "list models"), ("methods", "list methods and what they support"),
                       ("runtimes", "list runtimes, what they open and their settings"),
                       ("devices", "list compute devices and why any is missing")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")
        if name == "devices":
            p.add_argument("--wide", action="store_true", help="every column, however wide the terminal (default: fit it; piped output is always whole)")
            p.add_argument("--model", help="also the best device for this model, from its stored results")
            p.add_argument("--objective", choices=("latency", "throughput", "memory"), default="latency")
            p.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
            p.add_argument("--sample", action="store_true",
                           help="also one live reading: per-core CPU, memory, each accelerator (as the app's meters)")

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parsers(sub)

    tui = sub.add_parser("tui", help="open the terminal app (the default)")
    tui.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    return parser


def version_line() -> str:
    """``qbench 0.1.0 (Python 3.11.7, Linux x86_64)``: what a bug report needs to say."""
    import platform

    from engines import __version__

    return f"qbench {__version__} (Python {platform.python_version()}, {platform.system()} {platform.machine()})"


def app_args(argv: list[str]) -> argparse.Namespace | None:
    """The arguments of a plain ``qbench [tui] [--db PATH]``, read without building the parser
    (every sub-command's: 15 ms on the way to the app's first frame); None for anything else,
    which the parser reads (errors, --help, abbreviations included)."""
    rest = argv[1:] if argv[:1] == ["tui"] else argv
    if not rest:
        return argparse.Namespace(command="tui", db=None)
    if len(rest) == 1 and rest[0].startswith("--db=") and rest[0] != "--db=":
        return argparse.Namespace(command="tui", db=Path(rest[0].removeprefix("--db=")))
    if len(rest) == 2 and rest[0] == "--db" and rest[1] and not rest[1].startswith("-"):
        return argparse.Namespace(command="tui", db=Path(rest[1]))
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if (args := app_args(argv)) is not None:
        return cmd_tui(args)
    parser = build_parser()
    args = parser.parse_args(argv)
    from engines.store import StoreError

    try:
        if args.command in (None, "tui"):
            return cmd_tui(args)
        if getattr(args, "handler", None) is not None:
            return args.handler(args)
        from qbench_tui.cli.listing import cmd_devices, cmd_methods, cmd_models, cmd_results, cmd_runs, cmd_runtimes
        from qbench_tui.cli.run import cmd_run

        handler = {"run": cmd_run, "results": cmd_results, "runs": cmd_runs, "models": cmd_models,
                   "methods": cmd_methods, "runtimes": cmd_runtimes, "devices": cmd_devices}[args.command]
        return handler(args)
    except UsageError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_tui(args) -> int:
    from qbench_tui.app import run_app

    return run_app(db=getattr(args, "db", None))
