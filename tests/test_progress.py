"""Progress on stderr: plain lines off a terminal, a live status line on one, never stdout."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys

from test_run_e2e import FIXING_SCRIPT

from cwm_agent.console import visible
from cwm_agent.progress import LiveProgress, StderrProgress, make_progress
from cwm_agent.scripted_server import ScriptedServer
from cwm_agent.types import Action, ModelReply, Observation, Usage

REPLY = ModelReply(
    "<think>\nLook at \x1b[31mthe module.\n</think>\n<tool: bash>\nls\n</tool>",
    usage=Usage(1200, 34),
)
ACTION = Action("bash", {"command": "cat -n mathlib/ops.py"})
OBSERVATION = Observation("\n".join(f"line {i}" for i in range(1, 31)), exit_code=0)


def feed(progress) -> None:
    progress("step", {"step": 1, "max_steps": 128})
    progress("reply", {"step": 1, "reply": REPLY})
    progress("action", {"step": 1, "action": ACTION})
    progress("observation", {"step": 1, "observation": OBSERVATION})
    progress("step", {"step": 2, "max_steps": 128})
    progress("reply", {"step": 2, "reply": ModelReply("no call")})
    progress("format_error", {"problem": "your reply has no tool call."})
    progress("warning", {"message": "careful"})


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_by_verbosity():
    for verbosity, present, absent in [
        (0, ["warning: careful"], ["step 1", "thinking"]),
        (1, ["step 1] bash: cat -n mathlib/ops.py", "format error: your reply"], ["thinking"]),
        (2, ["thinking: Look at \\x1b[31mthe module.", "    line 20", "(10 more lines)"], []),
    ]:
        stream = io.StringIO()
        with make_progress(verbosity, stream) as progress:
            assert type(progress) is StderrProgress
            feed(progress)
        out = stream.getvalue()
        assert all(text in out for text in present), (verbosity, out)
        assert not any(text in out for text in absent), (verbosity, out)
        assert "\x1b" not in out  # escape sequences from the model are shown, not obeyed


def test_live_display_on_a_terminal(monkeypatch):
    from rich.console import Console

    monkeypatch.delenv("TERM", raising=False)
    assert type(make_progress(0, TTY())) is StderrProgress  # -q: nothing live
    stream = TTY()
    console = Console(file=stream, force_terminal=True, width=100)
    with LiveProgress(2, stream, console=console) as progress:
        feed(progress)
        status = progress._status()  # what the live line shows right now
        assert "step 2/128" in status.plain and "1.2k tokens" in status.plain
    out = stream.getvalue()
    assert "step   1 bash: cat -n mathlib/ops.py" in out
    assert "Look at \\x1b[31mthe module." in out and "\x1b[31mthe" not in out
    assert "line 20" in out and "(10 more lines)" in out
    assert "format error: your reply has no tool call." in out and "warning: careful" in out
    monkeypatch.setenv("TERM", "dumb")
    assert type(make_progress(1, TTY())) is StderrProgress


def test_visible_keeps_text_and_shows_controls():
    assert visible("a\tb\r\nc\x07\x1b[2J") == "a\tb\nc\\x07\\x1b[2J"


def run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The real CLI with stderr on a pseudo-terminal and stdout on a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cwm_agent", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    stdout = proc.stdout.read().decode()
    os.close(master)
    return proc.wait(timeout=30), stdout, b"".join(chunks).decode(errors="replace")


def test_real_run_with_a_terminal_on_stderr(buggy_repo, cli_env):
    slow = [{"content": entry, "delay": 0.3} if i == 0 else entry
            for i, entry in enumerate(FIXING_SCRIPT)]  # fmt: skip
    with ScriptedServer(slow) as server:
        args = ["run", str(buggy_repo), "--issue", "fix add", "--base-url", server.base_url]
        code, stdout, terminal = run_on_a_terminal([*args, "--model", "m", "-v"], cli_env)
    assert code == 0, terminal
    assert stdout.startswith("diff --git a/mathlib/ops.py") and "step" not in stdout
    assert "step   2 edit: mathlib/ops.py" in terminal
    assert "Let me read the module first." in terminal  # -v: the reasoning
    assert "step 1/128" in terminal and "tokens" in terminal  # the live status line
    assert "run ended: submitted (exit 0): the model finished" in terminal


def test_quiet_run_on_a_terminal_prints_nothing(buggy_repo, cli_env):
    with ScriptedServer(FIXING_SCRIPT) as server:
        args = ["run", str(buggy_repo), "--issue", "fix add", "--base-url", server.base_url]
        code, stdout, terminal = run_on_a_terminal([*args, "--model", "m", "-q"], cli_env)
    assert code == 0 and stdout.startswith("diff --git")
    assert terminal == ""
