"""Every CLI command is registered one way: its module's ``add_parsers`` sets ``handler=`` on its
parser, and ``main`` only calls ``args.handler(args)`` (no second table of commands)."""

from __future__ import annotations

import argparse

from qbench_tui.cli import COMMAND_MODULES, build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_has_its_handler():
    commands = _commands(build_parser())
    missing = sorted(name for name, p in commands.items() if not callable(p._defaults.get("handler")))
    assert missing == [], f"commands without a handler: {missing}"
    assert {"run", "results", "runs", "models", "methods", "runtimes", "devices", "export", "tui"} <= set(commands)
    assert len(commands) >= 25
    assert all(name.startswith("qbench_tui.cli.") for name in COMMAND_MODULES)
