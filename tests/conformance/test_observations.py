"""What the model sees of a bash command, against CWM's own session and wrapping.

CWM's bash tool runs the command in its ``AsyncSession`` (its sandbox backend asks for
the raw output, ``sanitize=False``), passes a successful output through unchanged and
replaces a failed session's output by a notice; the environment wraps it in
``FEEDBACK_OUTPUT_PROMPT`` and appends the budget. Here the same commands run in both
sessions, and the tool messages are compared byte for byte.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import git

from cwm_agent.factory import open_runtime
from cwm_agent.protocol import render_tool_result
from cwm_agent.settings import RuntimeSettings
from cwm_agent.tools import run_bash

from .conftest import SWE_ENV, cwm_constants

COMMANDS = [
    "echo hello",
    "printf 'no newline'",
    "true",
    "false",
    "echo out; echo err >&2",
    "printf 'a\\n\\n'",
    "printf '\\n'",
    "printf 'caf\\xc3\\xa9 \\xe2\\x9c\\x93\\n'",
    "for i in 1 2 3; do\n  echo $i\ndone",
    "x=41; echo $((x + 1))",
    "sh -c 'echo failing; exit 3'",
    "printf 'tab\\there\\r\\n'",
]


@pytest.fixture(scope="module")
def cwm_session():
    """CWM's own persistent bash session, on one event loop for the whole module."""
    from cwm.rl.swerl.remote.session import AsyncSession

    loop = asyncio.new_event_loop()
    session = AsyncSession(["bash"], timeout=2.0)
    started = []  # every bash it starts (it starts a new one after a failure)
    start = session.start

    async def recording_start() -> None:
        await start()
        started.append(session.proc)

    session.start = recording_start  # type: ignore[method-assign]

    def run(command: str):
        return loop.run_until_complete(session.communicate(command, sanitize=False))

    yield run
    session.stop()
    for proc in started:  # reap them on the loop, before it closes
        if proc.returncode is None:
            proc.kill()
        loop.run_until_complete(proc.wait())
        proc._transport.close()
    loop.close()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    repo = tmp_path_factory.mktemp("observations") / "repo"
    repo.mkdir()
    (repo / "README").write_text("x\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    runtime = open_runtime(RuntimeSettings(), repo, "observations")
    yield runtime
    runtime.close()


def cwm_message(feedback: str, turns: int, tokens: int) -> str:
    """The body of CWM's tool message: its own templates, filled as its step() does."""
    texts = cwm_constants(SWE_ENV)
    wrapped = texts["FEEDBACK_OUTPUT_PROMPT"].format(feedback=feedback)
    budget = texts["BUDGET_NOTICE_TEMPLATE"].format(remaining_turns=turns, remaining_tokens=tokens)
    return f"{wrapped}\n\n{budget}"


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_shows_exactly_what_cwm_shows(cwm_session, runtime, command):
    from cwm.rl.swerl.tools import bash_feedback_default

    theirs = cwm_session(command)
    assert theirs["status"] == "success"
    cwm_feedback = bash_feedback_default({**theirs, "exit_code": 0}).output
    ours = run_bash(runtime, command, timeout=10, max_output=100_000, tool_format="cwm")
    assert ours.output == cwm_feedback
    assert render_tool_result(ours.output, 7, 1234) == cwm_message(cwm_feedback, 7, 1234)


def test_the_final_newline_is_a_blank_line_before_the_closing_tag(runtime):
    """The norm CWM was trained on, spelled out."""
    ours = run_bash(runtime, "echo hello", timeout=10, max_output=1000)
    assert render_tool_result(ours.output, 1, 2).startswith("<output>\nhello\n\n</output>\n\n")
    empty = run_bash(runtime, "true", timeout=10, max_output=1000)
    assert render_tool_result(empty.output, 1, 2).startswith("<output>\n\n</output>\n\n")


# What CWM's notices say, and the words that carry the same fact in cwm-agent's.
FACTS = {
    "the session ended": ("session has terminated", "ended"),
    "a new session runs": ("fresh session has started", "A new session was started"),
    "in the default directory": ("reset to default", "default working directory"),
}


def check_facts(cwm_notice: str, ours: str) -> None:
    for fact, (cwm_words, our_words) in FACTS.items():
        assert cwm_words in cwm_notice, f"CWM's notice no longer says {fact!r}"
        assert our_words in ours, f"cwm-agent's notice does not say {fact!r}: {ours!r}"


def test_a_timeout_carries_the_facts_of_cwms_notice(cwm_session, runtime):
    from cwm.rl.swerl.tools import bash_feedback_default

    theirs = cwm_session("sleep 30")
    assert (theirs["status"], theirs["error_type"]) == ("error", "timeout")
    cwm_notice = bash_feedback_default({**theirs, "exit_code": -1}).output
    assert "timeout" in cwm_notice
    runtime.run("cd /tmp", 10)
    ours = run_bash(runtime, "sleep 30", timeout=1, max_output=1000, tool_format="cwm")
    assert ours.timed_out and "did not finish within 1 seconds" in ours.output
    check_facts(cwm_notice, ours.output)
    assert runtime.root in ours.output and runtime.cwd == runtime.root  # really reset


def test_a_session_that_dies_carries_the_facts_of_cwms_notice(cwm_session, runtime):
    from cwm.rl.swerl.tools import bash_feedback_default

    theirs = cwm_session("exit 3")
    assert (theirs["status"], theirs["error_type"]) == ("error", "exit")
    cwm_notice = bash_feedback_default({**theirs, "exit_code": -1}).output
    ours = run_bash(runtime, "cd /tmp; exit 3", timeout=10, max_output=1000, tool_format="cwm")
    check_facts(cwm_notice, ours.output)
    assert runtime.cwd == runtime.root


def test_documented_difference_too_much_output_keeps_the_session(cwm_session, runtime):
    """CWM ends the session past 480 KB of output; cwm-agent keeps the head and the tail,
    says how much it cut, and the session (its cwd) lives on."""
    from cwm.rl.swerl.tools import bash_feedback_default

    theirs = cwm_session("head -c 600000 /dev/zero | tr '\\0' x")
    assert theirs["error_type"] == "too_long"
    assert "too much output" in bash_feedback_default({**theirs, "exit_code": -1}).output
    runtime.run(f"cd {runtime.root} && mkdir -p sub && cd sub", 10)
    ours = run_bash(runtime, "head -c 600000 /dev/zero | tr '\\0' x", timeout=30, max_output=4000)
    assert "cut" in ours.output and len(ours.output) < 5000
    assert ours.output.startswith("x" * 1000) and ours.output.endswith("x" * 1000)
    assert runtime.cwd == f"{runtime.root}/sub"


def test_documented_difference_bytes_that_are_not_utf8(cwm_session, runtime):
    """CWM's session drops them (errors="ignore"); cwm-agent shows U+FFFD in their place,
    so the model can tell that something was there."""
    theirs = cwm_session("printf 'caf\\xe9\\n'")
    assert theirs["output"] == "caf\n"
    ours = run_bash(runtime, "printf 'caf\\xe9\\n'", timeout=10, max_output=1000)
    assert ours.output == "caf\ufffd\n"
