"""The fleet worker's launchd agent and SSH line, generated from code: the plist parses back with
plistlib to what launchd needs, and the SSH line survives each shell it passes through."""

from __future__ import annotations

import json
import plistlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from engines.fleet.launchd import LABEL, agent_path, launch_agent, load_commands, ssh_command
from tests.helpers import qbench

ARGV = ["/Users/me/qbench/.venv/bin/qbench", "worker", "--scheduler", "tls://10.0.0.5:8786", "--name", "mini-2",
        "--tls-ca", "/Users/me/fleet/ca.pem"]


def test_the_agent_parses_back_to_what_launchd_needs():
    home = Path("/Users/me")
    agent = plistlib.loads(launch_agent(ARGV, home=home))
    assert agent["Label"] == LABEL and agent["ProgramArguments"] == ARGV
    assert agent["RunAtLoad"] is True and agent["KeepAlive"] is True
    assert agent["ProcessType"] == "Interactive"  # a Background job is throttled to efficiency cores
    assert agent["LimitLoadToSessionType"] == "Aqua"  # Core ML, the Neural Engine and Metal need the GUI session
    assert agent["StandardOutPath"] == agent["StandardErrorPath"] == "/Users/me/Library/Logs/qbench-worker.log"
    assert agent_path(home=home) == Path("/Users/me/Library/LaunchAgents/dev.qbench.worker.plist")
    assert "launchctl bootstrap gui/$(id -u) /Users/me/Library/LaunchAgents/dev.qbench.worker.plist" in \
        load_commands(home=home)[0]


def test_the_agent_refuses_a_program_launchd_cannot_find():
    with pytest.raises(ValueError, match="absolute path"):
        launch_agent(["qbench", "worker"])


def test_the_ssh_line_survives_every_shell_it_passes_through():
    argv = ["~/qbench/.venv/bin/qbench", "worker", "--scheduler", "tls://10.0.0.5:8786", "--name", "mini 2's",
            "--tls-ca", "~/fleet/ca.pem"]
    line = ssh_command("mini-2", argv)
    ssh, host, remote = shlex.split(line)
    assert (ssh, host) == ("ssh", "mini-2")
    login, flag, tmux = shlex.split(remote)  # what the remote user's shell runs
    assert (login, flag) == ("zsh", "-lc")  # a login shell: Homebrew's tmux and the PATH are there
    *head, worker = shlex.split(tmux)
    assert head == ["tmux", "new-session", "-d", "-s", "qbench"]
    assert worker.endswith(">> ~/Library/Logs/qbench-worker.log 2>&1")


def test_plain_arguments_give_the_readable_line_the_docs_show():
    argv = ["~/qbench/.venv/bin/qbench", "worker", "--scheduler", "tls://10.0.0.5:8786", "--name", "mini-2"]
    line = ssh_command("mini-2", argv)
    assert line == ("ssh mini-2 \"zsh -lc 'tmux new-session -d -s qbench \\\"~/qbench/.venv/bin/qbench worker "
                    "--scheduler tls://10.0.0.5:8786 --name mini-2 >> ~/Library/Logs/qbench-worker.log 2>&1\\\"'\"")
    _, _, remote = shlex.split(line)
    _, _, tmux = shlex.split(remote)
    assert shlex.split(tmux)[-1] == " ".join(argv) + " >> ~/Library/Logs/qbench-worker.log 2>&1"


@pytest.mark.parametrize("name", ["mini 2's", "mini-2"])
def test_the_worker_command_tmux_runs_expands_home_and_keeps_each_argument(tmp_path, name):
    """Run the innermost command for real through sh, with a stand-in program that prints its argv."""
    (tmp_path / "bin").mkdir()
    prog = tmp_path / "bin" / "qbench"
    prog.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    prog.chmod(0o755)
    argv = ["~/bin/qbench", "worker", "--name", name, "--tls-ca", "~/fleet/ca.pem"]
    tmux = shlex.split(shlex.split(shlex.split(ssh_command("h", argv, log="~/w.log"))[2])[2])
    subprocess.run(["sh", "-c", tmux[-1]], env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True)
    assert json.loads((tmp_path / "w.log").read_text()) == ["worker", "--name", name, "--tls-ca",
                                                            f"{tmp_path}/fleet/ca.pem"]


def test_qbench_worker_prints_its_agent():
    proc = qbench("worker", "--scheduler", "tls://10.0.0.5:8786", "--name", "mini-2", "--launch-agent", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    agent = plistlib.loads(proc.stdout.encode())
    program, *rest = agent["ProgramArguments"]
    assert Path(program).is_absolute() and Path(program).name == "qbench"
    assert rest == ["worker", "--scheduler", "tls://10.0.0.5:8786", "--name", "mini-2"]


def test_docs_show_exactly_what_the_code_generates():
    import re

    text = (Path(__file__).parents[1] / "docs" / "fleet.md").read_text()
    xml = re.search(r"```xml\n(.*?)```", text, re.DOTALL).group(1)
    agent = plistlib.loads(xml.encode())
    assert agent == plistlib.loads(launch_agent(agent["ProgramArguments"], home=Path("/Users/you")))
    line = next(ln for ln in text.splitlines() if ln.startswith("ssh mini-2 "))
    remote = ["~/qbench/.venv/bin/qbench", "worker", "--scheduler", "tls://10.0.0.5:8786", "--name", "mini-2",
              "--tls-ca", "~/fleet/ca.pem", "--tls-cert", "~/fleet/fleet.pem", "--tls-key", "~/fleet/fleet.key"]
    assert line == ssh_command("mini-2", remote)
