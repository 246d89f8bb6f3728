"""Hostile commands through the bash tool on the local runtime.

Each one ends within its timeout (plus a margin for a loaded machine), keeps the
harness's memory bounded, leaves a working session behind, and once the runtime is
closed no process of it survives: none in the shell's process groups, none working
in the private copy, none carrying the session's environment (checked in /proc).
A fork bomb is not tried here: only the docker runtime's process limit contains one.
"""

from __future__ import annotations

import resource
import time
import uuid

import pytest
from test_reliability_support import left_behind, small_repo, wait_none_left

from cwm_agent.runtimes.local import LocalRuntime
from cwm_agent.tools import run_bash

TIMEOUT = 0.3
MARGIN = 15.0  # a busy 2-core machine: only "it ended", never "it was fast"
MAX_OUTPUT = 16_384


class Session:
    """A LocalRuntime plus what is needed to prove that nothing of it survives."""

    def __init__(self, runtime: LocalRuntime, tag: str) -> None:
        self.runtime, self.tag = runtime, tag
        self.pgids: set[int] = set()

    def bash(self, command: str, timeout: float = TIMEOUT):
        self.pgids.add(self.runtime.shell.transport.pgid)  # type: ignore[attr-defined]
        started = time.monotonic()
        observation = run_bash(self.runtime, command, timeout=timeout, max_output=MAX_OUTPUT)
        assert time.monotonic() - started < timeout + MARGIN
        self.pgids.add(self.runtime.shell.transport.pgid)  # type: ignore[attr-defined]
        observation.output.encode("utf-8")  # always valid text for the model and the record
        assert len(observation.output) < MAX_OUTPUT + 1_000
        return observation

    def recovers(self) -> None:
        """The session answers again, in the repository root or where the model went."""
        after = self.bash("echo alive; pwd", 10)
        assert after.ok and after.output.startswith("alive\n")


@pytest.fixture
def session(tmp_path):
    repo = small_repo(tmp_path / "repo")
    tag = f"RELIABILITY_TAG={uuid.uuid4().hex}"
    runtime = LocalRuntime.create(repo, env=dict([tag.split("=")]))
    top = runtime.root.rsplit("/", 1)[0]
    s = Session(runtime, tag)
    yield s
    runtime.close()
    assert wait_none_left(tuple(s.pgids), under=top, tag=tag) == []


def max_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ------------------------------------------------------------------ hangs and floods


HANGS = [
    "sleep 1000",
    "exec sleep 1000",  # the shell itself replaced by the hang
    "while :; do :; done",
    "sleep 1000 | cat",
    "echo started; sleep 1000",
]


def test_hangs_are_killed_at_the_timeout(session):
    for command in HANGS:
        result = session.bash(command)
        assert result.timed_out and not result.ok, command
        assert f"did not finish within {TIMEOUT:g} seconds and was killed" in result.output, command
        assert session.bash("pwd", 10).output == session.runtime.root + "\n", command  # restarted


FLOODS = ["yes", "cat /dev/urandom", "cat /dev/zero | tr '\\0' x"]


def test_endless_floods_are_bounded_and_killed(session):
    before = max_rss_kib()
    for command in FLOODS:
        result = session.bash(command)
        assert result.timed_out, command
        assert "cut ...]" in result.output, command
        session.recovers()
    assert max_rss_kib() - before < 64 * 1024


def test_big_finite_flood_keeps_head_and_tail(session):
    before = max_rss_kib()
    result = session.bash("head -c 50000000 /dev/urandom | base64 -w 76; echo THE-END", 60)
    assert result.ok and result.output.rstrip().endswith("THE-END")
    assert max_rss_kib() - before < 64 * 1024


# ------------------------------------------------------------------ pipes and stdin

BACKGROUND = [
    "sleep 1000 & echo started",
    "(sleep 1000; echo late) & echo started",
    "nohup sleep 1000 >/dev/null 2>&1 & echo started",
    "setsid sleep 1000 & echo started",  # leaves the process group
    "cd / && setsid sleep 1000 & echo started",  # ... and the private copy
    "env -i setsid sleep 1000 & echo started",  # ... and the session's environment
    "disown_me() { sleep 1000 & disown; }; disown_me; echo started",
]


def test_background_processes_holding_the_pipe(session):
    """One session collects them all; the fixture's teardown proves they are gone."""
    for command in BACKGROUND:
        result = session.bash(command, 10)
        assert result.ok and result.output.startswith("started"), command
        session.recovers()
    assert len([p for p in left_behind(tag=session.tag) if "sleep 1000" in p]) >= 5


def test_shell_exits_while_an_escaped_process_holds_the_pipe(session):
    """Without the shell, EOF never comes; the harness must notice at once, not time out."""
    result = session.bash("setsid sleep 1000 & echo bye; exit 4", 30)
    assert not result.timed_out and result.exit_code == 4
    assert "The shell session ended unexpectedly. A new session was started" in result.output
    session.recovers()
    assert [p for p in left_behind(tag=session.tag) if "sleep 1000" in p] == []


STDIN_READERS = [
    "cat",
    "read -r line; echo got=[$line]",
    "head -n 1",
    "python3 -c 'input()'",
    "git commit --allow-empty",  # an editor would wait on the terminal
]


def test_commands_waiting_on_stdin_get_end_of_file(session):
    for command in STDIN_READERS:
        result = session.bash(command, 30)
        assert not result.timed_out, command
        session.recovers()


# ------------------------------------------------------------------ odd output and exits


def test_binary_and_invalid_utf8_output(session):
    result = session.bash(r"printf 'a\0b\xff\xfe\xc3(c\n'; head -c 3000 /dev/urandom", 10)
    assert result.ok and result.output.startswith("a\x00b\ufffd\ufffd\ufffd(c\n")


SHELL_DEATHS = [
    ("exit", 0),
    ("exit 7", 7),
    ("kill -9 $$", 137),
    ("kill -TERM $$", 143),
    ("set -e; false", 1),
    ("set -u; echo $NOT_SET_ANYWHERE", 1),
]


def test_shell_death_is_reported_and_recovered(session):
    for command, code in SHELL_DEATHS:
        session.bash("export MARK=1; cd pkg", 10)
        result = session.bash(command, 30)
        assert not result.timed_out and result.exit_code == code, command
        assert "The shell session ended unexpectedly. A new session" in result.output, command
        after = session.bash("pwd; echo mark=$MARK", 10)
        assert after.output == f"{session.runtime.root}\nmark=\n", command


REDIRECTIONS = ["exec >/dev/null; echo hidden", "exec 1>&-", "exec 2>&-; ls /nope", "exec 0<&-"]


def test_redirecting_the_shells_own_output_does_not_hang(session):
    for command in REDIRECTIONS:
        result = session.bash(command, 30)
        assert not result.timed_out and not result.output.startswith("hidden"), command
        assert session.bash("echo visible", 10).output == "visible\n", command


def test_cd_to_a_missing_directory(session):
    session.bash("cd pkg", 10)
    result = session.bash("cd /no/such/dir", 10)
    assert result.exit_code == 1 and "No such file or directory" in result.output
    assert session.bash("pwd", 10).output == f"{session.runtime.root}/pkg\n"  # still where it was


def test_deleting_the_current_directory(session):
    result = session.bash("mkdir gone && cd gone && rmdir ../gone && pwd", 10)
    assert not result.timed_out
    session.recovers()
