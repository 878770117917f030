"""Starting a fleet worker on a Mac that stays up: a launchd agent's plist, or an SSH one-liner.

Both are generated from the worker's own command line, so what docs/fleet.md shows is what
``qbench worker … --launch-agent`` and ``--ssh-command HOST`` print:

* the agent runs in the user's GUI session (``LimitLoadToSessionType: Aqua``: Core ML, the Neural
  Engine and Metal need it), at load and again whenever it ends (``RunAtLoad`` + ``KeepAlive``), as
  an ``Interactive`` process so that macOS does not throttle it to the efficiency cores as a
  background job (which would skew every timing), logging to ``~/Library/Logs``;
* the SSH line goes through a login shell (a non-interactive ``ssh host cmd`` on macOS has only
  ``/usr/bin:/bin:/usr/sbin:/sbin`` on PATH: neither Homebrew's tmux nor qbench), with every
  argument quoted for each shell it passes through.

Plain Python (plistlib, shlex): the CLI imports it.
"""

from __future__ import annotations

import plistlib
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

LABEL = "dev.qbench.worker"
_PLAIN = re.compile(r"^[\w@%+=:,./~-]+$")  # no character any shell quotes, expands or splits (but ~)


def agent_path(label: str = LABEL, home: Path | None = None) -> Path:
    return (home or Path.home()) / "Library" / "LaunchAgents" / f"{label}.plist"


def launch_agent(argv: Sequence[str], label: str = LABEL, home: Path | None = None) -> bytes:
    """The agent's plist (XML) for ``argv`` (absolute paths: launchd expands neither ``~`` nor PATH)."""
    home = home or Path.home()
    if not argv or not Path(argv[0]).is_absolute():
        raise ValueError(f"the agent's program must be an absolute path, got {argv[:1]}")
    log = str(home / "Library" / "Logs" / "qbench-worker.log")
    return plistlib.dumps({
        "Label": label,
        "ProgramArguments": list(argv),
        "RunAtLoad": True,
        "KeepAlive": True,
        "ThrottleInterval": 30,  # a worker that cannot reach the scheduler retries every 30 s, not in a loop
        "ProcessType": "Interactive",  # not Background: no CPU/QoS throttling of the benchmark
        "LimitLoadToSessionType": "Aqua",  # the logged-in user's session: Core ML, ANE, Metal
        "WorkingDirectory": str(home),
        "StandardOutPath": log,
        "StandardErrorPath": log,
    })


def load_commands(label: str = LABEL, home: Path | None = None) -> list[str]:
    """How to (re)load the agent: ``launchctl bootstrap`` into the user's GUI domain (``load`` is legacy)."""
    path = shlex.quote(str(agent_path(label, home)))
    return [f"launchctl bootout gui/$(id -u)/{label} 2>/dev/null; launchctl bootstrap gui/$(id -u) {path}",
            f"launchctl print gui/$(id -u)/{label} | grep state"]


def ssh_command(host: str, argv: Sequence[str], session: str = "qbench",
                log: str = "~/Library/Logs/qbench-worker.log") -> str:
    """``ssh HOST …`` that starts ``argv`` in a detached tmux session on HOST through a login shell
    (so Homebrew's tmux and the user's PATH are there), its output appended to ``log``."""
    if all(_PLAIN.match(a) for a in (*argv, log, session, host)):
        # the readable form docs/fleet.md shows: nothing in it any of the shells would change
        worker = f"{' '.join(argv)} >> {log} 2>&1"
        return f"ssh {host} \"zsh -lc 'tmux new-session -d -s {session} \\\"{worker}\\\"'\""
    worker = f"{' '.join(remote_quote(a) for a in argv)} >> {remote_quote(log)} 2>&1"
    tmux = f"tmux new-session -d -s {shlex.quote(session)} {shlex.quote(worker)}"
    return f"ssh {shlex.quote(host)} {shlex.quote('zsh -lc ' + shlex.quote(tmux))}"


def remote_quote(arg: str) -> str:
    """``shlex.quote`` that leaves a leading ``~/`` to the remote shell (the remote user's home)."""
    return "~/" + shlex.quote(arg[2:]) if arg.startswith("~/") and len(arg) > 2 else shlex.quote(arg)
