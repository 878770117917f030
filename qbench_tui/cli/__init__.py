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

from qbench_tui.cli.common import EXIT_USAGE, UsageError

# Every command is registered one way: its module has ``add_parsers(sub)``, which adds its
# sub-parsers and sets ``handler=`` on each (``main`` calls ``args.handler(args)``); the module's top
# level stays light (argparse only), so parsing never loads an engine. The order here is the order
# of ``qbench --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "qbench_tui.cli.run",
    "qbench_tui.cli.listing",
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

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parsers(sub)

    tui = sub.add_parser("tui", help="open the terminal app (the default)")
    tui.add_argument("--db", type=Path, default=argparse.SUPPRESS, help="SQLite store")
    tui.set_defaults(handler=cmd_tui)
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
        if args.command is None:
            return cmd_tui(args)
        return args.handler(args)
    except UsageError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def cmd_tui(args) -> int:
    from qbench_tui import cpu_clock, gc_pause

    cpu_clock.prime()  # before Textual's import: the meters' first reading covers the start-up
    gc_pause.pause()  # until the first frame is drawn
    from qbench_tui.app import run_app

    return run_app(db=getattr(args, "db", None))
